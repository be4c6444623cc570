"""Named crash points, for testing that a killed run resumes exactly.

Set ``PRIOJAX_CRASH_AT=<point>:<round>`` (e.g. ``selected:2``) and the
process SIGKILLs itself when the loop reaches that point of that round: no
cleanup, no flushing, as in a pre-emption. Points, in round order:
``scored``, ``selected``, ``revealed``, ``finetuned``, ``head_fitted``,
``metrics_written``, ``committed``. Unset, this costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = 'PRIOJAX_CRASH_AT'
POINTS = ('scored', 'selected', 'revealed', 'finetuned', 'head_fitted', 'metrics_written',
          'committed')


def crash_point(point: str, round_index: int) -> None:
  spec = os.environ.get(ENV)
  if not spec:
    return
  name, _, when = spec.partition(':')
  if name not in POINTS:
    raise ValueError(f'{ENV}={spec!r}: unknown crash point {name!r}; expected one of {POINTS}')
  if name == point and int(when or 0) == round_index:
    os.kill(os.getpid(), signal.SIGKILL)
