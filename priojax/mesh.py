"""Data-parallel placement: one mesh axis over every device of every process.

Parameters are replicated, batches are split along ``'data'``; jitted
functions follow their inputs' shardings, so the same code runs on one CPU,
eight fake CPU devices in tests, a GPU/TPU slice, or several processes
(distributed.py). The mesh orders devices by process, so process ``p``
holds rows ``[p * B / P, (p + 1) * B / P)`` of a global batch of ``B`` rows
(``process_rows``): a pool read in process shares is the same global batch,
row for row, as one read by a single process.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
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
  devices = sorted(devices, key=lambda d: (d.process_index, d.id))
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_multiple(mesh: Mesh, batch_size: int) -> int:
  """``batch_size`` rounded up so that every device gets the same share."""
  n = mesh.devices.size
  return -(-batch_size // n) * n


def process_rows(global_rows: int) -> tuple[int, int]:
  """(first row, rows) of this process's share of a global batch."""
  share = global_rows // jax.process_count()
  return jax.process_index() * share, share


def shard_batch(mesh: Mesh, tree):
  """Places a pytree of host arrays with a leading batch axis across the mesh
  (in a multi-process run, every process passes the same arrays)."""
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return jax.device_put(tree, sharding)


def from_process_rows(mesh: Mesh, tree, global_rows: int):
  """A global batch of ``global_rows`` rows from each process's own share
  (``process_rows``): no process holds, or reads, the others' rows."""
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return jax.tree.map(lambda a: jax.make_array_from_process_local_data(
      sharding, a, (global_rows,) + a.shape[1:]), tree)


def fetch(tree):
  """Host copies of (possibly multi-process) arrays, whole, on every process."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return jax.tree.map(
      lambda a: np.asarray(a) if a.is_fully_addressable or a.is_fully_replicated
      else np.asarray(multihost_utils.process_allgather(a, tiled=True)), tree)


def replicate(mesh: Mesh, tree):
  return jax.device_put(tree, NamedSharding(mesh, P()))


def pad_batch(batch: dict[str, np.ndarray], size: int) -> tuple[dict[str, np.ndarray], int]:
  """Pads a short batch to ``size`` rows by repeating row 0; returns (batch, valid)."""
  valid = len(next(iter(batch.values())))
  if valid == size:
    return batch, valid
  pad = {k: np.concatenate([v, np.repeat(v[:1], size - valid, axis=0)]) for k, v in batch.items()}
  return pad, valid
