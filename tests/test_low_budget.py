"""TypiClust and MaxHerding against NumPy references, and the honest random
baselines (foreground-aware, stratified)."""

import chex
import jax
import numpy as np
import pytest

from priojax import priority, selection
from priojax.priority import diversity, typicality
from priojax.scoring import PoolStats


def _blobs(rng, sizes, dim=4, spread=0.3):
  centres = rng.normal(0, 5, (len(sizes), dim))
  x = np.concatenate([c + rng.normal(0, spread, (n, dim)) for c, n in zip(centres, sizes)])
  return x.astype(np.float32)


def _ref_typicality(x, k):
  d = np.linalg.norm(x[:, None] - x[None], axis=-1)
  np.fill_diagonal(d, np.inf)
  return 1.0 / (np.sort(d, axis=1)[:, :k].mean(1) + 1e-5)


def _ref_typiclust(x, ids, selectable, assign, budget):
  """TypiClust's released selection rule (github.com/avihu111/TypiClust,
  typiclust.py), written out with NumPy."""
  clusters = np.unique(assign)
  sizes = np.array([(assign == c).sum() for c in clusters])
  existing = np.array([(assign[~selectable] == c).sum() for c in clusters])
  first = np.array([ids[assign == c].min() for c in clusters])
  keep = sizes > typicality.MIN_CLUSTER_SIZE
  order = sorted(zip(existing[keep], -sizes[keep], first[keep], clusters[keep]))
  labels = np.where(selectable, assign, -1)
  picked = []
  for i in range(budget):
    cluster = order[i % len(order)][3]
    idx = np.flatnonzero(labels == cluster)
    typ = _ref_typicality(x[idx], min(20, len(idx) // 2))
    best = idx[np.lexsort((ids[idx], -typ))[0]]
    picked.append(best)
    labels[best] = -1
  return picked


def test_typiclust_matches_the_released_rule_on_given_clusters():
  rng = np.random.default_rng(0)
  sizes = [30, 12, 25, 8, 4]
  x = _blobs(rng, sizes)
  assign = np.repeat(np.arange(len(sizes)), sizes)
  ids = rng.permutation(1000)[:len(x)] + 7
  selectable = np.ones(len(x), bool)
  selectable[[0, 1, 40]] = False  # two labels in cluster 0, one in cluster 1
  budget = 7
  got, typ = typicality.typiclust_picks(x, ids, selectable, assign, budget)
  want = _ref_typiclust(x, ids, selectable, assign, budget)
  assert got.tolist() == want
  # The clusters without labels come first, largest first: 2 (25), 3 (8);
  # the 4-tile cluster is too small to be visited.
  assert assign[got].tolist()[:4] == [2, 3, 1, 0]
  assert 4 not in assign[got]
  assert np.all(typ > 0)


def test_kmeans_matches_lloyd_from_the_same_seeding():
  rng = np.random.default_rng(1)
  x = _blobs(rng, [20, 15, 10, 5], spread=1.0)
  ids = np.arange(len(x)) + 100
  key = jax.random.key(3)
  got = np.asarray(typicality.kmeans(x, ids, key, clusters=4))
  seeds, _ = diversity.kmeans_pp(x, np.ones(len(x), bool), ids, key, k=4)
  centres = x[np.asarray(seeds)].astype(np.float64)
  for _ in range(20):
    assign = np.argmin(np.linalg.norm(x[:, None] - centres[None], axis=-1), axis=1)
    centres = np.stack([x[assign == c].mean(0) if (assign == c).any() else centres[c] for c in range(4)])
  want = np.argmin(np.linalg.norm(x[:, None] - centres[None], axis=-1), axis=1)
  np.testing.assert_array_equal(got, want)


def test_knn_distances_match_numpy_over_several_chunks():
  x = _blobs(np.random.default_rng(2), [700, 500])  # 1200 rows: two chunks, the last one padded
  assert len(x) > diversity.CHUNK
  want = 1.0 / _ref_typicality(x.astype(np.float64), 20) - 1e-5
  got = np.asarray(typicality.knn_mean_distance(x, np.ones(len(x), bool), k=20))
  chex.assert_trees_all_close(got, want, rtol=2e-3)  # float32 distances
  # Only members count as neighbours.
  members = np.arange(len(x)) % 3 == 0
  d = np.linalg.norm(x[:, None].astype(np.float64) - x[members][None], axis=-1)
  d[np.flatnonzero(members), np.arange(members.sum())] = np.inf  # a member is not its own neighbour
  chex.assert_trees_all_close(np.asarray(typicality.knn_mean_distance(x, members, k=5)),
                              np.sort(d, 1)[:, :5].mean(1), rtol=2e-3)
  # Within a cluster (NumPy, any size) the same quantity.
  chex.assert_trees_all_close(typicality.cluster_typicality(x[:50], 7), _ref_typicality(x[:50], 7), rtol=1e-6)


def _ref_maxherding(x, selectable, ids, sigma, k):
  d2 = ((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)
  kern = np.exp(-d2 / (2 * sigma ** 2))
  cover = np.where(~selectable[None, :], kern, 0.0).max(1)
  available = selectable.copy()
  picks, gains = [], []
  for _ in range(k):
    gain = np.maximum(kern - cover[None, :], 0.0).sum(1) / len(x)  # candidate c in rows
    gain = np.where(available, gain, -np.inf)
    best = np.flatnonzero(gain >= gain.max() - 1e-9)
    best = best[np.argmin(ids[best])]
    picks.append(best)
    gains.append(gain[best])
    cover = np.maximum(cover, kern[best])
    available[best] = False
  return picks, gains


@pytest.mark.parametrize('labelled', [(), (3, 30)])
def test_maxherding_matches_a_numpy_greedy(labelled):
  rng = np.random.default_rng(4)
  x = _blobs(rng, [25, 15, 10], spread=0.8)
  ids = np.arange(len(x)) * 3 + 1
  selectable = np.ones(len(x), bool)
  selectable[list(labelled)] = False
  sigma = typicality.kernel_width(x, ids)
  picks, gains = typicality.maxherding(x, selectable, ids, sigma, k=6)
  want, want_gains = _ref_maxherding(x, selectable, ids, sigma, 6)
  assert np.asarray(picks).tolist() == want
  chex.assert_trees_all_close(np.asarray(gains), np.asarray(want_gains, np.float32), rtol=1e-4, atol=1e-6)
  # Greedy coverage gains never grow (C is submodular).
  assert np.all(np.diff(np.asarray(gains)) <= 1e-6)


def _stats(n=40, seed=0, **columns):
  rng = np.random.default_rng(seed)
  base = dict(pred_iou=rng.random(n).astype(np.float32), fg_fraction=np.zeros(n, np.float32),
              embedding=rng.normal(size=(n, 3)).astype(np.float32),
              stratum=np.zeros(n, np.int64))
  base.update(columns)
  return PoolStats(ids=np.arange(n) + 500, **base)


def _select(name, stats, k, selectable=None, seed=0, **hparams):
  selectable = np.ones(len(stats), bool) if selectable is None else selectable
  ctx = priority.SelectionContext(k=k, rng=jax.random.key(seed), selectable=selectable,
                                  reference_embedding=np.zeros((0, 3), np.float32), hparams=hparams)
  return selection.select(priority.get(name), stats, ctx)


def test_foreground_random_takes_predicted_buildings_first_and_is_random_among_them():
  n = 40
  fg = np.zeros(n, np.float32)
  fg[::4] = 0.2  # 10 tiles predicted to hold buildings
  fg[1] = 0.005  # below 1 %: counts as empty
  stats = _stats(n, fg_fraction=fg)
  picked = _select('fg_random', stats, 6).ids - 500
  assert all(i % 4 == 0 for i in picked)
  # Among them, the order is random's: the same uniforms.
  uniforms = np.asarray(priority.get('random').source(stats, priority.SelectionContext(
      k=6, rng=jax.random.key(0), selectable=np.ones(n, bool), reference_embedding=None)))
  fg_rows = np.flatnonzero(fg >= 0.01)
  assert picked.tolist() == fg_rows[np.argsort(-uniforms[fg_rows])][:6].tolist()
  # More picks than foreground tiles: the rest are random empty tiles.
  assert len(set((_select('fg_random', stats, 15).ids - 500).tolist()) & set(fg_rows.tolist())) == 10


def test_stratified_random_allocates_by_largest_remainder():
  strata = np.array([0] * 20 + [1] * 12 + [2] * 8)
  stats = _stats(40, stratum=strata)
  for k, want in ((10, [5, 3, 2]), (7, [4, 2, 1]), (3, [1, 1, 1])):
    got = strata[_select('stratified_random', stats, k).ids - 500]
    assert np.bincount(got, minlength=3).tolist() == want, k
  # Proportional to what is left unlabelled.
  selectable = np.ones(40, bool)
  selectable[:16] = False  # stratum 0: 4 left, 1: 12, 2: 8
  got = strata[_select('stratified_random', stats, 6, selectable).ids - 500]
  assert np.bincount(got, minlength=3).tolist() == [1, 3, 2]
