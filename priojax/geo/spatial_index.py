"""Which boxes overlap which: a spatial index (shapely's STRtree) instead of
an [N polygons x M chips] comparison.

City-scale labels hold 10^5 footprints and a pool 10^4 chips; comparing
every pair costs N x M x 4 floats of memory (32 GB at that size) and as
many comparisons. The tree over one side answers the other side's boxes
with only the candidate pairs whose envelopes meet, which are then checked
exactly: time and memory grow with N + M + the pairs found.
"""

from __future__ import annotations

import numpy as np
import shapely


def _boxes(bounds) -> np.ndarray:
  return np.asarray(bounds, np.float64).reshape(-1, 4)


def _tree(boxes: np.ndarray) -> shapely.STRtree:
  return shapely.STRtree(shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]))


def overlapping_pairs(bounds, boxes) -> tuple[np.ndarray, np.ndarray]:
  """(i, j): box i of ``bounds`` [N, 4] and box j of ``boxes`` [M, 4]
  (minx, miny, maxx, maxy) share interior (touching edges do not count),
  sorted by i then j."""
  bounds, boxes = _boxes(bounds), _boxes(boxes)
  if not len(bounds) or not len(boxes):
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  i, j = _tree(boxes).query(shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3]))
  b, c = bounds[i], boxes[j]
  strict = (b[:, 0] < c[:, 2]) & (b[:, 2] > c[:, 0]) & (b[:, 1] < c[:, 3]) & (b[:, 3] > c[:, 1])
  i, j = i[strict], j[strict]
  order = np.lexsort((j, i))
  return i[order].astype(np.int64), j[order].astype(np.int64)


def boxes_overlap(bounds, boxes) -> np.ndarray:
  """[N] bool: does box i of ``bounds`` overlap any of ``boxes``?"""
  hit = np.zeros(len(_boxes(bounds)), bool)
  hit[overlapping_pairs(bounds, boxes)[0]] = True
  return hit


class BoxIndex:
  """Boxes [N, 4], built once, queried for the boxes that meet a window."""

  def __init__(self, bounds):
    self.bounds = _boxes(bounds)
    self._tree = _tree(self.bounds) if len(self.bounds) else None

  def meeting(self, left: float, bottom: float, right: float, top: float, *,
              strict: bool = False) -> np.ndarray:
    """Sorted indices of the boxes that meet the window: touching it counts
    (as a rasteriser wants every polygon that may cover one of its pixels)
    unless ``strict``, which asks for shared interior."""
    if self._tree is None:
      return np.zeros(0, np.int64)
    found = self._tree.query(shapely.box(left, bottom, right, top))
    b = self.bounds[found]
    if strict:
      inside = (b[:, 0] < right) & (b[:, 2] > left) & (b[:, 1] < top) & (b[:, 3] > bottom)
    else:
      inside = (b[:, 0] <= right) & (b[:, 2] >= left) & (b[:, 1] <= top) & (b[:, 3] >= bottom)
    return np.sort(found[inside]).astype(np.int64)
