"""What earlier rounds saw of the pool: each round's predicted IoU per tile.

Every formula gets it as ``SelectionContext.history``; those that read how
a tile's predicted IoU moves as the model learns (``iou_trend``) use it.
Round r's row is the predicted IoU of every pool tile as scored in round r,
i.e. by the model of round r - 1, before round r's selection. The history
is part of the committed round state (an item of the round's orbax
checkpoint, beside the train state and the ledger), so a resumed run reads
exactly the history an uninterrupted one would; the current round's
scores are the ``PoolStats`` themselves, not a row here yet.

Rows are kept in tile-id order, so the history does not depend on the order
in which the pool was scored; ``aligned`` gives them in any other order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from priojax.errors import SelectionError


@dataclasses.dataclass(frozen=True)
class PoolHistory:
  ids: np.ndarray  # [N] int64, sorted
  rounds: np.ndarray  # [R] the round each row was scored in
  pred_iou: np.ndarray  # [R, N] float32

  @classmethod
  def empty(cls) -> 'PoolHistory':
    return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32))

  def __len__(self) -> int:
    return len(self.rounds)

  def appended(self, round_index: int, ids: np.ndarray, pred_iou: np.ndarray) -> 'PoolHistory':
    """The history with round ``round_index``'s scores of the pool added."""
    ids = np.asarray(ids, np.int64)
    order = np.argsort(ids, kind='stable')
    ids, row = ids[order], np.asarray(pred_iou, np.float32)[order]
    if len(self) and not np.array_equal(ids, self.ids):
      raise SelectionError(f'round {round_index} scored a different pool ({len(ids)} tiles) than the '
                           f'earlier rounds ({len(self.ids)} tiles); the pool must stay the same')
    if len(self) and round_index <= self.rounds[-1]:
      raise SelectionError(f'round {round_index} is already in the pool history (rounds '
                           f'{self.rounds.tolist()})')
    return PoolHistory(ids, np.append(self.rounds, round_index).astype(np.int64),
                       np.concatenate([self.pred_iou.reshape(len(self), len(ids)), row[None]]))

  def aligned(self, ids: np.ndarray) -> np.ndarray:
    """``pred_iou`` [R, len(ids)] with columns in the order of ``ids``."""
    ids = np.asarray(ids, np.int64)
    if not len(self):
      return np.zeros((0, len(ids)), np.float32)
    cols = np.searchsorted(self.ids, ids)
    cols = np.minimum(cols, len(self.ids) - 1)
    if not np.array_equal(self.ids[cols], ids):
      missing = ids[self.ids[cols] != ids]
      raise SelectionError(f'pool history has no rows for tile ids {missing[:5].tolist()}')
    return self.pred_iou[:, cols]

  def to_arrays(self) -> dict[str, np.ndarray] | None:
    """For the round checkpoint (None while empty: orbax stores no empty arrays)."""
    if not len(self):
      return None
    return {'ids': self.ids, 'rounds': self.rounds, 'pred_iou': self.pred_iou}

  @classmethod
  def from_arrays(cls, arrays: dict | None) -> 'PoolHistory':
    if arrays is None:
      return cls.empty()
    return cls(np.asarray(arrays['ids'], np.int64), np.asarray(arrays['rounds'], np.int64),
               np.asarray(arrays['pred_iou'], np.float32))
