"""What the heads read of one tile: the U-Net's own representation (pooled
bottleneck and finest decoder features) plus summary statistics of its
predicted map.

``head_inputs`` is a parameter-free function, so the inputs are computed
once per tile (with gradients stopped into the U-Net) and the small heads
trained on them for many steps cheaply.
"""

from __future__ import annotations

import einops
import jax
import jax.numpy as jnp

from priojax.uncertainty import pixel_entropy

NUM_MASK_STATS = 7


def mask_stats(logits: jnp.ndarray, threshold: float) -> jnp.ndarray:
  """Statistics of one tile's predicted map ``[H, W]`` -> ``[NUM_MASK_STATS]``."""
  probs = jax.nn.sigmoid(logits)
  ent = pixel_entropy(probs)
  pred = (probs > threshold).astype(jnp.float32)
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


def head_inputs(logits: jnp.ndarray, aux: dict, embed_dim: int, threshold: float) -> jnp.ndarray:
  """One tile's head input vector, with gradients stopped into the U-Net."""
  logits = jax.lax.stop_gradient(logits)
  aux = jax.lax.stop_gradient(aux)
  bottleneck = pooled_embedding(aux['bottleneck'], embed_dim)
  fine = einops.reduce(aux['decoder'][-1].astype(jnp.float32), 'h w c -> c', 'mean')
  return jnp.concatenate([bottleneck, fine, mask_stats(logits, threshold)])
