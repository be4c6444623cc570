"""The manifest: which scenes, which label files, which region each is.

A YAML or JSON file (JSON is YAML), paths relative to the manifest::

  tile_size: 64          # optional, else config.data.tile_size
  overlap: 0             # px shared by neighbouring chips
  max_nodata: 0.5        # chips with more nodata than this are skipped
  bands: [1, 2, 3]       # optional: bands to read (one band is replicated to RGB;
                         # [r, g, b, nir, ...]: more bands reach the model)
  scenes:
    - {image: source/a.tif, labels: source/a.geojson, region: source}
    - {image: crisis/b.tif, region: target_pool, bands: [3, 2, 1]}
    - {image: crisis/c.tif, labels: crisis/c.geojson, region: target_test}
    - {image: crisis/d.png, mask: crisis/d_mask.png, region: target_test}

Labels are ``labels:`` (a GeoJSON of building footprints) or ``mask:`` (a
raster of the image's size, GeoTIFF or PNG, 0/255 or 0/1). An image without
georeference (PNG/JPEG, or a GeoTIFF without CRS) needs a ``mask:``; its
chips carry pixel windows only. Without ``bands:``, a one-band scene is
replicated to three channels and a three-band scene read as RGB; any other
band count needs ``bands:``. More than three bands (red, green, blue, then
NIR or others; the same count for every scene) reach the model: a
pretrained encoder's first convolution is extended for them.

A labels file whose polygons reach no part of its scene is refused (the
usual sign of a wrong CRS), and so is one without a polygon, unless the
scene says it truly has no building: ``no_buildings: true``.

Regions: ``source`` (pretraining; split into train/val by chip),
``target_pool`` (the tiles to prioritise; labels optional) and
``target_test`` (evaluation; labels required).

Downloaded datasets can be named by folder instead of scene by scene::

    - {spacenet: SN2/AOI_2_Vegas_Train, region: source}      # PS-RGB/ + geojson_buildings/
    - {xbd: xview2/train, region: target_test, phase: pre}   # images/ + labels/
    - {inria: AerialImageDataset/train, region: source}     # images/ + gt/ masks

xBD pairs are converted once into GeoTIFF + GeoJSON under
``.priojax_converted/`` beside the manifest (see layouts.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

import yaml

from priojax.geo import layouts
from priojax.errors import DataError

REGIONS = ('source', 'target_pool', 'target_test')


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  id: str
  image: pathlib.Path
  labels: pathlib.Path | None  # GeoJSON footprints
  region: str
  bands: tuple[int, ...] | None  # None: all of a one- or three-band scene
  mask: pathlib.Path | None = None  # a raster mask instead of footprints
  no_buildings: bool = False  # the scene truly has none (an empty labels file is right)

  @property
  def label_file(self) -> pathlib.Path | None:
    return self.labels or self.mask


@dataclasses.dataclass(frozen=True)
class Manifest:
  path: pathlib.Path
  scenes: tuple[SceneSpec, ...]
  tile_size: int | None
  overlap: int
  max_nodata: float

  def fingerprint(self) -> str:
    """Changes whenever the manifest or what a file it names holds changes;
    not when files are touched, copied or moved with their manifest."""
    h = hashlib.sha256(self.path.read_bytes())
    for s in self.scenes:
      h.update(f'{s.id}:{s.region}:{s.bands}:{s.no_buildings}'.encode())
      for p in (s.image, s.labels, s.mask):
        h.update((file_fingerprint(p) if p is not None else '-').encode())
    return h.hexdigest()[:12]

  def region(self, name: str) -> list[SceneSpec]:
    return [s for s in self.scenes if s.region == name]


_WHOLE_FILE = 256 << 20
_BLOCK = 1 << 20
_SAMPLED_BLOCKS = 64


def file_fingerprint(path: pathlib.Path) -> str:
  """A hash of what a file holds, not of when it was written: its size and
  its bytes, all of them up to 256 MiB (every label file in practice) and
  64 evenly spaced 1 MiB blocks, first and last included, of a larger
  raster (a whole 20 GB orthophoto would take minutes at each start)."""
  size = path.stat().st_size
  h = hashlib.sha256(str(size).encode())
  with open(path, 'rb') as f:
    if size <= _WHOLE_FILE:
      for chunk in iter(lambda: f.read(_BLOCK), b''):
        h.update(chunk)
    else:
      step = (size - _BLOCK) / (_SAMPLED_BLOCKS - 1)
      for k in range(_SAMPLED_BLOCKS):
        f.seek(int(round(k * step)))
        h.update(f.read(_BLOCK))
  return h.hexdigest()[:16]


def _field(path, where: str, obj: dict, name: str, kind, default=None, required=False):
  if name not in obj or obj[name] is None:
    if required:
      raise DataError(f'{path}: {where} has no "{name}"; expected {kind.__name__ if isinstance(kind, type) else kind}')
    return default
  value = obj[name]
  ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
  if not ok:
    expected = kind.__name__ if isinstance(kind, type) else ' or '.join(k.__name__ for k in kind)
    raise DataError(f'{path}: {where}.{name} is {value!r}; expected {expected}')
  return value


def load_manifest(path: str | pathlib.Path) -> Manifest:
  path = pathlib.Path(path).expanduser().absolute()
  try:
    obj = yaml.safe_load(path.read_text())
  except OSError as e:
    raise DataError(f'{path}: cannot read the manifest ({e.strerror})') from None
  except yaml.YAMLError as e:
    raise DataError(f'{path}: not valid YAML/JSON ({str(e).splitlines()[0]})') from None
  if not isinstance(obj, dict):
    raise DataError(f'{path}: expected a mapping with a "scenes" list, got {type(obj).__name__}')
  scenes_obj = _field(path, 'the manifest', obj, 'scenes', list, required=True)
  if not scenes_obj:
    raise DataError(f'{path}: "scenes" is empty; expected at least one scene')
  default_bands = _field(path, 'the manifest', obj, 'bands', list)
  scenes_obj = _expand_layouts(path, scenes_obj)
  scenes, seen = [], set()
  for i, s in enumerate(scenes_obj):
    where = f'scenes[{i}]'
    if not isinstance(s, dict):
      raise DataError(f'{path}: {where} is {s!r}; expected a mapping with "image" and "region"')
    image = path.parent / _field(path, where, s, 'image', str, required=True)
    labels = _field(path, where, s, 'labels', str)
    labels = path.parent / labels if labels else None
    mask = _field(path, where, s, 'mask', str)
    mask = path.parent / mask if mask else None
    if labels is not None and mask is not None:
      raise DataError(f'{path}: {where} has both "labels" and "mask"; expected one of them')
    region = _field(path, where, s, 'region', str, required=True)
    if region not in REGIONS:
      raise DataError(f'{path}: {where}.region is {region!r}; expected one of {", ".join(REGIONS)}')
    if region in ('source', 'target_test') and labels is None and mask is None:
      raise DataError(f'{path}: {where} is in region {region!r} and needs "labels" (a GeoJSON of '
                      'footprints) or "mask" (a raster mask)')
    bands = _field(path, where, s, 'bands', list, default=default_bands)
    if bands is not None and not (bands and all(isinstance(b, int) and not isinstance(b, bool) and b >= 1
                                                for b in bands)):
      raise DataError(f'{path}: {where}.bands is {bands!r}; expected a list of band numbers from 1')
    scene_id = _field(path, where, s, 'id', str, default=image.stem)
    if scene_id in seen:
      raise DataError(f'{path}: {where}.id {scene_id!r} is used twice; scene ids must be unique')
    seen.add(scene_id)
    for p, what in ((image, 'image'), (labels, 'labels'), (mask, 'mask')):
      if p is not None and not p.is_file():
        raise DataError(f'{path}: {where}.{what} {p} does not exist')
    no_buildings = _field(path, where, s, 'no_buildings', bool, default=False)
    scenes.append(SceneSpec(scene_id, image, labels, region, tuple(bands) if bands else None, mask,
                            no_buildings))
  for region in REGIONS:
    if not any(s.region == region for s in scenes):
      raise DataError(f'{path}: no scene in region {region!r}; expected at least one '
                      '(source to pretrain, target_pool to prioritise, target_test to evaluate)')
  tile_size = _field(path, 'the manifest', obj, 'tile_size', int)
  if tile_size is not None and not 8 <= tile_size <= 4096:
    raise DataError(f'{path}: tile_size is {tile_size}; expected chips of 8 to 4096 px')
  overlap = _field(path, 'the manifest', obj, 'overlap', int, default=0)
  if overlap < 0 or (tile_size is not None and overlap >= tile_size):
    raise DataError(f'{path}: overlap is {overlap}; expected 0 <= overlap < tile_size')
  max_nodata = float(_field(path, 'the manifest', obj, 'max_nodata', (int, float), default=0.5))
  if not 0.0 <= max_nodata <= 1.0:
    raise DataError(f'{path}: max_nodata is {max_nodata}; expected a fraction in [0, 1]')
  return Manifest(path, tuple(scenes), tile_size, overlap, max_nodata)


def _expand_layouts(path: pathlib.Path, entries: list) -> list:
  """Replaces ``spacenet:``, ``xbd:`` and ``inria:`` entries by one entry per scene."""
  out = []
  for i, entry in enumerate(entries):
    kinds = [k for k in ('spacenet', 'xbd', 'inria') if isinstance(entry, dict) and k in entry]
    if not kinds:
      out.append(entry)
      continue
    where = f'scenes[{i}]'
    common = {k: v for k, v in entry.items() if k in ('region', 'bands')}
    kind = kinds[0]
    folder = path.parent / _field(path, where, entry, kind, str, required=True)
    try:
      if kind == 'spacenet':
        found = layouts.spacenet_scenes(folder, _field(path, where, entry, 'product', str))
      elif kind == 'inria':
        found = layouts.inria_scenes(folder)
      else:
        phase = _field(path, where, entry, 'phase', str, default='pre')
        found = layouts.xbd_scenes(folder, path.parent / '.priojax_converted' / folder.name, phase)
    except DataError as e:  # name the manifest entry too, not only the folder
      raise DataError(f'{path}: {where}.{kind}: {e}') from None
    for scene in found:
      scene = {**scene, **common}
      for key in ('labels', 'mask'):
        if scene.get(key) is None:
          scene.pop(key, None)
      out.append(scene)
  return out
