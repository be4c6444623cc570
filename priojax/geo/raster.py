"""Scenes and their building labels to chips, through rasterio only.

A scene is a GeoTIFF, or a PNG/JPEG (or a GeoTIFF) without georeference:
chips of such a scene carry pixel windows only and their transform is the
pixel grid. Scenes are never read whole: statistics come from a decimated
read (GDAL samples blocks into an output of bounded size) and chips are read
window by window. Labels are either footprints (GeoJSON Polygon /
MultiPolygon, with a ``crs`` member or RFC 7946 WGS84), reprojected to the
scene's CRS once and rasterised per chip onto the chip's own grid, or a
raster mask (GeoTIFF or PNG, 0/255 or 0/1) of the scene's size, read with
the same windows.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import warnings
from typing import Callable, Iterator, Sequence

import numpy as np
import rasterio
import rasterio.errors
import rasterio.features
import rasterio.warp
import shapely.errors
import shapely.geometry
import shapely.validation
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window

from priojax.errors import DataError
from priojax.geo.spatial_index import BoxIndex

WGS84 = CRS.from_epsg(4326)
_STATS_SAMPLE_SIDE = 512
# Pixel types of imagery; complex (SAR phase), 64-bit integers and the like are not.
PIXEL_TYPES = ('uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'float32', 'float64')
SCENE_DRIVERS = ('GTiff', 'PNG', 'JPEG')
MASK_VALUES = (0, 1, 255)  # 0 = ground; 1 or 255 = building


@dataclasses.dataclass(frozen=True)
class BandStats:
  """Per-band percentile range, mapped to [0, 255] when chips are read."""

  low: tuple[float, ...]
  high: tuple[float, ...]

  def to_json(self) -> dict:
    return {'low': list(self.low), 'high': list(self.high)}


@dataclasses.dataclass(frozen=True)
class Footprints:
  """Polygons in a scene's CRS, with their bounds for quick chip filtering."""

  geometries: list[dict]
  bounds: np.ndarray  # [N, 4] minx, miny, maxx, maxy
  skipped: dict[str, int]  # reason -> count (reported, never silently dropped)
  feature_index: np.ndarray  # [N] position of each geometry's feature in the file
  n_features: int = 0  # in the file, usable or not

  @functools.cached_property
  def index(self) -> BoxIndex:
    """The polygons' bounds in a spatial index (built on first use)."""
    return BoxIndex(self.bounds)

  def within(self, left: float, bottom: float, right: float, top: float) -> list[dict]:
    """The polygons whose bounds meet the window."""
    return [self.geometries[i] for i in self.index.meeting(left, bottom, right, top)]


def _open(path: str, what: str):
  try:
    with warnings.catch_warnings():  # a PNG without georeference is expected here
      warnings.simplefilter('ignore', rasterio.errors.NotGeoreferencedWarning)
      src = rasterio.open(path)
  except rasterio.errors.RasterioIOError as e:
    reason = str(e).split('\n')[0]
    raise DataError(f'{path}: not a readable {what} ({reason})') from None
  if src.driver not in SCENE_DRIVERS:
    src.close()
    raise DataError(f'{path}: expected a GeoTIFF, PNG or JPEG {what}, found a {src.driver} file')
  return src


def georeferenced(src) -> bool:
  """Whether a scene's pixels have a place on Earth (a CRS)."""
  return src.crs is not None


def open_scene(path: str | pathlib.Path):
  """Opens a scene (GeoTIFF, or PNG/JPEG) or raises one DataError line naming it."""
  path = str(path)
  src = _open(path, 'image')
  wrong = sorted({d for d in src.dtypes if d not in PIXEL_TYPES})
  if wrong:
    src.close()
    raise DataError(f'{path}: pixel type {", ".join(wrong)}; expected one of {", ".join(PIXEL_TYPES)}')
  return src


