"""The budget-aware formulas (priority/budget.py) against NumPy and SciPy:
the switch from typicality to expected gain happens where its rule says,
per-cluster learnability reads the first labels, and the blend picks one
tile per cluster."""

import chex
import jax
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st

from priojax import priority, selection, tile_metrics
from priojax.priority import budget, learnability, typicality
from priojax.scoring import PoolStats
from test_learnability import numpy_iou_gain

CENTRES = np.array([[0, 0], [40, 0], [0, 40], [40, 40]], np.float64)


def _pool(per=25, seed=0):
  """Four far-apart sub-populations of ``per`` tiles, ids shuffled."""
  rng = np.random.default_rng(seed)
  emb = np.concatenate([rng.normal(c, 1.0, (per, 2)) for c in CENTRES]).astype(np.float32)
  n = len(emb)
  return PoolStats(ids=rng.permutation(10 * n)[:n].astype(np.int64) + 1,
                   pred_iou=rng.uniform(0.1, 0.9, n).astype(np.float32), embedding=emb,
                   label_iou=np.full(n, -1.0, np.float32), label_iou_at_pick=np.full(n, -1.0, np.float32),
                   label_pred_iou_at_pick=np.full(n, -1.0, np.float32))


def _labelled(stats, rows, *, now, at_pick, pred_at_pick):
  out = {k: np.array(stats[k]) for k in ('label_iou', 'label_iou_at_pick', 'label_pred_iou_at_pick')}
  out['label_iou'][rows] = now
  out['label_iou_at_pick'][rows] = at_pick
  out['label_pred_iou_at_pick'][rows] = pred_at_pick
  return stats.replace(**out)


def _ctx(stats, labelled_rows=(), k=8, seed=0):
  selectable = np.ones(len(stats), bool)
  selectable[list(labelled_rows)] = False
  return priority.SelectionContext(k=k, rng=jax.random.key(seed), selectable=selectable,
                                   history=np.zeros((0, len(stats)), np.float32))


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=2, max_size=30))
def test_spearman_with_ties_matches_scipy(pairs):
  a, b = (np.asarray(v, np.float64) for v in zip(*pairs))
  got = budget.spearman(a, b)
  np.testing.assert_allclose(tile_metrics.average_ranks(a), scipy.stats.rankdata(a))
  if np.ptp(a) == 0 or np.ptp(b) == 0:
    assert got == 0.0  # no ranking on a constant side
    assert np.isnan(tile_metrics.spearman(a, b))  # the metric says undefined
  else:
    assert got == tile_metrics.spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic, abs=1e-12)


def test_the_lower_bound_is_fishers_interval_with_the_spearman_variance():
  for rho, n in ((0.5, 20), (0.3, 60), (-0.2, 10), (0.9, 4)):
    want = np.tanh(np.arctanh(rho) - 1.959963984540054 * np.sqrt(1.06 / (n - 3)))
    assert budget.spearman_lower_bound(rho, n) == pytest.approx(want, rel=1e-12)
  assert budget.spearman_lower_bound(1.0, 3) == -1.0  # too few pairs: never trusted
  assert budget.spearman_lower_bound(1.0, 4) > 0.99  # a perfect ranking: finite and trusted
  # The threshold at n = 20: ρ above about 0.454 switches, below does not.
  edge = np.tanh(1.959963984540054 * np.sqrt(1.06 / 17))
  assert budget.spearman_lower_bound(edge + 1e-6, 20) > 0 > budget.spearman_lower_bound(edge - 1e-6, 20)


