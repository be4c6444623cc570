"""The IoU predictor: estimates IoU(thresholded prediction, truth) per tile.

It reads the U-Net's own representation (pooled bottleneck and finest
decoder features) plus summary statistics of the predicted probability map.
``head_inputs`` is a parameter-free function so that the inputs can be
computed once per tile (with gradients stopped into the U-Net) and the small
MLP trained on them for many steps cheaply.
"""

from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

NUM_MASK_STATS = 7
_EPS = 1e-6


def pixel_entropy(probs: jnp.ndarray) -> jnp.ndarray:
  """Binary entropy in nats, H = -p log p - (1-p) log(1-p)."""
  p = jnp.clip(probs, _EPS, 1 - _EPS)
  return -(p * jnp.log(p) + (1 - p) * jnp.log1p(-p))


def mask_stats(logits: jnp.ndarray) -> jnp.ndarray:
  """Statistics of one tile's predicted map ``[H, W]`` -> ``[NUM_MASK_STATS]``."""
  probs = jax.nn.sigmoid(logits)
  ent = pixel_entropy(probs)
  pred = (probs > 0.5).astype(jnp.float32)
  area = jnp.mean(pred)
  uncertain = jnp.mean(((probs > 0.1) & (probs < 0.9)).astype(jnp.float32))
  # Entropy inside the predicted buildings: confident empty ground would
  # otherwise dilute the signal of an unsure building outline.
  ent_in = jnp.sum(ent * pred) / (jnp.sum(pred) + 1.0)
  # Fraction of predicted pixels on the outline: ragged masks score high.
  edges = jnp.abs(jnp.diff(pred, axis=0)).mean() + jnp.abs(jnp.diff(pred, axis=1)).mean()
  return jnp.stack([
      jnp.mean(probs), area, jnp.mean(ent), uncertain, ent_in, edges,
      jnp.log1p(jnp.sum(pred)) / jnp.log1p(pred.size),
  ])


def pooled_embedding(bottleneck: jnp.ndarray, max_dim: int) -> jnp.ndarray:
  """Mean-pooled bottleneck ``[h, w, C]`` -> ``[min(C, max_dim)]``."""
  v = einops.reduce(bottleneck.astype(jnp.float32), 'h w c -> c', 'mean')
  c = v.shape[0]
  if c > max_dim:
    groups = -(-c // max_dim)
    v = jnp.pad(v, (0, groups * max_dim - c))
    v = einops.reduce(v, '(d g) -> d', 'mean', g=groups)
  return v


def head_inputs(logits: jnp.ndarray, aux: dict, embed_dim: int = 128) -> jnp.ndarray:
  """One tile's head input vector, with gradients stopped into the U-Net."""
  logits = jax.lax.stop_gradient(logits)
  aux = jax.lax.stop_gradient(aux)
  bottleneck = pooled_embedding(aux['bottleneck'], embed_dim)
  fine = einops.reduce(aux['decoder'][-1].astype(jnp.float32), 'h w c -> c', 'mean')
  return jnp.concatenate([bottleneck, fine, mask_stats(logits)])


class IoUHead(nn.Module):
  """MLP from ``head_inputs`` to a predicted IoU in [0, 1] (``output='sigmoid'``)
  or to a predicted non-negative loss (``output='softplus'``, the loss
  prediction module of Learning Loss, Yoo & Kweon 2019)."""

  hidden: int = 64
  output: str = 'sigmoid'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    del train  # no dropout or norm state: same output in both modes
    # No input norm: every input is already O(1) (pooled post-norm ReLU
    # features, fractions, entropies) and their absolute levels carry signal.
    x = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype)(features))
    x = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype)(x))
    out = nn.Dense(1, dtype=jnp.float32)(x)[..., 0]
    return jax.nn.sigmoid(out) if self.output == 'sigmoid' else jax.nn.softplus(out)
