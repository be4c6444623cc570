"""The labelled set: every revealed tile's mask beside its ledger entry.

The masks a round learns from come from one place. A round's ``labelled``
step emits the ``LabelledSet`` of its picks (ids, masks, calibration flags,
the picking model's true IoU, where each label came from); the run's set is
the union over rounds. A resumed run rebuilds it once from the committed
ledger and the oracle, proving by each mask's hash that it holds the labels
recorded then. Every later step reads masks from here: U-Net fine-tuning
(the fitting part), the IoU head (the calibration part), the ``label_iou``
statistics and a round's pick counts. Nothing reads masks from the pool
split: with human annotators its stored masks are zeros.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from priojax import ledger as ledger_lib
from priojax.errors import WorkdirError
from priojax.ledger import LedgerEntry


class Oracle(Protocol):
  """Where labels come from (oracle.py, geo/annotations.py)."""

  name: str

  def reveal(self, ids) -> dict[str, np.ndarray]:
    ...


@dataclasses.dataclass(frozen=True)
class LabelledSet:
  """Labelled tiles in id order: ``entries[i]`` is the ledger entry of the
  tile whose mask is ``masks[i]`` ([n, H, W] uint8, read-only)."""

  entries: tuple[LedgerEntry, ...]
  masks: np.ndarray

  def __post_init__(self):
    if len(self.entries) != len(self.masks):
      raise ValueError(f'{len(self.entries)} ledger entries for {len(self.masks)} masks')
    ids = [e.id for e in self.entries]
    if ids != sorted(ids):
      raise ValueError('LabelledSet entries must be sorted by tile id')
    masks = np.ascontiguousarray(self.masks, np.uint8)
    masks.flags.writeable = False  # shared by every step of a round
    object.__setattr__(self, 'masks', masks)

  @classmethod
  def empty(cls, tile_size: int = 0) -> 'LabelledSet':
    return cls((), np.zeros((0, tile_size, tile_size), np.uint8))

  @classmethod
  def of(cls, entries, masks) -> 'LabelledSet':
    """A set from entries and their masks in any order."""
    entries = list(entries)
    masks = np.asarray(masks, np.uint8).reshape((len(entries),) + np.shape(masks)[1:])
    order = np.argsort([e.id for e in entries], kind='stable')
    return cls(tuple(entries[i] for i in order), masks[order])

  @classmethod
  def reveal(cls, ledger: ledger_lib.Ledger, oracle: Oracle, where: str) -> 'LabelledSet':
    """The committed ``ledger``'s masks, read again from ``oracle`` and
    checked against the hashes recorded when they were first revealed."""
    ids = ledger_lib.ids(ledger)
    if not ids:
      return cls.empty()
    entries = [ledger[i] for i in ids]
    revealed = oracle.reveal(ids)
    ledger_lib.verify_labels(where, entries, revealed)
    return cls(tuple(entries), revealed['mask'])

  def __len__(self) -> int:
    return len(self.entries)

  @property
  def ids(self) -> np.ndarray:
    return np.asarray([e.id for e in self.entries], np.int64)

  @property
  def calibration(self) -> np.ndarray:
    return np.asarray([e.calibration for e in self.entries], bool)

  @property
  def iou_at_pick(self) -> np.ndarray:
    """The picking model's true IoU per tile (NaN where not recorded)."""
    return np.asarray([np.nan if e.iou_at_pick is None else e.iou_at_pick for e in self.entries],
                      np.float32)

  @property
  def pred_iou_at_pick(self) -> np.ndarray:
    """The IoU head's prediction per tile when picked (NaN where not recorded)."""
    return np.asarray([np.nan if e.pred_iou_at_pick is None else e.pred_iou_at_pick for e in self.entries],
                      np.float32)

  def where(self, keep: np.ndarray) -> 'LabelledSet':
    keep = np.asarray(keep, bool)
    return LabelledSet(tuple(e for e, k in zip(self.entries, keep) if k), self.masks[keep])

  def fitting(self) -> 'LabelledSet':
    """The labels the U-Net trains on."""
    return self.where(~self.calibration)

  def held_out(self) -> 'LabelledSet':
    """The labels kept for the IoU head (the U-Net never trains on them)."""
    return self.where(self.calibration)

  def union(self, other: 'LabelledSet', where: str) -> 'LabelledSet':
    """This set and ``other``'s new labels; a tile labelled twice is an
    inconsistent workdir (named by ``where``)."""
    ledger_lib.with_entries(self.ledger(), other.entries, where)  # refuses a tile labelled twice
    if not len(self) or not len(other):
      return other if len(other) else self
    if other.masks.shape[1:] != self.masks.shape[1:]:
      raise WorkdirError(f'{where}: masks of shape {other.masks.shape[1:]} beside earlier labels of '
                         f'shape {self.masks.shape[1:]}')
    return LabelledSet.of(self.entries + other.entries, np.concatenate([self.masks, other.masks]))

  def ledger(self) -> dict[int, LedgerEntry]:
    return {e.id: e for e in self.entries}

  def masks_of(self, ids) -> np.ndarray:
    """The masks of ``ids`` (every one labelled), in that order."""
    ids = np.asarray(ids, np.int64)
    own = self.ids
    rows = np.searchsorted(own, ids)
    if len(ids) and (rows.max(initial=0) >= len(own) or not np.array_equal(own[rows], ids)):
      missing = sorted(set(ids.tolist()) - set(own.tolist()))
      raise KeyError(f'tiles {missing[:5]} are not labelled')
    return self.masks[rows]
