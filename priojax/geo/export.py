"""A round's selection, written for annotators as georeferenced files.

``export/round_<r>/`` holds, for chips cut from GeoTIFF scenes:

* ``chips/<id>.tif`` — each selected chip (the model's RGB input), with the
  chip's own transform and the scene's CRS;
* ``selected.geojson`` — the selected chips' outlines (WGS84, RFC 7946)
  with ``id``, ``scene``, ``rank``, ``priority`` and ``pred_iou``;
* ``predictions/<id>.geojson`` — the model's predicted building polygons on
  each selected chip (``rasterio.features.shapes``), a starting point to edit;
* ``heatmap_<scene>.tif`` — a coarse float32 grid over each scene, one cell
  per chip stride, holding the chip's priority (NaN where no chip was scored),
  in the scene's CRS: it opens in QGIS over the imagery. Its band
  description says what the values are: the formula's priority, or, for a
  formula that picks its batch itself (core-set, TypiClust, ...) and so has
  no priority per chip, 1 − predicted IoU.

Chips of a scene without georeference are not given a fake CRS: they are
written as ``chips/<id>.png``, their predicted polygons are in the scene's
pixel coordinates (x = column, y = row), they are listed with their pixel
windows in ``selected_pixels.json`` instead of ``selected.geojson``, the heat
map is a plain grid (one cell per chip stride), and ``NOT_GEOREFERENCED.txt``
says so.

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import rasterio
import rasterio.errors
import rasterio.features
import rasterio.warp
from affine import Affine
from rasterio.crs import CRS

from priojax.geo.raster import WGS84
from priojax.atomic_io import atomic_path, atomic_write_text


def scene_crs(scene: dict) -> CRS | None:
  """A scene's CRS from the dataset metadata; None: not georeferenced."""
  return CRS.from_wkt(scene['crs']) if scene.get('crs') else None


def write_geotiff(path: pathlib.Path, data: np.ndarray, crs, transform, nodata=None,
                  driver: str = 'GTiff', description: str | None = None) -> None:
  """``data`` is [bands, H, W]; ``description``: of the first band."""
  profile = dict(driver=driver, height=data.shape[1], width=data.shape[2], count=data.shape[0],
                 dtype=data.dtype, crs=crs, transform=transform, nodata=nodata)
  if crs is None:  # no georeference: no transform either
    profile.pop('crs'), profile.pop('transform')
  with warnings.catch_warnings():  # "no geotransform" is what we mean here
    warnings.simplefilter('ignore', rasterio.errors.NotGeoreferencedWarning)
    with atomic_path(path) as tmp, rasterio.open(tmp, 'w', **profile) as dst:
      dst.write(data)
      if description:
        dst.set_band_description(1, description)


def write_geojson(path: pathlib.Path, features: list[dict]) -> None:
  atomic_write_text(path, json.dumps({'type': 'FeatureCollection', 'features': features}))


def chip_outline(transform: Affine, size: int, crs) -> dict:
  corners = [transform @ xy for xy in ((0, 0), (size, 0), (size, size), (0, size), (0, 0))]
  ring = {'type': 'Polygon', 'coordinates': [[list(c) for c in corners]]}
  return rasterio.warp.transform_geom(crs, WGS84, ring)


def mask_polygons(mask: np.ndarray, transform: Affine, crs) -> list[dict]:
  """Predicted buildings as WGS84 polygons (scene pixel coordinates when ``crs`` is None)."""
  shapes = rasterio.features.shapes(mask.astype(np.uint8), mask=mask > 0, transform=transform)
  return [{'type': 'Feature', 'properties': {'building': 1},
           'geometry': geom if crs is None else rasterio.warp.transform_geom(crs, WGS84, geom)}
          for geom, _ in shapes]


