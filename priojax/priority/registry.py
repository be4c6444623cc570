"""The registry of priority formulas and the one protocol they share.

Every formula is ``pick(stats, ctx) -> Picks``: the ``ctx.k`` pool rows to
label, in pick order, with the priority each had when picked. Most formulas
are a plain score per tile (higher = label first); register those with
``@register(name, reads=...)`` and the registry wraps them by ``top_k``.
Formulas whose scores change after every pick (core-set, BADGE,
``iou_diversity``) return their ``Picks`` themselves: register them with
``@register_picker``. ``reads`` is always stated: scoring computes exactly
those statistics (tile_stats.py) and checks them finite first. Everything
else follows from it: a formula reading an MC-dropout statistic
(``bald/*``, ``mc_variance/*``) gets the dropout checks and passes, and one
that names ``'reference_embedding'`` gets ``ctx.reference_embedding``
filled; reading it without naming it is an error, not an empty array.

Users register their own with the decorators, in a module named as
``'package.module:function'`` in the config (importing it registers them);
registering a function of the same module and name again (a notebook cell
run twice) replaces it. ``ctx.hparam(name)`` reads the run's
``config.priority.params`` too, so a formula's own constants are set in the
config. The statistics a formula receives are read-only.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from priojax import rngs, uncertainty
from priojax.errors import SelectionError

# The hparams a run sets (config.priority), their defaults for a direct
# caller, and what ``reads`` may name in braces: 'entropy/{aggregation}'.
DEFAULT_HPARAMS = {'aggregation': 'mean', 'alpha': 1.0, 'beta': 1.0,
                   'acquisition': 'top_k', 'power_beta': 1.0}
ACQUISITIONS = ('top_k', 'power')
# What ``reads`` may name besides the pool statistics: inputs of the round
# (the embeddings of the source reference tiles and the labelled tiles).
REFERENCE = 'reference_embedding'


class UndeclaredInput:
  """Stands for a context input the formula did not name in ``reads``:
  any use of it is one clear error, never a silently empty array."""

  def __init__(self, what: str, formula: str):
    self._message = (f'priority formula {formula!r} reads ctx.{what} without declaring it; add '
                     f'{what!r} to its reads=(...)')

  def _refuse(self, *args, **kwargs):
    raise SelectionError(self._message)

  __array__ = __len__ = __iter__ = __getitem__ = __jax_array__ = _refuse

  def __getattr__(self, name):
    if name.startswith('__'):
      raise AttributeError(name)
    self._refuse()


@dataclasses.dataclass(frozen=True)
class SelectionContext:
  """What a formula may read besides the pool statistics."""

  k: int  # how many tiles to pick this round
  rng: jax.Array  # fold_in(seed, round, 'select')
  selectable: np.ndarray  # [N] bool: False for tiles already labelled
  # [M, D]: source tiles and labelled tiles (for formulas reading REFERENCE)
  reference_embedding: Any = None
  # The run's config.priority hparams and its ``params`` (a formula's own).
  hparams: dict[str, Any] = dataclasses.field(default_factory=dict)
  # [R, N]: the pool's predicted IoU as scored in each earlier round (oldest
  # first, columns in the order of the stats; pool_history.py); no rows in
  # round 1.
  history: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), np.float32))

  def hparam(self, name: str, default: Any = None) -> Any:
    """The run's value, else the one default of DEFAULT_HPARAMS, else (for a
    user formula's own hparam) ``default``."""
    if name in self.hparams:
      return self.hparams[name]
    if name in DEFAULT_HPARAMS:
      return DEFAULT_HPARAMS[name]
    if default is None:
      known = sorted(set(DEFAULT_HPARAMS) | set(self.hparams))
      raise SelectionError(f'unknown hparam {name!r}; known: {known} (set a formula\'s own in '
                           'config.priority.params)')
    return default


