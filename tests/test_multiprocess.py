"""Multi-process runs on localhost: processes started with the launcher's
flags, talking through gloo, must give exactly what one process gives."""

import json
import pathlib
import socket
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from conftest import HISTORY_FORMULA, ROOT, smoke_command, subprocess_env
from configs import iou_priority
from priojax import distributed, experiment, mesh
from priojax.checkpoints import RoundCheckpoints
from priojax.train import Trainer

# Several launcher processes per test (jax.distributed over localhost).
pytestmark = pytest.mark.slow

# The single-process reference (conftest's uninterrupted_run) splits the CPU
# into one XLA device per core; the processes here share that many between
# them, so every device computes the same rows in both.
DEVICES = mesh.cpu_cores()
PER_PROCESS = max(1, DEVICES // 2)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start(cmd, process_id: int, port: int, *, num_processes: int = 2, devices: int = PER_PROCESS,
          env=None) -> subprocess.Popen:
  flags = [f'--num_processes={num_processes}', f'--process_id={process_id}',
           f'--coordinator_address=127.0.0.1:{port}', f'--cpu_devices={devices}', '--distributed_heartbeat=5']
  return subprocess.Popen(cmd + flags, cwd=ROOT, env=env or subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def finish(procs, timeout=600) -> list[tuple[int, str]]:
  out = []
  for p in procs:
    _, err = p.communicate(timeout=timeout)
    out.append((p.returncode, err))
  return out


def run_two(workdir, data_dir, *flags, envs=(None, None)) -> list[tuple[int, str]]:
  """One round (the reference's first) in two processes."""
  port = free_port()
  cmd = smoke_command(workdir, data_dir, '--config.rounds.num_rounds=1', HISTORY_FORMULA, *flags)
  return finish([start(cmd, i, port, env=envs[i]) for i in range(2)])


def without_seconds(obj):
  if isinstance(obj, dict):
    return {k: without_seconds(v) for k, v in obj.items() if not k.endswith('seconds')}
  if isinstance(obj, list):
    return [without_seconds(v) for v in obj]
  return obj


def state_template():
  """The smoke config's train state, replicated over this process's devices."""
  config = iou_priority.get_config('smoke')
  devices = mesh.make_mesh()
  shapes = Trainer(experiment.build_networks(config), devices).state_shapes(jax.random.key(0), config.data.tile_size)
  replicated = NamedSharding(devices, PartitionSpec())
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), shapes)


def assert_same_run(workdir, reference):
  """Round 1 of the two runs: selection, ledger, metrics, pool history and
  the train state equal, digit for digit."""
  workdir, reference = pathlib.Path(workdir), pathlib.Path(reference)
  name = 'selected_round_1.json'
  assert json.loads((workdir / name).read_text()) == json.loads((reference / name).read_text())
  lines = [[json.loads(l) for l in (d / 'metrics.jsonl').read_text().splitlines()] for d in (workdir, reference)]
  assert len(lines[0]) == 2 and without_seconds(lines[0]) == without_seconds(lines[1][:2])
  metas, pools, states = [], [], []
  for d in (workdir, reference):
    ckpts = RoundCheckpoints(d / 'checkpoints', read_only=True)
    metas.append(ckpts.read_meta(1))
    pools.append(ckpts.read_pool(1))
    states.append(ckpts.restore(1, state_template())[0])
    ckpts.close()
  assert metas[0]['ledger'] == metas[1]['ledger'] and metas[0]['ledger']
  assert without_seconds(metas[0]['history']) == without_seconds(metas[1]['history'])
  assert pools[0].keys() == pools[1].keys()
  for k in pools[0]:
    np.testing.assert_array_equal(pools[0][k], pools[1][k], err_msg=k)
  chex.assert_trees_all_equal(states[0], states[1])
  assert {p.name for p in workdir.iterdir()} == {p.name for p in reference.iterdir()} - {'selected_round_2.json'}


