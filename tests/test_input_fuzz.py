"""Fuzzing the edges (hypothesis): corrupted scenes and annotators' files.

Every corrupted input must stop the run with the documented error line
(docs/reliability.md, "Bad input") naming the file, and leave the workdir byte for byte
as it was: nothing half-imported, no label lost or counted twice.
"""

import json
import shutil

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, given, settings, strategies as st

from geo_fixtures import MERCATOR, write_project, write_scene
from priojax import loop
from priojax.data import loading
from priojax.geo.manifest import REGIONS, load_manifest
from priojax.errors import DataError

# Fuzzing (hypothesis) with a human-mode run per module.
pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=8, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# The documented errors (docs/reliability.md, "Bad input").
TRUNCATED = (r'(not a readable image|cannot read pixels, the file is '
             r'truncated or corrupt)')
PIXEL_TYPE = r'pixel type \w+; expected one of uint8, int8, uint16'
NON_FINITE = r'band \d has NaN/inf pixels \(first at row \d+, col \d+ of the read window\) but nodata is'
NOT_GEOJSON = r'(not valid GeoJSON \(JSON error at line \d+|not GeoJSON \(expected an object)'
NOT_SELECTED = r'names chip \d+, which was not selected in round 1'
NO_POLYGON = r'none of its \d+ features is a usable building polygon'
WRONG_PLACE = r'(none of its \d+ polygons overlaps chip \d+|none of its \d+ polygons lies on a chip)'


def _snapshot(root, skip=()):
  return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob('*'))
          if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)}


def _config(manifest, data_dir, *, k, rounds):
  from configs import iou_priority

  config = iou_priority.get_config('smoke,geotiff')
  config.data.manifest = str(manifest)
  config.data.data_dir = data_dir
  config.rounds.update(k=k, num_rounds=rounds)
  return config


# --- scenes: a finished run, then a scene goes bad --------------------------


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  root = tmp_path_factory.mktemp('scenes')
  manifest = write_project(root / 'project')
  config = _config(manifest, str(root / 'tfds'), k=2, rounds=1)
  loop.run(config, str(root / 'w'))
  config.rounds.num_rounds = 2  # the run is extended, which reads the scenes again
  return config, root / 'w', manifest.parent


def _expect_scene_error(finished, name, corrupt, pattern):
  config, workdir, project = finished
  path = project / name
  original = path.read_bytes()
  before = _snapshot(workdir)
  try:
    corrupt(path)
    with pytest.raises(DataError, match=rf'^{path}: {pattern}'):
      loop.run(config, str(workdir))
  finally:
    path.write_bytes(original)
  assert _snapshot(workdir) == before


@FUZZ
@given(name=st.sampled_from(['src.tif', 'pool.tif', 'test.tif']), fraction=st.floats(0.0, 0.999))
def test_truncated_geotiff(finished, name, fraction):
  def corrupt(path):
    data = path.read_bytes()
    path.write_bytes(data[:int(fraction * len(data))])

  _expect_scene_error(finished, name, corrupt, TRUNCATED)


def _rewrite(path, fn):
  with rasterio.open(path) as src:
    data, crs, transform = src.read(), src.crs, src.transform
  data, nodata = fn(data)
  write_scene(path, data, crs, transform, nodata=nodata)


@FUZZ
@given(name=st.sampled_from(['src.tif', 'pool.tif', 'test.tif']),
       dtype=st.sampled_from(['complex64', 'complex128', 'int64', 'uint64']))
def test_scene_of_a_wrong_pixel_type(finished, name, dtype):
  _expect_scene_error(finished, name, lambda p: _rewrite(p, lambda d: (d.astype(dtype), None)),
                      PIXEL_TYPE)


@FUZZ
@given(name=st.sampled_from(['src.tif', 'pool.tif', 'test.tif']),
       cells=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 95), st.integers(0, 95)),
                      min_size=1, max_size=12),
       value=st.sampled_from([np.nan, np.inf, -np.inf]), nodata=st.sampled_from([None, 0.0, -9999.0]))
def test_scene_with_undeclared_nan_pixels(finished, name, cells, value, nodata):
  def fn(data):
    data = data.astype(np.float32)
    for b, r, c in cells:
      data[b, r, c] = value
    return data, nodata

  _expect_scene_error(finished, name, lambda p: _rewrite(p, fn), NON_FINITE)


