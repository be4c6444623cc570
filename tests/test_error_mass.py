"""``typical_error_mass`` (priority/error_mass.py) against NumPy: the
expected union is the true one when the areas are known, the true
fraction is a kernel regression shrunk to the prediction, and the picks
are the typical tiles of the clusters of most learnable error mass."""

import chex
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
import hypothesis.extra.numpy as hnp

from priojax import priority, selection
from priojax.priority import error_mass, typicality
from priojax.scoring import PoolStats
from test_budget import CENTRES, _ctx, numpy_clusters_and_typicality
from test_learnability import numpy_iou_gain

LABEL_FIELDS = ('label_iou', 'label_iou_at_pick', 'label_pred_iou_at_pick', 'label_fg_fraction')


def _pool(per=25, seed=0, fg=None, q=None):
  """Four far-apart sub-populations of ``per`` tiles, ids shuffled; ``fg``
  and ``q`` (one value per sub-population) the predicted building fraction
  and IoU, else uniform draws."""
  rng = np.random.default_rng(seed)
  emb = np.concatenate([rng.normal(c, 1.0, (per, 2)) for c in CENTRES]).astype(np.float32)
  n = len(emb)
  group = np.repeat(np.arange(4), per)
  fg = rng.uniform(0.0, 0.4, n) if fg is None else np.asarray(fg, np.float64)[group]
  q = rng.uniform(0.1, 0.9, n) if q is None else np.asarray(q, np.float64)[group]
  return PoolStats(ids=rng.permutation(10 * n)[:n].astype(np.int64) + 1, pred_iou=q.astype(np.float32),
                   fg_fraction=fg.astype(np.float32), embedding=emb,
                   **{name: np.full(n, -1.0, np.float32) for name in LABEL_FIELDS})


def _labelled(stats, rows, **values):
  out = {name: np.array(stats[name]) for name in LABEL_FIELDS}
  for name, v in values.items():
    out[f'label_{name}'][rows] = v
  return stats.replace(**out)


@settings(max_examples=80, deadline=None)
@given(masks=hnp.arrays(np.bool_, (2, 6, 6)))
def test_the_expected_union_is_the_true_union_when_the_true_area_is_known(masks):
  pred, truth = masks
  union = (pred | truth).sum()
  if union == 0:
    return  # IoU undefined: nothing to weigh
  q = (pred & truth).sum() / union
  got = error_mass.expected_union(q, pred.mean(), truth.mean())
  assert got == pytest.approx(union / pred.size, rel=1e-12)


def numpy_true_fraction(stats, labelled):
  """T̂ in float64: RBF weights (σ the pool's median 20-NN distance) over the
  labelled tiles' true fractions, plus the prediction with weight 1."""
  x = stats.embedding.astype(np.float64)
  d = np.linalg.norm(x[:, None] - x[None], axis=-1)
  np.fill_diagonal(d, np.inf)
  sigma = np.median(np.sort(d, 1)[:, :20].mean(1))
  w = np.exp(-np.linalg.norm(x[:, None] - x[labelled][None], axis=-1) ** 2 / (2 * sigma ** 2))
  p = stats.fg_fraction.astype(np.float64)
  return (w @ stats.label_fg_fraction[labelled].astype(np.float64) + p) / (w.sum(1) + 1.0)


def numpy_typical_error_mass(stats, ctx, true=None):
  """The picks and each tile's mass, in float64, written out from the
  module docstring's equations; ``true`` the building fractions when every
  tile's is known (the oracle ceiling), else T̂."""
  selectable = np.asarray(ctx.selectable)
  labelled = ~selectable
  p = stats.fg_fraction.astype(np.float64)
  if true is None:
    true = numpy_true_fraction(stats, labelled) if labelled.any() else p
  union = (p + true) / (1 + stats.pred_iou.astype(np.float64))
  mass = np.where(selectable, numpy_iou_gain(stats, labelled, ctx) * union, 0.0)
  assign, relative = numpy_clusters_and_typicality(stats, ctx)
  score = mass * relative
  reps = {}
  for i in np.flatnonzero(selectable):
    c = assign[i]
    if c not in reps or (score[i], relative[i], -stats.ids[i]) > (score[reps[c]], relative[reps[c]],
                                                                   -stats.ids[reps[c]]):
      reps[c] = i
  cluster_mass = {c: mass[assign == c].sum() for c in reps}
  size = {c: (selectable & (assign == c)).sum() for c in reps}
  order = sorted(reps, key=lambda c: (-cluster_mass[c], -size[c], stats.ids[reps[c]]))
  return np.asarray([reps[c] for c in order[:ctx.k]]), mass, assign, cluster_mass


def test_the_true_fraction_is_the_prediction_until_labels_speak():
  stats = _pool(seed=1)
  ctx = _ctx(stats)
  chex.assert_trees_all_close(error_mass.true_fraction(stats, ctx), stats.fg_fraction.astype(np.float64))
  rows = [0, 1, 30, 55, 80]
  stats = _labelled(stats, rows, fg_fraction=[0.5, 0.4, 0.0, 0.3, 0.2], iou=0.5, iou_at_pick=0.3)
  ctx = _ctx(stats, rows)
  labelled = ~ctx.selectable
  chex.assert_trees_all_close(error_mass.true_fraction(stats, ctx), numpy_true_fraction(stats, labelled),
                              rtol=2e-3, atol=1e-6)


