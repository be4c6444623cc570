"""The learnability-aware formulas against NumPy, the pool history they may
read, and stochastic power acquisition."""

import chex
import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from priojax import priority, selection
from priojax.errors import SelectionError
from priojax.pool_history import PoolHistory
from priojax.priority import diversity, learnability
from priojax.scoring import PoolStats


def _ctx(n, k=5, selectable=None, history=None, seed=0, **hparams):
  return priority.SelectionContext(
      k=k, rng=jax.random.key(seed), selectable=np.ones(n, bool) if selectable is None else selectable,
      reference_embedding=np.zeros((0, 2), np.float32), hparams=hparams,
      history=np.zeros((0, n), np.float32) if history is None else history)


@settings(max_examples=40, deadline=None)
@given(now=st.floats(0, 1), at_pick=st.floats(0, 1))
def test_learnable_fraction_is_the_share_of_error_removed(now, at_pick):
  ell = float(learnability.learnable_fraction(np.array([now]), np.array([at_pick]))[0])
  want = min(1.0, max(0.0, (now - at_pick) / max(1.0 - at_pick, learnability.MIN_ROOM)))
  assert ell == pytest.approx(want)
  assert 0.0 <= ell <= 1.0


def _two_regions(n_per=30, seed=0):
  """Region A (around 0) was learnt by its labels, region B (around 6)
  was not: both have the same predicted IoU."""
  rng = np.random.default_rng(seed)
  emb = np.concatenate([rng.normal(0, 0.5, (n_per, 2)), rng.normal(6, 0.5, (n_per, 2))]).astype(np.float32)
  n = len(emb)
  labelled = np.zeros(n, bool)
  labelled[[0, 1, 2, n_per, n_per + 1, n_per + 2]] = True
  now = np.full(n, -1.0, np.float32)
  at_pick = np.full(n, -1.0, np.float32)
  at_pick[labelled] = 0.1
  now[[0, 1, 2]] = 0.9  # learnt: ℓ = 0.8 / 0.9
  now[[n_per, n_per + 1, n_per + 2]] = 0.15  # stuck: ℓ = 0.05 / 0.9
  stats = PoolStats(ids=np.arange(n) + 10, pred_iou=np.full(n, 0.3, np.float32), embedding=emb,
                    label_iou=now, label_iou_at_pick=at_pick)
  return stats, labelled


def numpy_iou_gain(stats, labelled, ctx):
  """(1 - IoU_hat) · ℓ̂ in float64: σ from the pool, ℓ on the labelled
  tiles, kernel regression shrunk (weight 1) to the cluster's ℓ_c, itself
  shrunk (weight 1) to 1; the clusters are the library's k-means (its own
  tests hold it to Lloyd's algorithm)."""
  x = stats.embedding.astype(np.float64)
  d = np.linalg.norm(x[:, None] - x[None], axis=-1)
  np.fill_diagonal(d, np.inf)
  sigma = np.median(np.sort(d, 1)[:, :20].mean(1))
  known = labelled & (stats.label_iou >= 0)
  at_pick = stats.label_iou_at_pick[known].astype(np.float64)
  ell = np.clip((stats.label_iou[known] - at_pick) / np.maximum(1 - at_pick, 0.05), 0, 1)
  clusters, n_clusters = learnability.learnability_clusters(stats, ctx)
  assert n_clusters == max(ctx.k, 2)
  ell_c = np.array([(ell[clusters[known] == c].sum() + 1) / ((clusters[known] == c).sum() + 1)
                    for c in range(n_clusters)])
  w = np.exp(-np.linalg.norm(x[:, None] - x[known][None], axis=-1) ** 2 / (2 * sigma ** 2))
  return (1 - stats.pred_iou.astype(np.float64)) * (w @ ell + ell_c[clusters]) / (w.sum(1) + 1.0)


def test_iou_gain_matches_a_numpy_kernel_regression_and_skips_the_stuck_region():
  stats, labelled = _two_regions()
  ctx = _ctx(len(stats), k=10, selectable=~labelled)
  got = np.asarray(priority.get('iou_gain').source(stats, ctx))
  chex.assert_trees_all_close(got, numpy_iou_gain(stats, labelled, ctx), rtol=2e-3, atol=1e-5)
  picked = selection.select(priority.get('iou_gain'), stats, ctx).ids - 10
  assert (picked < 30).all()  # all from the learnable region, though `iou` cannot tell them apart
  # Without labelled tiles the prior ℓ = 1 holds: p = 1 - IoU_hat.
  fresh = stats.replace(label_iou=np.full(len(stats), -1.0, np.float32))
  chex.assert_trees_all_close(np.asarray(priority.get('iou_gain').source(fresh, _ctx(len(stats)))),
                              np.full(len(stats), 0.7), rtol=1e-6)


def test_iou_gain_kernel_regression_is_chunked_over_many_labelled_tiles():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(50, 3)).astype(np.float32)
  centres = rng.normal(size=(2 * diversity.CHUNK + 5, 3)).astype(np.float32)
  values = rng.random(len(centres)).astype(np.float32)
  got = np.asarray(learnability.kernel_regression(x, centres, values, 0.7, 1.0, 1.0))
  w = np.exp(-np.linalg.norm(x[:, None].astype(np.float64) - centres[None], axis=-1) ** 2 / (2 * 0.49))
  chex.assert_trees_all_close(got, (w @ values + 1.0) / (w.sum(1) + 1.0), rtol=1e-4)


