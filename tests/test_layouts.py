"""SpaceNet and xBD folder layouts expanded into manifest scenes."""

import json

import numpy as np
import pytest
import rasterio
import rasterio.features
from affine import Affine

from geo_fixtures import UTM, burn, pixel_rects, rects_to_polygons, rgb_scene_with_buildings, \
    write_geojson, write_scene
from priojax.geo import layouts, raster as geo
from priojax.geo.manifest import load_manifest
from priojax.errors import DataError


def _spacenet_aoi(root, n=2):
  rng = np.random.default_rng(0)
  (root / 'PS-RGB').mkdir(parents=True)
  (root / 'geojson_buildings').mkdir()
  for i in range(1, n + 1):
    transform = Affine(0.3, 0, 500000.0 + 100 * i, 0, -0.3, 4500000.0)
    rects = pixel_rects(rng, 64, 64, 4)
    write_scene(root / 'PS-RGB' / f'SN2_buildings_train_AOI_2_Vegas_PS-RGB_img{i}.tif',
                rgb_scene_with_buildings(rng, 64, 64, rects), UTM, transform)
    write_geojson(root / 'geojson_buildings' / f'SN2_buildings_train_AOI_2_Vegas_geojson_buildings_img{i}.geojson',
                  rects_to_polygons(rects, transform), UTM)


def test_spacenet_aoi_expands_into_matched_scenes(tmp_path):
  _spacenet_aoi(tmp_path / 'AOI_2_Vegas')
  scenes = layouts.spacenet_scenes(tmp_path / 'AOI_2_Vegas')
  assert len(scenes) == 2
  for s in scenes:
    key = s['image'].rsplit('_', 1)[-1].removesuffix('.tif')
    assert s['labels'].endswith(f'_{key}.geojson')
  manifest = tmp_path / 'm.yaml'
  manifest.write_text(json.dumps({'scenes': [
      {'spacenet': 'AOI_2_Vegas', 'region': 'source'},
      {'image': 'AOI_2_Vegas/PS-RGB/SN2_buildings_train_AOI_2_Vegas_PS-RGB_img1.tif', 'id': 'p',
       'region': 'target_pool'},
      {'image': 'AOI_2_Vegas/PS-RGB/SN2_buildings_train_AOI_2_Vegas_PS-RGB_img2.tif', 'id': 't',
       'labels': 'AOI_2_Vegas/geojson_buildings/SN2_buildings_train_AOI_2_Vegas_geojson_buildings_img2.geojson',
       'region': 'target_test'}]}))
  m = load_manifest(manifest)
  assert [s.region for s in m.scenes] == ['source', 'source', 'target_pool', 'target_test']
  assert all(s.labels is not None for s in m.region('source'))


def test_missing_spacenet_folder(tmp_path):
  with pytest.raises(DataError, match='not a SpaceNet AOI folder'):
    layouts.spacenet_scenes(tmp_path / 'nope')


def _write_xbd(root, name, rects, lon0=30.0, lat0=10.0, step=1e-5):
  (root / 'images').mkdir(parents=True, exist_ok=True)
  (root / 'labels').mkdir(exist_ok=True)
  rng = np.random.default_rng(1)
  img = rgb_scene_with_buildings(rng, 64, 64, rects)
  with rasterio.open(root / 'images' / f'{name}_pre_disaster.png', 'w', driver='PNG', height=64,
                     width=64, count=3, dtype='uint8') as dst:
    dst.write(img)
  xy, lnglat = [], []
  for r, c, h, w in rects:
    ring = [(c, r), (c + w, r), (c + w, r + h), (c, r + h), (c, r)]
    xy.append({'properties': {}, 'wkt': 'POLYGON ((' + ', '.join(f'{x} {y}' for x, y in ring) + '))'})
    lnglat.append({'properties': {}, 'wkt': 'POLYGON ((' + ', '.join(
        f'{lon0 + x * step} {lat0 - y * step}' for x, y in ring) + '))'})
  (root / 'labels' / f'{name}_pre_disaster.json').write_text(json.dumps(
      {'features': {'xy': xy, 'lng_lat': lnglat}, 'metadata': {'width': 64, 'height': 64}}))


def test_xbd_pair_is_georeferenced_and_masks_come_from_pixel_polygons(tmp_path):
  rects = [(5, 5, 10, 12), (30, 40, 8, 8), (50, 10, 6, 20)]
  _write_xbd(tmp_path / 'xbd', 'palu_00001', rects)
  scenes = layouts.xbd_scenes(tmp_path / 'xbd', tmp_path / 'converted')
  assert len(scenes) == 1
  with geo.open_scene(scenes[0]['image']) as src:
    assert src.crs == geo.WGS84
    np.testing.assert_allclose(list(src.transform)[:6], [1e-5, 0, 30.0, 0, -1e-5, 10.0], atol=1e-9)
    fp = geo.load_footprints(scenes[0]['labels'], src.crs)
    mask = geo.rasterize_chip(fp, src.transform, 64)
  np.testing.assert_array_equal(mask, burn(rects, 64, 64))
  # Converted once: a second call reuses the files.
  mtime = (tmp_path / 'converted' / 'palu_00001_pre_disaster.tif').stat().st_mtime_ns
  layouts.xbd_scenes(tmp_path / 'xbd', tmp_path / 'converted')
  assert (tmp_path / 'converted' / 'palu_00001_pre_disaster.tif').stat().st_mtime_ns == mtime


def test_xbd_image_without_buildings_cannot_be_georeferenced(tmp_path):
  _write_xbd(tmp_path / 'xbd', 'empty_00002', [])
  with pytest.raises(DataError, match='cannot georeference empty_00002_pre_disaster.png'):
    layouts.xbd_scenes(tmp_path / 'xbd', tmp_path / 'converted')


def test_xbd_entry_in_manifest(tmp_path):
  _write_xbd(tmp_path / 'xbd', 'a_00001', [(5, 5, 10, 12)])
  _spacenet_aoi(tmp_path / 'AOI')
  manifest = tmp_path / 'm.yaml'
  manifest.write_text(
      'scenes:\n'
      '  - {xbd: xbd, region: source}\n'
      '  - {spacenet: AOI, region: target_pool}\n'
      '  - {xbd: xbd, region: target_test}\n')
  with pytest.raises(DataError, match='is used twice'):
    load_manifest(manifest)  # the same xBD scene in two regions
  _spacenet_aoi(tmp_path / 'AOI_test', n=1)
  manifest.write_text('scenes:\n  - {xbd: xbd, region: source}\n  - {spacenet: AOI, region: target_pool}\n'
                      '  - {spacenet: AOI_test, region: target_test, bands: [3, 2, 1]}\n')
  m = load_manifest(manifest)
  assert [(s.id, s.region) for s in m.scenes] == [
      ('a_00001_pre_disaster', 'source'),
      ('AOI_SN2_buildings_train_AOI_2_Vegas_PS-RGB_img1', 'target_pool'),
      ('AOI_SN2_buildings_train_AOI_2_Vegas_PS-RGB_img2', 'target_pool'),
      ('AOI_test_SN2_buildings_train_AOI_2_Vegas_PS-RGB_img1', 'target_test')]
  assert m.region('target_test')[0].bands == (3, 2, 1)
  assert m.region('source')[0].image.suffix == '.tif'  # converted from the PNG
