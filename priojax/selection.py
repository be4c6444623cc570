"""Turning a formula's picks into the tiles to label this round.

Every formula returns ``Picks`` (priority/registry.py; score formulas are
wrapped by top-k, ties by a keyed hash of the tile id). Here, whatever the formula:
its statistics are checked finite first, and its picks are checked to be k
distinct selectable tiles (never a labelled tile, never one twice); k may
not exceed what is left.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from priojax.errors import SelectionError
from priojax.priority.registry import REFERENCE, Formula, SelectionContext, UndeclaredInput
from priojax.scoring import MissingStatError, PoolStats


@dataclasses.dataclass(frozen=True)
class Selection:
  ids: np.ndarray  # [k] tile ids in rank order
  priorities: np.ndarray  # [k]
  pred_iou: np.ndarray  # [k]
  scores: np.ndarray | None = None  # [N] every pool tile's priority (score formulas only)
  seconds: float = 0.0  # the formula's time to pick
  info: dict[str, float] = dataclasses.field(default_factory=dict)  # Picks.info

  def to_json(self) -> dict:
    return {
        'ids': [int(i) for i in self.ids],
        'priorities': [float(p) for p in self.priorities],
        'pred_iou': [float(p) for p in self.pred_iou],
        **({'info': {k: float(v) for k, v in self.info.items()}} if self.info else {}),
    }


def check_stats(stats: PoolStats, fields: tuple[str, ...], selectable: np.ndarray) -> None:
  for field in fields:
    values = np.asarray(stats[field])
    rows = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1) & selectable
    if rows.any():
      bad = stats.ids[rows]
      raise SelectionError(
          f'pool stats field {field!r} is not finite for {int(rows.sum())} tiles '
          f'(ids {", ".join(str(int(i)) for i in bad[:5])}{" ..." if len(bad) > 5 else ""}); '
          'expected finite values: check the model checkpoint and the input tiles')


def select(formula: Formula, stats: PoolStats, ctx: SelectionContext) -> Selection:
  selectable = np.asarray(ctx.selectable, bool)
  if selectable.shape != (len(stats),):
    raise SelectionError(f'selectable mask has shape {selectable.shape}, expected ({len(stats)},)')
  k = ctx.k
  if not isinstance(k, (int, np.integer)) or k < 0:
    raise SelectionError(f'k must be a non-negative integer, got {k!r}')
  left = int(selectable.sum())
  if k > left:
    raise SelectionError(f'k={k} exceeds the {left} unlabelled tiles left in the pool')
  if k == 0:
    empty = np.zeros(0)
    return Selection(np.zeros(0, np.int64), empty, empty)
  if not formula.needs_reference:
    ctx = dataclasses.replace(ctx, reference_embedding=UndeclaredInput(REFERENCE, formula.name))
  history = np.asarray(ctx.history).view()
  history.flags.writeable = False
  ctx = dataclasses.replace(ctx, history=history)
  start = time.perf_counter()
  try:
    check_stats(stats, formula.stat_names(ctx.hparams), selectable)
    picks = formula.pick(stats, ctx)
  except MissingStatError as e:
    raise MissingStatError(f'priority formula {formula.name!r} {e}') from None
  positions = np.asarray(picks.positions)
  if (positions.shape != (k,) or not np.issubdtype(positions.dtype, np.integer)
      or not ((positions >= 0) & (positions < len(stats))).all()
      or len(np.unique(positions)) != k or not selectable[positions].all()):
    raise SelectionError(f'priority formula {formula.name!r} picked a labelled or repeated tile '
                         f'(or not k={k} pool rows)')
  info = {str(k): float(v) for k, v in dict(picks.info).items()}
  return Selection(stats.ids[positions].astype(np.int64), np.asarray(picks.priorities, np.float64),
                   np.asarray(stats.pred_iou)[positions], picks.scores, time.perf_counter() - start, info)
