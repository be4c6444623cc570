"""The oracle ceilings (priority/oracle_ceiling.py): the IoU formulas with
a perfect head, against NumPy; the pool's true IoU and building fraction
they read (experiment.py), against masks predicted and compared in NumPy;
and their refusal where labels come from annotators."""

import chex
import numpy as np
import pytest

from priojax import loop, priority, selection
from priojax.errors import ConfigError
from priojax.labelled_set import LabelledSet
from priojax.priority import typicality
from priojax.workdir import Workdir
from test_budget import _ctx
from test_error_mass import ROWS, _pool, _trusted, numpy_typical_error_mass


def _with_truth(stats, seed=0):
  """The pool's hidden truth: a true IoU and building fraction per tile."""
  rng = np.random.default_rng(seed)
  return stats.replace(oracle_iou=rng.uniform(0.05, 0.95, len(stats)).astype(np.float32),
                       oracle_fg_fraction=rng.uniform(0.0, 0.5, len(stats)).astype(np.float32))


def test_oracle_error_takes_the_tiles_the_model_truly_segments_worst():
  stats = _with_truth(_pool(seed=5))
  ctx = _ctx(stats, ROWS, k=7)
  got = selection.select(priority.get('oracle_error'), stats, ctx)
  truth = np.where(ctx.selectable, 1.0 - stats.oracle_iou.astype(np.float64), -np.inf)
  np.testing.assert_array_equal(got.ids, stats.ids[np.argsort(-truth, kind='stable')[:7]])
  chex.assert_trees_all_close(got.priorities, np.sort(truth)[::-1][:7], rtol=1e-6)
  # The head's own estimate plays no part.
  wrong = stats.replace(pred_iou=np.asarray(1.0 - stats.pred_iou, np.float32))
  np.testing.assert_array_equal(selection.select(priority.get('oracle_error'), wrong, ctx).ids, got.ids)


def test_oracle_error_mass_is_typical_error_mass_with_the_truth_in_place_of_the_head():
  # The head's predictions at pick rank the labelled tiles backwards, so
  # typical_error_mass does not trust it and takes TypiClust's picks; the
  # ceiling's head is the truth, trusted with 5 labelled pairs.
  stats = _with_truth(_trusted(_pool(seed=3), ROWS, fg_fraction=[0.3, 0.2, 0.0, 0.1, 0.4],
                               iou=[0.9, 0.9, 0.3, 0.3, 0.5], agree=False))
  ctx = _ctx(stats, ROWS, k=6, seed=2)
  head = selection.select(priority.get('typical_error_mass'), stats, ctx)
  assert head.info['gain_phase'] == 0
  got = selection.select(priority.get('oracle_error_mass'), stats, ctx)
  assert got.info['gain_phase'] == 1 and got.info['head_pairs'] == len(ROWS)
  perfect = stats.replace(pred_iou=stats.oracle_iou, label_pred_iou_at_pick=stats.label_iou_at_pick)
  rows, mass, assign, cluster_mass = numpy_typical_error_mass(
      perfect, ctx, true=stats.oracle_fg_fraction.astype(np.float64))
  np.testing.assert_array_equal(got.ids, stats.ids[rows])
  chex.assert_trees_all_close(got.priorities, np.asarray([cluster_mass[assign[r]] for r in rows]),
                              rtol=2e-3, atol=1e-6)
  assert not np.array_equal(np.sort(got.ids), np.sort(head.ids))


def test_oracle_error_mass_starts_with_typiclust_until_four_tiles_have_a_true_iou_at_pick():
  stats = _with_truth(_pool(seed=4))
  for rows, phase in (((), 0), (ROWS[:3], 0), (ROWS[:4], 1)):
    labelled = _trusted(stats, rows, fg_fraction=0.2) if rows else stats
    ctx = _ctx(labelled, rows, k=5, seed=1)
    got = selection.select(priority.get('oracle_error_mass'), labelled, ctx)
    assert got.info['gain_phase'] == phase, rows
    if not phase:
      typical, _ = typicality.typiclust(labelled.embedding, labelled.ids, ctx.selectable, ctx.rng, ctx.k)
      np.testing.assert_array_equal(got.ids, labelled.ids[typical])


def _smoothed_iou(pred, truth, smoothing):
  inter = (pred & truth).reshape(len(pred), -1).sum(1).astype(np.float64)
  union = (pred | truth).reshape(len(pred), -1).sum(1).astype(np.float64)
  return (inter + smoothing) / (union + smoothing)


@pytest.mark.slow
def test_the_pool_truth_is_each_tiles_iou_under_the_current_model(tmp_path, smoke_config):
  config = smoke_config.copy_and_resolve_references()
  config.priority.name = 'oracle_error_mass'
  exp = loop.Experiment(config, Workdir(str(tmp_path / 'w')))
  state, _ = exp.pretrain()
  pool = exp.data['target_pool']
  tiles = pool.read(np.arange(len(pool)))
  ids = np.random.default_rng(0).permutation(tiles['id'])  # any row order
  got = exp.oracle_stats(state, ids)
  rows = np.argsort(tiles['id'])[np.searchsorted(tiles['id'], ids, sorter=np.argsort(tiles['id']))]
  pred = exp.scorer.predict_masks(state.params, tiles['image'][rows]) > 0
  truth = tiles['mask'][rows] > 0
  expected = _smoothed_iou(pred, truth, config.head.iou_smoothing)
  assert 0.05 < expected.std()  # a model that tells tiles apart, not a constant
  chex.assert_trees_all_close(got['oracle_iou'], expected.astype(np.float32), rtol=1e-5)
  chex.assert_trees_all_close(got['oracle_fg_fraction'], truth.reshape(len(truth), -1).mean(1).astype(np.float32),
                              rtol=1e-6)
  # A round scores them beside the head's statistics.
  stats, _, _ = exp.score(state, LabelledSet.empty(), 1)
  order = np.argsort(tiles['id'])[np.searchsorted(tiles['id'], stats.ids, sorter=np.argsort(tiles['id']))]
  chex.assert_trees_all_close(stats.oracle_iou, exp.oracle_stats(state, tiles['id'][order])['oracle_iou'])


@pytest.mark.slow
def test_a_run_whose_labels_come_from_annotators_refuses_the_oracle(tmp_path, data_dir):
  from geo_fixtures import write_project
  from test_human_loop import _config

  project = write_project(tmp_path / 'project', pool_labels=False, truth={})
  config = _config(project, data_dir, rounds=1)
  config.priority.name = 'oracle_error'
  with pytest.raises(ConfigError, match=r"^config.priority.name='oracle_error' reads oracle_iou, every pool "
                                        r"tile's true IoU from hidden masks; this pool's labels come from "
                                        r'annotators'):
    loop.run(config, str(tmp_path / 'w'))
  assert not (tmp_path / 'w' / 'checkpoints').exists() or not any((tmp_path / 'w' / 'checkpoints').iterdir())
