"""Low-budget anchors on the pool's embeddings: typicality, TypiClust, MaxHerding.

With few labels, labelling *typical* tiles (dense regions of the pool's
embedding) beats labelling uncertain ones (Hacohen et al., ICML 2022):

    typicality(x) = ( 1/K · sum over the K nearest neighbours x' of ||x - x'|| )^-1,

K = 20. TypiClust clusters the pool into |L| + B clusters and labels the
most typical tile of each cluster that has the fewest labels. MaxHerding
(Bae et al., ECCV 2024) greedily maximises the kernel coverage of the pool,

    C(L) = 1/N · sum over pool tiles x of max over l in L of k(x, l),
    k(x, l) = exp(-||x - l||^2 / (2 σ^2)),

one pick at a time; σ is the median over the pool of each tile's mean
distance to its K nearest neighbours (the typicality scale), so no
bandwidth is tuned per dataset.

Everything that draws (k-means seeding) is keyed by tile id and every tie
goes to the lowest id, so picks do not depend on the order of the pool.
Distances are computed against the pool in chunks: memory is N x chunk.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from priojax.priority import diversity

K_NEIGHBOURS = 20
_KMEANS_ITERATIONS = 20
MIN_CLUSTER_SIZE = 5  # TypiClust skips clusters this small (unless none is larger)


@functools.partial(jax.jit, static_argnames=('k',))
def knn_mean_distance(x: jnp.ndarray, members: jnp.ndarray, *, k: int) -> jnp.ndarray:
  """Mean distance of each row of ``x`` to its ``k`` nearest other rows among
  those with ``members`` True (itself excluded); rows outside ``members``
  get the value too (distances to the members)."""
  x = jnp.asarray(x, jnp.float32)
  n = x.shape[0]
  k = max(1, min(k, n - 1))
  rows, valid = diversity.row_chunks(x)
  index, _ = diversity.row_chunks(jnp.arange(n)[:, None])

  def chunk(args):
    r, v, idx = args
    d = diversity.pairwise_distances(r, x)
    d = jnp.where(members[None, :] & (idx[:, :1] != jnp.arange(n)[None, :]), d, jnp.inf)
    nearest = -jax.lax.top_k(-d, k)[0]
    # Fewer than k members: average the finite ones.
    finite = jnp.isfinite(nearest)
    return jnp.where(finite, nearest, 0.0).sum(1) / jnp.maximum(finite.sum(1), 1)

  out = jax.lax.map(chunk, (rows, valid, index))
  return out.reshape(-1)[:n]


def cluster_typicality(x: np.ndarray, k: int) -> np.ndarray:
  """Typicality, (mean distance to the k nearest other rows)^-1 as
  TypiClust's code (+1e-5 so that duplicates stay finite), of a cluster's
  rows, in NumPy (float64): clusters differ in size, and a jitted function
  would compile once per size."""
  x = np.asarray(x, np.float64)
  if len(x) < 2:
    return np.ones(len(x))
  d = np.sqrt(np.maximum(np.sum(x * x, 1)[:, None] + np.sum(x * x, 1)[None, :] - 2 * x @ x.T, 0.0))
  np.fill_diagonal(d, np.inf)
  k = max(1, min(k, len(x) - 1))
  return 1.0 / (np.sort(d, axis=1)[:, :k].mean(1) + 1e-5)


@functools.partial(jax.jit, static_argnames=('clusters',))
def kmeans(x, ids, key, *, clusters: int):
  """Lloyd's k-means (20 iterations) from a k-means++ seeding keyed by tile
  id; returns each row's cluster. An emptied cluster keeps its centre."""
  x = jnp.asarray(x, jnp.float32)
  seeds, _ = diversity.kmeans_pp(x, jnp.ones(x.shape[0], bool), ids, key, k=clusters)
  centres = x[seeds]

  def step(centres, _):
    assign = jnp.argmin(diversity.pairwise_distances(x, centres), axis=1)
    one_hot = jax.nn.one_hot(assign, clusters, dtype=jnp.float32)
    counts = one_hot.sum(0)
    sums = one_hot.T @ x
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centres), None

  centres, _ = jax.lax.scan(step, centres, None, length=_KMEANS_ITERATIONS)
  return jnp.argmin(diversity.pairwise_distances(x, centres), axis=1)


