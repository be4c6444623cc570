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

At scale (a pool of 10^6 tiles) nothing here is O(N^2): pools, and
TypiClust clusters, of more than SAMPLE = 4096 tiles are measured against a
sample of SAMPLE of their tiles chosen by a hash of the tile id (pool_sample):
σ is the sample's, MaxHerding's candidates and coverage are the sample's
tiles, and a large cluster's typicality is each member's mean distance to
its K nearest sampled members. Up to SAMPLE tiles every tile is used, as
the papers do. Distances are computed in chunks (memory rows x chunk).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from priojax import rngs
from priojax.priority import diversity

K_NEIGHBOURS = 20
_KMEANS_ITERATIONS = 20
MIN_CLUSTER_SIZE = 5  # TypiClust skips clusters this small (unless none is larger)
SAMPLE = 4096  # larger pools and clusters are measured against this many of their tiles
_PAD_ROWS = 8 * diversity.CHUNK  # a large cluster's rows are padded to a multiple of this (few compiles)


def pool_sample(ids, size: int = SAMPLE, *, selectable=None, at_least: int = 0) -> np.ndarray:
  """Sorted positions of ``size`` tiles chosen by a hash of their id (all of
  them if there are no more), extended in hash order until it holds
  ``at_least`` selectable tiles: the same tiles whatever the pool's order."""
  ids = np.asarray(ids).reshape(-1)
  if len(ids) <= size:
    return np.arange(len(ids))
  order = np.argsort(rngs.keyed_bits(jax.random.key(0), ids), kind='stable')
  take = size
  if selectable is not None and at_least:
    counts = np.cumsum(np.asarray(selectable, bool)[order])
    take = max(size, int(np.searchsorted(counts, at_least)) + 1)
  return np.sort(order[:take])


@functools.partial(jax.jit, static_argnames=('k',))
def nearest(x, x_index, neighbours, neighbour_index, valid, *, k: int):
  """The ``k`` nearest ``valid`` rows of ``neighbours`` to each row of ``x``,
  a row never its own neighbour (same index): (distances [N, k] ascending,
  positions in ``neighbours`` [N, k]); inf distances where there are fewer.
  Rows go in chunks: memory is CHUNK x len(neighbours)."""
  x = jnp.asarray(x, jnp.float32)
  n = x.shape[0]
  neighbours = jnp.asarray(neighbours, jnp.float32)
  rows, _ = diversity.row_chunks(x)
  index, _ = diversity.row_chunks(jnp.asarray(x_index)[:, None])

  def chunk(args):
    r, idx = args
    d = diversity.pairwise_distances(r, neighbours)
    d = jnp.where(valid[None, :] & (idx[:, :1] != neighbour_index[None, :]), d, jnp.inf)
    far, positions = jax.lax.top_k(-d, k)
    return -far, positions

  dist, positions = jax.lax.map(chunk, (rows, index))
  return dist.reshape(-1, k)[:n], positions.reshape(-1, k)[:n]


def finite_mean(distances: jnp.ndarray) -> jnp.ndarray:
  """Row means of the finite entries (fewer than k neighbours: those there are)."""
  finite = jnp.isfinite(distances)
  return jnp.where(finite, distances, 0.0).sum(1) / jnp.maximum(finite.sum(1), 1)


def knn_mean_distance(x, members, *, k: int) -> jnp.ndarray:
  """Mean distance of each row of ``x`` to its ``k`` nearest other rows among
  those with ``members`` True (itself excluded); rows outside ``members``
  get the value too (distances to the members). O(N^2): for samples."""
  x = jnp.asarray(x, jnp.float32)
  n = x.shape[0]
  index = jnp.arange(n)
  distances, _ = nearest(x, index, x, index, jnp.asarray(members, bool), k=max(1, min(k, n - 1)))
  return finite_mean(distances)


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
  nearest = np.sort(np.partition(d, k - 1, axis=1)[:, :k], axis=1)  # sorted: the mean sums in one order
  return 1.0 / (nearest.mean(1) + 1e-5)


