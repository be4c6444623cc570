"""A U-Net for binary building segmentation that exposes its features.

``UNet.__call__`` returns ``(logits, aux)``: ``aux['bottleneck']`` is the
deepest feature map and ``aux['decoder']`` the decoder feature maps from
coarse to fine, so that the IoU head and the embeddings can read the model's
own representation without a second forward pass.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

NORMS = ('group', 'layer', 'instance', 'none')


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
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> tuple[jnp.ndarray, dict]:
    x = x.astype(self.dtype)
    skips = []
    for level in range(self.depth):
      x = ConvBlock(self.width * 2**level, self.norm, 0.0, self.dtype)(x, train=train)
      skips.append(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = ConvBlock(self.width * 2**self.depth, self.norm, self.dropout, self.dtype)(x, train=train)
    bottleneck = x
    decoder = []
    for level in reversed(range(self.depth)):
      x = nn.ConvTranspose(self.width * 2**level, (2, 2), strides=(2, 2), dtype=self.dtype)(x)
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
