"""Shared fixtures: a tiny benchmark and tiny networks, written by the tests."""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import filelock
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# One persistent XLA cache for the whole session, shared with the launcher
# subprocesses: the smoke runs then compile each function once, not per run.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='priojax-xla-'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# XLA:CPU compiles with LLVM at -O3 unless told otherwise, and the suite's
# networks are tiny: compiling, not running, is most of its time (a depth-2
# U-Net's jitted initialiser, a threefry draw per parameter, compiles in
# 15 s at -O3 and 2.5 s at -O2). The tests check behaviour, not speed, so
# they and their launcher subprocesses compile at -O2 (set before JAX starts
# its backends). Not lower: at -O0 this XLA build gives NaN gradients in
# the smoke run's pretraining.
if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=2".strip()
if str(ROOT) not in sys.path:  # configs/ and experiments/ are run from the checkout
  sys.path.insert(0, str(ROOT))

# The same XLA devices in-process as in the launcher subprocesses (one per
# core): runs started here and resumed through the launcher, or the reverse,
# then sum their gradients in the same order.
from priojax import mesh  # noqa: E402

mesh.use_cpu_devices()


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='session')
def smoke_config(data_dir):
  from configs import iou_priority

  config = iou_priority.get_config('smoke')
  config.data.data_dir = data_dir
  return config


def subprocess_env(**extra) -> dict:
  env = dict(os.environ)
  # tests/ too: the kill tests' formula (history_formula.py) is loaded by name.
  env['PYTHONPATH'] = os.pathsep.join([str(ROOT), str(ROOT / 'tests'), env.get('PYTHONPATH', '')])
  env.update(extra)
  return env


def smoke_command(workdir, data_dir, *flags, head=('-m', 'experiments.run')) -> list[str]:
  return [sys.executable, *head, '--config=configs/iou_priority.py:smoke', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', *flags]


def launch_smoke(workdir, data_dir, *flags, crash_at=None, head=('-m', 'experiments.run'), env=None):
  """The README's command on the smoke config, in a subprocess."""
  cmd = smoke_command(workdir, data_dir, *flags, head=head)
  env = env or subprocess_env()
  if crash_at:
    env = {**env, 'PRIOJAX_CRASH_AT': crash_at}
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


# Round 2 of the kill tests selects by what rounds 0-1 left in the round
# state: the pool history and the ledger's IoU at pick.
HISTORY_FORMULA = '--config.priority.name=history_formula:trend_and_gain'


def run_scoped_dir(tmp_path_factory) -> pathlib.Path:
  """A folder of this test run that every xdist worker sees (the workers'
  base folders share a parent named for the run; without xdist, the base
  folder itself)."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


def made_once(tmp_path_factory, name: str, make) -> pathlib.Path:
  """``<run folder>/<name>``, made by ``make(path)`` once per test run: the
  first xdist worker to need it makes it under a file lock, the others wait
  and read it (the data it is made from is generated from the same seed in
  every worker)."""
  shared = run_scoped_dir(tmp_path_factory)
  path, done = shared / name, shared / f'{name}.done'
  with filelock.FileLock(str(shared / f'{name}.lock')):
    if not done.exists():
      make(path)
      done.touch()
  return path


@pytest.fixture(scope='session')
def uninterrupted_run(tmp_path_factory, data_dir):
  """Two smoke rounds through the launcher, never interrupted: the reference
  every crash test must reproduce, made once per test run."""

  def launch(workdir):
    result = launch_smoke(workdir, data_dir, '--config.rounds.num_rounds=2', HISTORY_FORMULA)
    assert result.returncode == 0, result.stderr[-3000:]
    (workdir.parent / 'uninterrupted.json').write_text(
        json.dumps({'returncode': result.returncode, 'stdout': result.stdout, 'stderr': result.stderr}))

  workdir = made_once(tmp_path_factory, 'uninterrupted', launch)
  result = subprocess.CompletedProcess(args=[], **json.loads((workdir.parent / 'uninterrupted.json').read_text()))
  return workdir, result
