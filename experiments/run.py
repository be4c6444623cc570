r"""Runs (or resumes) prioritised fine-tuning: the synthetic crisis benchmark
by default, real imagery or your own scenes by config.

    python -m experiments.run --config=configs/iou_priority.py --workdir=runs/iou
    python -m experiments.run --config=configs/iou_priority.py:smoke --workdir=/tmp/smoke \
        --config.rounds.k=8

Rerunning with the same ``--workdir`` resumes after the last finished round.

Exit status: 0 when every round is done; 75 (``loop.EXIT_WAITING``, BSD's
EX_TEMPFAIL) when a round waits for annotators' labels (rerun the same
command once they are in place); 2 for a bad config or bad input (one
``error:`` line).
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import launch
from priojax import loop

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and selections go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  history = launch.run_main(argv, _CONFIG, _WORKDIR.value, loop.run)
  if loop.waiting_for_labels(history, _CONFIG.value):
    sys.exit(loop.EXIT_WAITING)


if __name__ == '__main__':
  app.run(main, flags_parser=launch.parse_flags)
