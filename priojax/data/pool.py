"""Random-access tile sources keyed by tile id, read in bounded batches.

A ``TileSource`` wraps anything with ``__len__`` and ``__getitem__`` that
returns a dict of arrays (a TFDS ``as_data_source()`` split, a list of dicts
in tests). Record order is the storage order; tiles are addressed by their
``id`` field. Batches are read through grain with a bounded prefetch buffer,
so reading the whole pool holds at most a few batches of pixels at once.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Sequence

import grain
import numpy as np

from priojax.errors import DataError

_PREFETCH_BATCHES = 2


class TileSource:
  """Tiles of one split, addressed by position (``read``) or id (``read_ids``)."""

  def __init__(self, source, name: str):
    self._source = source
    self.name = name
    self._columns: dict[str, np.ndarray] = {}
    self._order: np.ndarray | None = None  # positions sorting the ids

  def __len__(self) -> int:
    return len(self._source)

  def has_field(self, name: str) -> bool:
    return len(self) > 0 and name in self._source[0]

  def read(self, positions: Sequence[int], fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    records = [self._source[int(p)] for p in positions]
    if fields:
      records = [{k: r[k] for k in fields} for r in records]
    return _stack(records, self.name)

  def batches(self, batch_size: int, positions: np.ndarray | None = None,
              fields: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Yields stacked batches in order; the last one may be short."""
    if positions is None:
      positions = np.arange(len(self))
    positions = np.asarray(positions, np.int64)
    source, name = self._source, self.name

    def read_one(i):
      record = source[int(positions[i])]
      return {k: record[k] for k in fields} if fields else record

    ds = grain.MapDataset.range(len(positions)).map(read_one)
    ds = ds.batch(batch_size, drop_remainder=False, batch_fn=lambda rs: _stack(rs, name))
    options = grain.ReadOptions(num_threads=2, prefetch_buffer_size=_PREFETCH_BATCHES)
    yield from ds.to_iter_dataset(options)

  def columns(self, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """Whole columns of small per-tile fields (ids, scene names, windows),
    in storage order; each field is read once, then cached. Never pixels."""
    missing = [f for f in fields if f not in self._columns]
    if missing:
      chunks = list(self.batches(256, fields=missing))
      for f in missing:
        self._columns[f] = (np.concatenate([c[f] for c in chunks]) if chunks
                            else np.zeros(0, np.int64 if f == 'id' else object))
    return {f: self._columns[f] for f in fields}

  def ids(self) -> np.ndarray:
    """Tile ids in storage order (read once, then cached)."""
    if self._order is None:
      ids = self.columns(('id',))['id'].astype(np.int64)
      order = np.argsort(ids, kind='stable')
      if (np.diff(ids[order]) == 0).any():
        raise DataError(f'{self.name}: tile ids are not unique')
      self._columns['id'], self._order = ids, order
    return self._columns['id']

  def positions_of(self, ids: Sequence[int]) -> np.ndarray:
    """Storage positions of ``ids`` (vectorised: a whole pool's stats too)."""
    all_ids = self.ids()
    ids = np.asarray(ids, np.int64).reshape(-1)
    sorted_ids = all_ids[self._order]
    at = np.minimum(np.searchsorted(sorted_ids, ids), max(len(sorted_ids) - 1, 0))
    found = sorted_ids[at] == ids if len(sorted_ids) else np.zeros(len(ids), bool)
    if not found.all():
      unknown = [int(i) for i in ids[~found]]
      raise DataError(f'{self.name}: unknown tile ids {unknown[:5]}'
                      f'{" ..." if len(unknown) > 5 else ""} ({len(unknown)} in all)')
    return self._order[at]

  def read_ids(self, ids: Sequence[int]) -> dict[str, np.ndarray]:
    return self.read(self.positions_of(ids))

  def fingerprint(self, samples: int = 4) -> dict[str, object]:
    """What identifies this split's contents without reading it all: its
    size and a hash of ``samples`` evenly spaced records (every field).
    Processes of one run compare these (distributed.agree)."""
    n = len(self)
    out: dict[str, object] = {'tiles': n}
    for p in np.unique(np.linspace(0, n - 1, min(samples, n)).round().astype(np.int64)):
      record = self._source[int(p)]
      digest = hashlib.sha256()
      for key in sorted(record):
        value = np.asarray(record[key])
        digest.update(key.encode() + str(value.dtype).encode() + str(value.shape).encode())
        digest.update(value.tobytes() if value.dtype != object else repr(value.tolist()).encode())
      out[f'tile {int(p)}'] = digest.hexdigest()[:16]
    return out

  def read_all(self) -> dict[str, np.ndarray]:
    """The whole split in memory: for the small labelled and source splits only."""
    return _concat(list(self.batches(256)), self.name)


def _stack(records: list[dict], name: str) -> dict[str, np.ndarray]:
  if not records:
    raise DataError(f'{name}: no records to read')
  keys = records[0].keys()
  try:
    return {k: np.stack([np.asarray(r[k]) for r in records]) for k in keys}
  except (KeyError, ValueError) as e:
    raise DataError(f'{name}: records do not share fields and shapes ({e})') from None


def _concat(batches: list[dict], name: str) -> dict[str, np.ndarray]:
  if not batches:
    raise DataError(f'{name}: the split is empty')
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
