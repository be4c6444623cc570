"""Shared fixtures: a tiny benchmark and tiny networks, written by the tests."""

import os
import pathlib
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# One persistent XLA cache for the whole session, shared with the launcher
# subprocesses: the smoke runs then compile each function once, not per run.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='priojax-xla-'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
if str(ROOT) not in sys.path:  # configs/ and experiments/ are run from the checkout
  sys.path.insert(0, str(ROOT))


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
  env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
  env.update(extra)
  return env