def test_nan_declared_as_nodata_is_accepted(finished, tmp_path):
  config, _, project = finished
  copy = tmp_path / 'project'
  shutil.copytree(project, copy)

  def fn(data):
    data = data.astype(np.float32)
    data[:, :40, :40] = np.nan  # the first chip is mostly nodata and is skipped
    return data, np.nan

  _rewrite(copy / 'pool.tif', fn)
  data, _ = loading.load_data(_config(copy / 'manifest.yaml', config.data.data_dir, k=2, rounds=1))
  windows = data['target_pool'].read_all()['window']
  assert len(windows) == 8 and not ((windows[:, 0] == 0) & (windows[:, 1] == 0)).any()


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.floats(allow_nan=True),
                  st.text(max_size=8), st.lists(st.integers(-1, 5), max_size=3),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@FUZZ
@given(data=st.data())
def test_mutated_manifest_is_valid_or_one_data_error(finished, tmp_path_factory, data):
  """Any field of the manifest set to junk: it loads, or fails with one
  DataError line naming the manifest (never another exception)."""
  _, _, project = finished
  obj = json.loads((project / 'manifest.yaml').read_text())
  scene = data.draw(st.sampled_from([None, 0, 1, 2]))
  target = obj if scene is None else obj['scenes'][scene]
  target[data.draw(st.sampled_from(sorted(target) + ['bands', 'id', 'labels', 'mask']))] = data.draw(_JUNK)
  path = tmp_path_factory.mktemp('manifest') / 'manifest.yaml'
  for name in ('src', 'pool', 'test'):
    for ext in ('tif', 'geojson'):
      if (project / f'{name}.{ext}').exists():
        (path.parent / f'{name}.{ext}').symlink_to(project / f'{name}.{ext}')
  path.write_text(json.dumps(obj))
  try:
    m = load_manifest(path)
  except DataError as e:
    assert str(e).startswith(f'{path}: ') and '\n' not in str(e)
    return
  # It loaded: everything a manifest promises the builder holds.
  assert {s.region for s in m.scenes} == set(REGIONS)
  assert all(s.image.is_file() and (s.label_file is None or s.label_file.is_file()) for s in m.scenes)
  assert all(s.labels is None or s.mask is None for s in m.scenes)
  assert all(s.label_file is not None for s in m.scenes if s.region in ('source', 'target_test'))
  assert all(s.bands is None or s.bands and all(type(b) is int and b >= 1 for b in s.bands)
             for s in m.scenes)
  assert len({s.id for s in m.scenes}) == len(m.scenes)
  assert m.tile_size is None or (type(m.tile_size) is int and 8 <= m.tile_size <= 4096)
  assert 0 <= m.overlap and (m.tile_size is None or m.overlap < m.tile_size)
  assert 0.0 <= m.max_nodata <= 1.0


# --- annotators' files: a human-mode run waits for round 1 ------------------


@pytest.fixture(scope='module')
def waiting(tmp_path_factory):
  root = tmp_path_factory.mktemp('human')
  manifest = write_project(root / 'project', pool_labels=False)
  config = _config(manifest, str(root / 'tfds'), k=3, rounds=1)
  workdir = root / 'w'
  loop.run(config, str(workdir))
  selected = json.loads((workdir / 'selected_round_1.json').read_text())['ids']
  pool = loading.load_data(config)[0]['target_pool']
  transforms = {i: Affine(*t) for i, t in zip(selected, pool.read_ids(selected)['transform'])}
  return config, workdir, selected, transforms


def _expect_import_error(waiting, files: dict, pattern):
  config, workdir, _, _ = waiting
  folder = workdir / 'annotations' / 'round_1'
  before = _snapshot(workdir, skip=('annotations',))
  try:
    for name, text in files.items():
      (folder / name).write_text(text)
    with pytest.raises(DataError, match=rf'^{folder}/[\w.]+: {pattern}'):
      loop.run(config, str(workdir))
  finally:
    for name in files:
      (folder / name).unlink()
  assert _snapshot(workdir, skip=('annotations',)) == before


def _building(transform, offset, side, crs_name=None):
  """A square building inside the chip, in the scene's CRS (Mercator)."""
  x0, y0 = transform @ (offset, offset)
  x1, y1 = transform @ (offset + side, offset + side)
  ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
  obj = {'type': 'FeatureCollection',
         'features': [{'type': 'Feature', 'properties': {}, 'geometry': {'type': 'Polygon',
                                                                         'coordinates': [ring]}}]}
  if crs_name:
    obj['crs'] = {'type': 'name', 'properties': {'name': crs_name}}
  return json.dumps(obj)


def _valid_files(waiting):
  _, _, selected, transforms = waiting
  return {f'{i}.geojson': _building(transforms[i], 4, 8, MERCATOR.to_string()) for i in selected}


def test_valid_annotations_are_imported(waiting, tmp_path):
  config, workdir, selected, _ = waiting
  copy = tmp_path / 'w'
  shutil.copytree(workdir, copy)
  for name, text in _valid_files(waiting).items():
    (copy / 'annotations' / 'round_1' / name).write_text(text)
  history = loop.run(config, str(copy))
  assert history[-1]['labels'] == 3
  with np.load(copy / 'labels' / 'round_1.npz') as f:
    assert f['ids'].tolist() == selected and (f['masks'].sum(axis=(1, 2)) == 64).all()


