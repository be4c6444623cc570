"""Named crash points, for testing that a killed run resumes exactly.

Set ``PRIOJAX_CRASH_AT=<point>:<round>`` (e.g. ``selected:2``) and the
process SIGKILLs itself when the loop reaches that point of that round: no
cleanup, no flushing, as in a pre-emption. Points, in the order a round
reaches them:

=====================  ====================================================
``scoring``            mid-scoring: after the pool's second batch
``scored``             pool statistics persisted
``selected``           selection persisted (and exported, for GeoTIFF runs)
``labelled``           the round's labels persisted in its ledger entries
``fine_tuning``        mid-fine-tuning: after half of the U-Net steps
``unet_trained``       U-Net fine-tuned, heads not yet refitted
``fine_tuned``         fine-tuned train state persisted
``evaluated``          the round's metrics record persisted
``checkpoint_writing`` orbax checkpoint fully written to its temporary
                       folder, not yet renamed into place
``committed``          checkpoint committed, metrics.jsonl not yet written
``metrics_written``    metrics.jsonl line appended, round folder not removed
=====================  ====================================================

Unset, each point costs one dict lookup.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Callable, Iterator

ENV = 'PRIOJAX_CRASH_AT'
POINTS = ('scoring', 'scored', 'selected', 'labelled', 'fine_tuning', 'unet_trained', 'fine_tuned',
          'evaluated', 'checkpoint_writing', 'committed', 'metrics_written')


def armed(point: str, round_index: int) -> bool:
  spec = os.environ.get(ENV)
  if not spec:
    return False
  name, _, when = spec.partition(':')
  if name not in POINTS:
    raise ValueError(f'{ENV}={spec!r}: unknown crash point {name!r}; expected one of {POINTS}')
  return name == point and int(when or 0) == round_index


def _die() -> None:
  os.kill(os.getpid(), signal.SIGKILL)


def crash_point(point: str, round_index: int) -> None:
  if armed(point, round_index):
    _die()


def on_step(point: str, round_index: int, at: int) -> Callable[[int], None] | None:
  """A per-step callback (for the scorer's batches or the trainer's steps)
  that dies once step ``at`` is done; None when this point is not armed."""
  if not armed(point, round_index):
    return None

  def callback(step: int) -> None:
    if step >= at:
      _die()

  return callback


@contextlib.contextmanager
def inside_checkpoint_write(round_index: int) -> Iterator[None]:
  """Dies inside orbax's save, between writing the checkpoint into its
  temporary folder and renaming that folder to its final name."""
  if not armed('checkpoint_writing', round_index):
    yield
    return
  from orbax.checkpoint._src.path import atomicity  # noqa: PLC0415  (only when armed)

  original = atomicity.AtomicRenameTemporaryPath.finalize

  async def finalize(self, *args, **kwargs):
    del self, args, kwargs
    _die()

  atomicity.AtomicRenameTemporaryPath.finalize = finalize
  try:
    yield
  finally:
    atomicity.AtomicRenameTemporaryPath.finalize = original
