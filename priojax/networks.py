"""The U-Net, the IoU head and the loss head, and what one tile maps to.

Everything here is a pure function of (params, one tile): scoring vmaps it
over a batch and jits it once, so a pool is scored the same way on one CPU
or sharded over a pod. What a tile maps to for scoring is tile_stats.py.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from priojax import tile_metrics
from priojax.models import iou_head
from priojax.models.iou_head import IoUHead
from priojax.models.unet import UNet, preprocess
from priojax.train_losses import tile_segmentation_loss


@dataclasses.dataclass(frozen=True)
class Networks:
  """The modules and the settings that tie them together."""

  unet: UNet
  head: IoUHead
  loss_head: IoUHead = IoUHead(hidden=32, output='softplus')
  embed_dim: int = 128
  threshold: float = 0.5
  iou_smoothing: float = 16.0
  top_q: float = 0.1  # 'topq' aggregation: mean of the top 10 % of pixels
  region: int = 8  # 'region' aggregation: 8 x 8 px regions

  def init(self, rng: jax.Array, tile_size: int) -> dict:
    r_unet, r_head, r_loss = jax.random.split(rng, 3)
    image = jnp.zeros((1, tile_size, tile_size, 3), jnp.float32)
    unet_params = self.unet.init(r_unet, image, train=False)['params']
    logits, aux = self.unet.apply({'params': unet_params}, image, train=False)
    feats = iou_head.head_inputs(logits[0], jax.tree.map(lambda a: a[0], aux), self.embed_dim)
    return {'unet': unet_params, 'head': self.head.init(r_head, feats)['params'],
            'loss_head': self.loss_head.init(r_loss, feats)['params']}

  def unet_forward(self, params, image, *, rng=None):
    """One uint8 tile -> (logits [H, W], aux); dropout on when ``rng`` is given."""
    rngs = {'dropout': rng} if rng is not None else None
    logits, aux = self.unet.apply({'params': params['unet']}, preprocess(image)[None],
                                  train=rng is not None, rngs=rngs)
    return logits[0], jax.tree.map(lambda a: a[0], aux)

  def forward_tile(self, params: dict, image: jnp.ndarray):
    """One uint8 tile -> (logits [H, W], aux, head inputs, predicted IoU)."""
    logits, aux = self.unet_forward(params, image)
    feats = iou_head.head_inputs(logits, aux, self.embed_dim)
    return logits, aux, feats, self.head.apply({'params': params['head']}, feats)

  def predict_mask(self, params: dict, image: jnp.ndarray) -> jnp.ndarray:
    probs = jax.nn.sigmoid(self.forward_tile(params, image)[0])
    return (probs > self.threshold).astype(jnp.uint8)

  def tile_eval(self, params: dict, image: jnp.ndarray, mask: jnp.ndarray) -> dict:
    """Counts, true IoU and loss, and head inputs of one labelled tile."""
    logits, _, feats, pred_iou = self.forward_tile(params, image)
    counts = tile_metrics.tile_counts(logits, mask, self.threshold)
    true_iou = tile_metrics.smoothed_iou(counts['intersection'], counts['union'], self.iou_smoothing)
    return {**counts, 'pred_iou': pred_iou, 'true_iou': true_iou, 'head_inputs': feats,
            'true_loss': tile_segmentation_loss(logits, mask)}
