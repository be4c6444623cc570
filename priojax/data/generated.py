"""Pools made on read, for scale tests and benchmarks: tile ``i`` is drawn
from a generator seeded by ``i`` when it is read, so a pool of a million
tiles holds no pixels; reading tile ``i`` twice gives the same tile."""

from __future__ import annotations

import numpy as np


class GeneratedPool:
  """``n`` tiles of ``size`` x ``size`` RGB noise with ids ``first_id + i``;
  a ``TileSource`` reads it like any split (priojax.data.pool)."""

  def __init__(self, n: int, size: int, first_id: int = 0):
    if n < 0 or size < 1:
      raise ValueError(f'GeneratedPool: n={n}, size={size}; expected n >= 0 and size >= 1')
    self.n, self.size, self.first_id = n, size, first_id

  def __len__(self) -> int:
    return self.n

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    if not 0 <= i < self.n:
      raise IndexError(f'tile {i} of a pool of {self.n}')
    rng = np.random.default_rng(i)
    return {'id': np.int64(self.first_id + i),
            'image': rng.integers(0, 255, (self.size, self.size, 3), dtype=np.uint8)}