@dataclasses.dataclass(frozen=True)
class Picks:
  positions: np.ndarray  # [k] pool rows in pick order
  priorities: np.ndarray  # [k] each pick's priority when it was picked
  scores: np.ndarray | None = None  # [N] every tile's priority (score formulas only)
  # A few numbers the formula reports about this round's choice (e.g. which
  # phase a budget-aware formula is in), recorded as ``select/<name>``.
  info: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Formula:
  name: str
  pick: Callable[[Any, SelectionContext], Picks]
  # The statistics read (tile_stats.py), and REFERENCE if it measures
  # distances to the reference set. '{aggregation}' (or any other hparam in
  # braces) is filled from the run's hparams.
  reads: tuple[str, ...]
  source: Callable | None = None  # the user's function, as registered
  is_score: bool = False  # a score per tile, picked by top_k (or a power draw)

  @property
  def needs_reference(self) -> bool:
    """Wants ``ctx.reference_embedding`` filled."""
    return REFERENCE in self.reads

  @property
  def needs_mc(self) -> bool:
    """Reads MC-dropout statistics ('bald/*', 'mc_variance/*')."""
    return _reads_mc(self.reads)

  def stat_names(self, hparams: dict[str, Any]) -> tuple[str, ...]:
    """The pool statistics of ``reads``, with the hparams filled in."""
    hparams = {**DEFAULT_HPARAMS, **hparams}
    try:
      return tuple(r.format_map(hparams) for r in self.reads if r != REFERENCE)
    except (KeyError, ValueError) as e:
      raise SelectionError(f'priority formula {self.name!r}: reads={self.reads} names an unknown '
                           f'hparam ({e}); known: {sorted(hparams)}') from None


# Folded into the round's selection key for the tie-break hash and for the
# power draw, so that neither is the key a formula itself draws from
# (random's per-tile uniforms).
_TIE_BREAK = 0x7469
_POWER = 0x706f77


def power_keys(scores: np.ndarray, ids: np.ndarray, rng: jax.Array, beta: float) -> np.ndarray:
  """Stochastic power acquisition (Kirsch et al., TMLR 2023): the top k of
  β·log s_i + Gumbel_i is a draw of k tiles without replacement with
  p(i) ∝ s_i^β (Gumbel-top-k); the noise is keyed by tile id, so the draw
  does not depend on the pool's order. Scores <= 0 get probability 0."""
  gumbel = np.asarray(jax.vmap(lambda i: jax.random.gumbel(jax.random.fold_in(rng, i)))(
      rngs.id_keys(ids)), np.float64)
  with np.errstate(divide='ignore'):
    return np.where(scores > 0, beta * np.log(np.maximum(scores, 1e-300)) + gumbel, -np.inf)


@functools.partial(jax.jit, static_argnames=('k',))
def _kth_largest(values, selectable, *, k: int):
  return jax.lax.top_k(jnp.where(selectable, values, -jnp.inf), k)[0][k - 1]


def top_k_candidates(rank: np.ndarray, selectable: np.ndarray, k: int) -> np.ndarray:
  """The selectable rows that can be among the k of highest (float64)
  ``rank``: those whose float32 rank is at least the k-th largest float32
  rank, found on device (lax.top_k). Rounding to float32 is monotone, so no
  row below that threshold outranks k rows at or above it: the exact order
  is then settled on these rows alone (k plus the float32 ties)."""
  if k == 0:
    return np.zeros(0, np.int64)
  with np.errstate(over='ignore'):  # beyond float32's range: inf, still in order
    rank32 = rank.astype(np.float32)
  threshold = np.float32(_kth_largest(rank32, selectable, k=k))
  return np.flatnonzero(selectable & (rank32 >= threshold))


def top_k(name: str, score: Callable) -> Callable[[Any, SelectionContext], Picks]:
  """A score formula as a picker: the k selectable tiles of highest score
  (or, with hparam acquisition='power', k drawn with p ∝ score^power_beta).
  Ties go by a hash of the tile id keyed by the round's selection key, then
  by the id: independent of pool order, and not the storage or raster order
  that ids follow (a model that predicts nothing ties every tile)."""

  def pick(stats, ctx: SelectionContext) -> Picks:
    scores = np.asarray(score(stats, ctx), np.float64)
    if scores.shape != (len(stats),):
      raise SelectionError(f'priority formula {name!r} returned shape {scores.shape}, '
                           f'expected ({len(stats)},)')
    bad = ~np.isfinite(scores) & ctx.selectable
    if bad.any():
      raise SelectionError(f'priority formula {name!r} gave non-finite priorities for '
                           f'{int(bad.sum())} tiles (ids {stats.ids[bad][:5].tolist()})')
    rank = scores
    acquisition = ctx.hparam('acquisition')
    if acquisition == 'power':
      rank = power_keys(scores, stats.ids, jax.random.fold_in(ctx.rng, _POWER), float(ctx.hparam('power_beta')))
    elif acquisition != 'top_k':
      raise SelectionError(f'hparam acquisition={acquisition!r}; expected one of {ACQUISITIONS}')
    candidates = top_k_candidates(rank, np.asarray(ctx.selectable, bool), ctx.k)
    ids = stats.ids[candidates]
    tie = rngs.keyed_bits(jax.random.fold_in(ctx.rng, _TIE_BREAK), ids)
    order = np.lexsort((ids, tie, -rank[candidates]))
    positions = candidates[order[:ctx.k]]
    return Picks(positions, scores[positions], scores)

  return pick