def open_mask(path: str | pathlib.Path, scene):
  """Opens a scene's raster mask, checked against the scene (one band of
  integers, the same size, the same georeference when both have one)."""
  path = str(path)
  src = _open(path, 'mask')
  problem = None
  if src.count != 1:
    problem = f'has {src.count} bands; expected one band (0 = ground, 1 or 255 = building)'
  elif np.dtype(src.dtypes[0]).kind not in 'ui':
    problem = f'pixel type {src.dtypes[0]}; expected integers 0/1 or 0/255'
  elif (src.height, src.width) != (scene.height, scene.width):
    problem = (f'is {src.width} x {src.height} px but its image {scene.name} is '
               f'{scene.width} x {scene.height} px; expected the same size')
  elif georeferenced(src) and georeferenced(scene) and (src.crs != scene.crs or not (
      src.transform.almost_equals(scene.transform, precision=1e-6 * abs(scene.transform.a)))):
    problem = (f'has a different georeference from its image {scene.name} '
               f'({src.crs.to_string()} {tuple(src.transform)[:6]} vs '
               f'{scene.crs.to_string()} {tuple(scene.transform)[:6]}); expected the same grid')
  if problem:
    src.close()
    raise DataError(f'{path}: {problem}')
  return src


def read_mask_chip(src, window: Window) -> np.ndarray:
  """A chip of a raster mask as {0, 1} uint8; other values are an error."""
  data = _read(src, (1,), window=window).filled(0)[0]
  bad = ~np.isin(data, MASK_VALUES)
  if bad.any():
    row, col = (int(v[0]) for v in np.nonzero(bad))
    raise DataError(f'{src.name}: value {data[row, col]} at row {window.row_off + row}, col '
                    f'{window.col_off + col}; expected a building mask of 0/1 or 0/255')
  return (data > 0).astype(np.uint8)


def _read(src, bands, **kwargs) -> np.ma.MaskedArray:
  """``src.read`` with a corrupt or truncated file, or NaN pixels the file
  does not declare as nodata, as one DataError line."""
  try:
    data = src.read(list(bands), masked=True, **kwargs)
  except rasterio.errors.RasterioError as e:
    reason = str(e).split('\n')[0]
    raise DataError(f'{src.name}: cannot read pixels, the file is truncated or corrupt ({reason})') from None
  if data.dtype.kind == 'f':
    bad = ~np.isfinite(data.filled(0))  # masked (declared nodata) pixels are filled
    if bad.any():
      band, row, col = (int(v[0]) for v in np.nonzero(bad))
      raise DataError(f'{src.name}: band {bands[band]} has NaN/inf pixels (first at row {row}, col {col} '
                      f'of the read window) but nodata is {src.nodata}; expected finite pixels, '
                      'or nodata=nan declared in the file')
  return data


def check_bands(path, src, bands: Sequence[int] | None) -> tuple[int, ...]:
  """The bands to read: as given, else all of a one- or three-band scene.
  One band is replicated to RGB; more than three (RGB first, then NIR or
  other bands) reach the model, whose first convolution takes them."""
  if bands is None:
    if src.count not in (1, 3):
      raise DataError(f'{path}: the scene has {src.count} bands and no "bands" entry; expected '
                      'bands: [r, g, b] (or [b], or [r, g, b, nir, ...]) choosing which to read')
    bands = tuple(range(1, src.count + 1))
  if len(bands) == 2:
    raise DataError(f'{path}: expected 1, 3 or more bands to read (red, green, blue first), got {list(bands)}')
  for b in bands:
    if not 1 <= int(b) <= src.count:
      raise DataError(f'{path}: band {b} does not exist (the file has {src.count} bands, numbered from 1)')
  return tuple(int(b) for b in bands)


def chip_channels(num_bands: int) -> int:
  """Channels of a chip read from ``num_bands`` bands: one band is replicated to RGB."""
  return 3 if num_bands == 1 else num_bands


