"""Real-format fixtures written with rasterio: scenes, footprints, manifests."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import rasterio
import rasterio.warp
from affine import Affine
from rasterio.crs import CRS

UTM = CRS.from_epsg(32633)
MERCATOR = CRS.from_epsg(3857)


def write_scene(path: pathlib.Path, data: np.ndarray, crs, transform, nodata=None, tiled=False,
                blocksize=64) -> pathlib.Path:
  """``data`` is [bands, H, W]."""
  profile = dict(driver='GTiff', height=data.shape[1], width=data.shape[2], count=data.shape[0],
                 dtype=data.dtype, crs=crs, transform=transform, nodata=nodata)
  if tiled:
    profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
  with rasterio.open(path, 'w', **profile) as dst:
    dst.write(data)
  return path


def pixel_rects(rng: np.random.Generator, height: int, width: int, count: int, lo=6, hi=18):
  rects = []
  for _ in range(count):
    h, w = rng.integers(lo, hi, size=2)
    r, c = rng.integers(0, height - h), rng.integers(0, width - w)
    rects.append((int(r), int(c), int(h), int(w)))
  return rects


def rects_to_polygons(rects, transform: Affine) -> list[dict]:
  polys = []
  for r, c, h, w in rects:
    corners = [(c, r), (c + w, r), (c + w, r + h), (c, r + h), (c, r)]
    polys.append({'type': 'Polygon', 'coordinates': [[list(transform @ xy) for xy in corners]]})
  return polys


def write_geojson(path: pathlib.Path, polygons: list[dict], src_crs, dst_crs=None,
                  crs_member=None) -> pathlib.Path:
  """Polygons given in ``src_crs``, written in ``dst_crs`` (default WGS84, no crs member)."""
  dst_crs = dst_crs or CRS.from_epsg(4326)
  feats = [{'type': 'Feature', 'properties': {'i': i},
            'geometry': rasterio.warp.transform_geom(src_crs, dst_crs, p)} for i, p in enumerate(polygons)]
  obj = {'type': 'FeatureCollection', 'features': feats}
  if crs_member:
    obj['crs'] = {'type': 'name', 'properties': {'name': crs_member}}
  path.write_text(json.dumps(obj))
  return path


def burn(rects, height, width) -> np.ndarray:
  mask = np.zeros((height, width), np.uint8)
  for r, c, h, w in rects:
    mask[r:r + h, c:c + w] = 1
  return mask


def rgb_scene_with_buildings(rng, height, width, rects) -> np.ndarray:
  img = np.empty((3, height, width), np.uint8)
  img[0], img[1], img[2] = 150, 130, 100
  img = (img + rng.integers(0, 20, img.shape)).astype(np.uint8)
  m = burn(rects, height, width) > 0
  img[0][m], img[1][m], img[2][m] = 200, 60, 50
  return img


def write_project(root: pathlib.Path, *, size=96, seed=0, pool_labels=True, truth=None) -> pathlib.Path:
  """Three small RGB scenes (UTM source, Mercator pool and test) and a manifest;
  ``truth``, a dict, receives each scene's (rects, transform, crs)."""
  rng = np.random.default_rng(seed)
  root.mkdir(parents=True, exist_ok=True)
  scenes = []
  for name, crs, origin, region in (('src', UTM, (500000.0, 4500000.0), 'source'),
                                    ('pool', MERCATOR, (1500000.0, 5000000.0), 'target_pool'),
                                    ('test', MERCATOR, (1510000.0, 5000000.0), 'target_test')):
    transform = Affine(0.5, 0, origin[0], 0, -0.5, origin[1])
    rects = pixel_rects(rng, size, size, 10)
    if truth is not None:
      truth[name] = (rects, transform, crs)
    write_scene(root / f'{name}.tif', rgb_scene_with_buildings(rng, size, size, rects), crs, transform)
    entry = {'image': f'{name}.tif', 'region': region}
    if region != 'target_pool' or pool_labels:
      write_geojson(root / f'{name}.geojson', rects_to_polygons(rects, transform), crs)
      entry['labels'] = f'{name}.geojson'
    scenes.append(entry)
  manifest = root / 'manifest.yaml'
  manifest.write_text(json.dumps({'tile_size': 32, 'overlap': 0, 'scenes': scenes}, indent=1))
  return manifest
