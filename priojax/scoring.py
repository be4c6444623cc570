"""Per-tile statistics of a whole pool, streamed through one jitted function.

``tile_stats.tile_stats`` maps one tile to the statistics a formula reads;
here it is vmapped over a batch and jitted once per distinct configuration
(networks, statistics, MC passes) for the whole process: a comparison of
many strategies and seeds traces each distinct scoring function once, as
big_vision caches its evaluators. ``Scorer.score`` streams a ``TileSource``
through it in fixed-size batches sharded over the mesh, so device memory is
bounded by the batch and host memory by the stats, whatever the pool's size.
Everything downstream (priorities, selection) reads only the resulting
``PoolStats``.
"""

from __future__ import annotations

import functools
import time
from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from priojax import compile_cache, distributed, hooks, tile_metrics
from priojax import mesh as mesh_lib
from priojax import tile_stats as tile_stats_lib
from priojax.data.pool import TileSource
from priojax.errors import SelectionError
from priojax.models.networks import Networks
from priojax.tile_stats import StatsSpec


class MissingStatError(SelectionError):
  """A formula read a statistic that this run's scoring did not compute."""


def _read_only(values) -> np.ndarray:
  view = np.asarray(values).view()
  view.flags.writeable = False
  return view


class PoolStats:
  """One row per tile: ``ids`` and one host array per computed statistic,
  read as ``stats.pred_iou`` or ``stats['entropy/topq']``. Reading one that
  was not computed raises ``MissingStatError``, never a silent zero. The
  arrays are read-only views: a formula cannot change what the round
  stores."""

  def __init__(self, ids: np.ndarray, **columns: np.ndarray):
    self.ids = _read_only(ids)
    self.columns = {k: _read_only(v) for k, v in columns.items()}

  def __len__(self) -> int:
    return len(self.ids)

  def __contains__(self, name: str) -> bool:
    return name in self.columns

  def __getitem__(self, name: str) -> np.ndarray:
    if name not in self.columns:
      raise MissingStatError(
          f'reads statistic {name!r}, which scoring did not compute (computed: '
          f'{", ".join(sorted(self.columns)) or "none"}); declare it in the formula\'s '
          f'reads=(...) so that scoring computes it')
    return self.columns[name]

  def __getattr__(self, name: str) -> np.ndarray:
    if name not in tile_stats_lib.ALL:
      raise AttributeError(f'PoolStats has no attribute {name!r}')
    return self[name]

  def take(self, index: np.ndarray) -> 'PoolStats':
    return PoolStats(self.ids[index], **{k: v[index] for k, v in self.columns.items()})

  def replace(self, **columns: np.ndarray) -> 'PoolStats':
    return PoolStats(self.ids, **{**self.columns, **columns})


@compile_cache.cached
def stats_function(networks: Networks, spec: StatsSpec):
  """jit(vmap(tile_stats)) for one configuration, built once per process."""
  fn = functools.partial(tile_stats_lib.tile_stats, networks, spec=spec)
  fn = compile_cache.counted('stats', (networks, spec), fn)
  return compile_cache.jit(jax.vmap(fn, in_axes=(None, 0, 0, None)))


@compile_cache.cached
def eval_function(networks: Networks, smoothing: float):
  fn = functools.partial(tile_metrics.tile_eval, networks, smoothing=smoothing)
  fn = compile_cache.counted('eval', (networks, smoothing), fn)
  return compile_cache.jit(jax.vmap(fn, in_axes=(None, 0, 0)))


@compile_cache.cached
def predict_function(networks: Networks):
  fn = compile_cache.counted('predict', networks, functools.partial(tile_metrics.predict_mask, networks))
  return compile_cache.jit(jax.vmap(fn, in_axes=(None, 0)))


