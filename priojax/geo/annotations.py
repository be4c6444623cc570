"""Human mode: labels come back from annotators as GeoJSON polygons.

When the target pool has no labels, a round stops after the export and asks
for ``annotations/round_<r>/`` in the workdir. Annotators return either

* one file per selected chip, ``<chip id>.geojson`` (start from
  ``export/round_<r>/predictions/<chip id>.geojson``); an empty
  FeatureCollection says "no buildings here";
* ``all.geojson`` or ``all_<name>.geojson``: every building of the whole
  selection; a selected chip none of its polygons reaches has no building;
* any other ``<name>.geojson``: some annotator's polygons, assigned to the
  selected chips they reach. Such a file labels only those chips: a chip
  that no file labels keeps the round waiting (it is never taken for "no
  building" because a partial file left it out).

Rerunning the same command resumes the round after its persisted selection
(the same ids; round_steps.py), imports the polygons (reprojected to each chip's scene CRS,
or, for a scene without georeference, read in its pixel coordinates as the
exported predictions are,
repaired if self-intersecting, rasterised onto the chip's grid), stores the
masks in ``labels/round_<r>.npz`` and continues. Polygons outside their
chip, polygons on chips that were not selected, empty or non-polygon
features and repaired self-intersections are counted per file in
``import_report.json`` and the log. A file that cannot be right stops the
import with one line naming it, before anything is written: not GeoJSON, a
chip id that was not selected this round, features of which not one is a
usable polygon, or polygons of which not one reaches its chip (or, for a
combined file, any pool chip): the usual sign of a wrong CRS.
"""

from __future__ import annotations

import numpy as np
from absl import logging
from affine import Affine

from priojax import distributed
from priojax.geo import raster as geo
from priojax.data.pool import TileSource
from priojax.errors import DataError
from priojax.geo.export import scene_crs, text
from priojax.geo.spatial_index import boxes_overlap
from priojax.atomic_io import atomic_write_json, atomic_write_npz
from priojax.workdir import Workdir


class AwaitingLabels(Exception):
  """Not an error: the round waits for annotators; the message says where."""


def _chip_bounds(transform: Affine, size: int) -> tuple[float, float, float, float]:
  (x0, y0), (x1, y1) = transform @ (0, 0), transform @ (size, size)
  return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _overlaps(fp: geo.Footprints, box) -> np.ndarray:
  """[N] bool: which of the file's polygons reach the chip ``box``."""
  inside = np.zeros(len(fp.geometries), bool)
  inside[fp.index.meeting(*box, strict=True)] = True
  return inside


