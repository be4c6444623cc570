"""benchmarks/scoring.py prints its result table on stdout, and
``--results_section`` copies that stdout into docs/benchmarks.md; a first
TFDS build of its pool must not land there. scoring.py defines absl flags,
so it is imported in a subprocess of its own, not in the test process."""

import subprocess
import sys

import pytest

from conftest import ROOT

_LOAD = """
import sys
sys.path.insert(0, {bench!r})
import scoring
pool = scoring.tfds_pool(12, 16, {data_dir!r})
sys.stderr.write(f'TILES {{len(pool)}}\\n')
"""


@pytest.mark.slow  # a subprocess
def test_a_first_tfds_build_of_the_pool_stays_off_the_result_stdout(tmp_path):
  code = _LOAD.format(bench=str(ROOT / 'benchmarks'), data_dir=str(tmp_path / 'tfds'))
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=ROOT,
                       timeout=300)
  assert 'TILES 12' in out.stderr
  assert 'Subsequent calls will reuse this data' in out.stderr  # TFDS built it here, and said so on stderr
  assert out.stdout == ''
