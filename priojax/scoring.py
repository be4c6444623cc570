"""Per-tile statistics of a whole pool, streamed through one jitted function.

``Networks.tile_stats`` maps one tile to everything a priority formula may
read; here it is vmapped over a batch and jitted once. ``Scorer.score``
streams a ``TileSource`` through it in fixed-size batches sharded over the
mesh, so device memory is bounded by the batch and host memory by the stats,
whatever the pool's size. Everything downstream (priorities, selection) reads
only the resulting ``PoolStats``.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import flax
import jax
import numpy as np
from jax.sharding import Mesh

from priojax import mesh as mesh_lib
from priojax.data.pool import TileSource
from priojax.networks import Networks

# Fields of PoolStats that come straight out of ``tile_stats``.
STAT_FIELDS = ('pred_iou', 'pred_loss', 'entropy', 'fg_fraction', 'embedding', 'badge', 'aggregates')


@flax.struct.dataclass
class PoolStats:
  """One row per tile; host numpy arrays with a leading pool axis."""

  ids: np.ndarray  # [N] int64
  pred_iou: np.ndarray  # [N] predicted IoU of the model's own mask
  entropy: np.ndarray  # [N] mean pixel entropy (nats)
  fg_fraction: np.ndarray  # [N] fraction of pixels predicted as building
  embedding: np.ndarray  # [N, D] pooled bottleneck features
  pred_loss: np.ndarray  # [N] Learning-Loss head's predicted segmentation loss
  badge: np.ndarray  # [N, C + 1] BADGE gradient embedding of the output layer
  aggregates: dict  # 'entropy/topq', 'bald/mean', ... -> [N]

  def __len__(self) -> int:
    return len(self.ids)

  def take(self, index: np.ndarray) -> 'PoolStats':
    return jax.tree.map(lambda a: a[index], self)


class Scorer:
  """Streams tile sources through the jitted per-tile functions."""

  def __init__(self, networks: Networks, mesh: Mesh, batch_size: int, mc_passes: int = 0):
    self.networks = networks
    self.mesh = mesh
    self.batch_size = mesh_lib.batch_multiple(mesh, batch_size)
    self.mc_passes = mc_passes
    self.traces = 0  # how often the stats function was traced (tests check it is once)
    self._stats = jax.jit(jax.vmap(self._traced_stats, in_axes=(None, 0, 0, None)))
    self._eval = jax.jit(jax.vmap(networks.tile_eval, in_axes=(None, 0, 0)))
    self._predict = jax.jit(jax.vmap(networks.predict_mask, in_axes=(None, 0)))
    self.last_seconds = 0.0

  def _traced_stats(self, params, image, tile_id, key):
    self.traces += 1  # Python side effect: runs at trace time only
    return self.networks.tile_stats(params, image, tile_id, key, mc_passes=self.mc_passes)

  def _stream(self, fn, params, source: TileSource, positions, fields, array_fields,
              extra=()) -> Iterator[tuple[dict, dict]]:
    """Yields (host batch, host outputs); the next batch is dispatched before
    the previous result is fetched, so reading overlaps computing."""
    params = mesh_lib.replicate(self.mesh, params)
    pending = None
    for batch in source.batches(self.batch_size, positions, fields=fields):
      padded, valid = mesh_lib.pad_batch(batch, self.batch_size)
      # Ids go in as uint32 (JAX runs without x64): they seed per-tile keys.
      args = [mesh_lib.shard_batch(self.mesh, padded[f].astype(np.uint32) if f == 'id' else padded[f])
              for f in array_fields]
      out = fn(params, *args, *extra)
      if pending is not None:
        yield pending[0], jax.tree.map(lambda a, v=pending[2]: np.asarray(a)[:v], pending[1])
      pending = (batch, out, valid)
    if pending is not None:
      yield pending[0], jax.tree.map(lambda a, v=pending[2]: np.asarray(a)[:v], pending[1])

  def score(self, params: dict, source: TileSource, positions: np.ndarray | None = None,
            key: jax.Array | None = None,
            on_batch: Callable[[int], None] | None = None) -> PoolStats:
    """PoolStats for the tiles of ``source`` (all, or those at ``positions``);
    ``key`` drives MC dropout (each tile folds in its id); ``on_batch(n)``
    is called after the n-th batch's results arrive."""
    start = time.perf_counter()
    key = jax.random.key(0) if key is None else key
    ids, outs = [], []
    for batch, out in self._stream(self._stats, params, source, positions, ('id', 'image'),
                                   ('image', 'id'), (key,)):
      ids.append(batch['id'])
      outs.append(out)
      if on_batch is not None:
        on_batch(len(outs))
    self.last_seconds = time.perf_counter() - start
    if not outs:
      outs = [jax.tree.map(lambda a: np.zeros((0,) + a.shape[1:], a.dtype), self._empty_row(params))]
      ids = [np.zeros(0, np.int64)]
    cat = jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
    return PoolStats(ids=np.concatenate(ids).astype(np.int64), **{k: cat[k] for k in STAT_FIELDS})

  def _empty_row(self, params):
    """A one-row output of the right structure, for an empty pool."""
    size = self.networks.unet.depth  # any tile size that divides by 2**depth works
    image = np.zeros((1, 2 ** size * 2, 2 ** size * 2, 3), np.uint8)
    return jax.tree.map(np.asarray, self._stats(params, image, np.zeros(1, np.uint32), jax.random.key(0)))

  def predict_masks(self, params: dict, images: np.ndarray) -> np.ndarray:
    """Thresholded predictions of a few in-memory tiles (e.g. a selection)."""
    out = []
    params = mesh_lib.replicate(self.mesh, params)
    for start in range(0, len(images), self.batch_size):
      batch, valid = mesh_lib.pad_batch({'image': images[start:start + self.batch_size]}, self.batch_size)
      out.append(np.asarray(self._predict(params, mesh_lib.shard_batch(self.mesh, batch['image'])))[:valid])
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[1:3], np.uint8)

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