class HumanOracle:
  """Imports annotators' polygons for the selected chips of a GeoTIFF pool."""

  name = 'import'

  def __init__(self, pool: TileSource, scenes: dict, workdir: Workdir):
    self.pool = pool
    self.scenes = scenes
    self.workdir = workdir
    self._pool_boxes: dict[str, np.ndarray] | None = None

  # --- re-reading labels imported in earlier rounds -----------------------

  def _stored_masks(self) -> dict[int, np.ndarray]:
    masks = {}
    for path in self.workdir.imported_label_files():
      with np.load(path) as f:
        masks.update({int(i): m for i, m in zip(f['ids'], f['masks'])})
    return masks

  def reveal(self, ids) -> dict[str, np.ndarray]:
    if len(ids) == 0:
      return {}
    data = self.pool.read_ids([int(i) for i in ids])
    stored = self._stored_masks()
    data['mask'] = np.stack([stored[int(i)] for i in ids])
    return data

  # --- importing a round ----------------------------------------------------

  def _pool_chip_boxes(self) -> dict[str, np.ndarray]:
    """Per scene, the bounds of every pool chip (to tell 'unselected chip'
    from 'outside every chip')."""
    if self._pool_boxes is None:
      boxes: dict[str, list] = {}
      cols = self.pool.columns(('scene', 'transform', 'window'))
      for scene, t, w in zip(cols['scene'], cols['transform'], cols['window']):
        boxes.setdefault(text(scene), []).append(_chip_bounds(Affine(*t), int(w[2])))
      self._pool_boxes = {k: np.asarray(v) for k, v in boxes.items()}
    return self._pool_boxes

  def label_round(self, round_index: int, ids) -> tuple[dict[str, np.ndarray], list[str]]:
    ids = [int(i) for i in ids]
    folder = self.workdir.annotations(round_index)
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(folder.glob('*.geojson'))
    per_chip = {int(p.stem): p for p in files if p.stem.isdigit()}
    combined = [p for p in files if not p.stem.isdigit()]
    for chip_id, path in per_chip.items():
      if chip_id not in ids:
        raise DataError(f'{path}: names chip {chip_id}, which was not selected in round {round_index} '
                        f'(selected: {", ".join(map(str, ids))}); rename or remove the file')
    if not combined:
      self._wait_for([i for i in ids if i not in per_chip], ids, round_index)
    chips = self.pool.read_ids(ids)
    size = chips['image'].shape[1]
    masks = np.zeros((len(ids), size, size), np.uint8)
    sources = [''] * len(ids)
    labelled = np.zeros(len(ids), bool)  # by its own file, an all_ file, or polygons that reach it
    report: dict[str, dict[str, int]] = {}

    def note(path, what, n=1):
      report.setdefault(path.name, {})
      report[path.name][what] = report[path.name].get(what, 0) + n

    loaded: dict[tuple, geo.Footprints] = {}

    def footprints(path, crs) -> geo.Footprints:
      # A combined file covers every chip: parse and reproject it once per scene CRS.
      key = (path, crs.to_wkt() if crs else None)
      if key not in loaded:
        loaded[key] = geo.load_footprints(path, crs)
      return loaded[key]

    for rank, chip_id in enumerate(ids):
      scene = text(chips['scene'][rank])
      transform = Affine(*chips['transform'][rank])
      crs = scene_crs(self.scenes[scene])
      box = _chip_bounds(transform, size)
      own = per_chip.get(chip_id)
      for path in ([own] if own else []) + combined:
        fp = footprints(path, crs)
        inside = _overlaps(fp, box)
        if path is own:
          _check_own_file(path, chip_id, fp, inside, crs)
        if inside.any():
          mask = geo.rasterize_chip(fp, transform, size)
          masks[rank] = np.maximum(masks[rank], mask)
        labelled[rank] |= path is own or is_complete(path) or bool(inside.any())
        if path is own:
          for reason, n in fp.skipped.items():
            note(path, reason, n)
          if (~inside).any():
            note(path, 'polygons outside their chip', int((~inside).sum()))
        if labelled[rank] and not sources[rank]:
          sources[rank] = f'import:{path.name}'
    for path in combined:
      self._report_combined(path, ids, chips, size, note, footprints)
    self._wait_for([i for i, done in zip(ids, labelled) if not done], ids, round_index)
    if distributed.is_main():  # every process imported the same; one writes it
      atomic_write_json(self.workdir.export(round_index) / 'import_report.json', report)
      for name, counts in report.items():
        logging.warning('%s: %s', folder / name, ', '.join(f'{n} {what}' for what, n in counts.items()))
      self.workdir.imported_labels(round_index).parent.mkdir(exist_ok=True)
      atomic_write_npz(self.workdir.imported_labels(round_index),
                       {'ids': np.asarray(ids, np.int64), 'masks': masks}, compressed=True)
    distributed.barrier(f'labels of round {round_index} imported')  # reveal() reads them back
    return {**chips, 'mask': masks}, sources

  def _wait_for(self, missing: list[int], ids: list[int], round_index: int) -> None:
    """Nothing is imported while a selected chip has no label yet."""
    if not missing:
      return
    raise AwaitingLabels(
        f'round {round_index}: {len(ids)} chips selected, {len(missing)} still to label; the files for '
        f'annotators are in {self.workdir.export(round_index)}. Put one GeoJSON per chip '
        f'(<chip id>.geojson, polygons of its buildings; empty: no building) or all_<name>.geojson with '
        f'every building of the selection in {self.workdir.annotations(round_index)}, then rerun the '
        f'same command. Missing: {", ".join(map(str, missing[:10]))}{" ..." if len(missing) > 10 else ""}')

  def _report_combined(self, path, ids, chips, size, note, footprints) -> None:
    """Counts a combined file's polygons that reach no selected chip: those on
    chips that were not selected, and those outside every pool chip."""
    on_selected = on_pool = valid = None
    boxes = self._pool_chip_boxes()
    for scene, meta in self.scenes.items():
      if meta['region'] != 'target_pool':
        continue
      fp = footprints(path, scene_crs(meta))
      if valid is None:  # skipped/repaired counts do not depend on the target CRS
        n = fp.n_features
        on_selected, on_pool, valid = (np.zeros(n, bool) for _ in range(3))
        for reason, count in fp.skipped.items():
          note(path, reason, count)
      if not fp.geometries:
        continue
      index = fp.feature_index
      valid[index] = True
      selected = np.asarray([_chip_bounds(Affine(*chips['transform'][r]), size)
                             for r in range(len(ids)) if text(chips['scene'][r]) == scene]).reshape(-1, 4)
      on_selected[index] |= boxes_overlap(fp.bounds, selected)
      on_pool[index] |= boxes_overlap(fp.bounds, boxes.get(scene, np.zeros((0, 4))))
    _check_usable(path, n, int(valid.sum()), fp.skipped)
    if valid.any() and not on_pool.any():
      raise DataError(f'{path}: none of its {int(valid.sum())} polygons lies on a chip of the target '
                      f'pool; expected polygons over the pool scenes (is its CRS right? it is read as '
                      f'{geo.read_geojson(path)[1].to_string()})')
    if (valid & on_pool & ~on_selected).any():
      note(path, 'polygons on chips that were not selected', int((valid & on_pool & ~on_selected).sum()))
    if (valid & ~on_pool).any():
      note(path, 'polygons outside every chip', int((valid & ~on_pool).sum()))


def is_complete(path) -> bool:
  """Does the file say it holds every building of the selection (by its
  name: ``all.geojson``, ``all_<name>.geojson``)?"""
  return path.stem == 'all' or path.stem.startswith('all_')


def _check_usable(path, n_features: int, n_usable: int, skipped: dict) -> None:
  """A file with features but not one usable polygon would label its chips
  'no buildings': refuse it rather than train on that."""
  if n_features and not n_usable:
    reasons = ', '.join(f'{k}: {v}' for k, v in skipped.items())
    raise DataError(f'{path}: none of its {n_features} features is a usable building polygon '
                    f'({reasons}); expected Polygon or MultiPolygon geometries')


def _check_own_file(path, chip_id: int, fp: geo.Footprints, inside: np.ndarray, crs) -> None:
  _check_usable(path, fp.n_features, len(fp.geometries), fp.skipped)
  if len(fp.geometries) and not inside.any():
    raise DataError(f'{path}: none of its {len(fp.geometries)} polygons overlaps chip {chip_id}; '
                    f'expected the buildings of that chip (is the file\'s CRS right? the polygons '
                    f'were reprojected to the chip\'s {crs.to_string() if crs else "pixel grid"})')
