"""Turning a formula's priorities into the tiles to label this round.

Score formulas: top-k of the selectable tiles by priority, ties broken by
the smaller tile id (so the result does not depend on pool order). Greedy
formulas pick themselves. Either way: never a labelled tile, never a tile
twice, and k may not exceed what is left.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from priojax.errors import SelectionError
from priojax.priority.registry import Formula, SelectionContext
from priojax.scoring import MissingStatError, PoolStats


@dataclasses.dataclass(frozen=True)
class Selection:
  ids: np.ndarray  # [k] tile ids in rank order
  priorities: np.ndarray  # [k]
  pred_iou: np.ndarray  # [k]
  scores: np.ndarray | None = None  # [N] every pool tile's priority (score formulas only)

  def to_json(self) -> dict:
    return {
        'ids': [int(i) for i in self.ids],
        'priorities': [float(p) for p in self.priorities],
        'pred_iou': [float(p) for p in self.pred_iou],
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
  empty = np.zeros(0)
  if k == 0:
    return Selection(np.zeros(0, np.int64), empty, empty)
  try:
    check_stats(stats, formula.stat_names(ctx.hparams), selectable)
    if formula.greedy:
      picks, prios = formula.fn(stats, ctx)
      picks, prios = np.asarray(picks), np.asarray(prios, np.float64)
    else:
      scores = np.asarray(formula.fn(stats, ctx), np.float64)
  except MissingStatError as e:
    raise MissingStatError(f'priority formula {formula.name!r} {e}') from None
  if not formula.greedy:
    if scores.shape != (len(stats),):
      raise SelectionError(f'priority formula {formula.name!r} returned shape {scores.shape}, '
                           f'expected ({len(stats)},)')
    bad = ~np.isfinite(scores) & selectable
    if bad.any():
      raise SelectionError(f'priority formula {formula.name!r} gave non-finite priorities for '
                           f'{int(bad.sum())} tiles (ids {stats.ids[bad][:5].tolist()})')
    candidates = np.flatnonzero(selectable)
    order = np.lexsort((stats.ids[candidates], -scores[candidates]))
    picks = candidates[order[:k]]
    prios = scores[picks]
  all_scores = None if formula.greedy else scores
  if len(np.unique(picks)) != k or not selectable[picks].all():
    raise SelectionError(f'priority formula {formula.name!r} picked a labelled or repeated tile')
  return Selection(stats.ids[picks].astype(np.int64), prios, np.asarray(stats.pred_iou)[picks],
                   all_scores)
