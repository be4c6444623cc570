"""Prioritised fine-tuning with the `iou` priority formula.

    python -m experiments.run --config=configs/iou_priority.py --workdir=runs/iou_priority
    python -m experiments.run --config=configs/iou_priority.py:smoke --workdir=/tmp/smoke
"""

from priojax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config(arg)
  config.priority.name = 'iou'
  return config
