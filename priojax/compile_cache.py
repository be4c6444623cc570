"""Jitted functions built once per process per static configuration.

A comparison runs many strategies and seeds in one process, each through a
fresh ``Experiment``; if each built its own ``jax.jit`` objects, every run
would trace (and look up or compile) the same U-Net again. Instead, the
builders of the scoring, evaluation and training functions are cached by
their static configuration (the frozen ``Networks`` and hyper-parameters),
as big_vision caches its evaluators, and every trace is counted here so
that tests can check a configuration is traced once.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable, Hashable

import jax

# (kind, static configuration) -> how often it was traced in this process.
TRACES: collections.Counter = collections.Counter()


def counted(kind: str, key: Hashable, fn: Callable) -> Callable:
  """``fn`` that counts its traces under ``(kind, key)``."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    TRACES[(kind, key)] += 1  # a Python side effect: runs at trace time only
    return fn(*args, **kwargs)

  return wrapper


def traces(kind: str | None = None) -> dict[tuple[str, Any], int]:
  """A snapshot of the trace counts (of one kind, or all)."""
  return {k: v for k, v in TRACES.items() if kind is None or k[0] == kind}


_BUILDERS: list = []


def cached(builder: Callable) -> Callable:
  """Memoises a builder of jitted functions on its (hashable) arguments."""
  memoised = functools.lru_cache(maxsize=None)(builder)
  _BUILDERS.append(memoised)
  return memoised


def clear() -> None:
  """Forgets every built function: the next use rebuilds and retraces it
  (for tests that swap a function the steps call, such as a loss)."""
  for builder in _BUILDERS:
    builder.cache_clear()


# Per-function XLA options for the CPU backend (benchmarks set them to
# measure alternatives; see benchmarks/train_step.py).
CPU_COMPILER_OPTIONS: dict[str, str] = {}


def jit(fn: Callable, **kwargs) -> Callable:
  """``jax.jit`` with this project's per-function XLA options on CPU."""
  if CPU_COMPILER_OPTIONS and jax.default_backend() == 'cpu':
    kwargs.setdefault('compiler_options', dict(CPU_COMPILER_OPTIONS))
  return jax.jit(fn, **kwargs)
