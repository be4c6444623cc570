"""The greedy diversity update against a plain NumPy reference."""

import chex
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from priojax.priority import diversity


def reference_greedy(u, emb, ref, selectable, ids, k, alpha, beta):
  """Loop-by-loop NumPy version of the greedy (1 - IoU)^α · (d / max d)^β pick."""
  n = len(u)
  d = np.full(n, np.inf)
  for r in ref:
    d = np.minimum(d, np.linalg.norm(emb - r, axis=1))
  available = selectable.copy()
  picks, prios = [], []
  for _ in range(k):
    finite = available & np.isfinite(d)
    dmax = d[finite].max() if finite.any() else 0.0
    norm = np.where(np.isfinite(d), d / max(dmax, 1e-12), 1.0)
    p = np.where(available, u**alpha * norm**beta, -np.inf)
    best_value = p.max()
    cands = np.flatnonzero(p == best_value)
    best = cands[np.argmin(ids[cands])]
    picks.append(best)
    prios.append(p[best])
    d = np.minimum(d, np.linalg.norm(emb - emb[best], axis=1))
    available[best] = False
  return np.array(picks), np.array(prios)


def test_matches_numpy_reference_with_reference_set():
  rng = np.random.default_rng(0)
  n, dim = 40, 5
  u = rng.random(n).astype(np.float32)
  emb = rng.normal(size=(n, dim)).astype(np.float32)
  ref = rng.normal(size=(7, dim)).astype(np.float32)
  selectable = rng.random(n) > 0.2
  ids = np.arange(n) + 1000
  for alpha, beta in [(1.0, 1.0), (2.0, 0.5), (0.0, 1.0)]:
    got_p, got_v = diversity.greedy_weighted_distance(u, emb, ref, selectable, ids, k=10,
                                                      alpha=alpha, beta=beta)
    want_p, want_v = reference_greedy(u, emb, ref, selectable, ids, 10, alpha, beta)
    np.testing.assert_array_equal(np.asarray(got_p), want_p)
    chex.assert_trees_all_close(np.asarray(got_v), want_v.astype(np.float32), rtol=1e-4, atol=1e-5)


def test_without_reference_first_pick_is_most_uncertain():
  u = np.array([0.2, 0.9, 0.5], np.float32)
  emb = np.eye(3, dtype=np.float32)
  picks, prios = diversity.greedy_weighted_distance(u, emb, np.zeros((0, 3), np.float32),
                                                    np.ones(3, bool), np.arange(3), k=1)
  assert int(picks[0]) == 1 and abs(float(prios[0]) - 0.9) < 1e-6


def test_alpha_zero_is_k_center_greedy():
  # Points on a line; reference at 0: k-center picks the far end, then the middle.
  emb = np.array([[0.0], [1.0], [2.0], [5.0], [10.0]], np.float32)
  picks, _ = diversity.greedy_weighted_distance(np.ones(5, np.float32), emb, np.zeros((1, 1), np.float32),
                                                np.ones(5, bool), np.arange(5), k=2, alpha=0.0)
  assert np.asarray(picks).tolist() == [4, 3]


def test_min_distances_chunks_match_dense():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(30, 4)).astype(np.float32)
  ref = rng.normal(size=(2500, 4)).astype(np.float32)  # more than one chunk
  dense = np.sqrt(((x[:, None] - ref[None]) ** 2).sum(-1)).min(1)
  chex.assert_trees_all_close(np.asarray(diversity.min_distances(x, ref)), dense, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), n=st.integers(2, 12), k=st.integers(1, 4), m=st.integers(0, 4))
def test_property_matches_reference(data, n, k, m):
  k = min(k, n)
  floats = st.floats(0, 1, width=32)
  u = data.draw(hnp.arrays(np.float32, n, elements=floats))
  emb = data.draw(hnp.arrays(np.float32, (n, 2), elements=st.floats(-3, 3, width=32)))
  ref = data.draw(hnp.arrays(np.float32, (m, 2), elements=st.floats(-3, 3, width=32)))
  ids = np.asarray(data.draw(st.permutations(list(range(n)))))
  got, _ = diversity.greedy_weighted_distance(u, emb, ref, np.ones(n, bool), ids, k=k)
  got = np.asarray(got)
  assert len(set(got.tolist())) == k  # never the same tile twice
  want, _ = reference_greedy(u.astype(np.float64), emb.astype(np.float64), ref.astype(np.float64),
                             np.ones(n, bool), ids, k, 1.0, 1.0)
  # Float32 vs float64 can flip a near-tie; the picks must agree otherwise.
  if not np.array_equal(got, want):
    pytest_approx_tie(u, emb, ref, ids, got, want)


