"""Raster-mask labels, images without georeference, band rules and the
Inria layout, through the manifest, the builder and the loop."""

import json
import pathlib
import shutil

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from geo_fixtures import UTM, burn, pixel_rects, rects_to_polygons, rgb_scene_with_buildings, \
    write_geojson, write_project, write_scene
from priojax import loop
from priojax.data import loading
from priojax.errors import DataError
from priojax.geo import builder as geo_builder
from priojax.geo.manifest import load_manifest

SIZE = 96
TRANSFORM = Affine(0.5, 0, 500000.0, 0, -0.5, 4500000.0)


def write_png(path: pathlib.Path, data: np.ndarray) -> pathlib.Path:
  """``data`` [bands, H, W] as a PNG with no georeference."""
  with rasterio.open(path, 'w', driver='PNG', height=data.shape[1], width=data.shape[2],
                     count=data.shape[0], dtype=data.dtype) as dst:
    dst.write(data)
  return path


def _chip_masks(manifest_path: pathlib.Path, data_dir: pathlib.Path) -> dict[int, np.ndarray]:
  cfg = geo_builder.make_geo_config(load_manifest(manifest_path), tile_size=32, source_val_fraction=0.25,
                                    seed=0)
  sources, _ = geo_builder.load_geo_chips(cfg, str(data_dir))
  return {int(r['id']): r['mask'] for split in sources.values() for r in (split[i] for i in range(len(split)))}


def _manifest(root: pathlib.Path, name: str, label_entry: dict, image='scene.tif') -> pathlib.Path:
  scenes = [{'image': image, 'region': region, 'id': f'{region}', **label_entry}
            for region in ('source', 'target_pool', 'target_test')]
  path = root / name
  path.write_text(json.dumps({'tile_size': 32, 'scenes': scenes}))
  return path


@pytest.mark.parametrize('fmt, on', [('GTiff', 255), ('GTiff', 1), ('PNG', 255), ('PNG', 1)])
def test_raster_masks_give_the_chips_of_the_same_polygons(tmp_path, fmt, on):
  rng = np.random.default_rng(3)
  rects = pixel_rects(rng, SIZE, SIZE, 12)
  write_scene(tmp_path / 'scene.tif', rgb_scene_with_buildings(rng, SIZE, SIZE, rects), UTM, TRANSFORM)
  write_geojson(tmp_path / 'buildings.geojson', rects_to_polygons(rects, TRANSFORM), UTM)
  mask = (burn(rects, SIZE, SIZE) * on).astype(np.uint8)[None]
  if fmt == 'PNG':
    write_png(tmp_path / 'mask.png', mask)
  else:
    write_scene(tmp_path / 'mask.png', mask, UTM, TRANSFORM)  # a GeoTIFF, whatever its name
  by_polygons = _chip_masks(_manifest(tmp_path, 'polygons.yaml', {'labels': 'buildings.geojson'}),
                            tmp_path / 'tfds')
  by_mask = _chip_masks(_manifest(tmp_path, 'masks.yaml', {'mask': 'mask.png'}), tmp_path / 'tfds')
  assert by_polygons.keys() == by_mask.keys() and len(by_mask) == 3 * 9
  assert sum(m.sum() for m in by_mask.values()) > 0
  for chip_id, expected in by_polygons.items():
    got = by_mask[chip_id]
    assert set(np.unique(got)) <= {0, 1}
    # Rasterising and a burnt mask may disagree only on building outlines.
    boundary = ndimage.binary_dilation(expected) & ~ndimage.binary_erosion(expected)
    assert not ((got != expected) & ~boundary).any()


def _pixel_project(root: pathlib.Path, *, mask_on=255, pool_labels=True, truth=None) -> pathlib.Path:
  """Three PNG scenes without georeference, with PNG masks; ``truth``, a
  dict, receives each scene's building rectangles."""
  rng = np.random.default_rng(5)
  root.mkdir(parents=True, exist_ok=True)
  scenes = []
  for name, region in (('src', 'source'), ('pool', 'target_pool'), ('test', 'target_test')):
    rects = pixel_rects(rng, SIZE, SIZE, 10)
    if truth is not None:
      truth[name] = rects
    write_png(root / f'{name}.png', rgb_scene_with_buildings(rng, SIZE, SIZE, rects))
    scenes.append({'image': f'{name}.png', 'region': region})
    if region != 'target_pool' or pool_labels:
      write_png(root / f'{name}_mask.png', (burn(rects, SIZE, SIZE) * mask_on).astype(np.uint8)[None])
      scenes[-1]['mask'] = f'{name}_mask.png'
  manifest = root / 'manifest.yaml'
  manifest.write_text(json.dumps({'tile_size': 32, 'scenes': scenes}))
  return manifest


def _smoke(manifest, data_dir, k=3):
  from configs import iou_priority

  config = iou_priority.get_config('smoke,geotiff')
  config.data.manifest = str(manifest)
  config.data.data_dir = str(data_dir)
  config.rounds.k = k
  return config