class Scorer:
  """Streams tile sources through the jitted per-tile functions.

  ``spec``: what to compute per tile (tile_stats.py; by default every
  statistic that needs no MC dropout). ``iou_smoothing``: of the true tile
  IoU that evaluation reports (tile_metrics.py).
  """

  def __init__(self, networks: Networks, mesh: Mesh, batch_size: int, spec: StatsSpec | None = None,
               iou_smoothing: float = 16.0):
    self.networks = networks
    self.mesh = mesh
    self.batch_size = mesh_lib.batch_multiple(mesh, batch_size)
    self.spec = spec or StatsSpec.of(tile_stats_lib.SCALARS + tile_stats_lib.MAP_STATS)
    self._stats = stats_function(networks, self.spec)
    self._eval = eval_function(networks, float(iou_smoothing))
    self._predict = predict_function(networks)
    self.last_seconds = 0.0

  @property
  def stat_names(self) -> tuple[str, ...]:
    return self.spec.names

  @property
  def traces(self) -> int:
    """How often this configuration's stats function was traced in this process."""
    return compile_cache.TRACES[('stats', (self.networks, self.spec))]

  def _stream(self, fn, params, source: TileSource, positions, fields, array_fields,
              extra=()) -> Iterator[tuple[dict, dict]]:
    """Yields (host fields, host outputs) of the valid rows of each global
    batch, the same on every process; the next batch is dispatched before
    the previous result is fetched, so reading overlaps computing.

    Each process reads only its own rows of every global batch
    (mesh.process_rows); the outputs and the small per-tile fields (ids,
    strata: never pixels) are then gathered in row order."""
    params = mesh_lib.replicate(self.mesh, params)
    positions = np.arange(len(source)) if positions is None else np.asarray(positions, np.int64)
    size, n = self.batch_size, len(positions)
    first, share = mesh_lib.process_rows(size)
    processes = jax.process_count()
    starts = np.arange(0, n, size)
    # counts[g, q]: rows of global batch g that process q reads.
    counts = np.clip(np.minimum(size, n - starts)[:, None] - np.arange(processes) * share, 0, share)
    mine = [positions[s + first:s + first + c] for s, c in zip(starts, counts[:, jax.process_index()])]
    local = source.batches(share, np.concatenate(mine) if mine else positions[:0], fields=fields)
    meta = [f for f in fields if f not in ('image', 'mask')]
    filler = None
    pending = None
    for g, row_counts in enumerate(counts):
      valid = int(row_counts[jax.process_index()])
      if valid:
        batch = next(local)
        padded, _ = mesh_lib.pad_batch(batch, share)
      else:  # none of this process's rows are left in the last batch: compute on filler rows
        filler = filler or source.read(positions[:1], fields=fields)
        batch = {f: filler[f][:0] for f in fields}
        padded, _ = mesh_lib.pad_batch(filler, share)
      # Ids go in as uint32 (JAX runs without x64): they seed per-tile keys.
      args = [padded[f].astype(np.uint32) if f == 'id' else padded[f] for f in array_fields]
      out = fn(params, *mesh_lib.from_process_rows(self.mesh, args, size), *extra)
      if pending is not None:
        yield self._gathered(*pending)
      pending = ({f: batch[f][:valid] for f in meta}, out, row_counts, share)
    if pending is not None:
      yield self._gathered(*pending)

  @staticmethod
  def _gathered(fields: dict, out, row_counts: np.ndarray, share: int) -> tuple[dict, dict]:
    rows = np.concatenate([np.arange(c) + q * share for q, c in enumerate(row_counts)])
    out = jax.tree.map(lambda a: a[rows], mesh_lib.fetch(out))
    parts = distributed.gather_objects(fields)
    return {f: np.concatenate([p[f] for p in parts]) for f in fields}, out

  def score(self, params: dict, source: TileSource, positions: np.ndarray | None = None,
            key: jax.Array | None = None) -> PoolStats:
    """PoolStats for the tiles of ``source`` (all, or those at ``positions``);
    ``key`` drives MC dropout (each tile folds in its id): required when the
    spec has MC passes. Announces the ``scoring`` point after each batch."""
    start = time.perf_counter()
    if key is None:
      if self.spec.mc_passes:
        raise ValueError('Scorer.score: MC-dropout statistics need a key (fold_in(seed, round, purpose))')
      key = jax.random.key(0)  # taken by the compiled function, used by no statistic
    ids, outs = [], []
    for batch, out in self._stream(self._stats, params, source, positions, ('id', 'image'),
                                   ('image', 'id'), (key,)):
      ids.append(batch['id'])
      outs.append(out)
      hooks.point('scoring', batch=len(outs))
    self.last_seconds = time.perf_counter() - start
    if not outs:
      outs = [jax.tree.map(lambda a: np.zeros((0,) + a.shape[1:], a.dtype), self._row_shapes(params))]
      ids = [np.zeros(0, np.int64)]
    cat = jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
    return PoolStats(np.concatenate(ids).astype(np.int64), **cat)

  def _row_shapes(self, params):
    """The output structure for one tile, from shapes alone (nothing runs)."""
    size = 2 ** (self.networks.unet.depth + 1)  # any side divisible by 2**depth
    return jax.eval_shape(self._stats, params, jax.ShapeDtypeStruct((1, size, size, 3), np.uint8),
                          jax.ShapeDtypeStruct((1,), np.uint32), jax.random.key(0))

  def _in_memory(self, fn, params: dict, arrays: dict[str, np.ndarray]) -> list:
    """``fn(params, *arrays)`` over a few in-memory tiles, in batches."""
    out = []
    params = mesh_lib.replicate(self.mesh, params)
    n = len(next(iter(arrays.values())))
    for start in range(0, n, self.batch_size):
      batch, valid = mesh_lib.pad_batch({k: v[start:start + self.batch_size] for k, v in arrays.items()},
                                        self.batch_size)
      result = fn(params, *(mesh_lib.shard_batch(self.mesh, batch[k]) for k in arrays))
      out.append(jax.tree.map(lambda a, v=valid: a[:v], mesh_lib.fetch(result)))
    return out

  def predict_masks(self, params: dict, images: np.ndarray) -> np.ndarray:
    """Thresholded predictions of a few in-memory tiles (e.g. a selection)."""
    out = self._in_memory(self._predict, params, {'image': images})
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[1:3], np.uint8)

  def true_iou(self, params: dict, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The true (smoothed) IoU of a few in-memory labelled tiles."""
    out = self._in_memory(self._eval, params, {'image': images, 'mask': masks})
    return np.concatenate([o['true_iou'] for o in out]) if out else np.zeros(0, np.float32)

  def evaluate_arrays(self, params: dict, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """What ``evaluate_tiles`` gives, for a few in-memory labelled tiles
    (labels that live outside the pool split, e.g. the annotators')."""
    out = self._in_memory(self._eval, params, {'image': image, 'mask': mask})
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}

  def evaluate_tiles(self, params: dict, source: TileSource,
                     positions: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-tile counts, true and predicted IoU, true loss and head inputs."""
    fields = ('id', 'image', 'mask') + tuple(f for f in ('subpopulation', 'scene') if source.has_field(f))
    parts = []
    for batch, out in self._stream(self._eval, params, source, positions, fields, ('image', 'mask')):
      parts.append({**out, **{f: batch[f] for f in fields if f not in ('image', 'mask')}})
    if not parts:
      raise ValueError(f'{source.name}: no tiles to evaluate')
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