def scene_statistics(src, bands: Sequence[int], percentiles=(2.0, 98.0)) -> BandStats:
  """Percentiles of valid pixels from a decimated read of at most 512 px a side."""
  scale = max(1.0, max(src.height, src.width) / _STATS_SAMPLE_SIDE)
  shape = (len(bands), max(1, int(src.height / scale)), max(1, int(src.width / scale)))
  data = _read(src, bands, out_shape=shape)
  lows, highs = [], []
  for band in data:
    valid = band.compressed().astype(np.float64)
    if valid.size == 0:
      raise DataError(f'{src.name}: no valid pixels (everything is nodata)')
    lo, hi = np.percentile(valid, percentiles)
    lows.append(float(lo))
    highs.append(float(hi if hi > lo else lo + 1.0))
  return BandStats(tuple(lows), tuple(highs))


def chip_windows(height: int, width: int, size: int, overlap: int) -> list[Window]:
  """Windows of ``size`` px with ``overlap``; the last row/column is moved
  back to the scene's edge so the whole scene is covered."""
  if not 0 <= overlap < size:
    raise DataError(f'chip overlap must be in [0, {size}), got {overlap}')
  if height < size or width < size:
    return []
  stride = size - overlap

  def offsets(n):
    out = list(range(0, n - size + 1, stride))
    if out[-1] != n - size:
      out.append(n - size)
    return out

  return [Window(c, r, size, size) for r in offsets(height) for c in offsets(width)]


def read_chip(src, window: Window, bands: Sequence[int], stats: BandStats,
              max_nodata: float) -> tuple[np.ndarray, float] | None:
  """(uint8 image [S, S, C], valid fraction), or None for a mostly-nodata
  chip; C = ``chip_channels(len(bands))``."""
  data = _read(src, bands, window=window)
  invalid = np.ma.getmaskarray(data).any(axis=0)
  valid_fraction = 1.0 - float(invalid.mean())
  if 1.0 - valid_fraction > max_nodata:
    return None
  return _stretched(data, stats), valid_fraction


def read_overview(src, bands: Sequence[int], stats: BandStats, max_side: int) -> np.ndarray:
  """The scene's first three bands as chips see them (uint8 [h, w, 3]),
  decimated to at most ``max_side`` px a side: a picture of a whole scene
  without reading it at full resolution."""
  scale = max(1.0, max(src.height, src.width) / max_side)
  shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
  rgb = tuple(bands)[:3]
  data = _read(src, rgb, out_shape=(len(rgb), *shape), resampling=Resampling.average)
  image = _stretched(data, BandStats(tuple(stats.low)[:len(rgb)], tuple(stats.high)[:len(rgb)]))
  return image[..., :3]


def _stretched(data: np.ma.MaskedArray, stats: BandStats) -> np.ndarray:
  """[bands, h, w] raw values to uint8 [h, w, C] by the scene's percentiles
  (nodata black, one band replicated to RGB)."""
  invalid = np.ma.getmaskarray(data).any(axis=0)
  low = np.asarray(stats.low)[:, None, None]
  high = np.asarray(stats.high)[:, None, None]
  x = (np.nan_to_num(data.filled(low[:, 0, 0].mean()).astype(np.float64)) - low) / (high - low)
  image = np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
  image[:, invalid] = 0
  if image.shape[0] == 1:
    image = np.repeat(image, 3, axis=0)
  return np.ascontiguousarray(image.transpose(1, 2, 0))


def read_geojson(path: str | pathlib.Path) -> tuple[list[dict], CRS]:
  """Features of a GeoJSON file and their CRS (RFC 7946: WGS84 when absent)."""
  path = str(path)
  try:
    with open(path) as f:
      obj = json.load(f)
  except OSError as e:
    raise DataError(f'{path}: cannot read the label file ({e.strerror})') from None
  except json.JSONDecodeError as e:
    raise DataError(f'{path}: not valid GeoJSON (JSON error at line {e.lineno}: {e.msg})') from None
  if not isinstance(obj, dict) or 'type' not in obj:
    raise DataError(f'{path}: not GeoJSON (expected an object with a "type" member)')
  crs = WGS84
  if obj.get('crs') is not None:
    name = (obj['crs'].get('properties') or {}).get('name') if isinstance(obj['crs'], dict) else None
    try:
      crs = CRS.from_user_input(name)
    except (rasterio.errors.CRSError, TypeError, ValueError):
      raise DataError(f'{path}: cannot read its "crs" member {obj["crs"]!r}; '
                      'expected e.g. {"type": "name", "properties": {"name": "EPSG:32633"}}') from None
  if obj['type'] == 'FeatureCollection':
    features = obj.get('features')
    if not isinstance(features, list):
      raise DataError(f'{path}: FeatureCollection without a "features" list')
  elif obj['type'] == 'Feature':
    features = [obj]
  else:
    features = [{'type': 'Feature', 'geometry': obj, 'properties': {}}]
  return features, crs


