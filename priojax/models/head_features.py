"""What the heads read of one tile: the U-Net's own representation (pooled
bottleneck and finest decoder features), summary statistics of its
predicted map, and statistics of the image itself.

The image statistics do not pass through the U-Net: a model that predicts
nothing (or whose features collapsed) still gives the head a view of what
is on the tile, so the head can tell "empty ground, predicted empty" from
"buildings, missed" instead of predicting a perfect IoU for both.

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
NUM_IMAGE_STATS = 7  # of an RGB tile


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


def image_stats(image: jnp.ndarray) -> jnp.ndarray:
  """Statistics of one uint8 tile ``[H, W, C]`` -> ``[2 C + 1]`` (RGB:
  ``NUM_IMAGE_STATS``): per-channel mean and standard deviation, and the
  mean absolute gradient of their mean (texture: roofs, walls and roads have
  edges, bare ground few)."""
  x = image.astype(jnp.float32) / 255.0
  grey = jnp.mean(x, axis=-1)
  texture = jnp.abs(jnp.diff(grey, axis=0)).mean() + jnp.abs(jnp.diff(grey, axis=1)).mean()
  return jnp.concatenate([jnp.mean(x, axis=(0, 1)), jnp.std(x, axis=(0, 1)), texture[None]])


def pooled_embedding(bottleneck: jnp.ndarray, max_dim: int) -> jnp.ndarray:
  """Mean-pooled bottleneck ``[h, w, C]`` -> ``[min(C, max_dim)]``."""
  v = einops.reduce(bottleneck.astype(jnp.float32), 'h w c -> c', 'mean')
  c = v.shape[0]
  if c > max_dim:
    groups = -(-c // max_dim)
    v = jnp.pad(v, (0, groups * max_dim - c))
    v = einops.reduce(v, '(d g) -> d', 'mean', g=groups)
  return v


def head_inputs(image: jnp.ndarray, logits: jnp.ndarray, aux: dict, embed_dim: int,
                threshold: float) -> jnp.ndarray:
  """One tile's head input vector, with gradients stopped into the U-Net."""
  logits = jax.lax.stop_gradient(logits)
  aux = jax.lax.stop_gradient(aux)
  bottleneck = pooled_embedding(aux['bottleneck'], embed_dim)
  fine = einops.reduce(aux['decoder'][-1].astype(jnp.float32), 'h w c -> c', 'mean')
  return jnp.concatenate([bottleneck, fine, mask_stats(logits, threshold), image_stats(image)])
