"""The labelled set: one entry per revealed tile, with a hash of its mask.

A round's entries are recorded before the U-Net trains on them; a resumed run
reads the labels again and proves, by the hash, that it trains on the same
ones. The ledger is a plain ``{tile id: LedgerEntry}`` mapping that the
functions here return anew, never change in place.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterable, Mapping

import numpy as np

from priojax import rngs
from priojax.errors import DataError, WorkdirError

Ledger = Mapping[int, 'LedgerEntry']


def mask_hash(mask: np.ndarray) -> str:
  m = np.ascontiguousarray(mask, np.uint8)
  return hashlib.sha256(m.tobytes() + str(m.shape).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
  id: int
  round: int
  source: str  # 'oracle' on a benchmark; 'import:<file>' for human labels
  sha256: str
  calibration: bool  # reserved for the IoU head, not for U-Net fine-tuning
  # True IoU of the model that picked the tile, once its mask is known
  # (None in ledgers written before it was recorded).
  iou_at_pick: float | None = None
  # The IoU head's prediction for the tile when it was picked (None in
  # ledgers written before it was recorded): beside ``iou_at_pick``, how
  # well the head ranks target tiles that no model had trained on.
  pred_iou_at_pick: float | None = None

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def calibration_flags(seed: int, ids, fraction: float) -> np.ndarray:
  """Per tile (not per pick order): hold these labels out of U-Net training
  so that the IoU head sees tiles the U-Net is not fitting."""
  return rngs.tile_uniforms(seed, 'calibration', ids) < fraction


def round_entries(ids, masks, sources: list[str], round_index: int, *, seed: int,
                  holdout_fraction: float, iou_at_pick=None, pred_iou_at_pick=None) -> list[LedgerEntry]:
  """The ledger entries of one round's revealed masks."""
  held_out = calibration_flags(seed, ids, holdout_fraction)

  def floats(values):
    return [None] * len(ids) if values is None else [float(v) for v in values]

  return [LedgerEntry(id=int(i), round=round_index, source=source, sha256=mask_hash(mask),
                      calibration=bool(c), iou_at_pick=a, pred_iou_at_pick=q)
          for i, mask, source, c, a, q in zip(ids, masks, sources, held_out, floats(iou_at_pick),
                                              floats(pred_iou_at_pick))]


def with_entries(ledger: Ledger, entries: Iterable[LedgerEntry], where: str) -> dict[int, LedgerEntry]:
  """A new ledger holding ``entries`` too; a tile labelled twice is an
  inconsistent workdir."""
  out = dict(ledger)
  for entry in entries:
    if entry.id in out:
      raise WorkdirError(f'{where}: tile {entry.id} is labelled in round {entry.round} and already '
                         f'in round {out[entry.id].round}; the workdir is inconsistent')
    out[entry.id] = entry
  return out


def to_json(ledger: Ledger) -> list[dict]:
  return [ledger[i].to_json() for i in sorted(ledger)]


def from_json(entries: list[dict]) -> dict[int, LedgerEntry]:
  return {e['id']: LedgerEntry(**e) for e in entries}


def ids(ledger: Ledger, *, calibration: bool | None = None) -> list[int]:
  """Sorted tile ids; only the calibration (or only the fitting) ones when asked."""
  return sorted(i for i, e in ledger.items() if calibration is None or e.calibration == calibration)


def verify_labels(where: str, entries: list[LedgerEntry], revealed: dict[str, np.ndarray]) -> None:
  """Labels read again on resume must be the ones the ledger recorded."""
  for entry, mask in zip(entries, revealed.get('mask', [])):
    if mask_hash(mask) != entry.sha256:
      raise DataError(f'{where}: the mask of tile {entry.id} changed since round {entry.round} '
                      f'(hash {mask_hash(mask)} != {entry.sha256}, from {entry.source})')