def _trusted(stats, rows, fg_fraction, iou=0.6, agree=True):
  """``rows`` labelled with the given true building fraction and IoU now;
  the head's predictions at pick rank their IoU at pick exactly (or, with
  ``agree=False``, exactly backwards), so that the head is (not) trusted."""
  at_pick = np.linspace(0.1, 0.4, len(rows))
  pred = at_pick + 0.05 if agree else at_pick[::-1]
  return _labelled(stats, list(rows), fg_fraction=fg_fraction, iou=iou, iou_at_pick=at_pick,
                   pred_iou_at_pick=pred)


ROWS = (0, 1, 30, 55, 80)


def test_typical_error_mass_matches_numpy_and_picks_one_tile_per_cluster():
  stats = _trusted(_pool(seed=3), ROWS, fg_fraction=[0.3, 0.2, 0.0, 0.1, 0.4], iou=[0.9, 0.9, 0.3, 0.3, 0.5])
  ctx = _ctx(stats, ROWS, k=6, seed=2)
  got = selection.select(priority.get('typical_error_mass'), stats, ctx)
  rows, mass, assign, cluster_mass = numpy_typical_error_mass(stats, ctx)
  np.testing.assert_array_equal(got.ids, stats.ids[rows])
  chex.assert_trees_all_close(got.priorities, np.asarray([cluster_mass[assign[r]] for r in rows]),
                              rtol=2e-3, atol=1e-6)
  chex.assert_trees_all_close(error_mass.error_mass(stats, ctx) * ctx.selectable, mass, rtol=2e-3, atol=1e-6)
  assert len(set(assign[rows].tolist())) == len(rows)  # no two picks share a cluster
  assert got.info['gain_phase'] == 1 and got.info['head_pairs'] == len(ROWS)


@pytest.mark.parametrize('labelled', ['none', 'untrusted'])
def test_until_the_head_is_trusted_it_takes_typiclusts_picks(labelled):
  stats = _pool(seed=4)
  rows = ()
  if labelled == 'untrusted':  # predictions at pick that rank the true IoU backwards
    rows = ROWS
    stats = _trusted(stats, rows, fg_fraction=0.2, agree=False)
  ctx = _ctx(stats, rows, k=5, seed=1)
  got = selection.select(priority.get('typical_error_mass'), stats, ctx)
  typical, _ = typicality.typiclust(stats.embedding, stats.ids, ctx.selectable, ctx.rng, ctx.k)
  np.testing.assert_array_equal(got.ids, stats.ids[typical])
  assert got.info['gain_phase'] == 0
  # The same labels with predictions that rank them right: the mass decides.
  if rows:
    trusted = _trusted(stats, rows, fg_fraction=0.2)
    again = selection.select(priority.get('typical_error_mass'), trusted, ctx)
    np.testing.assert_array_equal(again.ids, stats.ids[numpy_typical_error_mass(trusted, ctx)[0]])
    assert again.info['gain_phase'] == 1


def test_large_unions_outrank_stray_pixels_that_per_tile_error_cannot_tell_apart():
  # Every tile has predicted IoU 0.2, so `iou` and `typical_gain` see four
  # alike sub-populations; only the second and fourth predict buildings
  # over a fifth of the tile (the others a few stray pixels). One label in
  # each, as predicted, agrees with the prediction and makes the head trusted.
  fg = [0.002, 0.2, 0.004, 0.25]
  rows = [0, 25, 50, 75]
  stats = _trusted(_pool(fg=fg, q=[0.2] * 4), rows, fg_fraction=fg)
  got = selection.select(priority.get('typical_error_mass'), stats, _ctx(stats, rows, k=2))
  groups = np.flatnonzero(np.isin(stats.ids, got.ids)) // 25
  assert sorted(groups.tolist()) == [1, 3]


def test_labels_that_show_missed_buildings_raise_their_neighbourhood():
  # Group 0 (haze) predicts no building and IoU 0.1: with P = 0 its mass is
  # 0, and another group is picked. Two labelled haze tiles whose masks hold
  # 40 % buildings, half of whose error training removed, make its unions
  # (and its mass) the largest.
  stats = _pool(fg=[0.0, 0.05, 0.05, 0.05], q=[0.1, 0.6, 0.6, 0.6])
  rows = [25, 26, 50, 51, 75, 76]
  stats = _trusted(stats, rows, fg_fraction=0.05)
  first = selection.select(priority.get('typical_error_mass'), stats, _ctx(stats, rows, k=1))
  assert first.info['gain_phase'] == 1
  assert np.flatnonzero(np.isin(stats.ids, first.ids)) // 25 != 0
  stats = _labelled(stats, [0, 1], fg_fraction=0.4, iou=0.55, iou_at_pick=0.1)
  later = selection.select(priority.get('typical_error_mass'), stats, _ctx(stats, rows + [0, 1], k=1)).ids
  assert np.flatnonzero(np.isin(stats.ids, later)) // 25 == 0
