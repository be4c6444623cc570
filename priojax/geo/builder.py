"""TFDS builder of chips cut from a user's scenes (see manifest.py).

Each chip keeps its scene id, window, affine transform (and, in the
dataset's metadata, its scene's CRS and band statistics), so that a selected
chip can be written back as a georeferenced file. A scene without
georeference has CRS ``None`` in the metadata and its chips' transforms are
pixel grids. Chip ids are ``scene_index * 1_000_000 + chip_index`` in
manifest order.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from priojax import rngs
from priojax.geo import raster as geo
from priojax.data.builders import prepare, tile_features
from priojax.geo.manifest import Manifest, file_fingerprint, load_manifest
from priojax.geo.spatial_index import boxes_overlap
from priojax.errors import DataError

SPLITS = ('source_train', 'source_val', 'target_pool', 'target_test')
CHIPS_PER_SCENE = 1_000_000


@dataclasses.dataclass
class GeoChipsConfig(tfds.core.BuilderConfig):
  manifest: str = ''
  tile_size: int = 64
  source_val_fraction: float = 0.2
  seed: int = 0
  channels: int = 3  # RGB, or RGB and further bands (manifest_channels)


def manifest_channels(manifest: Manifest) -> int:
  """The chips' channel count, the same for every scene: 3 for one- and
  three-band reads, else the number of bands read."""
  found = {}
  for spec in manifest.scenes:
    with geo.open_scene(spec.image) as src:
      found[spec.id] = geo.chip_channels(len(geo.check_bands(spec.image, src, spec.bands)))
  if not found:
    return 3
  first = manifest.scenes[0]
  for other in manifest.scenes[1:]:
    if found[other.id] != found[first.id]:
      raise DataError(f'{other.image}: reads {found[other.id]} channels where {first.image} reads '
                      f'{found[first.id]}; expected the same bands for every scene (set "bands:")')
  return found[first.id]


def make_geo_config(manifest: Manifest, *, tile_size: int, source_val_fraction: float,
                    seed: int) -> GeoChipsConfig:
  size = manifest.tile_size or tile_size
  channels = manifest_channels(manifest)
  name = (f'm{manifest.fingerprint()}_s{size}_v{int(round(source_val_fraction * 100))}_seed{seed}'
          + (f'_c{channels}' if channels != 3 else ''))
  return GeoChipsConfig(name=name, manifest=str(manifest.path), tile_size=int(size),
                        source_val_fraction=float(source_val_fraction), seed=int(seed), channels=channels)


def check_labels_reach_scene(spec, src) -> None:
  """Footprints that miss their scene would make every chip of it "no
  building" (a wrong CRS does exactly that): one line naming the file."""
  fp = geo.load_footprints(spec.labels, src.crs)
  scene = np.asarray([tuple(src.bounds)])
  reach = boxes_overlap(fp.bounds, scene)
  if len(fp.geometries) and not reach.any():
    left, bottom, right, top = src.bounds
    raise DataError(f'{spec.labels}: none of its {len(fp.geometries)} polygons reaches the scene '
                    f'{spec.image} (bounds {left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g} in '
                    f'{src.crs.to_string()}); expected the buildings of that scene (is the file\'s CRS right?)')
  if not len(fp.geometries) and not spec.no_buildings:
    raise DataError(f'{spec.labels}: no building polygon for the scene {spec.image}; expected its '
                    'buildings, or "no_buildings: true" on the scene if it truly has none')


def source_val_chips(seed: int, chip_ids: np.ndarray, fraction: float) -> np.ndarray:
  """Which source chips are held out for the IoU head: a draw per chip id
  from fold_in(seed, 0, 'source_val'), so the split does not depend on the
  scenes' order or the other chips."""
  return rngs.tile_uniforms(seed, 'source_val', chip_ids) < fraction


