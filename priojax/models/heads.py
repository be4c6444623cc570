"""Small regression heads on the U-Net's stop-gradient features.

* the IoU head (``iou_head``): predicted IoU of the thresholded prediction
  with the truth, in [0, 1] (sigmoid output);
* the loss head (``loss_head``): the loss prediction module of Learning Loss
  (Yoo & Kweon 2019), a non-negative predicted loss (softplus output).

Both read ``head_features.head_inputs`` of a tile.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


class RegressionHead(nn.Module):
  """Two GELU layers and one output passed through ``activation``."""

  hidden: int = 64
  activation: Callable[[jnp.ndarray], jnp.ndarray] = jax.nn.sigmoid

  @nn.compact
  def __call__(self, features: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    del train  # no dropout or norm state: same output in both modes
    # No input norm: every input is already O(1) (pooled post-norm ReLU
    # features, fractions, entropies) and their absolute levels carry signal.
    x = nn.gelu(nn.Dense(self.hidden, dtype=jnp.float32)(features))
    x = nn.gelu(nn.Dense(self.hidden, dtype=jnp.float32)(x))
    return self.activation(nn.Dense(1, dtype=jnp.float32)(x)[..., 0])


def iou_head(hidden: int = 64) -> RegressionHead:
  return RegressionHead(hidden=hidden, activation=jax.nn.sigmoid)


def loss_head(hidden: int = 64) -> RegressionHead:
  return RegressionHead(hidden=hidden, activation=jax.nn.softplus)
