"""GeoTIFF and GeoJSON ingestion through rasterio, on fixtures the tests write."""

import json
import tracemalloc

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geo_fixtures import (MERCATOR, UTM, burn, pixel_rects, rects_to_polygons, write_geojson,
                          write_scene)
from priojax.geo import raster as geo
from priojax.errors import DataError

SIZE = 128


@pytest.fixture
def utm_scene(tmp_path):
  """uint16 single-band UTM scene, nodata in its left quarter, footprints in WGS84."""
  rng = np.random.default_rng(0)
  transform = Affine(0.5, 0, 500000.0, 0, -0.5, 4500000.0)
  data = rng.integers(300, 3000, (1, SIZE, SIZE)).astype(np.uint16)
  data[:, :, :SIZE // 4] = 0  # nodata
  rects = [r for r in pixel_rects(rng, SIZE, SIZE, 12) if r[1] >= SIZE // 4]
  path = write_scene(tmp_path / 'utm.tif', data, UTM, transform, nodata=0, tiled=True, blocksize=32)
  labels = write_geojson(tmp_path / 'utm.geojson', rects_to_polygons(rects, transform), UTM)
  return path, labels, rects, transform


def test_footprints_reprojected_and_rasterised_match_polygons(utm_scene):
  path, labels, rects, _ = utm_scene
  truth = burn(rects, SIZE, SIZE)
  with geo.open_scene(path) as src:
    fp = geo.load_footprints(labels, src.crs)
    assert len(fp.geometries) == len(rects) and not fp.skipped
    for window in geo.chip_windows(src.height, src.width, 32, 0):
      mask = geo.rasterize_chip(fp, src.window_transform(window), 32)
      want = truth[window.row_off:window.row_off + 32, window.col_off:window.col_off + 32]
      diff = mask != want
      # Reprojection round trip (UTM -> WGS84 -> UTM): at most the boundary pixels differ.
      boundary = want ^ np.pad(want, 1, mode='edge')[1:-1, 2:] | want ^ np.pad(want, 1, mode='edge')[2:, 1:-1] \
          | want ^ np.pad(want, 1, mode='edge')[1:-1, :-2] | want ^ np.pad(want, 1, mode='edge')[:-2, 1:-1]
      assert not (diff & ~boundary.astype(bool)).any()
      assert diff.sum() <= max(2, boundary.sum() // 10)


def test_chip_transforms_place_each_chip_on_its_window(utm_scene):
  path, _, _, transform = utm_scene
  with geo.open_scene(path) as src:
    stats = geo.scene_statistics(src, (1,))
    chips = list(geo.iter_chips(src, (1,), stats, 48, 16, max_nodata=1.0))
    windows = geo.chip_windows(src.height, src.width, 48, 16)
    assert [c[0] for c in chips] == list(range(len(windows)))
    covered = np.zeros((SIZE, SIZE), bool)
    for index, window, image, _ in chips:
      t = src.window_transform(window)
      assert t @ (0, 0) == transform @ (window.col_off, window.row_off)
      assert t.a == transform.a and t.e == transform.e
      assert image.shape == (48, 48, 3) and image.dtype == np.uint8
      covered[window.row_off:window.row_off + 48, window.col_off:window.col_off + 48] = True
    assert covered.all()  # the last row/column is moved back to the scene's edge


def test_uint16_normalisation_and_nodata(utm_scene):
  path, *_ = utm_scene
  with geo.open_scene(path) as src:
    stats = geo.scene_statistics(src, (1,))
    assert 300 <= stats.low[0] < stats.high[0] <= 3000  # nodata zeros excluded
    kept = list(geo.iter_chips(src, (1,), stats, 32, 0, max_nodata=0.5))
    everything = list(geo.iter_chips(src, (1,), stats, 32, 0, max_nodata=1.0))
  assert len(everything) == 16 and len(kept) == 12  # the nodata column of chips is skipped
  _, _, image, valid = everything[0]
  assert valid == 0.0 and (image == 0).all()
  _, _, image, valid = kept[0]
  assert valid == 1.0 and image.max() == 255 and image.min() == 0
  assert (image[..., 0] == image[..., 1]).all()  # one band replicated to RGB


def test_rgb_scene_in_another_crs_with_crs_member(tmp_path):
  rng = np.random.default_rng(1)
  transform = Affine(0.6, 0, 1500000.0, 0, -0.6, 5000000.0)
  rects = pixel_rects(rng, 64, 64, 6)
  data = rng.integers(0, 255, (3, 64, 64)).astype(np.uint8)
  path = write_scene(tmp_path / 'rgb.tif', data, MERCATOR, transform)
  # Labels written in UTM with an explicit crs member.
  labels = write_geojson(tmp_path / 'l.geojson', rects_to_polygons(rects, transform), MERCATOR,
                         dst_crs=UTM, crs_member='EPSG:32633')
  with geo.open_scene(path) as src:
    fp = geo.load_footprints(labels, src.crs)
    mask = geo.rasterize_chip(fp, src.window_transform(rasterio.windows.Window(0, 0, 64, 64)), 64)
  truth = burn(rects, 64, 64)
  assert (mask != truth).sum() <= 0.1 * truth.sum()


def test_invalid_and_non_polygon_geometries_are_reported(tmp_path):
  bowtie = {'type': 'Polygon', 'coordinates': [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
  feats = [{'type': 'Feature', 'geometry': bowtie},
           {'type': 'Feature', 'geometry': {'type': 'Point', 'coordinates': [0, 0]}},
           {'type': 'Feature', 'geometry': None},
           {'type': 'Feature', 'geometry': {'type': 'Polygon', 'coordinates': []}}]
  path = tmp_path / 'x.geojson'
  path.write_text(json.dumps({'type': 'FeatureCollection', 'features': feats}))
  fp = geo.load_footprints(path, CRS.from_epsg(4326))
  assert len(fp.geometries) == 1
  assert fp.skipped == {'repaired (self-intersecting)': 1, 'Point is not a footprint': 1,
                        'no geometry': 1, 'empty polygon': 1}


# --- bad input: one line naming the file ---------------------------------

def test_not_a_geotiff(tmp_path):
  path = tmp_path / 'notes.tif'
  path.write_text('hello')
  with pytest.raises(DataError, match=rf'^{path}: not a readable image'):
    geo.open_scene(path)


def test_truncated_geotiff(tmp_path, utm_scene):
  src_path = utm_scene[0]
  path = tmp_path / 'truncated.tif'
  path.write_bytes(src_path.read_bytes()[:2000])
  with pytest.raises(DataError, match=rf'^{path}: '):
    with geo.open_scene(path) as src:
      list(geo.iter_chips(src, (1,), geo.scene_statistics(src, (1,)), 32, 0, 1.0))


def test_scene_without_crs_opens_as_a_pixel_grid(tmp_path):
  path = tmp_path / 'nocrs.tif'
  with rasterio.open(path, 'w', driver='GTiff', height=8, width=8, count=1, dtype='uint8') as dst:
    dst.write(np.zeros((1, 8, 8), np.uint8))
  with geo.open_scene(path) as src:
    assert not geo.georeferenced(src)
    assert geo.check_bands(path, src, None) == (1,)


def test_missing_band(utm_scene):
  path = utm_scene[0]
  with geo.open_scene(path) as src:
    with pytest.raises(DataError, match=rf'^{path}: band 4 does not exist \(the file has 1 bands'):
      geo.check_bands(path, src, (1, 4, 1))


def _four_band_scene(path):
  data = np.stack([np.full((64, 64), v, np.uint8) for v in (10, 20, 30, 40)])
  with rasterio.open(path, 'w', driver='GTiff', height=64, width=64, count=4, dtype='uint8') as dst:
    dst.write(data + np.arange(64, dtype=np.uint8)[None, None])
  return path


def test_more_than_three_bands_reach_the_chips_and_two_are_refused(tmp_path):
  path = _four_band_scene(tmp_path / 'rgbn.tif')
  with geo.open_scene(path) as src:
    with pytest.raises(DataError, match=rf'^{path}: the scene has 4 bands and no "bands" entry; expected '
                                        r'bands: \[r, g, b\] \(or \[b\], or \[r, g, b, nir, ...\]\)'):
      geo.check_bands(path, src, None)
    with pytest.raises(DataError, match=rf'^{path}: expected 1, 3 or more bands to read .*, got \[1, 4\]'):
      geo.check_bands(path, src, (1, 4))
    bands = geo.check_bands(path, src, (1, 2, 3, 4))
    stats = geo.scene_statistics(src, bands)
    chips = list(geo.iter_chips(src, bands, stats, 32, 0, 1.0))
  assert len(chips) == 4 and all(image.shape == (32, 32, 4) for _, _, image, _ in chips)
  assert geo.chip_channels(1) == 3 and geo.chip_channels(3) == 3 and geo.chip_channels(5) == 5


def test_scenes_with_different_band_counts_are_refused(tmp_path):
  from priojax.geo import builder as geo_builder
  from priojax.geo.manifest import load_manifest

  _four_band_scene(tmp_path / 'a.tif')
  _four_band_scene(tmp_path / 'b.tif')
  with rasterio.open(tmp_path / 'mask.tif', 'w', driver='GTiff', height=64, width=64, count=1,
                     dtype='uint8') as dst:
    dst.write(np.zeros((1, 64, 64), np.uint8))
  manifest = tmp_path / 'm.yaml'
  _four_band_scene(tmp_path / 'c.tif')
  scenes = [{'image': 'c.tif', 'region': 'source', 'mask': 'mask.tif'},
            {'image': 'a.tif', 'region': 'target_pool'},
            {'image': 'b.tif', 'region': 'target_test', 'mask': 'mask.tif'}]
  manifest.write_text(json.dumps({'bands': [1, 2, 3, 4], 'scenes': scenes}))
  assert geo_builder.manifest_channels(load_manifest(manifest)) == 4
  scenes[2]['bands'] = [3, 2, 1]
  manifest.write_text(json.dumps({'bands': [1, 2, 3, 4], 'scenes': scenes}))
  with pytest.raises(DataError, match=rf'^{tmp_path / "b.tif"}: reads 3 channels where {tmp_path / "c.tif"} '
                                      r'reads 4; expected the same bands for every scene'):
    geo_builder.manifest_channels(load_manifest(manifest))


def test_labels_with_unreadable_crs(tmp_path):
  path = tmp_path / 'bad_crs.geojson'
  path.write_text(json.dumps({'type': 'FeatureCollection', 'features': [],
                              'crs': {'type': 'name', 'properties': {'name': 'EPSG:999999'}}}))
  with pytest.raises(DataError, match=rf'^{path}: cannot read its "crs" member'):
    geo.load_footprints(path, UTM)


def test_malformed_geojson(tmp_path):
  path = tmp_path / 'broken.geojson'
  path.write_text('{"type": "FeatureCollection", "features": [')
  with pytest.raises(DataError, match=rf'^{path}: not valid GeoJSON \(JSON error at line 1'):
    geo.load_footprints(path, UTM)


@pytest.mark.slow
def test_large_scene_is_read_window_by_window(tmp_path):
  side = 4000
  transform = Affine(1.0, 0, 500000.0, 0, -1.0, 4500000.0)
  path = tmp_path / 'large.tif'
  with rasterio.open(path, 'w', driver='GTiff', height=side, width=side, count=1, dtype='uint16',
                     crs=UTM, transform=transform, tiled=True, blockxsize=256, blockysize=256,
                     compress='deflate') as dst:
    rng = np.random.default_rng(0)
    for row in range(0, side, 500):  # written in strips, never whole
      dst.write(rng.integers(0, 4000, (1, 500, side)).astype(np.uint16),
                window=rasterio.windows.Window(0, row, side, 500))
  scene_bytes = side * side * 2  # 32 MB as uint16, 128 MB as float64
  tracemalloc.start()
  with rasterio.Env(GDAL_CACHEMAX=16):
    with geo.open_scene(path) as src:
      stats = geo.scene_statistics(src, (1,))
      count = sum(1 for _ in geo.iter_chips(src, (1,), stats, 250, 0, 0.5))
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert count == 256
  assert peak < scene_bytes / 4, f'peak {peak / 2**20:.1f} MiB'
