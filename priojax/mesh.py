"""Data-parallel placement: one mesh axis over every device.

Parameters are replicated, batches are split along ``'data'``; jitted
functions follow their inputs' shardings, so the same code runs on one CPU,
eight fake CPU devices in tests, or a GPU/TPU slice.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def cpu_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def use_cpu_devices(count: int = 0) -> int:
  """Splits the host CPU into ``count`` XLA devices (0: one per core) before
  JAX starts its backends; returns the count asked for.

  Why: XLA:CPU runs a convolution over a large image with small channel
  counts (a U-Net's outer levels) on one thread, so one CPU device leaves
  the other cores idle there. With one device per core, the mesh splits
  every batch across the cores and each core runs its share: the same
  data-parallel code as on a GPU/TPU slice (benchmarks/train_step.py). A
  device count already forced with ``XLA_FLAGS`` is left alone.
  """
  count = count or cpu_cores()
  if 'xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', ''):
    return count
  try:
    jax.config.update('jax_num_cpu_devices', count)
  except RuntimeError as e:  # backends already initialised: keep what they have
    logging.warning('cannot split the CPU into %d devices now (%s)', count, e)
  return count


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