class GeoChips(tfds.core.GeneratorBasedBuilder):
  """Chips of GeoTIFF scenes with rasterised building footprints."""

  VERSION = tfds.core.Version('1.2.0')
  RELEASE_NOTES = {'1.0.0': 'Chips with window, transform and per-scene CRS and statistics.',
                   '1.1.0': "Source-val split drawn from fold_in(seed, 0, 'source_val') per chip id.",
                   '1.2.0': 'Raster masks, scenes without georeference, bands chosen by band count.'}
  BUILDER_CONFIGS = [GeoChipsConfig(name='default')]

  def _info(self) -> tfds.core.DatasetInfo:
    features = tile_features(
        self.builder_config.tile_size, self.builder_config.channels,
        has_label=tfds.features.Scalar(np.bool_),
        scene=tfds.features.Text(),
        window=tfds.features.Tensor(shape=(4,), dtype=np.int64),  # row, col, h, w
        transform=tfds.features.Tensor(shape=(6,), dtype=np.float64),  # affine a..f
        valid_fraction=tfds.features.Scalar(np.float32))
    return tfds.core.DatasetInfo(builder=self, description=__doc__, features=features,
                                 metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    del dl_manager
    return self._manifest_splits(load_manifest(self.builder_config.manifest))

  def _manifest_splits(self, manifest: Manifest) -> dict:
    """Checks every scene (and its mask) before any chip is written."""
    scenes = {}
    for index, spec in enumerate(manifest.scenes):
      with geo.open_scene(spec.image) as src:
        bands = geo.check_bands(spec.image, src, spec.bands)
        if spec.labels is not None and not geo.georeferenced(src):
          raise DataError(f'{spec.image}: the image has no georeference, so the footprints of '
                          f'{spec.labels} cannot be placed on it; expected a georeferenced image '
                          'or a raster "mask:"')
        if spec.mask is not None:
          geo.open_mask(spec.mask, src).close()
        if spec.labels is not None:
          check_labels_reach_scene(spec, src)
        stats = geo.scene_statistics(src, bands)
        scenes[spec.id] = {
            'index': index, 'region': spec.region, 'image': str(spec.image),
            'fingerprint': file_fingerprint(spec.image),
            'labels': str(spec.label_file) if spec.label_file else None, 'bands': list(bands),
            'crs': src.crs.to_wkt() if geo.georeferenced(src) else None,
            'height': src.height, 'width': src.width,
            'transform': list(src.transform)[:6], 'stats': stats.to_json()}
    self.info.metadata['scenes'] = scenes
    self.info.metadata['overlap'] = manifest.overlap
    self.info.metadata['max_nodata'] = manifest.max_nodata
    return {split: self._generate_examples(manifest, scenes, split) for split in SPLITS}

  def _generate_examples(self, manifest: Manifest, scenes: dict, split: str):
    cfg = self.builder_config
    region = 'source' if split.startswith('source') else split
    for spec in manifest.region(region):
      meta = scenes[spec.id]
      stats = geo.BandStats(tuple(meta['stats']['low']), tuple(meta['stats']['high']))
      with geo.open_scene(spec.image) as src, contextlib.ExitStack() as files:
        footprints = geo.load_footprints(spec.labels, src.crs) if spec.labels else None
        if footprints is not None and footprints.skipped:
          logging.warning('%s: footprints not used or repaired: %s', spec.labels, footprints.skipped)
        mask_src = files.enter_context(geo.open_mask(spec.mask, src)) if spec.mask else None
        n_chips = len(geo.chip_windows(src.height, src.width, cfg.tile_size, manifest.overlap))
        if n_chips > CHIPS_PER_SCENE:
          raise DataError(f'{spec.image}: more than {CHIPS_PER_SCENE} chips; use larger chips')
        first_id = meta['index'] * CHIPS_PER_SCENE
        wanted = np.ones(n_chips, bool)
        if region == 'source':  # decided before any pixel is read
          held_out = source_val_chips(cfg.seed, first_id + np.arange(n_chips), cfg.source_val_fraction)
          wanted = held_out if split == 'source_val' else ~held_out
        kept = 0
        for chip, window, image, valid in geo.iter_chips(src, meta['bands'], stats, cfg.tile_size,
                                                         manifest.overlap, manifest.max_nodata,
                                                         wanted=lambda i: wanted[i]):
          chip_id = first_id + chip
          transform = src.window_transform(window)
          if mask_src is not None:
            mask = geo.read_mask_chip(mask_src, window)
          elif footprints is not None:
            mask = geo.rasterize_chip(footprints, transform, cfg.tile_size)
          else:
            mask = np.zeros((cfg.tile_size,) * 2, np.uint8)
          kept += 1
          yield chip_id, {
              'id': chip_id, 'image': image, 'mask': mask, 'has_label': spec.label_file is not None,
              'scene': spec.id,
              'window': np.array([window.row_off, window.col_off, window.height, window.width], np.int64),
              'transform': np.array(list(transform)[:6], np.float64), 'valid_fraction': valid}
        logging.info('%s: %d chips for %s', spec.image, kept, split)


def load_geo_chips(config: GeoChipsConfig, data_dir: str):
  """Prepares (once per manifest fingerprint) and returns (split -> source, metadata)."""
  builder = prepare(GeoChips, config, data_dir)
  return builder.as_data_source(), dict(builder.info.metadata)
