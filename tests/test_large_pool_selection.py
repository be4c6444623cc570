"""Selection at pool scale: the row-blocked paths (more than diversity.ROWS
tiles), the sampled paths (more than typicality.SAMPLE tiles), the device
pre-filter of top-k, and tile ids above 2^31, each against NumPy."""

import pytest
import chex
import jax
import numpy as np
from hypothesis import given, settings, strategies as st

from priojax.priority import diversity, learnability, registry, typicality

BIG = diversity.ROWS + 3000  # one row block more than ROWS, the last one padded


def _blobs(rng, n, centres, spread):
  centres = np.asarray(centres, np.float32)
  which = np.arange(n) % len(centres)
  return (centres[which] + rng.normal(0, spread, (n, centres.shape[1]))).astype(np.float32), which


def _knn_rows(x, x_index, nbrs, nbr_index, k):
  """NumPy: distances to and positions of the k nearest neighbours (not the same index)."""
  d = np.linalg.norm(x[:, None].astype(np.float64) - nbrs[None].astype(np.float64), axis=-1)
  d[x_index[:, None] == nbr_index[None, :]] = np.inf
  pos = np.argsort(d, axis=1, kind='stable')[:, :k]
  return np.take_along_axis(d, pos, 1), pos


def test_row_blocked_min_distances_and_kernel_regression_match_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(BIG, 2)).astype(np.float32)
  ref = rng.normal(size=(40, 2)).astype(np.float32)
  d = np.linalg.norm(x[:, None].astype(np.float64) - ref[None], axis=-1)
  chex.assert_trees_all_close(np.asarray(diversity.min_distances(x, ref)), d.min(1), rtol=1e-4, atol=1e-3)
  values = rng.random(40).astype(np.float32)
  centres = np.pad(ref, ((0, diversity.CHUNK - 40), (0, 0)))
  padded = np.pad(values, (0, diversity.CHUNK - 40), constant_values=-1.0)
  w = np.exp(-d ** 2 / (2 * 0.5 ** 2))
  want = (w @ values + 1.0) / (w.sum(1) + 1.0)
  got = np.asarray(learnability.kernel_regression(x, centres, padded, 0.5, 1.0, 1.0))
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)


def test_row_blocked_kmeans_matches_lloyd_from_the_same_seeding():
  rng = np.random.default_rng(1)
  x, _ = _blobs(rng, BIG, [[0, 0], [6, 0], [0, 6]], spread=1.0)
  ids = np.arange(BIG) * 7 + 3
  key = jax.random.key(2)
  got = np.asarray(typicality.kmeans(x, ids, key, clusters=3))
  seeds, _ = diversity.kmeans_pp(x, np.ones(BIG, bool), ids, key, k=3)
  centres = x[np.asarray(seeds)].astype(np.float64)
  for _ in range(20):
    assign = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    centres = np.stack([x[assign == c].mean(0) if (assign == c).any() else centres[c] for c in range(3)])
  want = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
  assert (got == want).mean() > 0.9999  # float32 sums over 68k rows: a boundary tile may flip


def test_pool_sample_is_keyed_by_id_and_extends_to_enough_selectable_tiles():
  rng = np.random.default_rng(3)
  ids = rng.permutation(10 ** 6)[:9000] + 2 ** 33
  sample = typicality.pool_sample(ids)
  assert len(sample) == typicality.SAMPLE and np.all(np.diff(sample) > 0)
  perm = rng.permutation(len(ids))
  assert set(ids[perm][typicality.pool_sample(ids[perm])]) == set(ids[sample])
  selectable = np.zeros(len(ids), bool)
  selectable[::100] = True  # 90 selectable tiles, about 41 of them in the sample
  extended = typicality.pool_sample(ids, selectable=selectable, at_least=80)
  assert selectable[extended].sum() == 80 and set(sample) <= set(extended)
  np.testing.assert_array_equal(typicality.pool_sample(ids[:100]), np.arange(100))


