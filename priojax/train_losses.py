"""The losses: segmentation (BCE + soft Dice) and the pairwise ranking term."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def segmentation_loss(logits: jnp.ndarray, masks: jnp.ndarray) -> jnp.ndarray:
  """Mean pixel BCE + (1 - soft Dice over the batch)."""
  y = masks.astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(logits, y).mean()
  p = jax.nn.sigmoid(logits)
  dice = (2 * jnp.sum(p * y) + 1.0) / (jnp.sum(p) + jnp.sum(y) + 1.0)
  return bce + (1.0 - dice)


def tile_segmentation_loss(logits: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """The same loss for one tile: what the Learning-Loss head learns to predict."""
  return segmentation_loss(logits[None], mask[None])


def ranking_loss(pred: jnp.ndarray, target: jnp.ndarray, margin: float) -> jnp.ndarray:
  """Learning-Loss pairwise term over the batch split in halves:
  mean over pairs of max(0, -sign(t_i - t_j) · (p_i - p_j) + ξ), tied pairs skipped."""
  half = pred.shape[0] // 2
  pi, pj = pred[:half], pred[half:2 * half]
  sign = jnp.sign(target[:half] - target[half:2 * half])
  hinge = jnp.maximum(0.0, -sign * (pi - pj) + margin) * (sign != 0)
  return jnp.sum(hinge) / jnp.maximum(jnp.sum(sign != 0), 1)
