r"""Runs (or resumes) the strategy comparison and writes its table and plots.

    python -m experiments.compare --config=configs/compare.py --workdir=runs/compare
    python -m experiments.compare --config=configs/compare.py --workdir=runs/compare \
        --config.strategies='(random,iou_gain)' --config.seeds='(0,1)'

With ``--results_section=<name>``, the block of docs/results.md between
``<!-- comparison:<name> -->`` and ``<!-- /comparison:<name> -->`` is
replaced by the comparison's tables and plots, and the README's
``<!-- summary:<name> -->`` block, where it has one, by the short table
(how both pages are made).
"""

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import launch
from priojax import compare, comparison_report, distributed, results_page

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the runs and the comparison go.')
_SECTION = flags.DEFINE_string('results_section', None, 'Block of the results page to regenerate.')
_RESULTS = flags.DEFINE_string('results', None, 'The page holding that block (default: the checkout\'s '
                               'docs/results.md); its plots go beside it.')
flags.mark_flags_as_required(['config', 'workdir'])

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(config, workdir: str) -> None:
  results = pathlib.Path(_RESULTS.value) if _RESULTS.value else ROOT / 'docs' / 'results.md'
  if _SECTION.value:  # before hours of runs, not after
    results_page.marked_block(results, 'comparison', _SECTION.value)
  summary = compare.run_comparison(config, workdir)
  if _SECTION.value and distributed.is_main():
    readme = results.parent.parent / 'README.md'  # the page is docs/results.md beside it
    comparison_report.update_results(results, _SECTION.value, pathlib.Path(workdir), summary,
                                     results_page.command('python -m experiments.compare', sys.argv[1:], results, ROOT),
                                     readme)


def main(argv):
  launch.run_main(argv, _CONFIG, _WORKDIR.value, run)


if __name__ == '__main__':
  app.run(main, flags_parser=launch.parse_flags)
