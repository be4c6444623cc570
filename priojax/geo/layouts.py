"""Dataset layouts people download, expanded into manifest scenes.

* SpaceNet: an AOI folder with ``PS-RGB/`` (or ``PAN/``, ``RGB-PanSharpen/``)
  GeoTIFFs and ``geojson_buildings/`` (or ``geojson/buildings/``) label files,
  matched by the image id that ends both names (``..._img123.tif`` with
  ``..._img123.geojson``).
* Inria Aerial Image Labeling (and WHU / Massachusetts Buildings arranged
  the same way): ``images/<name>.tif`` with ``gt/<name>.tif`` raster masks
  (0/255) of the same name; the test split has no ``gt/`` (a pool without
  labels).
* xBD / xView2: ``images/<name>_pre_disaster.png`` with
  ``labels/<name>_pre_disaster.json``, whose polygons are WKT in pixel
  coordinates (``features.xy``) and in lng/lat (``features.lng_lat``). The
  pixel polygons make the masks; the pixel/lng-lat vertex pairs give the
  image's affine georeference (least squares) so selected chips can be
  exported. Each pair is converted once into a GeoTIFF (EPSG:4326) plus a
  GeoJSON of the pixel polygons mapped through that same affine, so that
  rasterising them gives back exactly the pixel polygons.
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import rasterio
import shapely.affinity
import shapely.errors
import shapely.geometry
import shapely.wkt
from affine import Affine

from priojax.geo.raster import WGS84
from priojax.errors import DataError
from priojax.atomic_io import atomic_path, atomic_write_text

_SPACENET_IMAGE_DIRS = ('PS-RGB', 'PAN', 'RGB-PanSharpen', 'PS-MS', 'MS')
_SPACENET_LABEL_DIRS = ('geojson_buildings', 'geojson/buildings')
_RASTER_SUFFIXES = ('.tif', '.tiff', '.png', '.jpg', '.jpeg')
_TRAILING_ID = re.compile(r'(img\d+|tile_\d+|\d+)$')


def _image_key(stem: str) -> str:
  m = _TRAILING_ID.search(stem)
  return m.group(1) if m else stem


def spacenet_scenes(aoi: pathlib.Path, product: str | None = None) -> list[dict]:
  """Scene entries (image, labels or None) of a SpaceNet AOI folder."""
  aoi = pathlib.Path(aoi)
  if not aoi.is_dir():
    raise DataError(f'{aoi}: not a SpaceNet AOI folder (it does not exist)')
  dirs = [product] if product else [d for d in _SPACENET_IMAGE_DIRS if (aoi / d).is_dir()]
  if not dirs or not (aoi / dirs[0]).is_dir():
    raise DataError(f'{aoi}: no SpaceNet image folder; expected one of {", ".join(_SPACENET_IMAGE_DIRS)}')
  images = sorted((aoi / dirs[0]).glob('*.tif'))
  if not images:
    raise DataError(f'{aoi / dirs[0]}: no .tif images')
  label_dir = next((aoi / d for d in _SPACENET_LABEL_DIRS if (aoi / d).is_dir()), None)
  labels = {}
  if label_dir is not None:
    labels = {_image_key(p.stem): p for p in label_dir.glob('*.geojson')}
  return [{'id': f'{aoi.name}_{p.stem}', 'image': str(p),
           'labels': str(labels[_image_key(p.stem)]) if _image_key(p.stem) in labels else None}
          for p in images]


def inria_scenes(root: pathlib.Path) -> list[dict]:
  """Scene entries (image, mask or None) of an Inria-style folder."""
  root = pathlib.Path(root)
  images = sorted(p for p in (root / 'images').glob('*') if p.suffix.lower() in _RASTER_SUFFIXES)
  if not images:
    raise DataError(f'{root}: no images/*.tif (is this an Inria-style folder with images/ and gt/?)')
  scenes = []
  for p in images:
    gt = next((q for q in (root / 'gt' / f'{p.stem}{s}' for s in _RASTER_SUFFIXES) if q.is_file()), None)
    scenes.append({'id': f'{root.name}_{p.stem}', 'image': str(p), 'mask': str(gt) if gt else None})
  return scenes


def fit_affine(pixel: np.ndarray, world: np.ndarray) -> Affine:
  """Least-squares affine with world ≈ A @ (col, row, 1)."""
  if len(pixel) < 3 or np.linalg.matrix_rank(np.c_[pixel, np.ones(len(pixel))]) < 3:
    raise ValueError('fewer than three non-collinear vertex pairs')
  design = np.c_[pixel, np.ones(len(pixel))]
  coef, *_ = np.linalg.lstsq(design, world, rcond=None)
  (a, d), (b, e), (c, f) = coef
  return Affine(a, b, c, d, e, f)


def _xbd_polygons(label_path: pathlib.Path, obj: dict, key: str) -> list:
  try:
    return [shapely.wkt.loads(f['wkt']) for f in obj['features'][key]]
  except (KeyError, TypeError) as e:
    raise DataError(f'{label_path}: not an xBD label file (missing features.{key}: {e})') from None
  except shapely.errors.ShapelyError as e:
    raise DataError(f'{label_path}: unreadable WKT in features.{key} ({e})') from None


def convert_xbd_pair(image: pathlib.Path, label: pathlib.Path, out_dir: pathlib.Path) -> dict:
  """xBD PNG + JSON -> georeferenced GeoTIFF + GeoJSON (once; reused after)."""
  out_dir.mkdir(parents=True, exist_ok=True)
  tif, geojson = out_dir / f'{image.stem}.tif', out_dir / f'{image.stem}.geojson'
  newest_input = max(image.stat().st_mtime_ns, label.stat().st_mtime_ns)
  if tif.exists() and geojson.exists() and tif.stat().st_mtime_ns >= newest_input:
    return {'id': image.stem, 'image': str(tif), 'labels': str(geojson)}
  try:
    obj = json.loads(label.read_text())
  except json.JSONDecodeError as e:
    raise DataError(f'{label}: not valid JSON (line {e.lineno}: {e.msg})') from None
  xy, lnglat = _xbd_polygons(label, obj, 'xy'), _xbd_polygons(label, obj, 'lng_lat')
  pairs = [(np.asarray(p.exterior.coords), np.asarray(q.exterior.coords))
           for p, q in zip(xy, lnglat) if len(p.exterior.coords) == len(q.exterior.coords)]
  try:
    transform = fit_affine(np.concatenate([p for p, _ in pairs]) if pairs else np.zeros((0, 2)),
                           np.concatenate([q for _, q in pairs]) if pairs else np.zeros((0, 2)))
  except ValueError:
    raise DataError(f'{label}: cannot georeference {image.name}: it has no building polygons '
                    'pairing pixel and lng/lat coordinates') from None
  try:
    with rasterio.open(image) as src:
      data = src.read()
  except rasterio.errors.RasterioIOError as e:
    raise DataError(f'{image}: not a readable image ({str(e).splitlines()[0]})') from None
  features = [{'type': 'Feature', 'properties': {},
               'geometry': shapely.geometry.mapping(shapely.affinity.affine_transform(
                   p, [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]))}
              for p in xy]
  # The GeoJSON first: the GeoTIFF's mtime says the pair is complete.
  atomic_write_text(geojson, json.dumps({'type': 'FeatureCollection', 'features': features}))
  with atomic_path(tif) as tmp, rasterio.open(
      tmp, 'w', driver='GTiff', height=data.shape[1], width=data.shape[2], count=data.shape[0],
      dtype=data.dtype, crs=WGS84, transform=transform) as dst:
    dst.write(data)
  return {'id': image.stem, 'image': str(tif), 'labels': str(geojson)}


def xbd_scenes(root: pathlib.Path, out_dir: pathlib.Path, phase: str = 'pre') -> list[dict]:
  """Scene entries of an xBD folder (``images/`` and ``labels/``)."""
  root = pathlib.Path(root)
  images = sorted((root / 'images').glob(f'*_{phase}_disaster.png'))
  if not images:
    raise DataError(f'{root}: no images/*_{phase}_disaster.png (is this an xBD folder?)')
  scenes = []
  for image in images:
    label = root / 'labels' / f'{image.stem}.json'
    if not label.is_file():
      raise DataError(f'{image}: its label file {label} does not exist')
    scenes.append(convert_xbd_pair(image, label, out_dir))
  return scenes
