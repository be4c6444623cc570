"""A round's picture for the review page, as plain JSON-able data.

What it holds stays small whatever the pool: the table keeps the top
``max_rows`` picks (each with a thumbnail), a scene's overlays are drawn at
most ``max_side`` px a side, predictions are made for at most ``max_chips``
chips (this round's and earlier picks first, then the highest priorities),
and at most ``max_scenes`` scenes are shown (those with the most picks this
round first; the page says how many were left out).

Scene coordinates are the scene's pixels (row, col); images are PNG data
URIs, so the page needs no other file.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from typing import Callable

import numpy as np
from PIL import Image

from priojax.geo import export
from priojax.geo import raster as geo

# Overlay colours (RGBA): predicted buildings orange, labelled buildings cyan.
PREDICTED = (255, 140, 0, 190)
LABELLED = (0, 220, 255, 190)


@dataclasses.dataclass(frozen=True)
class Limits:
  max_side: int = 1024
  max_rows: int = 200
  max_scenes: int = 6
  max_chips: int = 2048
  thumbnail: int = 64

  @classmethod
  def of(cls, config) -> 'Limits':
    r = config.review
    return cls(r.max_side, r.max_rows, r.max_scenes, r.max_chips, r.thumbnail)


@dataclasses.dataclass(frozen=True)
class RoundInputs:
  """What a round's selection step knows, in pool order where per tile."""
  round: int
  formula: str
  ids: np.ndarray  # [k] this round's picks in rank order
  priorities: np.ndarray  # [k]
  pred_iou: np.ndarray  # [k]
  pool_ids: np.ndarray  # [N] every scored pool tile
  heat: np.ndarray  # [N] what the heat map shows
  heat_label: str
  earlier: dict[int, int]  # id -> round, the tiles labelled before this round
  strata: np.ndarray  # [k] each pick's sub-population or scene name


def data_uri(data: bytes, fmt: str = 'png') -> str:
  """An encoded image's bytes as a data URI (``fmt``: png or jpeg)."""
  return f'data:image/{fmt.lower()};base64,' + base64.b64encode(data).decode('ascii')


def _image_uri(pixels: np.ndarray, fmt: str, **options) -> str:
  buf = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format=fmt, **options)
  return data_uri(buf.getvalue(), fmt)


def png_uri(pixels: np.ndarray) -> str:
  """uint8 [h, w], [h, w, 3] or [h, w, 4] as a PNG data URI."""
  return _image_uri(pixels, 'PNG', optimize=True)


def jpeg_uri(pixels: np.ndarray, quality: int = 85) -> str:
  """uint8 [h, w, 3] as a JPEG data URI: a photograph of a scene is several
  times smaller than as PNG, and the overlays on it keep their PNG alpha."""
  return _image_uri(pixels, 'JPEG', quality=quality)


