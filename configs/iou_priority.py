"""Prioritised fine-tuning with the `typical_gain` priority formula.

    python -m experiments.run --config=configs/iou_priority.py --workdir=runs/iou_priority
    python -m experiments.run --config=configs/iou_priority.py:smoke --workdir=/tmp/smoke

`typical_gain` (priojax/priority/budget.py) is the IoU-based strategy the
comparisons support (docs/results.md): each round, one pick per cluster of
the pool's embedding, the tile of highest typicality-weighted expected gain
(1 - predicted IoU) · learnability. Our reading of the paper's formula,
`iou` (1 - predicted IoU alone), is below random on all three benchmarks
on seeds 5-9, where `typical_gain` is below none of random, TypiClust and
foreground-aware random: `--config.priority.name=iou` runs it.
"""

from priojax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config(arg)
  config.priority.name = 'typical_gain'
  return config
