"""Named points of a run, and the hooks that watch them.

The loop, the scorer, the trainer and the checkpoint writer announce where
they are with ``point(name, **info)``; ``within(round=r)`` adds the round to
everything announced inside it. A hook is any ``fn(name, info)``: the crash
injection of the kill tests (faults.py) is one; a progress bar or a profiler
would be another. With no hook installed, a point costs one list check.

Points, in the order a round reaches them (``info`` in brackets):

=====================  ====================================================
``scoring``            mid-scoring, after each pool batch [batch]
``scored``             pool statistics persisted
``selected``           selection persisted (and exported, for GeoTIFF runs)
``labelled``           the round's labels persisted in its ledger entries
``fine_tuning``        after each U-Net step [step, steps]
``unet_trained``       U-Net fine-tuned, heads not yet refitted
``fine_tuned``         fine-tuned train state persisted
``evaluated``          the round's metrics record persisted
``checkpoint_writing`` orbax checkpoint fully written to its temporary
                       folder, not yet renamed into place
``committed``          checkpoint committed, metrics.jsonl not yet written
``metrics_written``    metrics.jsonl line appended, round folder not removed
=====================  ====================================================
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator

POINTS = ('scoring', 'scored', 'selected', 'labelled', 'fine_tuning', 'unet_trained', 'fine_tuned',
          'evaluated', 'checkpoint_writing', 'committed', 'metrics_written')

Hook = Callable[[str, dict[str, Any]], None]

_HOOKS: list[Hook] = []
_WHERE: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar('priojax_where', default={})


def add(hook: Hook) -> None:
  if hook not in _HOOKS:
    _HOOKS.append(hook)


def remove(hook: Hook) -> None:
  if hook in _HOOKS:
    _HOOKS.remove(hook)


@contextlib.contextmanager
def within(**where: Any) -> Iterator[None]:
  """Adds ``where`` (e.g. ``round=3``) to the info of every point inside."""
  token = _WHERE.set({**_WHERE.get(), **where})
  try:
    yield
  finally:
    _WHERE.reset(token)


def point(name: str, **info: Any) -> None:
  if not _HOOKS:
    return
  if name not in POINTS:
    raise ValueError(f'unknown point {name!r}; expected one of {POINTS}')
  where = {**_WHERE.get(), **info}
  for hook in list(_HOOKS):
    hook(name, where)
