"""Prioritised fine-tuning with the `random` priority formula.

    python -m experiments.run --config=configs/random.py --workdir=runs/random
    python -m experiments.run --config=configs/random.py:smoke --workdir=/tmp/smoke
"""

from priojax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config(arg)
  config.priority.name = 'random'
  return config