@pytest.mark.slow
def test_sampled_sigma_neighbourhood_mean_and_cluster_typicality_match_numpy():
  rng = np.random.default_rng(4)
  n = typicality.SAMPLE + 900
  x = rng.normal(size=(n, 3)).astype(np.float32)
  ids = rng.permutation(3 * n)[:n]
  sample = typicality.pool_sample(ids)
  dist, pos = _knn_rows(x, np.arange(n), x[sample], sample, 20)
  sigma = np.median(dist[sample].mean(1))  # the sample's rows, among the sample
  assert abs(typicality.kernel_width(x, ids) - sigma) < 1e-3 * sigma
  values = rng.normal(size=n).astype(np.float32)
  want = (values + values[sample][pos].sum(1)) / 21
  # Rows whose 20th and 21st nearest are within float32 noise of each other
  # may take either: compared elsewhere.
  d21, _ = _knn_rows(x, np.arange(n), x[sample], sample, 21)
  clear = d21[:, 20] - d21[:, 19] > 1e-4 * d21[:, 19]
  assert clear.mean() > 0.99
  got = learnability.neighbourhood_mean(x, values, ids, k=20)
  chex.assert_trees_all_close(got[clear], want[clear], rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(typicality.sampled_typicality(x, ids, 20), 1.0 / (dist.mean(1) + 1e-5),
                              rtol=2e-3)


def test_typiclust_takes_the_most_typical_tile_of_a_cluster_larger_than_the_sample():
  rng = np.random.default_rng(5)
  n = typicality.SAMPLE + 500
  x = rng.normal(size=(n + 40, 2)).astype(np.float32)
  x[n:] += 20.0  # a small second cluster
  assign = np.r_[np.zeros(n, int), np.ones(40, int)]
  ids = np.arange(n + 40) + 11
  selectable = np.ones(n + 40, bool)
  selectable[:3] = False
  typ = typicality.sampled_typicality(x[:n], ids[:n], 20)
  got, prios = typicality.typiclust_picks(x, ids, selectable, assign, 4)
  # Cluster 1 has no label, so it comes first; the clusters alternate.
  assert assign[got].tolist() == [1, 0, 1, 0]
  ranked = [i for i in np.lexsort((ids[:n], -typ)) if selectable[i]]
  assert got[[1, 3]].tolist() == ranked[:2]  # its typicality once, against its sample
  chex.assert_trees_all_close(prios[[1, 3]], typ[ranked[:2]])


def _ref_maxherding(x, cover, available, ids, sigma, k):
  kern = np.exp(-((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1) / (2 * sigma ** 2))
  available, picks = available.copy(), []
  for _ in range(k):
    gain = np.where(available, np.maximum(kern - cover[None, :], 0.0).sum(1) / len(x), -np.inf)
    best = np.flatnonzero(gain >= gain.max() - 1e-9)
    best = best[np.argmin(ids[best])]
    picks.append(best)
    cover = np.maximum(cover, kern[best])
    available[best] = False
  return picks


def test_maxherding_on_a_pool_larger_than_the_sample_covers_the_sample():
  rng = np.random.default_rng(6)
  n = typicality.SAMPLE + 300
  x = rng.normal(size=(n, 2)).astype(np.float32)
  ids = rng.permutation(5 * n)[:n] + 2 ** 32  # above 2^31: ties must still go by id
  selectable = rng.random(n) > 0.01
  sigma = 0.3
  picks, _ = typicality.maxherding(x, selectable, ids, sigma, k=4)
  rows = typicality.pool_sample(ids, selectable=selectable, at_least=4)
  labelled = x[~selectable].astype(np.float64)
  cover = np.exp(-((x[rows][:, None] - labelled[None]) ** 2).sum(-1) / (2 * sigma ** 2)).max(1)
  want = _ref_maxherding(x[rows], cover, selectable[rows], ids[rows], sigma, 4)
  assert np.asarray(picks).tolist() == rows[want].tolist()


def test_ties_go_to_the_lowest_id_above_2_to_the_31():
  ids = np.array([2 ** 40 + 5, 2 ** 31 + 1, 2 ** 33, 7 * 2 ** 31])
  emb = np.zeros((4, 2), np.float32)
  picks, _ = diversity.greedy_weighted_distance(np.ones(4, np.float32), emb, np.zeros((0, 2), np.float32),
                                                np.ones(4, bool), ids, k=4)
  assert ids[np.asarray(picks)].tolist() == sorted(ids.tolist())


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 60), k=st.integers(1, 60))
def test_device_prefilter_keeps_the_exact_float64_top_k(data, n, k):
  """Scores that differ below float32 resolution or tie exactly: the
  pre-filtered rows, ordered in float64, give the full sort's top k."""
  base = data.draw(st.lists(st.sampled_from([0.5, 1.0, 1.0 + 1e-12, 1.0 + 2e-12, -np.inf, 3e38, 7e38]),
                            min_size=n, max_size=n))
  rank = np.asarray(base, np.float64)
  selectable = np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
  k = min(k, int(selectable.sum()))
  if k == 0:
    return
  tie = np.arange(n)[::-1]
  rows = np.flatnonzero(selectable)
  want = rows[np.lexsort((tie[rows], -rank[rows]))[:k]]
  cand = registry.top_k_candidates(rank, selectable, k)
  got = cand[np.lexsort((tie[cand], -rank[cand]))[:k]]
  assert got.tolist() == want.tolist()
  assert selectable[cand].all()
