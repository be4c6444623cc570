"""A U-Net whose encoder is an ImageNet-pretrained network.

Every building-mapping tool its users know (segmentation_models_pytorch,
solaris, torchgeo, the winning SpaceNet and Inria entries) starts from an
ImageNet-pretrained encoder: a few hundred labelled chips cannot teach a
network edges, textures and roofs from scratch, but can teach a decoder to
read them. ``EncoderUNet`` takes the encoder's feature maps at strides 2,
4, 8 and 16 as skips and its stride-32 map as the bottleneck, and decodes
them as segmentation_models_pytorch's U-Net does (nearest 2x upsampling,
concatenation, two 3x3 convolutions per stride), up to a last block at full
resolution.

Normalisation: the encoder's BatchNorms are frozen and folded into its
convolutions (``mobilenet_v2.py`` says why); the decoder, trained from
scratch on batches of 16 chips, uses GroupNorm, which needs no batch
statistics and keeps a tile's output a function of that tile alone.

Input: priojax's preprocessed tiles (``unet.preprocess``: [0, 1] - 0.5);
the encoder applies ImageNet's normalisation itself. Same outputs as
``unet.UNet``: ``(logits [B, H, W], {'bottleneck', 'decoder'})``, so the
heads, scoring and embeddings read either network the same way.
"""

from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax.numpy as jnp

from priojax.models import mobilenet_v2
from priojax.models.unet import ConvBlock

# name -> module returning its maps at strides 2, 4, 8, 16, 32 in aux['features']
ENCODERS = {'mobilenet_v2': mobilenet_v2.MobileNetV2}
ENCODER_NAMES = ('none',) + tuple(ENCODERS)
ENCODER_WEIGHTS = ('imagenet', 'random')
STRIDE = 32  # chips must be a multiple of it


def upsample_nearest(x: jnp.ndarray) -> jnp.ndarray:
  return einops.repeat(x, 'b h w c -> b (h 2) (w 2) c')


class EncoderUNet(nn.Module):
  """U-Net decoder over a pretrained encoder; decoder block ``l`` (stride
  2**l, l = 4..0) has ``width * 2**l`` channels (width 16: 256, 128, 64,
  32, 16, segmentation_models_pytorch's default)."""

  encoder: str = 'mobilenet_v2'
  width: int = 16
  norm: str = 'group'
  dropout: float = 0.0
  dtype: Any = jnp.float32
  # What initialises the encoder: 'imagenet' (Networks.load_pretrained) or
  # 'random' (for tests, and to measure what the pretraining is worth).
  weights: str = 'imagenet'

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> tuple[jnp.ndarray, dict]:
    if self.encoder not in ENCODERS:
      raise ValueError(f'unknown encoder {self.encoder!r}; expected one of {ENCODER_NAMES}')
    if x.shape[1] % STRIDE or x.shape[2] % STRIDE:
      raise ValueError(f'tiles of {x.shape[1]}x{x.shape[2]} px; the {self.encoder} encoder needs a '
                       f'multiple of {STRIDE}')
    module = ENCODERS[self.encoder]
    # ImageNet weights replace the encoder's initialisation (load_pretrained):
    # zeros then, which compile in no time.
    kernel_init = nn.initializers.zeros_init() if self.weights == 'imagenet' else nn.initializers.lecun_normal()
    _, aux = module(dtype=self.dtype, kernel_init=kernel_init, name='encoder')(x.astype(jnp.float32) + 0.5,
                                                                              train=train)
    *skips, x = aux['features']
    bottleneck = x
    if self.dropout > 0:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    decoder = []
    for level in reversed(range(len(skips) + 1)):
      x = upsample_nearest(x)
      if level:
        x = jnp.concatenate([x, skips[level - 1].astype(x.dtype)], axis=-1)
      x = ConvBlock(self.width * 2**level, self.norm, self.dropout if level else 0.0, self.dtype,
                    name=f'decoder_{level}')(x, train=train)
      decoder.append(x)
    logits = nn.Conv(1, (1, 1), dtype=jnp.float32, name='logits')(x)[..., 0]
    return logits, {'bottleneck': bottleneck, 'decoder': tuple(decoder)}
