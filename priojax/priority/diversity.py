"""Greedy batch selection where each pick changes the others' priorities.

``greedy_weighted_distance`` picks, one at a time,

    argmax_i  u_i^α · (d_i / max_j d_j)^β   over the tiles still available,

where d_i is the embedding distance from tile i to its nearest labelled
tile (the reference set plus the tiles picked so far), updated after every
pick. With α = 0, β = 1 this is exactly k-center greedy (core-set). The loop
is a ``lax.fori_loop``, jitted once per (pool size, k).

``kmeans_pp`` is BADGE's k-means++ seeding. Its random draws use the
Gumbel-max trick with noise keyed by (pick, tile id), so the picks do not
depend on the order of the pool either.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from priojax import rngs

CHUNK = 1024  # rows of the reference (or candidates) taken at a time
# Pools up to this many rows meet each reference chunk whole (memory
# ROWS x CHUNK); larger ones go through in blocks of CHUNK rows, so that a
# pool of 10^6 tiles never holds a 10^6 x CHUNK matrix.
ROWS = 1 << 16


def row_chunks(x: jnp.ndarray):
  """Rows of ``x`` as [chunks, CHUNK, D] (zero-padded) and their validity."""
  n = x.shape[0]
  chunks = max(1, -(-n // CHUNK))
  pad = chunks * CHUNK - n
  valid = (jnp.arange(chunks * CHUNK) < n).reshape(chunks, CHUNK)
  return jnp.pad(x, ((0, pad), (0, 0))).reshape(chunks, CHUNK, -1), valid


def map_rows(fn, x: jnp.ndarray) -> jnp.ndarray:
  """``fn`` over the rows of ``x``: whole up to ROWS rows, else in blocks of
  CHUNK rows (``fn`` maps [R, D] to [R, ...] row by row)."""
  n = x.shape[0]
  if n <= ROWS:
    return fn(x)
  blocks, _ = row_chunks(x)
  out = jax.lax.map(fn, blocks)
  return out.reshape((-1,) + out.shape[2:])[:n]


def id_ranks(ids) -> np.ndarray:
  """Each tile id's rank among the pool's ids, as int32: ties go to the
  lowest id through it. JAX runs without x64, so ids above 2^31 would wrap
  if passed themselves."""
  ids = np.asarray(ids).reshape(-1)
  ranks = np.empty(len(ids), np.int32)
  ranks[np.argsort(ids, kind='stable')] = np.arange(len(ids), dtype=np.int32)
  return ranks


def matmul(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """``a @ b`` in full float32 whatever the default matmul precision: the
  default is TF32 on recent GPUs and bfloat16 on TPUs, which moves nearest
  neighbours (every formula that compares distances or sums embeddings
  goes through here)."""
  return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def pairwise_distances(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
  """Euclidean distances ``[N, D] x [M, D] -> [N, M]``, as
  ||x||² + ||y||² - 2 x·y with y's first row moved to the origin: distances
  do not change, and embeddings of non-negative features (a large common
  offset) no longer lose their differences to cancellation. (A row, not the
  mean: the chunks read here are padded with zero rows, the first is real.)"""
  if y.shape[0]:
    x, y = x - y[0], y - y[0]
  sq = jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2.0 * matmul(x, y.T)
  return jnp.sqrt(jnp.maximum(sq, 0.0))


def min_distances(x: jnp.ndarray, reference: jnp.ndarray) -> jnp.ndarray:
  """Distance of each row of ``x`` to its nearest reference row (inf if none).

  The reference is consumed in chunks and a large pool in row blocks
  (map_rows), so memory is min(N, ROWS) x CHUNK, not N x M.
  """
  n, m = x.shape[0], reference.shape[0]
  if m == 0:
    return jnp.full((n,), jnp.inf, x.dtype)
  ref, valid = row_chunks(reference)

  def block(rows):
    def step(best, chunk):
      r, v = chunk
      d = jnp.where(v[None, :], pairwise_distances(rows, r), jnp.inf)
      return jnp.minimum(best, d.min(axis=1)), None

    best, _ = jax.lax.scan(step, jnp.full((rows.shape[0],), jnp.inf, x.dtype), (ref, valid))
    return best

  return map_rows(block, x)


def argmax_lowest_id(scores: jnp.ndarray, ranks: jnp.ndarray, available: jnp.ndarray) -> jnp.ndarray:
  """Position of the highest score among ``available`` tiles; ties go to the
  smallest tile id (``ranks``: id_ranks of the ids), so the pick does not
  depend on the order of the pool."""
  best = jnp.max(jnp.where(available, scores, -jnp.inf))
  big = jnp.iinfo(ranks.dtype).max
  return jnp.argmin(jnp.where(available & (scores == best), ranks, big))


def greedy_weighted_distance(uncertainty, embedding, reference, selectable, ids, *, k,
                             alpha=1.0, beta=1.0):
  """Returns (positions [k], priorities at pick time [k])."""
  return _greedy_weighted_distance(uncertainty, embedding, reference, selectable, id_ranks(ids),
                                   k=k, alpha=alpha, beta=beta)


@functools.partial(jax.jit, static_argnames=('k',))
def _greedy_weighted_distance(uncertainty, embedding, reference, selectable, ranks, *, k, alpha, beta):
  uncertainty = jnp.asarray(uncertainty, jnp.float32)
  embedding = jnp.asarray(embedding, jnp.float32)
  dist = min_distances(embedding, jnp.asarray(reference, jnp.float32))

  def body(t, carry):
    dist, available, picks, prios = carry
    finite = available & jnp.isfinite(dist)
    dmax = jnp.max(jnp.where(finite, dist, 0.0))
    # No labelled tile yet: every tile is maximally novel.
    norm = jnp.where(jnp.isfinite(dist), dist / jnp.maximum(dmax, 1e-12), 1.0)
    prio = jnp.power(uncertainty, alpha) * jnp.power(norm, beta)
    prio = jnp.where(available, prio, -jnp.inf)
    best = argmax_lowest_id(prio, ranks, available)
    new = jnp.sqrt(jnp.maximum(jnp.sum((embedding - embedding[best]) ** 2, -1), 0.0))
    return (jnp.minimum(dist, new), available.at[best].set(False),
            picks.at[t].set(best), prios.at[t].set(prio[best]))

  init = (dist, jnp.asarray(selectable, bool), jnp.zeros((k,), jnp.int32),
          jnp.zeros((k,), jnp.float32))
  _, _, picks, prios = jax.lax.fori_loop(0, k, body, init)
  return picks, prios


def gumbel_noise(key: jax.Array, step, keys: jnp.ndarray) -> jnp.ndarray:
  """Gumbel(0, 1) noise for pick ``step``, one value per tile, keyed by
  ``keys`` (rngs.id_keys of the ids)."""
  step_key = jax.random.fold_in(key, step)
  return jax.vmap(lambda i: jax.random.gumbel(jax.random.fold_in(step_key, i)))(keys)


def kmeans_pp(points, selectable, ids, key, *, k):
  """k-means++ seeding: returns (positions [k], D^2 of each pick when picked;
  the first pick, the largest-norm point, reports its squared norm)."""
  return kmeans_pp_ranked(points, selectable, id_ranks(ids), rngs.id_keys(ids), key, k=k)


@functools.partial(jax.jit, static_argnames=('k',))
def kmeans_pp_ranked(points, selectable, ranks, keys, key, *, k):
  """kmeans_pp with the ids given as (id_ranks, rngs.id_keys), for callers
  inside jit."""
  x = jnp.asarray(points, jnp.float32)
  sq_norm = jnp.sum(x * x, -1)

  def body(t, carry):
    d2, available, picks, prios = carry
    # Sampling ∝ D^2 is argmax of log D^2 + Gumbel noise.
    sampled = jnp.log(jnp.maximum(d2, 1e-30)) + gumbel_noise(key, t, keys)
    score = jnp.where(t == 0, sq_norm, jnp.where(d2 > 0, sampled, -jnp.inf))
    best = argmax_lowest_id(score, ranks, available)
    picked_value = jnp.where(t == 0, sq_norm[best], d2[best])
    d2 = jnp.minimum(d2, jnp.sum((x - x[best]) ** 2, -1))
    return d2, available.at[best].set(False), picks.at[t].set(best), prios.at[t].set(picked_value)

  init = (jnp.full((x.shape[0],), jnp.inf, jnp.float32), jnp.asarray(selectable, bool),
          jnp.zeros((k,), jnp.int32), jnp.zeros((k,), jnp.float32))
  _, _, picks, prios = jax.lax.fori_loop(0, k, body, init)
  return picks, prios