def thumbnail(image: np.ndarray, side: int) -> str:
  rgb = np.asarray(image)[..., :3]
  step = max(1, rgb.shape[0] // side)
  return png_uri(np.ascontiguousarray(rgb[::step, ::step]))


def heat_pixels(grid: np.ndarray) -> np.ndarray:
  """A heat grid as RGBA (magma; unscored cells transparent), scaled to
  the grid's own range so that this round's order is what shows."""
  from matplotlib import colormaps  # the Agg backend is already chosen by priojax.report
  finite = np.isfinite(grid)
  rgba = np.zeros(grid.shape + (4,), np.uint8)
  if finite.any():
    lo, hi = float(grid[finite].min()), float(grid[finite].max())
    x = (grid[finite] - lo) / (hi - lo) if hi > lo else np.full(int(finite.sum()), 0.5)
    rgba[finite] = np.round(colormaps['magma'](x) * 255).astype(np.uint8)
    rgba[finite, 3] = 200
  return rgba


def picks_table(inputs: RoundInputs, images: np.ndarray, windows: np.ndarray | None, scenes: list[str] | None,
                limits: Limits) -> list[dict]:
  rows = []
  for rank in range(min(len(inputs.ids), limits.max_rows)):
    row = {'rank': rank + 1, 'id': int(inputs.ids[rank]), 'priority': float(inputs.priorities[rank]),
           'pred_iou': float(inputs.pred_iou[rank]), 'stratum': str(inputs.strata[rank]),
           'thumbnail': thumbnail(images[rank], limits.thumbnail)}
    if windows is not None:
      row['scene'] = scenes[rank]
      row['window'] = [int(v) for v in windows[rank]]
    rows.append(row)
  return rows


def chips_to_predict(inputs: RoundInputs, limits: Limits) -> np.ndarray:
  """Ids whose predictions the overlays show: every pool chip when the
  pool is small enough, else this round's and earlier picks, then the
  highest heat, up to ``max_chips``."""
  pool_ids = np.asarray(inputs.pool_ids)
  if len(pool_ids) <= limits.max_chips:
    return np.sort(pool_ids)
  first = np.unique(np.concatenate([inputs.ids, np.fromiter(inputs.earlier, np.int64, len(inputs.earlier))]))
  rest = pool_ids[np.argsort(-np.nan_to_num(inputs.heat, nan=-np.inf), kind='stable')]
  rest = rest[~np.isin(rest, first)][:max(0, limits.max_chips - len(first))]
  return np.sort(np.concatenate([first[:limits.max_chips], rest]).astype(np.int64))


def _mosaic(shape: tuple[int, int], scale: float, windows: np.ndarray, masks: np.ndarray, colour) -> np.ndarray:
  """Chip masks placed on the scene's overview grid (``scale`` scene px per
  overview px), coloured where a building is."""
  out = np.zeros(shape + (4,), np.uint8)
  for (row, col, height, width), mask in zip(windows, masks):
    r0, c0 = int(row / scale), int(col / scale)
    r1, c1 = min(shape[0], max(r0 + 1, int(round((row + height) / scale)))), \
        min(shape[1], max(c0 + 1, int(round((col + width) / scale))))
    rr = np.minimum(((np.arange(r0, r1) + 0.5) * scale - row).astype(int), mask.shape[0] - 1)
    cc = np.minimum(((np.arange(c0, c1) + 0.5) * scale - col).astype(int), mask.shape[1] - 1)
    hit = mask[np.ix_(rr, cc)] > 0
    out[r0:r1, c0:c1][hit] = colour
  return out


def scene_views(inputs: RoundInputs, pool, scenes: dict, overlap: int, predict: Callable[[np.ndarray], np.ndarray],
                labels: dict[int, np.ndarray], limits: Limits) -> tuple[list[dict], int]:
  """(the shown scenes' layers and chips, how many pool scenes were left
  out). ``predict``: images -> thresholded masks (every process of a
  multi-process run calls it with the same chips); ``labels``: id -> mask
  of the labels known so far (the annotators' or the benchmark's)."""
  records = pool.columns(('scene', 'window'))
  rows_all = pool.positions_of(inputs.pool_ids)
  names_all = np.asarray([export.text(s) for s in records['scene'][rows_all]], object)
  windows_all = records['window'][rows_all]
  pool_scenes = [n for n, s in scenes.items() if s['region'] == 'target_pool']
  now = {n: int((names_all[np.isin(inputs.pool_ids, inputs.ids)] == n).sum()) for n in pool_scenes}
  shown = sorted(pool_scenes, key=lambda n: (-now[n], scenes[n]['index']))[:limits.max_scenes]

  to_predict = chips_to_predict(inputs, limits)
  at = pool.positions_of(to_predict)
  chips = pool.read(at, fields=('image', 'mask', 'has_label'))
  masks = predict(chips['image'])
  pool_truth = {int(i): m for i, m, has in zip(to_predict, chips['mask'], chips['has_label']) if has}
  truth = {**pool_truth, **{int(i): m for i, m in labels.items()}}
  where = {int(i): (n, w) for i, n, w in zip(inputs.pool_ids, names_all, windows_all)}
  picked = {int(i): inputs.round for i in inputs.ids} | {int(i): int(r) for i, r in inputs.earlier.items()}
  if picked.keys() - where.keys():  # labelled tiles are scored too; read any that were not
    extra = np.array(sorted(picked.keys() - where.keys()), np.int64)
    rows = pool.positions_of(extra)
    where |= {int(i): (export.text(s), w) for i, s, w in zip(extra, records['scene'][rows], records['window'][rows])}
  if truth.keys() - where.keys():
    truth = {i: m for i, m in truth.items() if i in where}

  views = []
  for name in shown:
    meta = scenes[name]
    scale = max(1.0, max(meta['height'], meta['width']) / limits.max_side)
    with geo.open_scene(meta['image']) as src:
      image = geo.read_overview(src, meta['bands'], geo.BandStats(tuple(meta['stats']['low']),
                                                                  tuple(meta['stats']['high'])), limits.max_side)
    shape = image.shape[:2]
    in_scene = names_all == name
    grid, stride = export.heat_grid(name, meta, {'scene': names_all, 'window': windows_all}, inputs.heat, overlap)
    mine = [k for k, i in enumerate(to_predict) if where.get(int(i), ('',))[0] == name]
    pred = _mosaic(shape, scale, np.array([where[int(to_predict[k])][1] for k in mine]).reshape(-1, 4),
                   masks[mine], PREDICTED)
    known = [i for i in sorted(truth) if where[i][0] == name]
    labelled = _mosaic(shape, scale, np.array([where[i][1] for i in known]).reshape(-1, 4),
                       np.array([truth[i] for i in known]), LABELLED) if known else None
    views.append({
        'name': name, 'height': int(meta['height']), 'width': int(meta['width']),
        'georeferenced': bool(meta.get('crs')), 'pool_chips': int(in_scene.sum()),
        'image': jpeg_uri(image), 'heat': png_uri(heat_pixels(grid)),
        'heat_extent': [int(grid.shape[0] * stride), int(grid.shape[1] * stride)],
        'prediction': png_uri(pred), 'predicted_chips': len(mine),
        'truth': png_uri(labelled) if labelled is not None else None, 'labelled_chips': len(known),
        'chips': [{'id': i, 'round': r, 'window': [int(v) for v in where[i][1]]}
                  for i, r in sorted(picked.items()) if where[i][0] == name],
    })
  return views, len(pool_scenes) - len(shown)


def round_view(inputs: RoundInputs, pool, geo_meta: dict | None, predict: Callable[[np.ndarray], np.ndarray],
               labels: dict[int, np.ndarray], limits: Limits) -> dict:
  """The round's picture: its picks table, and for chips of scenes, the
  scenes' layers."""
  shown = inputs.ids[:limits.max_rows]
  fields = ('image', 'scene', 'window') if geo_meta is not None else ('image',)
  chips = pool.read(pool.positions_of(shown), fields=fields)
  scenes, left_out = [], 0
  if geo_meta is not None:
    scenes, left_out = scene_views(inputs, pool, geo_meta['scenes'], int(geo_meta.get('overlap', 0)), predict,
                                   labels, limits)
  return {
      'round': inputs.round, 'formula': inputs.formula, 'heat_label': inputs.heat_label,
      'picks_total': int(len(inputs.ids)), 'pool_tiles': int(len(inputs.pool_ids)),
      'picks': picks_table(inputs, chips['image'], chips.get('window'),
                           [export.text(s) for s in chips['scene']] if 'scene' in chips else None, limits),
      'scenes': scenes, 'scenes_left_out': left_out,
  }
