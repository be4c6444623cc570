"""Which data a config names: the splits as ``TileSource``s, with the
scenes' metadata for chip data."""

from __future__ import annotations

from priojax import distributed
from priojax.config_checks import tile_size_expected
from priojax.data import builders, rio_grande
from priojax.data.pool import TileSource
from priojax.errors import DataError
from priojax.geo import builder as geo_builder
from priojax.geo.manifest import load_manifest


def load_data(config) -> tuple[dict[str, TileSource], dict | None]:
  """Split name -> TileSource, and the scenes' metadata for chip data (None
  for the synthetic benchmark).

  In a multi-process run the main process prepares the data (a TFDS build
  writes files) while the others wait; then they open what it prepared. A
  data error on the main process is raised on every process."""
  if distributed.process_count() == 1:
    return _load(config)
  result, error = None, None
  if distributed.is_main():
    try:
      result = _load(config)
    except DataError as e:
      error = str(e)
  error = distributed.gather_objects(error)[0]
  if error:
    raise DataError(error)
  return result if result is not None else _load(config)


def _load(config) -> tuple[dict[str, TileSource], dict | None]:
  d = config.data
  seed = data_seed(config)
  if d.kind == 'geotiff':
    manifest = load_manifest(d.manifest)
    expected = manifest.tile_size and tile_size_expected(config, manifest.tile_size)
    if expected:
      raise DataError(f'{manifest.path}: tile_size is {manifest.tile_size}; expected {expected}')
    gcfg = geo_builder.make_geo_config(manifest, tile_size=d.tile_size,
                                       source_val_fraction=d.source_val_fraction, seed=seed)
    sources, meta = geo_builder.load_geo_chips(gcfg, d.data_dir)
  elif d.kind == 'rio_grande_dsg':
    rcfg = rio_grande.make_rio_grande_config(tile_size=d.tile_size, seed=seed,
                                             source_val_fraction=d.source_val_fraction)
    sources, meta = rio_grande.load_rio_grande(rcfg, d.data_dir)
  else:
    bcfg = builders.make_builder_config(
        tile_size=d.tile_size, seed=seed, num_source_train=d.num_source_train,
        num_source_val=d.num_source_val, num_target_pool=d.num_target_pool,
        num_target_test=d.num_target_test)
    sources, meta = builders.load_crisis_bench(bcfg, d.data_dir), None
  data = {name: TileSource(src, name) for name, src in sources.items()}
  for name, src in data.items():
    if len(src) == 0 and name != 'source_val':
      raise DataError(f'{data_name(config)}: split {name!r} has no chips (scenes smaller than '
                      f'{d.tile_size} px, or mostly nodata?)')
  test = data['target_test']
  if not any(b['mask'].any() for b in test.batches(256, fields=('mask',))):
    raise DataError(f'{data_name(config)}: the target_test split has no building pixel in any of its '
                    f'{len(test)} chips; test IoU would read 1.0 whatever the model does (labels in '
                    'the wrong place, or no buildings in the test scenes?)')
  return data, meta


def data_seed(config) -> int:
  """The seed of the data (the synthetic benchmark's tiles, the source
  chips' train/val split): ``data.split_seed``, or the run's seed when -1."""
  return config.data.split_seed if config.data.split_seed >= 0 else config.seed


def data_name(config) -> str:
  """What the data is, for messages and titles."""
  d = config.data
  return {'geotiff': d.manifest, 'rio_grande_dsg': 'the Rio Grande do Sul (DSG) benchmark'}.get(
      d.kind, 'the crisis benchmark')
