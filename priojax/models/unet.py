"""A U-Net for binary building segmentation that exposes its features.

``UNet.__call__`` returns ``(logits, aux)``: ``aux['bottleneck']`` is the
deepest feature map and ``aux['decoder']`` the decoder feature maps from
coarse to fine, so that the IoU head and the embeddings can read the model's
own representation without a second forward pass.
"""

from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

NORMS = ('group', 'layer', 'instance', 'none')
UPSAMPLES = ('depth_to_space', 'conv_transpose')


def _norm(kind: str, features: int, dtype: Any) -> nn.Module | None:
  # Batch-free norms only: per-tile statistics keep scoring a pure function of
  # one tile, which is what makes vmapped, sharded pool scoring exact.
  if kind == 'group':
    return nn.GroupNorm(num_groups=min(8, features), dtype=dtype)
  if kind == 'instance':
    return nn.GroupNorm(num_groups=None, group_size=1, dtype=dtype)
  if kind == 'layer':
    return nn.LayerNorm(dtype=dtype)
  if kind == 'none':
    return None
  raise ValueError(f'unknown norm {kind!r}; expected one of {NORMS}')


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """2x2 max pooling, stride 2, as a reshape and a max.

  Equal to ``nn.max_pool(x, (2, 2), strides=(2, 2))``; its gradient is a
  compare-and-select instead of XLA's select-and-scatter, which XLA:CPU runs
  as a slow scatter loop.
  """
  return einops.reduce(x, 'b (h 2) (w 2) c -> b h w c', 'max')


class Upsample2x(nn.Module):
  """Learnt 2x upsampling: the linear map of ``nn.ConvTranspose(features,
  (2, 2), strides=(2, 2))`` with the same parameters (``kernel`` [2, 2, Cin,
  Cout], ``bias`` [Cout]), the same initialisation and, under the same name,
  the same parameter tree, so checkpoints of either form load into the other.

  With a 2x2 kernel and stride 2 every output pixel (2h + i, 2w + j) is one
  input pixel (h, w) times the kernel tap (1 - i, 1 - j) (Flax does not flip
  the kernel of a transposed convolution; this orientation is checked against
  ``nn.ConvTranspose`` in the tests). ``'depth_to_space'`` computes it as one
  dense layer to 4 x Cout channels and a depth-to-space rearrangement: a
  plain matrix product. ``'conv_transpose'`` is XLA's transposed
  convolution, an input-dilated convolution that spends 3/4 of its
  multiply-adds on inserted zeros and whose weight gradient XLA:CPU runs on
  a naive loop kernel.
  """

  features: int
  method: str = 'depth_to_space'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    if self.method not in UPSAMPLES:
      raise ValueError(f'unknown upsample {self.method!r}; expected one of {UPSAMPLES}')
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (2, 2, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    if self.method == 'conv_transpose':
      y = jax.lax.conv_transpose(x, kernel, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      return y + bias
    taps = einops.rearrange(kernel[::-1, ::-1], 'i j c d -> c (i j d)')
    y = jnp.dot(x, taps) + jnp.tile(bias, 4)
    return einops.rearrange(y, 'b h w (i j d) -> b (h i) (w j) d', i=2, j=2)


class ConvBlock(nn.Module):
  """Two 3x3 convolutions, each followed by a norm and a ReLU."""

  features: int
  norm: str = 'group'
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    for _ in range(2):
      x = nn.Conv(self.features, (3, 3), dtype=self.dtype)(x)
      norm = _norm(self.norm, self.features, self.dtype)
      if norm is not None:
        x = norm(x)
      x = nn.relu(x)
    if self.dropout > 0:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return x


class UNet(nn.Module):
  """U-Net with ``depth`` poolings; level l has ``width * 2**l`` channels.

  Dropout (for MC-dropout acquisitions) is applied in the bottleneck and the
  decoder only, where it perturbs the representation the head reads.
  """

  depth: int = 3
  width: int = 16
  norm: str = 'group'
  dropout: float = 0.0
  upsample: str = 'depth_to_space'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> tuple[jnp.ndarray, dict]:
    x = x.astype(self.dtype)
    skips = []
    for level in range(self.depth):
      x = ConvBlock(self.width * 2**level, self.norm, 0.0, self.dtype)(x, train=train)
      skips.append(x)
      x = max_pool_2x2(x)
    x = ConvBlock(self.width * 2**self.depth, self.norm, self.dropout, self.dtype)(x, train=train)
    bottleneck = x
    decoder = []
    for level in reversed(range(self.depth)):
      # Named as nn.ConvTranspose was: one parameter tree for both methods.
      x = Upsample2x(self.width * 2**level, self.upsample, self.dtype,
                     name=f'ConvTranspose_{self.depth - 1 - level}')(x)
      x = jnp.concatenate([x, skips[level]], axis=-1)
      x = ConvBlock(self.width * 2**level, self.norm, self.dropout, self.dtype)(x, train=train)
      decoder.append(x)
    # The 1x1 output conv stays float32 so that low-precision runs keep
    # calibrated probabilities (entropy and the head read them).
    logits = nn.Conv(1, (1, 1), dtype=jnp.float32)(x)[..., 0]
    return logits, {'bottleneck': bottleneck, 'decoder': tuple(decoder)}


def preprocess(images: jnp.ndarray) -> jnp.ndarray:
  """uint8 tiles ``[..., H, W, 3]`` -> float32 centred on 0."""
  return images.astype(jnp.float32) / 255.0 - 0.5
