r"""Runs (or resumes) prioritised fine-tuning: the synthetic crisis benchmark
by default, real imagery or your own scenes by config.

    python -m experiments.run --config=configs/iou_priority.py --workdir=runs/iou
    python -m experiments.run --config=configs/iou_priority.py:smoke --workdir=/tmp/smoke \
        --config.rounds.k=8

Rerunning with the same ``--workdir`` resumes after the last finished round.
With ``--results_section=<name>``, the block of docs/results.md between
``<!-- run:<name> -->`` and ``<!-- /run:<name> -->`` is replaced by the
run's per-round table and learning curve once every round is done.

Exit status: 0 when every round is done; 75 (``loop.EXIT_WAITING``, BSD's
EX_TEMPFAIL) when a round waits for annotators' labels (rerun the same
command once they are in place); 2 for a bad config or bad input (one
``error:`` line).
"""

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import launch
from priojax import distributed, loop, report, results_page

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and selections go.')
_SECTION = flags.DEFINE_string('results_section', None, 'Block of the results page to regenerate.')
_RESULTS = flags.DEFINE_string('results', None, 'The page holding that block (default: the checkout\'s '
                               'docs/results.md); the learning curve goes beside it.')
flags.mark_flags_as_required(['config', 'workdir'])

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv):
  results = pathlib.Path(_RESULTS.value) if _RESULTS.value else ROOT / 'docs' / 'results.md'
  if _SECTION.value:  # before the run, not after
    launch.main_with_clean_errors(lambda: results_page.marked_block(results, 'run', _SECTION.value))
  history = launch.run_main(argv, _CONFIG, _WORKDIR.value, loop.run)
  if loop.waiting_for_labels(history, _CONFIG.value):
    sys.exit(loop.EXIT_WAITING)
  if _SECTION.value and distributed.is_main():
    results_page.update_block(results, 'run', _SECTION.value, report.rounds_markdown(history),
                              results_page.command('python -m experiments.run', sys.argv[1:], results, ROOT),
                              {'learning_curve': pathlib.Path(_WORKDIR.value) / 'learning_curve.png'})


if __name__ == '__main__':
  app.run(main, flags_parser=launch.parse_flags)