def export_round(directory: pathlib.Path, *, scenes: dict, selected: dict, pred_masks: np.ndarray,
                 priorities: np.ndarray, pred_iou: np.ndarray, pool_records: dict,
                 pool_priority: np.ndarray, overlap: int, heat_label: str = 'priority') -> pathlib.Path:
  """Writes the round's files; ``selected`` holds the chips' records in rank
  order, ``pool_records`` the window/scene/id of every scored pool chip,
  ``pool_priority`` what the heat maps show (``heat_label`` says what)."""
  directory.mkdir(parents=True, exist_ok=True)
  (directory / 'chips').mkdir(exist_ok=True)
  (directory / 'predictions').mkdir(exist_ok=True)
  outlines, in_pixels = [], []
  for rank, chip_id in enumerate(selected['id']):
    scene = scenes[text(selected['scene'][rank])]
    crs = scene_crs(scene)
    transform = Affine(*selected['transform'][rank])
    size = selected['image'].shape[1]
    image = np.ascontiguousarray(selected['image'][rank].transpose(2, 0, 1))
    if crs is None:
      # PNG has no room for a fourth band but as alpha: its RGB bands only.
      write_geotiff(directory / 'chips' / f'{int(chip_id)}.png', image[:3], None, None, driver='PNG')
    else:
      write_geotiff(directory / 'chips' / f'{int(chip_id)}.tif', image, crs, transform)
    write_geojson(directory / 'predictions' / f'{int(chip_id)}.geojson',
                  mask_polygons(pred_masks[rank], transform, crs))
    properties = {'id': int(chip_id), 'scene': text(selected['scene'][rank]), 'rank': rank + 1,
                  'priority': float(priorities[rank]), 'pred_iou': float(pred_iou[rank])}
    if crs is None:
      in_pixels.append({**properties, 'window': [int(v) for v in selected['window'][rank]]})
    else:
      outlines.append({'type': 'Feature', 'geometry': chip_outline(transform, size, crs),
                       'properties': properties})
  if outlines:
    write_geojson(directory / 'selected.geojson', outlines)
  if in_pixels:
    atomic_write_text(directory / 'selected_pixels.json', json.dumps(in_pixels, indent=1))
    atomic_write_text(directory / 'NOT_GEOREFERENCED.txt', NOT_GEOREFERENCED.format(
        scenes=', '.join(sorted({c['scene'] for c in in_pixels}))))
  for name, scene in scenes.items():
    if scene['region'] == 'target_pool':
      _heatmap(directory / f'heatmap_{name}.tif', name, scene, pool_records, pool_priority, overlap,
               heat_label)
  return directory


NOT_GEOREFERENCED = """\
These chips are not georeferenced: their scenes ({scenes}) have no CRS.
chips/<id>.png are plain images; selected_pixels.json gives each chip's
window in its scene as [row, col, height, width] pixels; predictions/<id>.geojson
are in scene pixel coordinates (x = column, y = row), and the heat maps of
these scenes are plain grids, one cell per chip stride: none is on a map.
"""


def heat_grid(name: str, scene: dict, records: dict, priority: np.ndarray, overlap: int) -> tuple[np.ndarray, int]:
  """The scene's chips' values on a grid of one cell per chip stride (the
  highest where chips share a cell; NaN where none was scored), and the
  stride in scene pixels."""
  in_scene = np.array([text(s) == name for s in records['scene']], bool)
  windows = records['window'][in_scene]
  size = int(windows[0, 2]) if len(windows) else 1
  stride = max(1, size - overlap)
  rows, cols = -(-scene['height'] // stride), -(-scene['width'] // stride)
  grid = np.full((rows, cols), np.nan, np.float32)
  for (row, col, _, _), value in zip(windows, np.asarray(priority)[in_scene]):
    r, c = min(rows - 1, int(round(row / stride))), min(cols - 1, int(round(col / stride)))
    grid[r, c] = max(value, np.nan_to_num(grid[r, c], nan=-np.inf))
  return grid, stride


def _heatmap(path, name, scene, records, priority, overlap, label: str) -> None:
  grid, stride = heat_grid(name, scene, records, priority, overlap)
  crs = scene_crs(scene)
  transform = Affine(*scene['transform']) @ Affine.scale(stride)
  write_geotiff(path, grid[None], crs, transform, nodata=float('nan'), description=label)


def text(value) -> str:
  """TFDS Text features come back as bytes."""
  return value.decode() if isinstance(value, bytes) else str(value)