def load_footprints(path: str | pathlib.Path, dst_crs) -> Footprints:
  """Building polygons of a GeoJSON file, repaired and reprojected to
  ``dst_crs`` (None: a scene without georeference, whose polygons are in
  its pixel coordinates and are taken as they are)."""
  features, crs = read_geojson(path)
  geoms, bounds, index, skipped = [], [], [], {}

  def skip(reason):
    skipped[reason] = skipped.get(reason, 0) + 1

  for position, feature in enumerate(features):
    geometry = feature.get('geometry') if isinstance(feature, dict) else None
    if not isinstance(geometry, dict) or not geometry:
      skip('no geometry')
      continue
    if geometry.get('type') not in ('Polygon', 'MultiPolygon'):
      skip(f'{geometry.get("type")} is not a footprint')
      continue
    try:
      shape = shapely.geometry.shape(geometry)
    except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.GEOSException):
      skip('malformed coordinates')
      continue
    if not np.isfinite(shapely.get_coordinates(shape)).all():
      skip('non-finite coordinates')
      continue
    if shape.is_empty:
      skip('empty polygon')
      continue
    if not shape.is_valid:
      shape = shapely.validation.make_valid(shape)  # self-intersections: repaired
      skipped['repaired (self-intersecting)'] = skipped.get('repaired (self-intersecting)', 0) + 1
    geometry = shapely.geometry.mapping(shape)
    if dst_crs is not None and CRS.from_user_input(dst_crs) != crs:
      try:
        geometry = rasterio.warp.transform_geom(crs, dst_crs, geometry)
      # PROJ's own errors (e.g. an invalid latitude) reach us as a class that
      # rasterio does not export: any failure here means "cannot reproject".
      except Exception:  # noqa: BLE001
        skip(f'cannot be reprojected from {crs.to_string()}')
        continue
    box = rasterio.features.bounds(geometry)
    if not np.isfinite(box).all():  # coordinates outside the source CRS's domain
      skip(f'cannot be reprojected from {crs.to_string()}')
      continue
    geoms.append(geometry)
    bounds.append(box)
    index.append(position)
  return Footprints(geoms, np.asarray(bounds, np.float64).reshape(-1, 4), skipped,
                    np.asarray(index, np.int64), len(features))


def rasterize_chip(footprints: Footprints, transform, size: int) -> np.ndarray:
  """Footprints burnt onto one chip's grid (pixel centres inside -> 1)."""
  left, top = transform @ (0, 0)
  right, bottom = transform @ (size, size)
  shapes = footprints.within(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
  if not shapes:
    return np.zeros((size, size), np.uint8)
  return rasterio.features.rasterize(((g, 1) for g in shapes), out_shape=(size, size),
                                     transform=transform, fill=0, dtype=np.uint8)


def iter_chips(src, bands, stats: BandStats, size: int, overlap: int, max_nodata: float,
               wanted: Callable[[int], bool] = lambda index: True,
               ) -> Iterator[tuple[int, Window, np.ndarray, float]]:
  """(chip index, window, image, valid fraction) for each kept chip; the
  pixels of a chip are read only when ``wanted(chip index)``."""
  for index, window in enumerate(chip_windows(src.height, src.width, size, overlap)):
    if not wanted(index):
      continue
    chip = read_chip(src, window, bands, stats, max_nodata)
    if chip is not None:
      yield index, window, chip[0], chip[1]