@FUZZ
@given(chip=st.integers(0, 2), cut=st.floats(0.0, 0.99), garbage=st.sampled_from(['', '[1, 2]', '"x"']))
def test_malformed_geojson(waiting, chip, cut, garbage):
  files = _valid_files(waiting)
  name = sorted(files)[chip]
  text = files[name]
  files[name] = text[:int(cut * len(text))] if not garbage or cut < 0.5 else garbage
  _expect_import_error(waiting, files, NOT_GEOJSON)


@FUZZ
@given(chip=st.integers(0, 2),
       crs_name=st.sampled_from([None, 'EPSG:4326', 'EPSG:32633', 'EPSG:2056', 'EPSG:27700', 'EPSG:32601']),
       offset=st.integers(0, 20), side=st.integers(2, 10))
def test_labels_in_a_wrong_crs(waiting, chip, crs_name, offset, side):
  _, _, selected, transforms = waiting
  files = _valid_files(waiting)
  chip_id = selected[chip]
  files[f'{chip_id}.geojson'] = _building(transforms[chip_id], offset, side, crs_name)
  _expect_import_error(waiting, files, f'({WRONG_PLACE}|{NO_POLYGON})')


@FUZZ
@given(chip_id=st.integers(0, 10**7))
def test_label_file_naming_an_unknown_chip(waiting, chip_id):
  _, _, selected, _ = waiting
  while chip_id in selected:
    chip_id += 1
  files = {**_valid_files(waiting), f'{chip_id}.geojson': '{"type": "FeatureCollection", "features": []}'}
  _expect_import_error(waiting, files, NOT_SELECTED)


@FUZZ
@given(chip=st.integers(0, 2),
       geometry=st.sampled_from([None, 'x', {'type': 'Point', 'coordinates': [0, 0]},
                                 {'type': 'Polygon', 'coordinates': 'abc'},
                                 {'type': 'Polygon', 'coordinates': []},
                                 {'type': 'Polygon', 'coordinates': [[[float('nan'), 0], [1, 0], [1, 1],
                                                                      [float('nan'), 0]]]}]),
       copies=st.integers(1, 3))
def test_file_without_a_usable_polygon(waiting, chip, geometry, copies):
  files = _valid_files(waiting)
  name = sorted(files)[chip]
  files[name] = json.dumps({'type': 'FeatureCollection', 'features': [
      {'type': 'Feature', 'properties': {}, 'geometry': geometry}] * copies})
  _expect_import_error(waiting, files, NO_POLYGON)


def test_combined_file_in_a_wrong_crs(waiting):
  _, _, selected, transforms = waiting
  features = [json.loads(_building(transforms[i], 4, 8))['features'][0] for i in selected]
  # Mercator coordinates read as UTM zone 33N: far from every pool chip.
  text = json.dumps({'type': 'FeatureCollection', 'features': features,
                     'crs': {'type': 'name', 'properties': {'name': 'EPSG:32633'}}})
  _expect_import_error(waiting, {'team.geojson': text}, WRONG_PLACE)



def test_a_partial_combined_file_labels_only_the_chips_it_reaches(waiting, tmp_path):
  """A file that is not all_*.geojson holds some annotator's polygons: the
  selected chips none of them reaches keep the round waiting, never taken
  for 'no building'."""
  config, workdir, selected, transforms = waiting
  copy = tmp_path / 'w'
  shutil.copytree(workdir, copy)
  folder = copy / 'annotations' / 'round_1'
  first = json.loads(_building(transforms[selected[0]], 4, 8, MERCATOR.to_string()))
  (folder / 'team_b.geojson').write_text(json.dumps(first))
  before = _snapshot(copy, skip=('annotations',))
  assert [r['round'] for r in loop.run(config, str(copy))] == [0]  # still waiting
  assert _snapshot(copy, skip=('annotations',)) == before  # nothing imported, nothing zeroed
  # The two chips it left out, each by its own file (the second: no building).
  (folder / f'{selected[1]}.geojson').write_text(_building(transforms[selected[1]], 2, 4, MERCATOR.to_string()))
  (folder / f'{selected[2]}.geojson').write_text('{"type": "FeatureCollection", "features": []}')
  assert loop.run(config, str(copy))[-1]['labels'] == 3
  with np.load(copy / 'labels' / 'round_1.npz') as f:
    assert f['ids'].tolist() == selected
    assert f['masks'].sum(axis=(1, 2)).tolist() == [64, 16, 0]