def _round_two(stats, *, concordant: bool, n=12):
  """Round 1 labelled n tiles, 3 per sub-population (as TypiClust would);
  their predicted and true IoU at pick agree in rank, or are reversed."""
  rows = np.concatenate([np.arange(p * 25, p * 25 + n // 4) for p in range(4)])
  pred = np.linspace(0.1, 0.9, n)
  truth = pred + 0.02 if concordant else pred[::-1].copy()
  return _labelled(stats, rows, now=np.clip(truth + 0.3, 0, 1), at_pick=truth, pred_at_pick=pred), rows


@pytest.mark.parametrize('concordant', [True, False])
def test_the_switch_to_expected_gain_happens_where_the_rule_says(concordant):
  stats, rows = _round_two(_pool(), concordant=concordant)
  ctx = _ctx(stats, rows)
  formula = priority.get('typiclust_then_gain')
  got = selection.select(formula, stats, ctx)
  assert got.info['head_pairs'] == len(rows)
  assert got.info['head_rho_at_pick'] == pytest.approx(1.0 if concordant else -1.0)
  assert got.info['gain_phase'] == float(concordant)
  twin = selection.select(priority.get('iou_gain' if concordant else 'typiclust'), stats, ctx)
  np.testing.assert_array_equal(got.ids, twin.ids)
  np.testing.assert_allclose(got.priorities, twin.priorities)


# Rank orders of the true IoU at pick for 20 tiles predicted in order 0..19:
# Spearman ρ = 1 - 6 Σd² / 7980 just above and just below the switch
# (ρ ≈ 0.4537 at n = 20).
JUST_ABOVE = [11, 5, 3, 1, 2, 7, 6, 4, 17, 10, 13, 15, 19, 16, 9, 0, 18, 8, 12, 14]  # Σd² = 720
JUST_BELOW = [5, 3, 1, 8, 7, 9, 13, 4, 10, 18, 6, 15, 11, 16, 0, 19, 2, 14, 17, 12]  # Σd² = 732


@pytest.mark.parametrize('order,switches', [(JUST_ABOVE, True), (JUST_BELOW, False)])
def test_the_switch_point_at_twenty_labels(order, switches):
  stats = _pool()
  rows = np.concatenate([np.arange(p * 25, p * 25 + 5) for p in range(4)])
  pred = np.linspace(0.05, 0.95, 20)
  stats = _labelled(stats, rows, now=0.9, at_pick=pred[np.asarray(order)], pred_at_pick=pred)
  got = selection.select(priority.get('typiclust_then_gain'), stats, _ctx(stats, rows))
  sum_d2 = ((np.asarray(order) - np.arange(20)) ** 2).sum()
  assert got.info['head_rho_at_pick'] == pytest.approx(1 - 6 * sum_d2 / 7980)
  assert got.info['gain_phase'] == float(switches)


def test_round_one_and_too_few_pairs_stay_typical():
  stats = _pool()
  formula = priority.get('typiclust_then_gain')
  first = selection.select(formula, stats, _ctx(stats))
  assert first.info == {'head_rho_at_pick': 0.0, 'head_rho_lower': -1.0, 'head_pairs': 0.0, 'gain_phase': 0.0}
  np.testing.assert_array_equal(first.ids, selection.select(priority.get('typiclust'), stats, _ctx(stats)).ids)
  # Three perfectly ranked pairs are not evidence yet (n >= 4).
  stats3 = _labelled(stats, [0, 30, 60], now=0.9, at_pick=[0.2, 0.5, 0.8], pred_at_pick=[0.1, 0.4, 0.7])
  assert selection.select(formula, stats3, _ctx(stats3, [0, 30, 60])).info['gain_phase'] == 0.0
  # Pairs where the prediction at pick was not recorded (-1) are not counted.
  old = stats3.replace(label_pred_iou_at_pick=np.full(len(stats), -1.0, np.float32))
  assert budget.head_calibration(old) == (0.0, -1.0, 0)


def test_cluster_learnability_shrinks_towards_the_prior_where_no_tile_is_labelled():
  ell = np.array([0.0, 0.0, 0.6])
  got = learnability.cluster_learnability(ell, np.array([0, 0, 2]), 4)
  chex.assert_trees_all_close(got, np.array([1 / 3, 1.0, 1.6 / 2, 1.0]))


def test_one_stuck_label_per_subpopulation_steers_iou_gain_off_the_whole_subpopulation():
  """Haze (sub-population 0): predicted IoU 0.1, and its one labelled tile
  did not improve; the others are predicted at 0.5 and have no label. With
  the kernel alone, haze tiles beyond its reach kept the prior ℓ = 1 and
  their 0.9 of room; the cluster's ℓ_c now speaks for all of them."""
  stats = _pool()
  q = np.where(np.arange(len(stats)) < 25, 0.1, 0.5).astype(np.float32)
  stats = _labelled(stats.replace(pred_iou=q), [0], now=0.1, at_pick=0.1, pred_at_pick=0.1)
  ctx = _ctx(stats, [0], k=4)
  gain = np.asarray(priority.get('iou_gain').source(stats, ctx))
  chex.assert_trees_all_close(gain, numpy_iou_gain(stats, ~ctx.selectable, ctx), rtol=2e-3, atol=1e-5)
  assert gain[25:] == pytest.approx(0.5)  # no label there: ℓ̂ = 1, the prior
  assert gain[1:25].max() <= 0.9 * 0.5 + 1e-6  # ℓ_c = 1/2 for every haze tile, near or far
  picks = selection.select(priority.get('iou_gain'), stats, ctx).ids
  assert not set(picks.tolist()) & set(stats.ids[:25].tolist())


def numpy_clusters_and_typicality(stats, ctx):
  """TypiClust's |L| + k clusters (the library's k-means) and each
  unlabelled tile's typicality relative to its cluster's most typical
  unlabelled tile, in float64 (0 for labelled tiles)."""
  selectable = np.asarray(ctx.selectable)
  n_clusters = min(len(stats), (~selectable).sum() + ctx.k)
  assign = np.asarray(typicality.kmeans(stats.embedding, stats.ids, ctx.rng, clusters=n_clusters))
  x = stats.embedding.astype(np.float64)
  relative = np.zeros(len(x))
  for c in np.unique(assign[selectable]):
    members = np.flatnonzero((assign == c) & selectable)
    if len(members) == 1:
      relative[members] = 1.0
      continue
    d = np.linalg.norm(x[members][:, None] - x[members][None], axis=-1)
    np.fill_diagonal(d, np.inf)
    k = min(20, max(1, len(members) // 2))
    typ = 1 / (np.sort(d, 1)[:, :k].mean(1) + 1e-5)
    relative[members] = typ / typ.max()
  return assign, relative


def numpy_typical_gain(stats, ctx):
  """s_i and the picks in float64: clusters from the library's k-means (as
  TypiClust's), typicality among each cluster's unlabelled tiles, the
  expected gain from the NumPy iou_gain."""
  selectable = np.asarray(ctx.selectable)
  assign, relative = numpy_clusters_and_typicality(stats, ctx)
  score = numpy_iou_gain(stats, ~selectable, ctx) * relative
  best = {}
  for i in np.flatnonzero(selectable):
    c = assign[i]
    if c not in best or (score[i], -stats.ids[i]) > (score[best[c]], -stats.ids[best[c]]):
      best[c] = i
  order = sorted(best.values(), key=lambda i: (-score[i], stats.ids[i]))
  return np.asarray(order[:ctx.k]), score, assign


@pytest.mark.parametrize('labelled_rows', [(), (0, 1, 30, 55, 80)])
def test_typical_gain_matches_numpy_and_picks_one_tile_per_cluster(labelled_rows):
  stats = _pool(seed=3)
  if labelled_rows:
    stats = _labelled(stats, list(labelled_rows), now=[0.9, 0.9, 0.3, 0.3, 0.5],
                      at_pick=[0.2, 0.2, 0.3, 0.3, 0.4], pred_at_pick=[0.3, 0.2, 0.4, 0.3, 0.5])
  ctx = _ctx(stats, labelled_rows, k=6, seed=2)
  got = selection.select(priority.get('typical_gain'), stats, ctx)
  rows, score, assign = numpy_typical_gain(stats, ctx)
  np.testing.assert_array_equal(got.ids, stats.ids[rows])
  chex.assert_trees_all_close(got.priorities, score[rows], rtol=2e-3, atol=1e-6)
  assert len(set(assign[rows].tolist())) == len(rows)  # no two picks share a cluster
