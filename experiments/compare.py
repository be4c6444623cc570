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
  launch.run_main(argv, _CONFIG, _WORKDIR.value, compare.run_comparison)


if __name__ == '__main__':
  app.run(main, flags_parser=launch.parse_flags)