def pytest_approx_tie(u, emb, ref, ids, got, want):
  first = int(np.flatnonzero(got != want)[0])
  _, prios = reference_greedy(u.astype(np.float64), emb.astype(np.float64), ref.astype(np.float64),
                              np.ones(len(u), bool), ids, first + 1, 1.0, 1.0)
  # Recompute both candidates' priority at that step in float64: they must tie.
  picks = want[:first]
  d = np.full(len(u), np.inf)
  for r in list(ref) + [emb[p] for p in picks]:
    d = np.minimum(d, np.linalg.norm(emb.astype(np.float64) - r, axis=1))
  avail = np.ones(len(u), bool)
  avail[picks] = False
  fin = avail & np.isfinite(d)
  dmax = d[fin].max() if fin.any() else 0.0
  norm = np.where(np.isfinite(d), d / max(dmax, 1e-12), 1.0)
  p = u * norm
  assert p[want[first]] == pytest.approx(prios[first])  # the recomputation is the reference's
  assert abs(p[got[first]] - p[want[first]]) < 1e-4


def reference_kmeans_pp(points, selectable, ids, gumbels, k):
  """NumPy k-means++ seeding with the same Gumbel noise as the jitted one."""
  x = points.astype(np.float64)
  d2 = np.full(len(x), np.inf)
  available = selectable.copy()
  picks = []
  for t in range(k):
    if t == 0:
      score = (x * x).sum(1)
    else:
      score = np.where(d2 > 0, np.log(np.maximum(d2, 1e-30)) + gumbels[t], -np.inf)
    score = np.where(available, score, -np.inf)
    best_value = score[available].max()
    cands = np.flatnonzero(available & (score == best_value))
    best = cands[np.argmin(ids[cands])]
    picks.append(best)
    d2 = np.minimum(d2, ((x - x[best]) ** 2).sum(1))
    available[best] = False
  return np.array(picks)


def test_kmeans_pp_matches_numpy_reference():
  import jax

  rng = np.random.default_rng(2)
  n, k = 30, 8
  pts = rng.normal(size=(n, 4)).astype(np.float32)
  ids = rng.permutation(n) + 50
  selectable = rng.random(n) > 0.2
  key = jax.random.key(7)
  gumbels = np.stack([np.asarray(diversity.gumbel_noise(key, t, ids)) for t in range(k)])
  got, _ = diversity.kmeans_pp(pts, selectable, ids, key, k=k)
  np.testing.assert_array_equal(np.asarray(got), reference_kmeans_pp(pts, selectable, ids, gumbels, k))


def test_coreset_matches_k_center_reference():
  import jax

  from priojax import priority
  from test_priority import ctx, make_stats

  stats = make_stats(np.linspace(0, 1, 25), dim=3, seed=5)
  ref = np.random.default_rng(9).normal(size=(4, 3)).astype(np.float32)
  sel = priority.get('coreset').pick(stats, ctx(stats, 6, reference=ref))
  want, _ = reference_greedy(np.ones(25), stats.embedding.astype(np.float64), ref.astype(np.float64),
                             np.ones(25, bool), stats.ids, 6, 0.0, 1.0)
  np.testing.assert_array_equal(sel.positions, want)
  del jax


def test_badge_draws_later_picks_with_probability_proportional_to_squared_distance():
  """Over many keys, BADGE's second pick (after the largest-norm point)
  follows D^2 to the first pick: a chi-square test, not the implementation's
  own noise fed to a reference."""
  import jax
  from scipy import stats as scipy_stats

  points = np.array([[3.0, 0.0], [2.0, 0.5], [1.0, 0.0], [0.0, 1.0], [2.5, 0.0], [1.5, 1.0]],
                    np.float32)
  ids = np.arange(10, 16)
  selectable = np.array([True, True, True, True, False, True])
  keys = jax.random.split(jax.random.key(11), 4000)
  picks = np.asarray(jax.vmap(lambda key: diversity.kmeans_pp(points, selectable, ids, key, k=2)[0])(keys))
  assert (picks[:, 0] == 0).all()  # the largest norm first, whatever the key
  d2 = ((points - points[0]) ** 2).sum(1).astype(np.float64) * selectable
  d2[0] = 0.0
  expected = d2 / d2.sum()
  counts = np.bincount(picks[:, 1], minlength=len(points))
  assert counts[0] == counts[4] == 0  # never the first pick again, never an unselectable tile
  candidates = expected > 0
  result = scipy_stats.chisquare(counts[candidates], expected[candidates] / expected[candidates].sum()
                                 * counts.sum())
  assert result.pvalue > 1e-3, (counts, expected * len(keys))
