"""Crash injection at the run's named points (hooks.py), for the kill tests.

Set ``PRIOJAX_CRASH_AT=<point>:<round>`` (e.g. ``selected:2``) and the
process SIGKILLs itself when a round's run reaches that point: no cleanup,
no flushing, as in a pre-emption. The two points inside a long step die part
way: ``scoring`` after the pool's second batch, ``fine_tuning`` after half of
the U-Net's steps. ``install()`` (called by ``loop.run``) adds the hook only
when the variable is set.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from priojax import hooks

ENV = 'PRIOJAX_CRASH_AT'


def _armed() -> tuple[str, int] | None:
  spec = os.environ.get(ENV)
  if not spec:
    return None
  name, _, when = spec.partition(':')
  if name not in hooks.POINTS:
    raise ValueError(f'{ENV}={spec!r}: unknown crash point {name!r}; expected one of {hooks.POINTS}')
  return name, int(when or 0)


def _reached(info: dict[str, Any]) -> bool:
  """Whether a point inside a long step is far enough along to die."""
  if 'batch' in info:
    return info['batch'] >= 2
  if 'step' in info:
    return info['step'] >= max(1, info['steps'] // 2)
  return True


_ARMED: tuple[str, int] | None = None


def _crash(name: str, info: dict[str, Any]) -> None:
  if _ARMED == (name, info.get('round')) and _reached(info):
    os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
  """Adds the crash hook when ``PRIOJAX_CRASH_AT`` is set (read now, so a
  misspelt point is an error before the run starts)."""
  global _ARMED
  _ARMED = _armed()
  if _ARMED is not None:
    hooks.add(_crash)
  else:
    hooks.remove(_crash)