@pytest.mark.slow
def test_images_without_georeference_run_a_round_and_export_pixel_chips(tmp_path, data_dir):
  manifest = _pixel_project(tmp_path / 'project')
  config = _smoke(manifest, data_dir)
  history = loop.run(config, str(tmp_path / 'w'))
  assert [r['labels'] for r in history] == [0, 3]
  assert history[1]['iou'] >= 0.0
  out = tmp_path / 'w' / 'export' / 'round_1'
  selected = json.loads((tmp_path / 'w' / 'selected_round_1.json').read_text())['ids']
  assert not (out / 'selected.geojson').exists()  # no map outline for a chip that has no place
  listed = json.loads((out / 'selected_pixels.json').read_text())
  assert [c['id'] for c in listed] == selected
  assert 'not georeferenced' in (out / 'NOT_GEOREFERENCED.txt').read_text()
  pool = loading.load_data(config)[0]['target_pool']
  for chip in listed:
    row, col, h, w = chip['window']
    assert (h, w) == (32, 32) and 0 <= row <= SIZE - 32 and 0 <= col <= SIZE - 32
    with rasterio.open(out / 'chips' / f'{chip["id"]}.png') as written:
      assert written.crs is None and written.driver == 'PNG'
      np.testing.assert_array_equal(written.read().transpose(1, 2, 0), pool.read_ids([chip['id']])['image'][0])
    for feature in json.loads((out / 'predictions' / f'{chip["id"]}.geojson').read_text())['features']:
      xy = np.asarray(feature['geometry']['coordinates'][0])
      assert (xy[:, 0] >= col).all() and (xy[:, 0] <= col + w).all()  # scene pixel coordinates
      assert (xy[:, 1] >= row).all() and (xy[:, 1] <= row + h).all()
  with rasterio.open(out / 'heatmap_pool.tif') as heat:
    assert heat.crs is None


@pytest.mark.slow
def test_annotations_of_pixel_only_chips_are_read_in_scene_pixels(tmp_path, data_dir):
  """Human mode on a pool without georeference: annotators return polygons
  in the scene's pixel coordinates (as the exported predictions are)."""
  truth = {}
  manifest = _pixel_project(tmp_path / 'project', pool_labels=False, truth=truth)
  config = _smoke(manifest, data_dir)
  workdir = tmp_path / 'w'
  assert [r['round'] for r in loop.run(config, str(workdir))] == [0]  # waits for labels
  listed = json.loads((workdir / 'export' / 'round_1' / 'selected_pixels.json').read_text())
  polygons = rects_to_polygons(truth['pool'], Affine.identity())
  (workdir / 'annotations' / 'round_1' / 'all.geojson').write_text(json.dumps({
      'type': 'FeatureCollection', 'features': [{'type': 'Feature', 'properties': {}, 'geometry': g}
                                                for g in polygons]}))
  history = loop.run(config, str(workdir))
  assert [r['labels'] for r in history] == [0, 3]
  with np.load(workdir / 'labels' / 'round_1.npz') as f:
    masks = dict(zip(f['ids'].tolist(), f['masks']))
  scene_mask = burn(truth['pool'], SIZE, SIZE)
  assert sum(m.sum() for m in masks.values()) > 0
  for chip in listed:
    row, col, h, w = chip['window']
    np.testing.assert_array_equal(masks[chip['id']], scene_mask[row:row + h, col:col + w])


@pytest.mark.slow
def test_one_band_scenes_run_without_a_bands_entry(tmp_path, data_dir):
  project = write_project(tmp_path / 'project')
  for name in ('src', 'pool', 'test'):
    path = project.parent / f'{name}.tif'
    with rasterio.open(path) as src:
      band, crs, transform = src.read(1), src.crs, src.transform
    write_scene(path, band[None], crs, transform)
  assert 'bands' not in project.read_text()
  history = loop.run(_smoke(project, data_dir), str(tmp_path / 'w'))
  assert [r['labels'] for r in history] == [0, 3]
  chip = next((tmp_path / 'w' / 'export' / 'round_1' / 'chips').glob('*.tif'))
  with rasterio.open(chip) as c:
    rgb = c.read()
  assert rgb.shape[0] == 3 and (rgb[0] == rgb[1]).all() and (rgb[1] == rgb[2]).all()


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """A finished one-round run on a pixel-only project, to break afterwards."""
  root = tmp_path_factory.mktemp('finished')
  manifest = _pixel_project(root / 'project')
  data_dir = root / 'tfds'
  loop.run(_smoke(manifest, data_dir), str(root / 'w'))
  return manifest, data_dir, root / 'w'