@pytest.fixture(scope='module')
def reference_run(uninterrupted_run, tmp_path_factory, data_dir):
  if DEVICES % 2 == 0:
    return uninterrupted_run[0]
  workdir = tmp_path_factory.mktemp('one_process_two_devices')  # an odd core count
  result = subprocess.run(smoke_command(workdir, data_dir, '--config.rounds.num_rounds=2', HISTORY_FORMULA,
                                        '--cpu_devices=2'), cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_two_processes_killed_and_restarted_run_exactly_as_one(tmp_path, data_dir, reference_run):
  """Two processes, one of them killed in round 1 and both restarted, end
  digit for digit where one process does. Round 0 is the two processes'
  uninterrupted work (round 1 starts from its commit) and round 1 their
  resumed work, so this is also the test that two processes run as one."""
  workdir = tmp_path / 'run'
  # Process 0 (the coordinator, and the one that writes) dies half-way
  # through round 1's fine-tuning; process 1 is left in a collective.
  started = time.monotonic()
  killed = run_two(workdir, data_dir, envs=(subprocess_env(PRIOJAX_CRASH_AT='fine_tuning:1'), None))
  assert killed[0][0] == -9, killed[0][1][-2000:]
  assert killed[1][0] != 0  # stopped by the missed heartbeats, not left hanging
  assert time.monotonic() - started < 300
  assert (workdir / 'selected_round_1.json').exists()  # killed after the selection, before the commit
  assert len((workdir / 'metrics.jsonl').read_text().splitlines()) == 1
  results = run_two(workdir, data_dir)
  for i, (code, err) in enumerate(results):
    assert code == 0, f'process {i}: {err[-3000:]}'
  assert_same_run(workdir, reference_run)


def start_scoring(out: pathlib.Path, num_processes: int, devices: int, *extra) -> list[subprocess.Popen]:
  out.mkdir()
  cmd = [sys.executable, str(ROOT / 'tests' / 'multiprocess_scoring.py'), f'--out={out}', *extra]
  port = free_port()
  return [subprocess.Popen(cmd + [f'--process_id={i}', f'--num_processes={num_processes}',
                                  f'--coordinator=127.0.0.1:{port}', f'--devices={devices}'],
                           cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True) for i in range(num_processes)]


def scoring_results(out: pathlib.Path, procs: list[subprocess.Popen]) -> list[dict]:
  for i, (code, err) in enumerate(finish(procs, timeout=300)):
    assert code == 0, f'process {i}: {err[-3000:]}'
  return [dict(np.load(out / f'process{i}.npz', allow_pickle=False)) for i in range(len(procs))]


def test_scoring_a_pool_across_processes_equals_one_process(tmp_path):
  # 37 tiles in global batches of 8: the last batch has 5 rows, 4 on the
  # first process and 1 on the second; the subset's last batch has 2 rows,
  # none on the second process. The reference runs at the same time.
  started = {name: start_scoring(tmp_path / name, n, d) for name, n, d in (('one', 1, 2), ('two', 2, 1))}
  (one,) = scoring_results(tmp_path / 'one', started['one'])
  two = scoring_results(tmp_path / 'two', started['two'])
  np.testing.assert_array_equal(one['devices'], [2, 1])
  assert len(one['ids']) == 37 and len(np.unique(one['ids'])) == 37
  assert one['ids'].min() > 2**32  # int64 ids, gathered whole
  for process in two:
    np.testing.assert_array_equal(process['devices'], [2, 2])
    assert process.keys() == one.keys()
    for k in one:
      if k != 'devices':
        np.testing.assert_array_equal(process[k], one[k], err_msg=k)


def test_processes_that_read_different_data_are_refused_with_one_line(tmp_path):
  out = tmp_path / 'out'
  out.mkdir()
  cmd = [sys.executable, str(ROOT / 'tests' / 'multiprocess_scoring.py'), f'--out={out}', '--check_data']
  port = free_port()
  procs = [subprocess.Popen(cmd + [f'--process_id={i}', '--num_processes=2', f'--coordinator=127.0.0.1:{port}',
                                   f'--pool_seed={i}'], cwd=ROOT, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  for code, err in finish(procs, timeout=300):
    assert code == 2, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(
        'error: process 1 was started with different data than process 0: pool.tile 0 is "'), err[-500:]
  assert not list(out.iterdir())


def test_processes_with_different_configs_are_refused_with_one_line(tmp_path, data_dir):
  workdir = tmp_path / 'never_created'
  port = free_port()
  cmd = smoke_command(workdir, data_dir)
  procs = [start(cmd + (['--config.rounds.k=5'] if i else []), i, port) for i in range(2)]
  for code, err in finish(procs, timeout=120):
    assert code == 2, err[-2000:]
    assert err.strip().splitlines()[-1] == ('error: process 1 was started with a different config than '
                                            'process 0: rounds.k is 5 there and 6 on process 0'), err[-500:]
  assert not workdir.exists()


@pytest.mark.parametrize('process_id', [0, 1])
def test_a_process_alone_fails_within_the_timeout_with_one_line(tmp_path, data_dir, process_id):
  workdir = tmp_path / 'never_created'
  started = time.monotonic()
  proc = start(smoke_command(workdir, data_dir, '--distributed_timeout=3'), process_id, free_port())
  ((code, err),) = finish([proc], timeout=120)
  assert code == 2, err[-2000:]
  last = err.strip().splitlines()[-1]
  if process_id:
    assert last.startswith('error: process 1 cannot reach the coordinator at 127.0.0.1:'), last
  else:
    assert last.startswith('error: processes [1] did not join the coordinator at 127.0.0.1:'), last
  assert 'within 3 s (--distributed_timeout)' in last
  assert time.monotonic() - started < 60
  assert not workdir.exists()


def test_the_first_difference_is_named_by_field():
  same = {'a.b': '1', 'c': '"x"'}
  assert distributed.first_difference('a different config', [same, dict(same)]) is None
  assert distributed.first_difference('a different config', [same, {**same, 'c': '"y"'}]) == (
      'process 1 was started with a different config than process 0: c is "y" there and "x" on process 0')
  assert 'd is (absent) there' in distributed.first_difference('x', [{**same, 'd': '2'}, same])
  assert distributed.flatten({'a': {'b': 1, 'c': (1, 2)}, 'd': 'x'}) == {'a.b': '1', 'a.c': '[1, 2]', 'd': '"x"'}
