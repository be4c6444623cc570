"""Human-in-the-loop rounds: export, stop, annotators' GeoJSON in, continue."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
import rasterio.warp
from affine import Affine
from rasterio.crs import CRS

from conftest import subprocess_env
from geo_fixtures import MERCATOR, burn, rects_to_polygons, write_geojson, write_project
from priojax import loop
from priojax.train import Trainer
from priojax.workdir import Workdir
from priojax.data import loading
from priojax.geo import export
from priojax.geo import raster as geo
from priojax.errors import DataError
from priojax.checkpoints import RoundCheckpoints
from priojax.review import page as review_page


def test_export_import_round_trip_gives_the_same_mask(tmp_path):
  rng = np.random.default_rng(0)
  mask = np.zeros((32, 32), np.uint8)
  for _ in range(5):
    r, c = rng.integers(0, 26, 2)
    mask[r:r + rng.integers(2, 7), c:c + rng.integers(2, 7)] = 1
  mask[3:9, 20:22] = 1  # an L shape: not every building is a rectangle
  mask[7:9, 14:22] = 1
  transform = Affine(0.5, 0, 1500016.0, 0, -0.5, 5000016.0)
  path = tmp_path / 'edited.geojson'
  export.write_geojson(path, export.mask_polygons(mask, transform, MERCATOR))
  fp = geo.load_footprints(path, MERCATOR)
  np.testing.assert_array_equal(geo.rasterize_chip(fp, transform, 32), mask)


def _config(project, data_dir, rounds):
  from configs import iou_priority

  config = iou_priority.get_config('smoke,geotiff')
  config.data.manifest = str(project)
  config.data.data_dir = data_dir
  config.rounds.update(k=3, num_rounds=rounds)
  return config


# A user's own config file, outside the checkout: it reaches the shared
# defaults through the package.
OWN_CONFIG = """
from priojax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config('smoke,geotiff')
  config.priority.name = 'typical_error_mass'  # as configs/iou_priority.py
  config.rounds.update(k=3, num_rounds=2)
  return config
