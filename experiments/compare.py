r"""Runs (or resumes) the strategy comparison and writes its table and plots.

    python -m experiments.compare --config=configs/compare.py --workdir=runs/compare
    python -m experiments.compare --config=configs/compare.py --workdir=runs/compare \
        --config.strategies='(random,iou_gain)' --config.seeds='(0,1)'

With ``--readme_section=<name>``, the README's block between
``<!-- comparison:<name> -->`` and ``<!-- /comparison:<name> -->`` is
replaced by the comparison's tables and plots (how the README's are made).
"""

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import launch
from priojax import compare, comparison_report, distributed

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the runs and the comparison go.')
_SECTION = flags.DEFINE_string('readme_section', None, 'README block to regenerate from the result.')
_README = flags.DEFINE_string('readme', None, 'The README holding that block (default: the checkout\'s); '
                              'its plots go into docs/ beside it.')
flags.mark_flags_as_required(['config', 'workdir'])

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(config, workdir: str) -> None:
  readme = pathlib.Path(_README.value) if _README.value else ROOT / 'README.md'
  if _SECTION.value:  # before hours of runs, not after
    comparison_report.readme_block(readme, _SECTION.value)
  compare.run_comparison(config, workdir)
  if _SECTION.value and distributed.is_main():
    shown = [a for a in sys.argv[1:] if not a.startswith(('--workdir', '--readme='))]
    comparison_report.update_readme(readme, _SECTION.value, pathlib.Path(workdir), readme.parent / 'docs',
                                    ' '.join(['python -m experiments.compare', *shown]))


def main(argv):
  launch.run_main(argv, _CONFIG, _WORKDIR.value, run)


if __name__ == '__main__':
  app.run(main, flags_parser=launch.parse_flags)
