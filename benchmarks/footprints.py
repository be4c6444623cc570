r"""City-scale labels: which footprints reach which chips, dense vs indexed.

    .venv/bin/python benchmarks/footprints.py                    # 10^5 footprints x 10^4 chips
    .venv/bin/python benchmarks/footprints.py --footprints=20000 --chips=2000

Annotators may return one GeoJSON with every building of a city, and a
pool holds thousands of chips. Two questions are asked of such a file on
import (geo/annotations.py): which polygons reach any selected or any pool
chip, and, per chip, which polygons to rasterise. Before, both compared
every polygon's box with every chip's ([N x M x 4] arrays, and a scan of
all N boxes per chip); now a shapely STRtree answers them
(geo/spatial_index.py). Each form runs in its own process, so that its peak
resident memory is its own (``ru_maxrss`` of the child); the answers are
checked equal. Building-sized boxes (8-20 m) are scattered over a square
city, chips of 64 m tile it.
"""

from __future__ import annotations

import multiprocessing
import resource
import time

import numpy as np
from absl import app, flags

import results_block

from priojax.geo.spatial_index import BoxIndex, boxes_overlap

_FOOTPRINTS = flags.DEFINE_integer('footprints', 100_000, 'Building footprints in the file.')
_CHIPS = flags.DEFINE_integer('chips', 10_000, 'Pool chips.')
_QUERIES = flags.DEFINE_integer('queries', 2_000, 'Chips rasterised one by one (the per-chip lookups).')
_DENSE = flags.DEFINE_bool('dense', True, 'Also run the dense form (needs ~N*M*5 bytes of memory).')


def city(n_footprints: int, n_chips: int, seed: int = 0):
  side = int(np.ceil(np.sqrt(n_chips)))
  chip = 64.0
  extent = side * chip
  rng = np.random.default_rng(seed)
  corner = rng.random((n_footprints, 2)) * extent
  size = 8.0 + 12.0 * rng.random((n_footprints, 2))
  footprints = np.c_[corner, corner + size]
  rows, cols = np.divmod(np.arange(n_chips), side)
  chips = np.c_[cols * chip, rows * chip, (cols + 1) * chip, (rows + 1) * chip].astype(np.float64)
  return footprints, chips


def dense_overlap(bounds: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """The former form: every polygon against every chip at once."""
  b, c = bounds[:, None, :], boxes[None, :, :]
  hit = (b[..., 0] < c[..., 2]) & (b[..., 2] > c[..., 0]) & (b[..., 1] < c[..., 3]) & (b[..., 3] > c[..., 1])
  return hit.any(axis=1)


def dense_within(bounds: np.ndarray, box) -> np.ndarray:
  """The former per-chip lookup: a scan of every polygon's box."""
  left, bottom, right, top = box
  b = bounds
  return np.flatnonzero((b[:, 0] <= right) & (b[:, 2] >= left) & (b[:, 1] <= top) & (b[:, 3] >= bottom))


def _measure(form: str, n_footprints: int, n_chips: int, n_queries: int, out) -> None:
  footprints, chips = city(n_footprints, n_chips)
  queries = chips[np.linspace(0, len(chips) - 1, n_queries).astype(int)]
  start = time.perf_counter()
  if form == 'dense':
    reach = dense_overlap(footprints, chips)
    found = [dense_within(footprints, q) for q in queries]
  else:
    reach = boxes_overlap(footprints, chips)
    index = BoxIndex(footprints)
    found = [index.meeting(*q) for q in queries]
  seconds = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
  out.put((form, seconds, peak, reach, sum(len(f) for f in found)))


def run_form(form: str) -> tuple:
  queue = multiprocessing.get_context('spawn').Queue()
  proc = multiprocessing.get_context('spawn').Process(
      target=_measure, args=(form, _FOOTPRINTS.value, _CHIPS.value, _QUERIES.value, queue))
  proc.start()
  result = queue.get()
  proc.join()
  return result


def main(argv):
  del argv
  n, m = _FOOTPRINTS.value, _CHIPS.value
  print(f'{n:,} footprints x {m:,} chips, {_QUERIES.value:,} per-chip lookups; each form in its own process')
  # A markdown table by hand: benchmarks/timing.py imports JAX, whose pages
  # the forked forms would carry into their peak RSS.
  print('\n| form | time (s) | peak RSS (MiB) | footprints on a chip | polygons found by the lookups |')
  print('|---|---:|---:|---:|---:|')
  results = {}
  for form in (('dense',) if _DENSE.value else ()) + ('indexed',):
    name, seconds, peak, reach, found = run_form(form)
    results[name] = (seconds, peak, reach, found)
    shown = {'dense': 'dense (every box against every chip)', 'indexed': 'STRtree (what priojax uses)'}[name]
    print(f'| {shown} | {seconds:.2f} | {peak:,.0f} | {int(reach.sum()):,} | {found:,} |')
  print()
  if 'dense' in results:
    (td, md, rd, fd), (ti, mi, ri, fi) = results['dense'], results['indexed']
    assert np.array_equal(rd, ri) and fd == fi, 'the two forms disagree'
    print(f'indexed vs dense: {td / ti:.1f}x faster, peak memory {md / mi:.1f}x smaller (same answers)')


if __name__ == '__main__':
  app.run(results_block.recorded(main))