def sampled_typicality(x: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
  """Typicality of each row of a cluster larger than SAMPLE, against the
  cluster's SAMPLE rows chosen by id hash (itself excluded)."""
  sample = pool_sample(ids)
  pad = -len(x) % _PAD_ROWS
  rows = np.pad(np.asarray(x, np.float32), ((0, pad), (0, 0)))
  index = np.arange(len(rows))
  distances, _ = nearest(rows, index, rows[sample], index[sample], np.ones(len(sample), bool), k=k)
  return 1.0 / (np.asarray(finite_mean(distances), np.float64)[:len(x)] + 1e-5)


def kmeans(x, ids, key, *, clusters: int):
  """Lloyd's k-means (20 iterations) from a k-means++ seeding keyed by tile
  id; returns each row's cluster. An emptied cluster keeps its centre."""
  return _kmeans(x, diversity.id_ranks(ids), rngs.id_keys(ids), key, clusters=clusters)


@functools.partial(jax.jit, static_argnames=('clusters',))
def _kmeans(x, ranks, keys, key, *, clusters: int):
  x = jnp.asarray(x, jnp.float32)
  seeds, _ = diversity.kmeans_pp_ranked(x, jnp.ones(x.shape[0], bool), ranks, keys, key, k=clusters)
  centres = x[seeds]

  def assign(rows, centres):
    return jnp.argmin(diversity.pairwise_distances(rows, centres), axis=1)

  def totals(rows, valid, centres):
    one_hot = jax.nn.one_hot(assign(rows, centres), clusters, dtype=jnp.float32) * valid[:, None]
    return one_hot.sum(0), diversity.matmul(one_hot.T, rows)

  def step(centres, _):
    if x.shape[0] <= diversity.ROWS:
      counts, sums = totals(x, jnp.ones(x.shape[0], jnp.float32), centres)
    else:  # in row blocks: no N x clusters matrix
      blocks, valid = diversity.row_chunks(x)

      def add(carry, block):
        counts, sums = totals(block[0], block[1].astype(jnp.float32), centres)
        return (carry[0] + counts, carry[1] + sums), None

      zero = (jnp.zeros(clusters, jnp.float32), jnp.zeros((clusters, x.shape[1]), jnp.float32))
      (counts, sums), _ = jax.lax.scan(add, zero, (blocks, valid))
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centres), None

  centres, _ = jax.lax.scan(step, centres, None, length=_KMEANS_ITERATIONS)
  return diversity.map_rows(lambda rows: assign(rows, centres), x)


MAX_CLUSTERS = 500  # TypiClust's cap on |L| + k clusters


def typiclust(embedding, ids, selectable, key, k: int, max_clusters: int = MAX_CLUSTERS):
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
  """TypiClust's picks given each tile's cluster ``assign``. A cluster of
  more than SAMPLE tiles gets its typicality once, against its sample
  (sampled_typicality), and its most typical unlabelled tile is taken."""
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
  members_of = {}  # cluster -> its rows, for large clusters with their typicality
  while len(positions) < k:
    if not left[order].any():
      order = everything  # the large clusters are used up: the small ones hold what is left
    cluster = order[turn % len(order)]
    turn += 1
    if not left[cluster]:
      continue
    members, typ = available_typicality(x, ids, assign, cluster, available, int(sizes[cluster]), members_of)
    best = np.lexsort((ids[members], -typ))[0]
    positions.append(members[best])
    priorities.append(float(typ[best]))
    available[members[best]] = False
    left[cluster] -= 1
  return np.asarray(positions, np.int64), np.asarray(priorities, np.float64)


def relative_typicality(x: np.ndarray, ids: np.ndarray, selectable: np.ndarray, assign: np.ndarray) -> np.ndarray:
  """τ_i / max_{j in c(i), selectable} τ_j for every selectable tile (0 for
  the others): typicality within its cluster's unlabelled tiles, as
  TypiClust measures it (K = min(20, size // 2); a cluster of more than
  SAMPLE tiles against its sample), relative to the cluster's most typical."""
  ids = np.asarray(ids)
  out = np.zeros(len(x), np.float64)
  sizes = np.bincount(assign)
  for cluster in np.unique(assign[selectable]):
    members, typ = available_typicality(x, ids, assign, cluster, selectable, int(sizes[cluster]), {})
    out[members] = typ / typ.max()
  return out


