"""Prioritised fine-tuning with the `entropy` priority formula.

    python -m experiments.run --config=configs/entropy.py --workdir=runs/entropy
    python -m experiments.run --config=configs/entropy.py:smoke --workdir=/tmp/smoke
"""

from priojax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config(arg)
  config.priority.name = 'entropy'
  return config
