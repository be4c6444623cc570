"""Selection at pool scale on synthetic statistics: what
benchmarks/large_pool.py times for every registered formula (``--select``),
kept apart from its flags so that tests can import it.

The statistics hold every kind a formula reads: ``dim``-d
embeddings in 64 clusters, uniform draws for the per-tile scores, and
LABELLED tiles labelled (their IoUs, and the head's prediction when they
were picked); the context adds a reference set of 1,000 source embeddings
and one round of history. Everything is keyed by the seed, so every
process computes the same picks, and the digest says so.
"""

from __future__ import annotations

import hashlib
import time

import jax
import numpy as np

from priojax import priority, selection, tile_stats
from priojax.scoring import PoolStats

LABELLED = 200
REFERENCE = 1000
CLUSTERS = 64
FIRST_ID = 2 ** 33  # ids beyond 32 bits, as a region's tile ids can be


def synthetic_stats(n: int, dim: int, seed: int = 0) -> PoolStats:
  """Statistics of every kind a formula reads, for ``n`` tiles."""
  rng = np.random.default_rng(seed)
  ids = FIRST_ID + np.arange(n, dtype=np.int64)
  centres = rng.normal(0, 3, (CLUSTERS, dim)).astype(np.float32)
  embedding = centres[rng.integers(0, CLUSTERS, n)]
  embedding += rng.standard_normal((n, dim), dtype=np.float32)
  uniform = lambda *shape: rng.random(shape, dtype=np.float32)  # noqa: E731
  columns = {'pred_iou': uniform(n), 'pred_loss': uniform(n), 'fg_fraction': uniform(n),
             'embedding': embedding, 'badge': rng.standard_normal((n, 16), dtype=np.float32),
             'stratum': rng.integers(0, 8, n)}
  for name in tile_stats.LABEL_STATS:  # -1: not labelled (selection_contexts labels some)
    columns[name] = np.full(n, -1.0, np.float32)
  for name in tile_stats.MAP_STATS + tile_stats.MC_STATS + tile_stats.ORACLE_STATS:
    columns[name] = uniform(n)  # ORACLE_STATS: a benchmark's hidden truth, for the oracle ceilings
  return PoolStats(ids, **columns)


def selection_contexts(stats: PoolStats, k: int, seed: int = 0):
  """(stats, context, context with power acquisition): LABELLED tiles of
  ``stats`` labelled (their IoUs known, and the head's prediction when
  they were picked), a source reference set, one round of history. The
  stats are read-only, as in a run: the labelled copy is new."""
  rng = np.random.default_rng(seed + 1)
  n, dim = stats.embedding.shape
  selectable = np.ones(n, bool)
  labelled = rng.choice(n, min(LABELLED, n - k), replace=False)
  selectable[labelled] = False
  known = {}
  for name in tile_stats.LABEL_STATS:
    known[name] = np.array(stats[name])
    known[name][labelled] = rng.random(len(labelled))
  stats = stats.replace(**known)
  reference = stats.embedding[rng.choice(n, REFERENCE)] + rng.standard_normal((REFERENCE, dim), dtype=np.float32)
  history = (stats.pred_iou + 0.1 * rng.standard_normal(n, dtype=np.float32))[None]
  base = dict(k=k, rng=jax.random.key(seed), selectable=selectable, reference_embedding=reference,
              history=history)
  return (stats, priority.SelectionContext(hparams={}, **base),
          priority.SelectionContext(hparams={'acquisition': 'power'}, **base))


def time_selection(n: int, k: int, dim: int) -> tuple[dict, str]:
  """{formula: (first call s, next call s)} and a digest of every pick."""
  stats, ctx, power = selection_contexts(synthetic_stats(n, dim), k)
  cases = [(name, ctx) for name in priority.BUILTIN] + [('iou+power', power)]
  times, digest = {}, hashlib.sha256()
  for name, c in cases:
    formula = priority.get(name.split('+')[0])
    seconds = []
    for _ in range(2):
      start = time.perf_counter()
      picked = selection.select(formula, stats, c)
      seconds.append(time.perf_counter() - start)
    times[name] = seconds
    digest.update(name.encode() + picked.ids.tobytes())
  return times, digest.hexdigest()[:16]