def _snapshot(root):
  return {p: p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def _break_mask_size(project):
  with rasterio.open(project / 'test_mask.png') as m:
    data = m.read()
  write_png(project / 'test_mask.png', data[:, :-1, :])
  return project / 'test_mask.png', r'is 96 x 95 px but its image .*test.png is 96 x 96 px; expected the same size'


def _break_mask_values(project):
  with rasterio.open(project / 'src_mask.png') as m:
    data = m.read()
  data[0, 40, 41] = 7
  write_png(project / 'src_mask.png', data)
  return project / 'src_mask.png', 'value 7 at row 40, col 41; expected a building mask of 0/1 or 0/255'


def _break_mask_georeference(project):
  for name, shift in (('test', 0.0), ('test_mask', 3.0)):
    with rasterio.open(project / f'{name}.png') as m:
      data = m.read()
    (project / f'{name}.png').unlink()
    write_scene(project / f'{name}.png', data, UTM, TRANSFORM @ Affine.translation(shift, 0))
  return project / 'test_mask.png', 'has a different georeference from its image'


def _break_band_count(project):
  with rasterio.open(project / 'pool.png') as m:
    data = m.read()
  (project / 'pool.png').unlink()
  write_scene(project / 'pool.png', np.concatenate([data, data[:1]]), UTM, TRANSFORM)
  return project / 'pool.png', 'the scene has 4 bands and no "bands" entry; expected bands:'


def _break_polygons_on_pixels(project):
  manifest = json.loads((project / 'manifest.yaml').read_text())
  write_geojson(project / 'src.geojson', rects_to_polygons([(1, 1, 5, 5)], TRANSFORM), UTM)
  manifest['scenes'][0] = {'image': 'src.png', 'labels': 'src.geojson', 'region': 'source'}
  (project / 'manifest.yaml').write_text(json.dumps(manifest))
  return project / 'src.png', 'the image has no georeference, so the footprints of .*src.geojson cannot be placed'


@pytest.mark.parametrize('breaker', [_break_mask_size, _break_mask_values, _break_mask_georeference,
                                     _break_band_count, _break_polygons_on_pixels])
@pytest.mark.slow
def test_bad_masks_and_bands_are_one_line_and_leave_the_workdir_unchanged(finished, tmp_path, breaker):
  manifest, data_dir, workdir = finished
  project = tmp_path / 'project'
  shutil.copytree(manifest.parent, project)
  work = tmp_path / 'w'
  shutil.copytree(workdir, work)
  before = _snapshot(work)
  path, pattern = breaker(project)
  config = _smoke(manifest, data_dir)
  config.data.manifest = str(project / 'manifest.yaml')
  config.rounds.num_rounds = 2
  with pytest.raises(DataError) as info:
    loop.run(config, str(work))
  message = str(info.value)
  assert message.startswith(f'{path}: ') and '\n' not in message
  assert __import__('re').search(pattern, message), message
  assert _snapshot(work) == before


def test_labels_and_mask_together_are_refused(tmp_path):
  manifest = _pixel_project(tmp_path)
  obj = json.loads(manifest.read_text())
  obj['scenes'][0]['labels'] = 'src_mask.png'
  manifest.write_text(json.dumps(obj))
  with pytest.raises(DataError, match=r'scenes\[0\] has both "labels" and "mask"; expected one of them'):
    load_manifest(manifest)


def test_inria_layout_pairs_images_with_gt_masks(tmp_path):
  rng = np.random.default_rng(0)
  root = tmp_path / 'AerialImageDataset'
  for split, names in (('train', ('austin1', 'austin2')), ('test', ('tyrol-w1',))):
    (root / split / 'images').mkdir(parents=True)
    for name in names:
      rects = pixel_rects(rng, SIZE, SIZE, 6)
      write_scene(root / split / 'images' / f'{name}.tif', rgb_scene_with_buildings(rng, SIZE, SIZE, rects),
                  UTM, TRANSFORM)
      if split == 'train':  # Inria's test split has no gt/
        (root / split / 'gt').mkdir(exist_ok=True)
        write_scene(root / split / 'gt' / f'{name}.tif', (burn(rects, SIZE, SIZE) * 255)[None], UTM, TRANSFORM)
  manifest = tmp_path / 'manifest.yaml'
  manifest.write_text(json.dumps({'tile_size': 32, 'scenes': [
      {'inria': 'AerialImageDataset/train', 'region': 'source'},
      {'inria': 'AerialImageDataset/test', 'region': 'target_pool'},
      {'image': 'AerialImageDataset/train/images/austin2.tif', 'id': 'test',
       'mask': 'AerialImageDataset/train/gt/austin2.tif', 'region': 'target_test'}]}))
  m = load_manifest(manifest)
  assert {s.id: s.mask for s in m.region('source')} == {
      'train_austin1': root / 'train' / 'gt' / 'austin1.tif', 'train_austin2': root / 'train' / 'gt' / 'austin2.tif'}
  assert [(s.id, s.mask, s.labels) for s in m.region('target_pool')] == [('test_tyrol-w1', None, None)]
  chips = _chip_masks(manifest, tmp_path / 'tfds')
  assert len(chips) == 4 * 9 and sum(c.sum() for c in chips.values()) > 0


def test_inria_folder_without_images_is_one_line(tmp_path):
  (tmp_path / 'empty').mkdir()
  manifest = tmp_path / 'manifest.yaml'
  manifest.write_text(json.dumps({'scenes': [{'inria': 'empty', 'region': 'source'}]}))
  with pytest.raises(DataError, match=r"scenes\[0\].inria: .*empty: no images/\*.tif"):
    load_manifest(manifest)
