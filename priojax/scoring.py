"""Per-tile statistics of the pool, computed by one jitted, vmapped function.

``tile_stats`` maps one tile to everything a priority formula may read
(predicted IoU, pixel entropy, predicted building fraction, an embedding);
it is vmapped over a batch and jitted once. ``Scorer.score`` streams a
``TileSource`` through it in fixed-size batches sharded over the mesh, so
device memory is bounded by the batch and host memory by the stats, whatever
the pool's size. Everything downstream (priorities, selection) reads only
the resulting ``PoolStats``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from priojax import mesh as mesh_lib
from priojax import tile_metrics
from priojax.data.pool import TileSource
from priojax.models import iou_head
from priojax.models.iou_head import IoUHead
from priojax.models.unet import UNet, preprocess


@flax.struct.dataclass
class PoolStats:
  """One row per tile; host numpy arrays with a leading pool axis."""

  ids: np.ndarray  # [N] int64
  pred_iou: np.ndarray  # [N] predicted IoU of the model's own mask
  entropy: np.ndarray  # [N] mean pixel entropy (nats)
  fg_fraction: np.ndarray  # [N] fraction of pixels predicted as building
  embedding: np.ndarray  # [N, D] pooled bottleneck features

  def __len__(self) -> int:
    return len(self.ids)

  def take(self, index: np.ndarray) -> 'PoolStats':
    return jax.tree.map(lambda a: a[index], self)


@dataclasses.dataclass(frozen=True)
class Networks:
  """The two modules and the shared settings that tie them together."""

  unet: UNet
  head: IoUHead
  embed_dim: int = 128
  threshold: float = 0.5
  iou_smoothing: float = 16.0

  def init(self, rng: jax.Array, tile_size: int) -> dict:
    r_unet, r_head = jax.random.split(rng)
    image = jnp.zeros((1, tile_size, tile_size, 3), jnp.float32)
    unet_params = self.unet.init(r_unet, image, train=False)['params']
    logits, aux = self.unet.apply({'params': unet_params}, image, train=False)
    feats = iou_head.head_inputs(logits[0], jax.tree.map(lambda a: a[0], aux), self.embed_dim)
    head_params = self.head.init(r_head, feats)['params']
    return {'unet': unet_params, 'head': head_params}

  def forward_tile(self, params: dict, image: jnp.ndarray):
    """One uint8 tile -> (logits [H, W], head inputs, embedding, predicted IoU)."""
    logits, aux = self.unet.apply({'params': params['unet']}, preprocess(image)[None], train=False)
    logits, aux = logits[0], jax.tree.map(lambda a: a[0], aux)
    feats = iou_head.head_inputs(logits, aux, self.embed_dim)
    pred_iou = self.head.apply({'params': params['head']}, feats)
    embedding = iou_head.pooled_embedding(aux['bottleneck'], self.embed_dim)
    return logits, feats, embedding, pred_iou

  def tile_stats(self, params: dict, image: jnp.ndarray) -> dict:
    logits, _, embedding, pred_iou = self.forward_tile(params, image)
    probs = jax.nn.sigmoid(logits)
    return {
        'pred_iou': pred_iou,
        'entropy': jnp.mean(iou_head.pixel_entropy(probs)),
        'fg_fraction': jnp.mean((probs > self.threshold).astype(jnp.float32)),
        'embedding': embedding,
    }

  def predict_mask(self, params: dict, image: jnp.ndarray) -> jnp.ndarray:
    logits = self.forward_tile(params, image)[0]
    return (jax.nn.sigmoid(logits) > self.threshold).astype(jnp.uint8)

  def tile_eval(self, params: dict, image: jnp.ndarray, mask: jnp.ndarray) -> dict:
    logits, feats, _, pred_iou = self.forward_tile(params, image)
    counts = tile_metrics.tile_counts(logits, mask, self.threshold)
    true_iou = tile_metrics.smoothed_iou(counts['intersection'], counts['union'], self.iou_smoothing)
    return {**counts, 'pred_iou': pred_iou, 'true_iou': true_iou, 'head_inputs': feats}


class Scorer:
  """Streams tile sources through the jitted per-tile functions."""

  def __init__(self, networks: Networks, mesh: Mesh, batch_size: int):
    self.networks = networks
    self.mesh = mesh
    self.batch_size = mesh_lib.batch_multiple(mesh, batch_size)
    self._stats = jax.jit(jax.vmap(networks.tile_stats, in_axes=(None, 0)))
    self._eval = jax.jit(jax.vmap(networks.tile_eval, in_axes=(None, 0, 0)))
    self._predict = jax.jit(jax.vmap(networks.predict_mask, in_axes=(None, 0)))
    self.last_seconds = 0.0

  def _stream(self, fn, params, source: TileSource, positions, fields,
              array_fields) -> Iterator[tuple[dict, dict]]:
    """Yields (host batch, host outputs); the next batch is dispatched before
    the previous result is fetched, so reading overlaps computing."""
    params = mesh_lib.replicate(self.mesh, params)
    pending = None
    for batch in source.batches(self.batch_size, positions, fields=fields):
      padded, valid = mesh_lib.pad_batch(batch, self.batch_size)
      args = [mesh_lib.shard_batch(self.mesh, padded[f]) for f in array_fields]
      out = fn(params, *args)
      if pending is not None:
        yield pending[0], jax.tree.map(lambda a, v=pending[2]: np.asarray(a)[:v], pending[1])
      pending = (batch, out, valid)
    if pending is not None:
      yield pending[0], jax.tree.map(lambda a, v=pending[2]: np.asarray(a)[:v], pending[1])

  def score(self, params: dict, source: TileSource, positions: np.ndarray | None = None) -> PoolStats:
    """PoolStats for the tiles of ``source`` (all, or those at ``positions``)."""
    start = time.perf_counter()
    ids, outs = [], []
    for batch, out in self._stream(self._stats, params, source, positions,
                                     ('id', 'image'), ('image',)):
      ids.append(batch['id'])
      outs.append(out)
    self.last_seconds = time.perf_counter() - start
    if not outs:
      dim = self.networks.embed_dim
      return PoolStats(np.zeros(0, np.int64), *(np.zeros(0, np.float32),) * 3, np.zeros((0, dim), np.float32))
    cat = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    return PoolStats(ids=np.concatenate(ids).astype(np.int64), pred_iou=cat['pred_iou'],
                     entropy=cat['entropy'], fg_fraction=cat['fg_fraction'],
                     embedding=cat['embedding'])

  def predict_masks(self, params: dict, images: np.ndarray) -> np.ndarray:
    """Thresholded predictions of a few in-memory tiles (e.g. a selection)."""
    out = []
    for start in range(0, len(images), self.batch_size):
      batch, valid = mesh_lib.pad_batch({'image': images[start:start + self.batch_size]}, self.batch_size)
      pred = self._predict(mesh_lib.replicate(self.mesh, params), mesh_lib.shard_batch(self.mesh, batch['image']))
      out.append(np.asarray(pred)[:valid])
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[1:3], np.uint8)

  def evaluate_tiles(self, params: dict, source: TileSource,
                     positions: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-tile counts, true and predicted IoU and head inputs of labelled tiles."""
    fields = ('id', 'image', 'mask') + tuple(f for f in ('subpopulation', 'scene') if source.has_field(f))
    parts = []
    for batch, out in self._stream(self._eval, params, source, positions, fields, ('image', 'mask')):
      parts.append({**out, **{f: batch[f] for f in fields if f not in ('image', 'mask')}})
    if not parts:
      raise ValueError(f'{source.name}: no tiles to evaluate')
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