def typiclust(embedding, ids, selectable, key, k: int, max_clusters: int = 500):
  """TypiClust (Hacohen et al. 2022, their released selection rule):
  |L| + k clusters (at most ``max_clusters``); clusters of more than
  MIN_CLUSTER_SIZE tiles, fewest labelled tiles first, then largest first,
  visited in turn; from each, its most typical unlabelled tile (typicality
  within the cluster's unlabelled tiles, K = min(20, size // 2)).
  Returns (positions [k], typicality of each pick)."""
  x = np.asarray(embedding, np.float32)
  selectable = np.asarray(selectable, bool)
  n_clusters = int(min(len(x), max_clusters, (~selectable).sum() + k))
  assign = np.asarray(kmeans(x, ids, key, clusters=n_clusters))
  return typiclust_picks(x, ids, selectable, assign, k)


def typiclust_picks(x: np.ndarray, ids: np.ndarray, selectable: np.ndarray, assign: np.ndarray, k: int):
  """TypiClust's picks given each tile's cluster ``assign``."""
  ids = np.asarray(ids)
  n_clusters = int(assign.max()) + 1 if len(assign) else 0
  sizes = np.bincount(assign, minlength=n_clusters)
  labelled = np.bincount(assign[~selectable], minlength=n_clusters)
  # Clusters are ordered by (labelled count, -size, lowest tile id in it):
  # the id makes the order independent of how k-means numbered them.
  first_id = np.full(n_clusters, np.iinfo(np.int64).max)
  np.minimum.at(first_id, assign, ids.astype(np.int64))
  everything = [c for c in np.lexsort((first_id, -sizes, labelled)) if sizes[c] > 0]
  order = [c for c in everything if sizes[c] > MIN_CLUSTER_SIZE] or everything
  available = selectable.copy()
  positions, priorities = [], []
  turn = 0
  # Unlabelled tiles left per cluster, kept up to date, so that no pick
  # rescans the pool for every cluster.
  left = np.bincount(assign[available], minlength=n_clusters)
  while len(positions) < k:
    if not left[order].any():
      order = everything  # the large clusters are used up: the small ones hold what is left
    cluster = order[turn % len(order)]
    turn += 1
    if not left[cluster]:
      continue
    members = np.flatnonzero((assign == cluster) & available)
    typ = cluster_typicality(x[members], k=min(K_NEIGHBOURS, max(1, len(members) // 2)))
    best = np.lexsort((ids[members], -typ))[0]
    positions.append(members[best])
    priorities.append(float(typ[best]))
    available[members[best]] = False
    left[cluster] -= 1
  return np.asarray(positions, np.int64), np.asarray(priorities, np.float64)


def kernel_width(embedding) -> float:
  """σ for MaxHerding: the median over the pool of the mean distance to the
  K nearest neighbours."""
  x = jnp.asarray(embedding, jnp.float32)
  return float(jnp.median(knn_mean_distance(x, jnp.ones(x.shape[0], bool), k=K_NEIGHBOURS)))


@functools.partial(jax.jit, static_argnames=('k',))
def maxherding(embedding, selectable, ids, sigma, *, k: int):
  """Greedy MaxHerding: each pick maximises the gain in C(L), the mean over
  the pool of the best kernel value to a labelled tile; the labelled pool
  tiles start L. Returns (positions [k], each pick's coverage gain)."""
  x = jnp.asarray(embedding, jnp.float32)
  ids = jnp.asarray(ids, jnp.int32)
  selectable = jnp.asarray(selectable, bool)
  n = x.shape[0]
  rows, valid = diversity.row_chunks(x)

  def kernel(a, b):
    return jnp.exp(-diversity.pairwise_distances(a, b) ** 2 / (2.0 * sigma ** 2))

  # Coverage by the labelled tiles: max over them of k(x, l).
  cover0 = jax.lax.map(lambda c: jnp.max(jnp.where(~selectable[None, :], kernel(c[0], x), 0.0), axis=1),
                       (rows, valid)).reshape(-1)[:n]

  def gains(cover):
    # gain(c) = 1/N sum_x max(k(x, c) - cover_x, 0), candidates in chunks.
    g = jax.lax.map(lambda c: jnp.maximum(kernel(c[0], x) - cover[None, :], 0.0).sum(1),
                    (rows, valid)).reshape(-1)[:n]
    return g / n

  def body(t, carry):
    cover, available, picks, prios = carry
    g = gains(cover)
    best = diversity.argmax_lowest_id(jnp.where(available, g, -jnp.inf), ids, available)
    cover = jnp.maximum(cover, kernel(x[best][None], x)[0])
    return cover, available.at[best].set(False), picks.at[t].set(best), prios.at[t].set(g[best])

  init = (cover0, selectable, jnp.zeros((k,), jnp.int32), jnp.zeros((k,), jnp.float32))
  _, _, picks, prios = jax.lax.fori_loop(0, k, body, init)
  return picks, prios
