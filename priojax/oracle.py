"""Where labels come from. On the benchmark, the oracle reveals the pool's
hidden masks; every revealed mask is recorded in the ledger with a content
hash, so a resumed run can prove it trains on the same labels."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from priojax.data.pool import TileSource
from priojax.errors import DataError


def mask_hash(mask: np.ndarray) -> str:
  m = np.ascontiguousarray(mask, np.uint8)
  return hashlib.sha256(m.tobytes() + str(m.shape).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
  id: int
  round: int
  source: str  # 'oracle' here; 'import:<file>' for human labels
  sha256: str
  calibration: bool  # reserved for the IoU head, not for U-Net fine-tuning

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


class BenchmarkOracle:
  """Reveals ground-truth masks of a benchmark pool."""

  name = 'oracle'

  def __init__(self, pool: TileSource):
    self.pool = pool

  def reveal(self, ids) -> dict[str, np.ndarray]:
    if len(ids) == 0:
      return {}
    return self.pool.read_ids([int(i) for i in ids])

  def label_round(self, round_index: int, ids) -> tuple[dict[str, np.ndarray], list[str]]:
    """The masks of this round's picks and where each came from."""
    del round_index
    return self.reveal(ids), [self.name] * len(ids)



def verify_labels(where: str, entries: list[LedgerEntry], revealed: dict[str, np.ndarray]) -> None:
  """Labels read again on resume must be the ones the ledger recorded."""
  for entry, mask in zip(entries, revealed.get('mask', [])):
    if mask_hash(mask) != entry.sha256:
      raise DataError(f'{where}: the mask of tile {entry.id} changed since round {entry.round} '
                      f'(hash {mask_hash(mask)} != {entry.sha256}, from {entry.source})')


def is_calibration(seed: int, tile_id: int, fraction: float) -> bool:
  """Deterministic per tile (not per pick order): hold this label out of
  U-Net training so that the IoU head sees tiles the U-Net is not fitting."""
  return bool(np.random.default_rng([seed, int(tile_id), 104729]).random() < fraction)
