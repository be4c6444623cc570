"""How the benchmarks time, count FLOPs and read memory: one definition each,
so that the two sides of every comparison are measured the same way."""

from __future__ import annotations

import os
import resource
import time
from typing import Callable

import jax

# 2 cores x 2.45 GHz x 32 fp32 flop/cycle (two 8-wide AVX2 FMA units) on
# the reference machine; pass --peak_gflops for another CPU.
REFERENCE_PEAK_GFLOPS = 2 * 2.45 * 32


def interleaved_best(sides: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
  """Best wall time (s) of ``repeats`` calls of each side, the sides taking
  turns, so that a slow spell of the machine hits both rather than one."""
  best = {name: float('inf') for name in sides}
  for _ in range(repeats):
    for name, fn in sides.items():
      start = time.perf_counter()
      fn()
      best[name] = min(best[name], time.perf_counter() - start)
  return best


def program_flops(jitted, *args) -> float:
  """FLOPs of one call over all devices, from XLA's cost analysis of the
  program before it is split over the devices (the compiled, partitioned
  program counts one device's share); nothing is compiled."""
  cost = jitted.lower(*args).cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jaxlibs: one dict per program
    cost = cost[0]
  return float(cost.get('flops', float('nan'))) if cost else float('nan')


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_line() -> str:
  import platform  # noqa: PLC0415

  return (f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, '
          f'jax {jax.__version__} on {jax.devices()[0].platform} x{jax.device_count()}')


def torch_or_none():
  """The torch module, or None when the optional baseline is not installed."""
  try:
    import torch  # noqa: PLC0415
  except ImportError:
    print('PyTorch not installed: no eager baseline (pip install -e ".[bench]", i.e. torch==2.13.0)')
    return None
  return torch


def ratio(ours: float, theirs: float | None) -> str:
  """A table cell: ours / theirs, or '-' where the other side did not run."""
  return f'{ours / theirs:.2f}' if theirs else '-'


def cell(value: float | None, spec: str) -> str:
  return format(value, spec) if value else '-'


def print_table_head(columns: list[str], text_columns: int = 0) -> None:
  """A markdown table's header; columns after the first ``text_columns`` are
  numbers, right-aligned."""
  print()
  print('| ' + ' | '.join(columns) + ' |')
  print('|' + '---|' * text_columns + '---:|' * (len(columns) - text_columns))
