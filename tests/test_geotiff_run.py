"""A user's GeoTIFF scenes through the manifest, the TFDS builder, the loop
and the per-round export for annotators."""

import json
import pathlib

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geo_fixtures import MERCATOR, write_project
from priojax import loop
from priojax.geo import builder as geo_builder
from priojax.geo.manifest import load_manifest
from priojax.errors import DataError


@pytest.fixture(scope='module')
def project(tmp_path_factory):
  return write_project(tmp_path_factory.mktemp('project'))


def test_builder_splits_and_georeference(project, tmp_path):
  manifest = load_manifest(project)
  cfg = geo_builder.make_geo_config(manifest, tile_size=64, source_val_fraction=0.25, seed=0)
  assert cfg.tile_size == 32  # the manifest's tile size wins
  sources, meta = geo_builder.load_geo_chips(cfg, str(tmp_path))
  sizes = {k: len(v) for k, v in sources.items()}
  assert sizes['source_train'] + sizes['source_val'] == 9 and sizes['source_val'] > 0
  assert sizes['target_pool'] == sizes['target_test'] == 9
  scenes = meta['scenes']
  assert CRS.from_wkt(scenes['pool']['crs']) == MERCATOR
  for rec in (sources['target_pool'][i] for i in range(9)):
    scene = scenes[rec['scene'].decode()]
    row, col = rec['window'][:2]
    assert Affine(*rec['transform']) @ (0, 0) == Affine(*scene['transform']) @ (col, row)
    assert rec['id'] // geo_builder.CHIPS_PER_SCENE == scene['index']
    assert rec['has_label']


@pytest.mark.parametrize('content, pattern', [
    ('{"scenes": []}', '"scenes" is empty; expected at least one scene'),
    ('scenes: [{image: nope.tif, region: target_pool}]', r'scenes\[0\].image .*nope.tif does not exist'),
    ('{"scenes": [{"image": "pool.tif", "region": "crisis"}]}', "region is 'crisis'; expected one of"),
    ('{"scenes": [{"image": "src.tif", "region": "source"}]}', 'needs "labels"'),
    ('{"scenes": [{"image": "pool.tif", "region": "target_pool"}]}', "no scene in region 'source'"),
    ('[1, 2', 'not valid YAML/JSON'),
    ('{"scenes": [{"image": "pool.tif", "region": "target_pool", "bands": ["r"]}]}', 'bands is'),
    ('{"scenes": [{"image": "pool.tif", "region": "target_pool", "bands": [0]}]}', 'band numbers from 1'),
])
def test_bad_manifests_are_one_line(project, content, pattern):
  bad = project.parent / 'bad_manifest.yaml'
  bad.write_text(content)
  with pytest.raises(DataError, match=pattern) as info:
    load_manifest(bad)
  assert '\n' not in str(info.value) and str(bad) in str(info.value)


def test_missing_manifest(tmp_path):
  with pytest.raises(DataError, match='cannot read the manifest'):
    load_manifest(tmp_path / 'none.yaml')


@pytest.mark.slow
@pytest.mark.parametrize('formula, heat_label', [
    ('iou', 'priority of iou'),
    ('typiclust', '1 - predicted IoU (typiclust has no priority per chip)'),  # a picker
])
def test_loop_on_geotiff_scenes_exports_the_selection(project, tmp_path, data_dir, formula, heat_label):
  from configs import iou_priority

  config = iou_priority.get_config('smoke,geotiff')
  config.data.manifest = str(project)
  config.data.data_dir = data_dir
  config.rounds.k = 3
  config.priority.name = formula
  history = loop.run(config, str(tmp_path / 'w'))
  assert [r['labels'] for r in history] == [0, 3]
  assert 'tile_iou/test' in history[1]
  out = tmp_path / 'w' / 'export' / 'round_1'
  selected = json.loads((tmp_path / 'w' / 'selected_round_1.json').read_text())
  outlines = json.loads((out / 'selected.geojson').read_text())['features']
  assert [f['properties']['id'] for f in outlines] == selected['ids']
  assert [f['properties']['rank'] for f in outlines] == [1, 2, 3]
  scenes = json.loads(project.read_text())['scenes']
  with rasterio.open(project.parent / 'pool.tif') as scene:
    scene_bounds, scene_crs = scene.bounds, scene.crs
    for chip_id in selected['ids']:
      with rasterio.open(out / 'chips' / f'{chip_id}.tif') as chip:
        assert chip.crs == scene_crs and chip.count == 3 and chip.width == 32
        # The chip lies exactly on a 32 px window of the scene's grid.
        col, row = ~scene.transform @ (chip.bounds.left, chip.bounds.top)
        assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6
        assert chip.bounds.left >= scene_bounds.left - 1e-6 and chip.bounds.right <= scene_bounds.right + 1e-6
      preds = json.loads((out / 'predictions' / f'{chip_id}.geojson').read_text())
      assert preds['type'] == 'FeatureCollection'
    with rasterio.open(out / 'heatmap_pool.tif') as heat:
      assert heat.descriptions[0] == heat_label  # says what its values are
      assert heat.crs == scene_crs
      assert np.allclose(heat.bounds, scene_bounds)
      values = heat.read(1)
      assert np.isfinite(values).sum() == 9  # one cell per scored chip
  # A heat map for each pool scene, none for the source or test scenes.
  pool_scenes = {pathlib.Path(s['image']).stem for s in scenes if s['region'] == 'target_pool'}
  assert {p.stem.removeprefix('heatmap_') for p in out.glob('heatmap_*.tif')} == pool_scenes


def _snapshot(root):
  return {p: p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.mark.slow
def test_bad_scene_leaves_an_existing_workdir_unchanged(tmp_path, data_dir):
  from configs import iou_priority

  project = write_project(tmp_path / 'project')
  config = iou_priority.get_config('smoke,geotiff')
  config.data.manifest = str(project)
  config.data.data_dir = data_dir
  config.rounds.k = 2
  workdir = tmp_path / 'w'
  loop.run(config, str(workdir))
  before = _snapshot(workdir)
  pool = project.parent / 'pool.tif'
  pool.write_bytes(pool.read_bytes()[:3000])  # truncated after the run
  config.rounds.num_rounds = 2
  with pytest.raises(DataError, match=rf'{pool}: '):
    loop.run(config, str(workdir))
  assert _snapshot(workdir) == before