"""


@pytest.mark.slow
def test_human_rounds_stop_import_and_continue(tmp_path, data_dir):
  truth = {}
  project = write_project(tmp_path / 'project', pool_labels=False, truth=truth)
  workdir = tmp_path / 'w'
  config = _config(project, data_dir, rounds=2)

  # 1. The round stops after the export and asks for annotations; the
  #    launcher, started elsewhere with a config file of the user's own,
  #    says so by its exit status.
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  (elsewhere / 'my_config.py').write_text(OWN_CONFIG)
  env = {k: v for k, v in subprocess_env().items() if k != 'PYTHONPATH'}  # the installed package only
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.run', '--config=my_config.py', f'--workdir={workdir}',
       f'--config.data.manifest={project}', f'--config.data.data_dir={data_dir}'],
      cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == loop.EXIT_WAITING, result.stderr[-3000:]
  assert 'waiting for labels: round 1: 3 chips selected, 3 still to label' in result.stderr
  history = loop.run(config, str(workdir))  # the same config, in-process
  assert [r['round'] for r in history] == [0]
  selected = json.loads((workdir / 'selected_round_1.json').read_text())['ids']
  assert (workdir / 'export' / 'round_1' / 'selected.geojson').exists()
  assert (workdir / 'annotations' / 'round_1').is_dir()
  assert not (workdir / 'labels').exists()
  # The review page is there while the round waits: its picks, nothing labelled.
  view = review_page.read_data(workdir / 'review.html')['view']
  assert view['round'] == 1 and [p['id'] for p in view['picks']] == selected
  assert view['scenes'][0]['truth'] is None and len(view['scenes'][0]['chips']) == 3

  # Rerunning without annotations waits again and changes nothing.
  assert loop.run(config, str(workdir)) == history
  assert json.loads((workdir / 'selected_round_1.json').read_text())['ids'] == selected

  # 2. Annotators return one combined GeoJSON (WGS84) with every building of
  #    the pool scene, one polygon far away, and one self-intersecting one.
  rects, transform, crs = truth['pool']
  polygons = rects_to_polygons(rects, transform)
  far = {'type': 'Polygon', 'coordinates': [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}
  r0, c0, h0, w0 = rects[0]  # the self-intersecting one lies inside the first building
  x0, y0 = transform @ (c0 + 1, r0 + 1)
  d = 0.5 * (min(h0, w0) - 2)
  bowtie = {'type': 'Polygon', 'coordinates': [[[x0, y0], [x0 + d, y0 - d], [x0 + d, y0],
                                                [x0, y0 - d], [x0, y0]]]}
  feats = [{'type': 'Feature', 'properties': {},
            'geometry': rasterio.warp.transform_geom(crs, CRS.from_epsg(4326), p)}
           for p in polygons + [far, bowtie]]
  (workdir / 'annotations' / 'round_1' / 'all_team_a.geojson').write_text(
      json.dumps({'type': 'FeatureCollection', 'features': feats}))
  history = loop.run(config, str(workdir))
  assert [r['labels'] for r in history] == [0, 3]
  report = json.loads((workdir / 'export' / 'round_1' / 'import_report.json').read_text())['all_team_a.geojson']
  assert report['polygons outside every chip'] == 1
  assert report['repaired (self-intersecting)'] == 1
  assert report['polygons on chips that were not selected'] > 0

  # The imported masks are the buildings of those chips (reprojection: boundary only).
  with np.load(workdir / 'labels' / 'round_1.npz') as f:
    ids, masks = f['ids'], f['masks']
  assert ids.tolist() == selected
  scene_truth = burn(rects, 96, 96)
  pool = loading.load_data(config)[0]['target_pool']
  windows = pool.read_ids(ids)['window']
  for (row, col, h, w), mask in zip(windows, masks):
    want = scene_truth[row:row + h, col:col + w]
    assert (mask != want).sum() <= 0.1 * max(want.sum(), 10)
  ledger_sources = {e for e in _ledger_sources(workdir)}
  assert ledger_sources == {'import:all_team_a.geojson'}

  # 3. Round 2 waits; per-chip files (here: the model's own predictions,
  #    unedited) label it.
  selected2 = json.loads((workdir / 'selected_round_2.json').read_text())['ids']
  assert not set(selected2) & set(selected)
  for chip_id in selected2:
    src = workdir / 'export' / 'round_2' / 'predictions' / f'{chip_id}.geojson'
    (workdir / 'annotations' / 'round_2' / f'{chip_id}.geojson').write_text(src.read_text())
  # A file naming a chip that was not selected stops the import, writing nothing.
  stray = workdir / 'annotations' / 'round_2' / '99999999.geojson'
  stray.write_text(json.dumps({'type': 'FeatureCollection', 'features': []}))
  before = _snapshot(workdir)
  with pytest.raises(DataError, match=rf'{stray}: names chip 99999999, which was not selected in '
                                      r'round 2 \(selected: [0-9, ]+\); rename or remove the file'):
    loop.run(config, str(workdir))
  assert _snapshot(workdir) == before
  stray.unlink()
  history = loop.run(config, str(workdir))
  assert [r['labels'] for r in history] == [0, 3, 6]
  assert set(_ledger_sources(workdir)) == {'import:all_team_a.geojson'} | {
      f'import:{i}.geojson' for i in selected2}


@pytest.mark.slow
def test_human_mode_fits_the_head_on_the_annotators_masks(tmp_path, data_dir, monkeypatch):
  """The pool split stores zeros for the masks annotators have not drawn
  yet: the IoU head's held-out target labels must be read from the
  annotators' import, never from there."""
  truth = {}
  project = write_project(tmp_path / 'project', pool_labels=False, truth=truth)
  workdir = tmp_path / 'w'
  config = _config(project, data_dir, rounds=1)
  config.rounds.k = 9  # the whole pool scene: held-out chips with buildings among them
  config.head.holdout_fraction = 0.5
  loop.run(config, str(workdir))  # waits for labels
  rects, transform, crs = truth['pool']
  write_geojson(workdir / 'annotations' / 'round_1' / 'all_team.geojson', rects_to_polygons(rects, transform), crs)
  fitted = []
  fit_head = Trainer.fit_head

  def spy(self, state, sets, **kw):
    fitted.append((jax.device_get(state.params), [dict(t) for t in sets]))  # the state is donated later
    return fit_head(self, state, sets, **kw)

  monkeypatch.setattr(Trainer, 'fit_head', spy)
  assert [r['round'] for r in loop.run(config, str(workdir))] == [0, 1]

  params, sets = fitted[-1]
  assert len(sets) == 2  # source-val tiles, then the held-out target labels
  ckpts = RoundCheckpoints(workdir / 'checkpoints', read_only=True)
  held_out = sorted(e['id'] for e in ckpts.read_meta(1)['ledger'] if e['calibration'])
  ckpts.close()
  assert held_out, 'the test needs held-out labels'
  with np.load(workdir / 'labels' / 'round_1.npz') as f:
    drawn = dict(zip(f['ids'].tolist(), f['masks']))
  masks = np.stack([drawn[i] for i in held_out])
  assert masks.any(), 'the test needs held-out labels with buildings'
  exp = loop.Experiment(config, Workdir(str(workdir)))
  pool = exp.data['target_pool']
  stored = pool.read_ids(held_out)
  assert not stored['mask'].any()  # what the head must not read
  want = exp.scorer.evaluate_arrays(params, stored['image'], masks)
  wrong = exp.scorer.evaluate_arrays(params, stored['image'], stored['mask'])
  assert not np.allclose(want['true_iou'], wrong['true_iou'])
  for field in ('true_iou', 'true_loss', 'head_inputs'):
    np.testing.assert_allclose(sets[1][field], want[field], rtol=1e-5, atol=1e-6)


def _snapshot(root):
  return {p: p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def _ledger_sources(workdir):
  ckpts = RoundCheckpoints(workdir / 'checkpoints', read_only=True)
  try:
    return [e['source'] for e in ckpts.read_meta(ckpts.latest_step())['ledger']]
  finally:
    ckpts.close()
