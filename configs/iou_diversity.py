"""Prioritised fine-tuning with the `iou_diversity` priority formula.

    python -m experiments.run --config=configs/iou_diversity.py --workdir=runs/iou_diversity
    python -m experiments.run --config=configs/iou_diversity.py:smoke --workdir=/tmp/smoke
"""

from priojax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config(arg)
  config.priority.name = 'iou_diversity'
  return config
