"""Prioritised fine-tuning with the `iou` priority formula.

    python -m experiments.run --config=configs/iou_priority.py --workdir=runs/iou_priority
    python -m experiments.run --config=configs/iou_priority.py:smoke --workdir=/tmp/smoke
"""

from configs import common


def get_config(arg=None):
  config = common.get_config(arg)
  config.priority.name = 'iou'
  return config