def test_iou_trend_reads_the_previous_round_of_the_history():
  rng = np.random.default_rng(1)
  n = 60
  emb = np.concatenate([rng.normal(0, 0.3, (30, 2)), rng.normal(5, 0.3, (30, 2))]).astype(np.float32)
  q = np.full(n, 0.4, np.float32)
  previous = np.where(np.arange(n) < 30, 0.2, 0.6).astype(np.float32)  # A rose, B fell
  stats = PoolStats(ids=np.arange(n), pred_iou=q, embedding=emb)
  formula = priority.get('iou_trend')
  first = np.asarray(formula.source(stats, _ctx(n)))
  chex.assert_trees_all_close(first, np.full(n, 0.3), rtol=1e-6)  # no history: (1 - q) / 2
  later = np.asarray(formula.source(stats, _ctx(n, history=np.stack([np.zeros(n, np.float32), previous]))))
  # NumPy: the change over each tile and its 20 nearest, scaled by its std.
  d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
  nearest = np.argsort(d, axis=1, kind='stable')[:, :21]
  smooth = (q - previous)[nearest].mean(1)
  want = 0.6 / (1 + np.exp(-smooth / smooth.std()))
  chex.assert_trees_all_close(later, want, rtol=1e-4)
  assert later[:30].min() > later[30:].max()


def test_pool_history_appends_in_id_order_and_aligns_to_any_order():
  h = PoolHistory.empty()
  assert len(h) == 0 and h.aligned([3, 1]).shape == (0, 2) and h.to_arrays() is None
  h = h.appended(1, np.array([3, 1, 2]), np.array([0.3, 0.1, 0.2]))
  h = h.appended(2, np.array([2, 3, 1]), np.array([0.22, 0.33, 0.11]))
  assert h.ids.tolist() == [1, 2, 3] and h.rounds.tolist() == [1, 2]
  chex.assert_trees_all_close(h.aligned([3, 1, 2]), np.array([[0.3, 0.1, 0.2], [0.33, 0.11, 0.22]], np.float32))
  again = PoolHistory.from_arrays(h.to_arrays())
  np.testing.assert_array_equal(again.pred_iou, h.pred_iou)
  with pytest.raises(SelectionError, match='scored a different pool'):
    h.appended(3, np.array([1, 2, 4]), np.zeros(3))
  with pytest.raises(SelectionError, match='already in the pool history'):
    h.appended(2, np.array([1, 2, 3]), np.zeros(3))
  with pytest.raises(SelectionError, match=r'no rows for tile ids \[7\]'):
    h.aligned([1, 7])


@pytest.mark.slow
def test_power_acquisition_draws_in_proportion_to_score_to_the_beta():
  """Kirsch et al. 2023: p(i) ∝ s_i^β. The first pick's frequency over many
  keys against those probabilities (chi-square, 3 d.o.f.)."""
  scores = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
  stats = PoolStats(ids=np.array([11, 12, 13, 14]), pred_iou=1.0 - scores)
  formula = priority.get('iou')
  for beta in (1.0, 2.0):
    counts = np.zeros(4)
    for seed in range(2000):
      picks = selection.select(formula, stats, _ctx(4, k=1, seed=seed, acquisition='power', power_beta=beta))
      counts[picks.ids[0] - 11] += 1
    p = scores.astype(np.float64) ** beta / (scores.astype(np.float64) ** beta).sum()
    chi2 = ((counts - 2000 * p) ** 2 / (2000 * p)).sum()
    assert chi2 < 16.3, (beta, counts)  # p = 0.001
  # top_k is the default and deterministic; an unknown acquisition is refused.
  top = selection.select(formula, stats, _ctx(4, k=2))
  assert top.ids.tolist() == [14, 13]
  with pytest.raises(SelectionError, match="acquisition='soft'"):
    selection.select(formula, stats, _ctx(4, k=2, acquisition='soft'))


def test_power_acquisition_is_keyed_by_tile_id_and_never_picks_zero_scores():
  rng = np.random.default_rng(0)
  n = 30
  q = rng.random(n).astype(np.float32)
  q[:10] = 1.0  # score 0: never drawn while others remain
  stats = PoolStats(ids=rng.permutation(1000)[:n], pred_iou=q)
  perm = rng.permutation(n)
  a = selection.select(priority.get('iou'), stats, _ctx(n, k=8, acquisition='power'))
  b = selection.select(priority.get('iou'), stats.take(perm), _ctx(n, k=8, acquisition='power'))
  assert a.ids.tolist() == b.ids.tolist()
  assert not set(a.ids.tolist()) & set(stats.ids[:10].tolist())
  c = selection.select(priority.get('iou'), stats, _ctx(n, k=8, seed=1, acquisition='power'))
  assert a.ids.tolist() != c.ids.tolist()  # another round's key, another draw
