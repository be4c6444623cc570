"""The registry of priority formulas and the context they are called with.

A formula is a pure function ``f(stats, ctx) -> scores`` with ``scores`` of
shape ``[N]`` (higher = label first). A *greedy* formula instead returns
``(picks, priorities)``, the ``ctx.k`` pool positions in pick order and the
priority each had when it was picked, because its scores change after every
pick. Users register their own with ``@register('name')``, or name any
function as ``'package.module:function'`` in the config.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import jax
import numpy as np

from priojax.errors import SelectionError


# What a formula's ``reads`` may name in braces when a run does not set it.
DEFAULT_HPARAMS = {'aggregation': 'mean'}


@dataclasses.dataclass(frozen=True)
class SelectionContext:
  """What a formula may read besides the pool statistics."""

  k: int  # how many tiles to pick this round
  rng: jax.Array  # fold_in(seed, round, 'select')
  selectable: np.ndarray  # [N] bool: False for tiles already labelled
  reference_embedding: np.ndarray  # [M, D]: source tiles and labelled tiles
  hparams: dict[str, Any] = dataclasses.field(default_factory=dict)

  def hparam(self, name: str, default: Any) -> Any:
    return self.hparams.get(name, default)


@dataclasses.dataclass(frozen=True)
class Formula:
  name: str
  fn: Callable
  greedy: bool = False
  # The statistics read (tile_stats.py): scoring computes these and only
  # these, and checks them finite first. '{aggregation}' (or any other
  # hparam in braces) is filled from the run's hparams: 'entropy/{aggregation}'.
  reads: tuple[str, ...] = ('pred_iou',)
  needs_reference: bool = False  # wants ctx.reference_embedding filled
  needs_mc: bool = False  # wants MC-dropout statistics ('bald/*', 'mc_variance/*')

  def stat_names(self, hparams: dict[str, Any]) -> tuple[str, ...]:
    """``reads`` with the hparams filled in."""
    hparams = {**DEFAULT_HPARAMS, **hparams}
    try:
      return tuple(r.format_map(hparams) for r in self.reads)
    except (KeyError, ValueError) as e:
      raise SelectionError(f'priority formula {self.name!r}: reads={self.reads} names an unknown '
                           f'hparam ({e}); known: {sorted(hparams)}') from None


_REGISTRY: dict[str, Formula] = {}


def register(name: str, *, greedy: bool = False, reads: tuple[str, ...] = ('pred_iou',),
             needs_reference: bool = False, needs_mc: bool = False) -> Callable:
  """Decorator: ``@register('my_formula', reads=('entropy',))``."""

  def wrap(fn: Callable) -> Callable:
    if name in _REGISTRY and _REGISTRY[name].fn is not fn:
      raise ValueError(f'priority formula {name!r} is already registered')
    _REGISTRY[name] = Formula(name, fn, greedy, tuple(reads), needs_reference, needs_mc)
    return fn

  return wrap


def names() -> list[str]:
  return sorted(_REGISTRY)


def get(name: str) -> Formula:
  """A registered formula, or ``'module:function'`` imported on demand."""
  if name in _REGISTRY:
    return _REGISTRY[name]
  if ':' in name:
    module_name, _, attr = name.partition(':')
    try:
      module = importlib.import_module(module_name)
    except ImportError as e:
      raise SelectionError(f'priority formula {name!r}: cannot import module {module_name!r} ({e})') from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
      raise SelectionError(f'priority formula {name!r}: module {module_name!r} has no function {attr!r}')
    registered = [f for f in _REGISTRY.values() if f.fn is fn]
    if registered:
      return registered[0]
    return Formula(name, fn, reads=('pred_iou', 'entropy', 'fg_fraction', 'embedding', 'pred_loss'))
  raise SelectionError(f'unknown priority formula {name!r}; registered: {", ".join(names())} '
                       "(or give 'module:function')")
