"""The U-Net and its two heads as one pure forward pass of a tile.

Everything here is a pure function of (params, one uint8 tile): scoring
(tile_stats.py, scoring.py) and evaluation (tile_metrics.py) vmap it over a
batch and jit it once, so a pool is processed the same way on one CPU or
sharded over a pod.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from priojax.models import heads, pretrained
from priojax.models.encoder_unet import EncoderUNet
from priojax.models.head_features import head_inputs
from priojax.models.heads import RegressionHead
from priojax.models.unet import UNet, preprocess


@dataclasses.dataclass(frozen=True)
class Networks:
  """The modules, and the two settings that define what the heads see."""

  unet: UNet | EncoderUNet
  head: RegressionHead  # predicted IoU of the thresholded prediction
  loss_head: RegressionHead = heads.loss_head(32)  # Learning Loss's predicted loss
  embed_dim: int = 128  # the pooled bottleneck is reduced to at most this many features
  # Pixels with building probability above it form the predicted mask: the
  # mask whose IoU the head predicts, and that evaluation and export use.
  threshold: float = 0.5
  channels: int = 3  # of the uint8 tiles: RGB, or RGB and further bands

  def init(self, rng: jax.Array, tile_size: int) -> dict:
    r_unet, r_head, r_loss = jax.random.split(rng, 3)
    image = jnp.zeros((1, tile_size, tile_size, self.channels), jnp.float32)
    unet_params = self.unet.init(r_unet, image, train=False)['params']
    logits, aux = self.unet.apply({'params': unet_params}, image, train=False)
    feats = self.head_inputs(jnp.zeros((tile_size, tile_size, self.channels), jnp.uint8), logits[0],
                             jax.tree.map(lambda a: a[0], aux))
    return {'unet': unet_params, 'head': self.head.init(r_head, feats)['params'],
            'loss_head': self.loss_head.init(r_loss, feats)['params']}

  def load_pretrained(self, unet_params: dict) -> dict:
    """``unet_params`` with the encoder's ImageNet weights, when the U-Net
    has a pretrained encoder (``EncoderUNet.weights == 'imagenet'``); the
    input channels are read off the initialised stem."""
    if not isinstance(self.unet, EncoderUNet) or self.unet.weights != 'imagenet':
      return unet_params
    stem = unet_params['encoder']['block_0']['conv']['kernel']
    loaded = pretrained.encoder_params(self.unet.encoder, channels=stem.shape[2])
    expected = jax.tree.map(jnp.shape, unet_params['encoder'])
    if jax.tree.map(jnp.shape, loaded) != expected:
      raise pretrained.WeightsError(f'the {self.unet.encoder} weights do not fit the encoder\'s parameters')
    return {**unet_params, 'encoder': jax.tree.map(jnp.asarray, loaded)}

  def unet_forward(self, params, image, *, rng=None):
    """One uint8 tile -> (logits [H, W], aux); dropout on when ``rng`` is given."""
    rngs = {'dropout': rng} if rng is not None else None
    logits, aux = self.unet.apply({'params': params['unet']}, preprocess(image)[None],
                                  train=rng is not None, rngs=rngs)
    return logits[0], jax.tree.map(lambda a: a[0], aux)

  def head_inputs(self, image, logits, aux):
    return head_inputs(image, logits, aux, self.embed_dim, self.threshold)

  def forward_tile(self, params: dict, image: jnp.ndarray):
    """One uint8 tile -> (logits [H, W], aux, head inputs, predicted IoU)."""
    logits, aux = self.unet_forward(params, image)
    feats = self.head_inputs(image, logits, aux)
    return logits, aux, feats, self.head.apply({'params': params['head']}, feats)

  def predicted_loss(self, params: dict, feats: jnp.ndarray) -> jnp.ndarray:
    return self.loss_head.apply({'params': params['loss_head']}, feats)
