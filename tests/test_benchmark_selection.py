"""benchmarks/selection_timing.py, what benchmarks/large_pool.py times at
10^6 tiles: every registered formula selects from its synthetic
statistics (read-only, as in a run), and the picks are the same on a
second call, which the benchmark's multi-process digest relies on. A
benchmark that breaks is found here, not after 10^6 tiles of scoring."""

import sys

import numpy as np

from conftest import ROOT
from priojax import priority, tile_stats

sys.path.insert(0, str(ROOT / 'benchmarks'))
import selection_timing  # noqa: E402  (benchmarks/ is a folder of scripts; this one defines no flags)


def test_every_formula_selects_from_the_benchmarks_statistics():
  times, digest = selection_timing.time_selection(1500, 20, 16)
  assert sorted(times) == sorted([*priority.BUILTIN, 'iou+power'])  # not formulas other tests register
  assert all(len(t) == 2 and min(t) >= 0 for t in times.values())
  again = selection_timing.time_selection(1500, 20, 16)[1]
  assert digest == again


def test_labelled_tiles_are_a_new_copy_and_the_pool_stays_read_only():
  stats = selection_timing.synthetic_stats(500, 8)
  labelled, ctx, _ = selection_timing.selection_contexts(stats, k=10)
  assert (stats.label_iou == -1).all()  # the original is untouched
  for name in tile_stats.LABEL_STATS:
    known = labelled[name] >= 0
    np.testing.assert_array_equal(known, ~np.asarray(ctx.selectable))
    assert not labelled[name].flags.writeable