_REGISTRY: dict[str, Formula] = {}


def _reads_mc(reads: tuple[str, ...]) -> bool:
  return any(r.split('/')[0] in uncertainty.MC_MAPS for r in reads)


def _same_function(a: Callable | None, b: Callable | None) -> bool:
  """The same function, or the same one defined again (a re-run cell or a
  reloaded module): same module and qualified name."""
  return a is b or (a is not None and b is not None
                    and (getattr(a, '__module__', None), getattr(a, '__qualname__', None))
                    == (getattr(b, '__module__', None), getattr(b, '__qualname__', None)))


def _add(formula: Formula) -> None:
  old = _REGISTRY.get(formula.name)
  if old is not None and not _same_function(old.source, formula.source):
    raise ValueError(f'priority formula {formula.name!r} is already registered (by '
                     f'{old.source.__module__}.{old.source.__qualname__}); choose another name')
  _REGISTRY[formula.name] = formula


def _reads(name: str, reads, needs_reference: bool | None, needs_mc: bool | None) -> tuple[str, ...]:
  """``reads`` checked: one name or a sequence of names; the old flags
  agree with it (both now follow from ``reads``)."""
  if isinstance(reads, str):
    reads = (reads,)
  if not isinstance(reads, (tuple, list)) or not all(isinstance(r, str) for r in reads):
    raise ValueError(f'priority formula {name!r}: reads={reads!r}; expected a tuple of statistic names, '
                     "e.g. reads=('pred_iou',)")
  reads = tuple(reads)
  if needs_reference and REFERENCE not in reads:
    reads += (REFERENCE,)
  if needs_reference is False and REFERENCE in reads:
    raise ValueError(f'priority formula {name!r}: needs_reference=False but reads names {REFERENCE!r}')
  if needs_mc is not None and bool(needs_mc) != _reads_mc(reads):
    raise ValueError(f'priority formula {name!r}: needs_mc={needs_mc} but reads={reads} '
                     f'{"names no" if needs_mc else "names an"} MC-dropout statistic '
                     f'({", ".join(uncertainty.MC_MAPS)}); drop needs_mc, it follows from reads')
  return reads


def register(name: str, *, reads, needs_reference: bool | None = None,
             needs_mc: bool | None = None) -> Callable:
  """Decorator for a score formula ``f(stats, ctx) -> [N] scores``:
  ``@register('my_formula', reads=('entropy',))``. (``needs_reference``
  and ``needs_mc`` are accepted for old code; both follow from ``reads``.)"""
  reads = _reads(name, reads, needs_reference, needs_mc)

  def wrap(fn: Callable) -> Callable:
    _add(Formula(name, top_k(name, fn), reads, fn, is_score=True))
    return fn

  return wrap


def register_picker(name: str, *, reads, needs_reference: bool | None = None,
                    needs_mc: bool | None = None) -> Callable:
  """Decorator for a formula that picks itself: ``f(stats, ctx) -> Picks``."""
  reads = _reads(name, reads, needs_reference, needs_mc)

  def wrap(fn: Callable) -> Callable:
    _add(Formula(name, fn, reads, fn))
    return fn

  return wrap


def names() -> list[str]:
  return sorted(_REGISTRY)


def get(name: str) -> Formula:
  """A registered formula, or ``'module:function'``: the module is imported
  (its decorators register the function) and the function looked up."""
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
    registered = [f for f in _REGISTRY.values() if _same_function(f.source, fn)]
    if registered:
      return registered[0]
    raise SelectionError(f'priority formula {name!r} is not registered, so what it reads is unknown; '
                         f"decorate it with @priojax.priority.register('<name>', reads=(...)) in "
                         f'module {module_name!r}')
  raise SelectionError(f'unknown priority formula {name!r}; registered: {", ".join(names())} '
                       "(or give 'module:function')")
