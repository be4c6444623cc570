"""Prioritised fine-tuning with the `entropy` priority formula.

    python -m experiments.run --config=configs/entropy.py --workdir=runs/entropy
    python -m experiments.run --config=configs/entropy.py:smoke --workdir=/tmp/smoke
"""

from configs import common


def get_config(arg=None):
  config = common.get_config(arg)
  config.priority.name = 'entropy'
  return config
