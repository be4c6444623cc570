"""A user's scenes checked before they can mislead a run: labels that miss
their scene, a test split without a building, a manifest tile size the
model cannot take, a manifest whose scenes moved under a run's chip ids,
and a dataset rebuilt only when what the files hold changes."""

import json
import os
import shutil

import pytest
import rasterio

from geo_fixtures import MERCATOR, UTM, rects_to_polygons, write_geojson, write_project
from priojax import loop
from priojax.data import loading
from priojax.errors import DataError, WorkdirError
from priojax.geo.manifest import load_manifest


def _config(project, data_dir, **rounds):
  from configs import iou_priority

  config = iou_priority.get_config('smoke,geotiff')
  config.data.manifest = str(project)
  config.data.data_dir = data_dir
  config.rounds.update(k=3, **rounds)
  return config


def _scenes(manifest):
  return json.loads(manifest.read_text())['scenes']


def _rewrite(manifest, scenes, **fields):
  obj = json.loads(manifest.read_text())
  obj['scenes'] = scenes
  obj.update(fields)
  manifest.write_text(json.dumps(obj, indent=1))


def test_labels_in_a_wrong_crs_are_refused_naming_the_file(tmp_path, data_dir):
  truth = {}
  project = write_project(tmp_path / 'project', truth=truth)
  rects, transform, crs = truth['src']
  # UTM coordinates labelled as Web Mercator: they land far from the scene.
  labels = write_geojson(tmp_path / 'project' / 'src.geojson', rects_to_polygons(rects, transform), crs,
                         dst_crs=crs, crs_member='EPSG:3857')
  with pytest.raises(DataError, match=rf'^{labels}: none of its 10 polygons reaches the scene '
                                      rf'{tmp_path / "project" / "src.tif"} \(bounds .*\); expected the '
                                      r"buildings of that scene \(is the file's CRS right\?\)$"):
    loading.load_data(_config(project, data_dir))


def test_an_empty_labels_file_needs_no_buildings_true(tmp_path, data_dir):
  project = write_project(tmp_path / 'project')
  write_geojson(tmp_path / 'project' / 'src.geojson', [], UTM)
  config = _config(project, data_dir)
  with pytest.raises(DataError, match=r'src.geojson: no building polygon for the scene .*src.tif; expected '
                                      r'its buildings, or "no_buildings: true" on the scene'):
    loading.load_data(config)
  scenes = _scenes(project)
  scenes[0]['no_buildings'] = True
  _rewrite(project, scenes)
  data, _ = loading.load_data(config)
  assert len(data['source_train']) + len(data['source_val']) == 9


def test_a_test_split_without_a_building_is_refused(tmp_path, data_dir):
  project = write_project(tmp_path / 'project')
  write_geojson(tmp_path / 'project' / 'test.geojson', [], MERCATOR)
  scenes = _scenes(project)
  scenes[2]['no_buildings'] = True  # true, but then there is nothing to measure IoU on
  _rewrite(project, scenes)
  with pytest.raises(DataError, match=r"the target_test split has no building pixel in any of its 9 "
                                      r'chips; test IoU would read 1.0 whatever the model does'):
    loading.load_data(_config(project, data_dir))


def test_a_manifest_tile_size_the_model_cannot_take_is_one_line(tmp_path, data_dir):
  project = write_project(tmp_path / 'project')
  _rewrite(project, _scenes(project), tile_size=36)
  with pytest.raises(DataError, match=rf'^{project}: tile_size is 36; expected a multiple of '
                                      r'priority.region = 8$'):
    loading.load_data(_config(project, data_dir))
  _rewrite(project, _scenes(project), tile_size=30)
  with pytest.raises(DataError, match=rf'^{project}: tile_size is 30; expected a multiple of '
                                      r'2\*\*model.depth = 4$'):
    loading.load_data(_config(project, data_dir))


def test_touching_or_copying_files_keeps_the_fingerprint_and_an_edit_changes_it(tmp_path):
  project = write_project(tmp_path / 'project')
  before = load_manifest(project).fingerprint()
  for path in project.parent.iterdir():
    os.utime(path, (1, 1))
  assert load_manifest(project).fingerprint() == before
  copy = tmp_path / 'copy'
  copy.mkdir()
  for path in project.parent.iterdir():
    shutil.copy(path, copy / path.name)  # new files, new times
  assert load_manifest(copy / project.name).fingerprint() == before
  labels = copy / 'pool.geojson'
  labels.write_text(labels.read_text().replace('"i": 0', '"i": 9'))
  assert load_manifest(copy / project.name).fingerprint() != before


@pytest.mark.slow
def test_a_reordered_or_replaced_scene_is_refused_on_resume_naming_it(tmp_path, data_dir):
  project = write_project(tmp_path / 'project')
  workdir = tmp_path / 'w'
  config = _config(project, data_dir, num_rounds=1)
  assert [r['round'] for r in loop.run(config, str(workdir))] == [0, 1]
  assert json.loads((workdir / 'scenes.json').read_text())['pool']['index'] == 1
  original = project.read_text()

  scenes = _scenes(project)
  _rewrite(project, [scenes[2], scenes[1], scenes[0]])  # source and test swapped: the same chip counts
  with pytest.raises(WorkdirError, match=rf"^{project}: scene 'src' is scenes\[2\] now and was scenes\[0\] "
                                         rf'when the run in {workdir} started; chip ids follow'):
    loop.run(config, str(workdir))

  project.write_text(original)
  with rasterio.open(project.parent / 'pool.tif', 'r+') as pool:  # other pixels, the same place
    pool.write(255 - pool.read())
  with pytest.raises(WorkdirError, match=rf"^{project}: scene 'pool': its image .*pool.tif holds other "
                                         r'pixels than when the run'):
    loop.run(config, str(workdir))


@pytest.mark.slow
def test_a_scene_added_at_the_end_keeps_the_ids_and_is_allowed(tmp_path, data_dir):
  project = write_project(tmp_path / 'project')
  workdir = tmp_path / 'w'
  config = _config(project, data_dir, num_rounds=1)
  loop.run(config, str(workdir))
  shutil.copy(project.parent / 'test.tif', project.parent / 'test2.tif')
  shutil.copy(project.parent / 'test.geojson', project.parent / 'test2.geojson')
  _rewrite(project, _scenes(project) + [{'image': 'test2.tif', 'labels': 'test2.geojson',
                                         'region': 'target_test'}])
  config.allow_config_change = True
  assert [r['round'] for r in loop.run(config, str(workdir))] == [0, 1]  # done already; nothing refused
  assert json.loads((workdir / 'scenes.json').read_text())['test2']['index'] == 3

