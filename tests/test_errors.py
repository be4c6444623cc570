"""Bad input at the launcher: one clear line, no traceback wall."""

import subprocess
import sys

import pytest

from conftest import ROOT, subprocess_env
from priojax import loop
from priojax.errors import PriojaxError

# Every case starts the launcher in a subprocess.
pytestmark = pytest.mark.slow


def _run(*flags, workdir='WORKDIR', tmp_path=None):
  cmd = [sys.executable, '-m', 'experiments.run', '--config=configs/iou_priority.py:smoke', *flags]
  if workdir:
    cmd.append(f'--workdir={workdir}')
  return subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)


def _assert_one_clear_line(result, pattern):
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr, result.stderr[-2000:]
  errors = [l for l in result.stderr.splitlines() if pattern in l]
  assert len(errors) == 1, result.stderr[-2000:]
  return errors[0]


@pytest.mark.parametrize('flag, pattern', [
    ('--config.priority.name=iuo', "error: unknown priority formula 'iuo'; registered:"),
    ('--config.rounds.k=41', 'error: config.rounds: k=41 x num_rounds=1 = 41 labels exceeds the 40 tiles'),
    ('--config.finetune.init=fresh', "error: config.finetune.init: expected 'previous' or 'pretrained', got 'fresh'"),
    ('--config.head.holdout_fraction=1.5', 'error: config.head.holdout_fraction: expected a number in [0, 1)'),
    ('--config.priority.acquisition=soft', "error: config.priority.acquisition: expected one of ('top_k', "
     "'power'), got 'soft'"),
    ('--config.priority.name=coreset --config.priority.acquisition=power',
     "error: config.priority.acquisition: expected 'top_k' for 'coreset', which picks its batch itself"),
])
def test_bad_config_values(tmp_path, smoke_config, flag, pattern):
  # In-process: the launcher prints `error: <the PriojaxError>` and exits 2
  # (the launcher cases below); here, what each config check says.
  config = smoke_config.copy_and_resolve_references()
  for override in flag.split():
    field, value = override.removeprefix('--config.').split('=')
    section, name = field.split('.')
    config[section][name] = type(config[section][name])(value)
  with pytest.raises(PriojaxError) as info:
    loop.run(config, str(tmp_path / 'w'))
  message = f'error: {info.value}'
  assert message.startswith(pattern) and '\n' not in message, message
  assert not (tmp_path / 'w').exists() or not any((tmp_path / 'w').iterdir())


def test_whole_pool_rounds_must_be_one(tmp_path):
  result = _run('--config.rounds.k=0', '--config.rounds.num_rounds=2', workdir=str(tmp_path / 'w'))
  assert result.returncode == 2
  _assert_one_clear_line(result, 'error: config.rounds: k=0 labels the whole pool in round 1; '
                                 'expected num_rounds <= 1, got 2')


def test_config_typo(tmp_path):
  result = _run('--config.rounds.kk=3', workdir=str(tmp_path / 'w'))
  line = _assert_one_clear_line(result, 'kk')
  assert 'rounds.kk' in line


def test_missing_workdir_parent(tmp_path):
  result = _run(workdir=str(tmp_path / 'no' / 'such' / 'w'))
  assert result.returncode == 2
  line = _assert_one_clear_line(result, 'error: workdir')
  assert 'parent directory' in line and 'does not exist' in line


def test_unknown_top_level_section(tmp_path):
  result = _run('--config.round.k=3', workdir=str(tmp_path / 'w'))
  line = _assert_one_clear_line(result, "config has no field 'round.k'")
  assert 'fields of the config:' in line and 'rounds' in line


def test_missing_config_file(tmp_path):
  cmd = [sys.executable, '-m', 'experiments.run', '--config=configs/nope.py', f'--workdir={tmp_path}/w']
  result = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  _assert_one_clear_line(result, 'error: --config=configs/nope.py: cannot load the config file')


def test_geotiff_without_manifest(tmp_path):
  cmd = [sys.executable, '-m', 'experiments.run', '--config=configs/iou_priority.py:smoke,geotiff',
         f'--workdir={tmp_path}/w']
  result = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  _assert_one_clear_line(result, "error: config.data.manifest: expected the path of a scene manifest")


def test_empty_manifest_through_the_launcher(tmp_path):
  manifest = tmp_path / 'm.yaml'
  manifest.write_text('scenes: []\n')
  cmd = [sys.executable, '-m', 'experiments.run', '--config=configs/iou_priority.py:smoke,geotiff',
         f'--config.data.manifest={manifest}', f'--workdir={tmp_path}/w']
  result = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  _assert_one_clear_line(result, f'error: {manifest}: "scenes" is empty; expected at least one scene')
