r"""Runs (or resumes) the strategy comparison and writes its table and plot.

    python -m experiments.compare --config=configs/compare.py --workdir=runs/compare
    python -m experiments.compare --config=configs/compare.py --workdir=runs/compare \
        --config.strategies='("random", "iou")' --config.seeds='(0,)'
"""

from absl import app, flags
from ml_collections import config_flags

from experiments import launch
from priojax import compare

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the runs and the comparison go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  launch.setup_runtime()
  config = launch.config_or_exit(_CONFIG)
  launch.main_with_clean_errors(lambda: compare.run_comparison(config, _WORKDIR.value))


if __name__ == '__main__':
  app.run(main, flags_parser=launch.parse_flags)