def available_typicality(x: np.ndarray, ids: np.ndarray, assign: np.ndarray, cluster: int, available: np.ndarray,
                         size: int, large: dict) -> tuple[np.ndarray, np.ndarray]:
  """A cluster's available rows and their typicality, as TypiClust measures
  it: among the cluster's available tiles, K = min(20, n // 2); a cluster
  of more than SAMPLE tiles against its sample, computed once over all its
  tiles and kept in ``large`` (cluster -> rows, typicality) for later picks."""
  if size > SAMPLE:
    if cluster not in large:
      rows = np.flatnonzero(assign == cluster)
      large[cluster] = rows, sampled_typicality(x[rows], ids[rows], K_NEIGHBOURS)
    rows, typ = large[cluster]
    keep = available[rows]
    return rows[keep], typ[keep]
  members = np.flatnonzero((assign == cluster) & available)
  return members, cluster_typicality(x[members], k=min(K_NEIGHBOURS, max(1, len(members) // 2)))


def kernel_width(embedding, ids) -> float:
  """σ: the median mean distance to the K nearest neighbours, over the
  pool's sample (pool_sample: every tile up to SAMPLE); at least 1e-6, so
  that a pool of identical embeddings still has a kernel."""
  x = np.asarray(embedding, np.float32)[pool_sample(ids)]
  return max(float(jnp.median(knn_mean_distance(x, jnp.ones(x.shape[0], bool), k=K_NEIGHBOURS))), 1e-6)


def maxherding(embedding, selectable, ids, sigma, *, k: int):
  """Greedy MaxHerding on the pool's sample (pool_sample, extended to hold
  k unlabelled tiles): each pick maximises the gain in C(L) over the
  sample; every labelled pool tile starts L. Returns (positions [k], each
  pick's coverage gain)."""
  x = np.asarray(embedding, np.float32)
  selectable = np.asarray(selectable, bool)
  ids = np.asarray(ids)
  rows = pool_sample(ids, selectable=selectable, at_least=k)
  labelled = x[~selectable]
  pad = -len(labelled) % diversity.CHUNK  # one compile as the labelled set grows
  valid = np.arange(len(labelled) + pad) < len(labelled)
  labelled = np.pad(labelled, ((0, pad), (0, 0)))
  picks, gains = _maxherding(x[rows], selectable[rows], diversity.id_ranks(ids[rows]), labelled, valid,
                             sigma, k=k)
  return rows[np.asarray(picks)], gains


@functools.partial(jax.jit, static_argnames=('k',))
def _maxherding(x, selectable, ranks, labelled, valid, sigma, *, k: int):
  n = x.shape[0]

  def kernel(a, b):
    return jnp.exp(-diversity.pairwise_distances(a, b) ** 2 / (2.0 * sigma ** 2))

  # Coverage by the labelled tiles: max over them of k(x, l).
  cover0 = jnp.max(jnp.where(valid[None, :], kernel(x, labelled), 0.0), axis=1, initial=0.0)
  gram = kernel(x, x)  # at most SAMPLE (+ k) rows: computed once

  def body(t, carry):
    cover, available, picks, prios = carry
    # gain(c) = 1/N sum_x max(k(x, c) - cover_x, 0)
    g = jnp.maximum(gram - cover[None, :], 0.0).sum(1) / n
    best = diversity.argmax_lowest_id(jnp.where(available, g, -jnp.inf), ranks, available)
    cover = jnp.maximum(cover, gram[best])
    return cover, available.at[best].set(False), picks.at[t].set(best), prios.at[t].set(g[best])

  init = (cover0, selectable, jnp.zeros((k,), jnp.int32), jnp.zeros((k,), jnp.float32))
  _, _, picks, prios = jax.lax.fori_loop(0, k, body, init)
  return picks, prios
