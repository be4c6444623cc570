"""Data-parallel placement: one mesh axis over every device.

Parameters are replicated, batches are split along ``'data'``; jitted
functions follow their inputs' shardings, so the same code runs on one CPU,
eight fake CPU devices in tests, or a GPU/TPU slice.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_multiple(mesh: Mesh, batch_size: int) -> int:
  """``batch_size`` rounded up so that every device gets the same share."""
  n = mesh.devices.size
  return -(-batch_size // n) * n


def shard_batch(mesh: Mesh, tree):
  """Places a pytree of host arrays with a leading batch axis across the mesh."""
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return jax.device_put(tree, sharding)


def replicate(mesh: Mesh, tree):
  return jax.device_put(tree, NamedSharding(mesh, P()))


def pad_batch(batch: dict[str, np.ndarray], size: int) -> tuple[dict[str, np.ndarray], int]:
  """Pads a short batch to ``size`` rows by repeating row 0; returns (batch, valid)."""
  valid = len(next(iter(batch.values())))
  if valid == size:
    return batch, valid
  pad = {k: np.concatenate([v, np.repeat(v[:1], size - valid, axis=0)]) for k, v in batch.items()}
  return pad, valid
