"""Where labels come from on a benchmark: the oracle reveals the pool's
hidden masks. (Human annotators are geo/annotations.py's HumanOracle.) Both
answer ``reveal(ids)`` for labels already recorded in the ledger and
``label_round(round, ids)`` for a round's new picks."""

from __future__ import annotations

import numpy as np

from priojax.data.pool import TileSource


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
