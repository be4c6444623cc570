"""One-round smoke run in a temporary workdir, and exact resume after a kill."""

import json
import signal

import chex
import numpy as np
import pytest

from conftest import HISTORY_FORMULA, launch_smoke as _launch
from priojax import hooks, loop
from priojax.checkpoints import RoundCheckpoints

TIMING_KEYS = ('seconds',)


def _strip_timings(history):
  return [{k: v for k, v in r.items() if not k.endswith(TIMING_KEYS)} for r in history]


def _read(workdir):
  lines = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  selected = {p.name: json.loads(p.read_text()) for p in sorted(workdir.glob('selected_round_*.json'))}
  return lines, selected


@pytest.mark.slow
def test_smoke_one_round_in_process(tmp_path, smoke_config):
  history = loop.run(smoke_config, str(tmp_path / 'run'))
  workdir = tmp_path / 'run'
  assert [r['round'] for r in history] == [0, 1]
  assert history[1]['labels'] == smoke_config.rounds.k
  lines, selected = _read(workdir)
  assert lines == history
  sel = selected['selected_round_1.json']
  assert len(sel['ids']) == smoke_config.rounds.k == len(set(sel['ids']))
  assert len(sel['priorities']) == len(sel['pred_iou']) == smoke_config.rounds.k
  # Round 1 of the main job is TypiClust's (the head is not trusted yet):
  # the picks in pick order, each with its typicality, which is positive
  # and, unlike a score formula's priority, not sorted.
  assert history[1]['select/gain_phase'] == 0.0
  assert all(np.isfinite(p) and p > 0 for p in sel['priorities'])
  for key in ('iou', 'f1', 'head_mae', 'score_seconds', 'finetune_seconds', 'mean_tile_iou'):
    assert np.isfinite(history[1][key]), key
  assert 0.0 <= history[1]['iou'] <= 1.0
  assert (workdir / 'learning_curve.png').stat().st_size > 1000
  assert list((workdir / 'tb').glob('events.out.tfevents.*'))
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit()) == ['0', '1']
  assert json.loads((workdir / 'config.json').read_text())['priority']['name'] == 'typical_error_mass'  # the main job's
  # Rerunning a finished workdir does nothing new and keeps the same history.
  again = loop.run(smoke_config, str(workdir))
  assert again == history


@pytest.mark.slow
def test_launcher_runs_and_overrides(uninterrupted_run):
  workdir, result = uninterrupted_run
  lines, selected = _read(workdir)
  assert [r['round'] for r in lines] == [0, 1, 2]
  assert [r['labels'] for r in lines] == [0, 6, 12]
  assert 'round 2 | labels 12' in result.stderr
  ids = selected['selected_round_1.json']['ids'] + selected['selected_round_2.json']['ids']
  assert len(set(ids)) == 12  # never re-selected


# Every crash point of hooks.POINTS, in the order a run reaches them, spread
# over both rounds: each launch resumes the previous one's wreck and is killed
# at a later point, so every step is both interrupted and resumed.
KILL_CHAIN = ('scoring:1', 'selected:1', 'fine_tuning:1', 'evaluated:1', 'checkpoint_writing:1',
              'metrics_written:1', 'scored:2', 'labelled:2', 'unet_trained:2', 'fine_tuned:2',
              'committed:2')
# The steps persisted in progress.json when each point is reached.
PERSISTED = {'scoring': [], 'scored': ['scored'], 'selected': ['scored', 'selected'],
             'labelled': ['scored', 'selected', 'labelled'],
             'fine_tuning': ['scored', 'selected', 'labelled'],
             'unet_trained': ['scored', 'selected', 'labelled'],
             'fine_tuned': ['scored', 'selected', 'labelled', 'fine_tuned'],
             'evaluated': list(loop.ROUND_STEPS), 'checkpoint_writing': list(loop.ROUND_STEPS)}


def _committed(workdir, pool=False):
  """(last committed round, its ledger, its history[, its pool history]),
  read as a user would."""
  ckpts = RoundCheckpoints(workdir / 'checkpoints', read_only=True)
  try:
    latest = ckpts.latest_step()
    meta = ckpts.read_meta(latest)
    arrays = ckpts.read_pool(latest) if pool else None
  finally:
    ckpts.close()
  return (latest, meta['ledger'], meta['history']) + ((arrays,) if pool else ())


@pytest.mark.slow
def test_kill_chain_resumes_to_the_uninterrupted_result(tmp_path, data_dir, uninterrupted_run):
  assert {p.split(':')[0] for p in KILL_CHAIN} == set(hooks.POINTS)
  reference, _ = uninterrupted_run
  want_lines, want_sel = _read(reference)
  want_ids = [want_sel[f'selected_round_{r}.json']['ids'] for r in (1, 2)]
  workdir = tmp_path / 'killed'
  for n, crash_at in enumerate(KILL_CHAIN):
    result = _launch(workdir, data_dir, '--config.rounds.num_rounds=2', HISTORY_FORMULA, crash_at=crash_at)
    assert result.returncode == -signal.SIGKILL, (crash_at, result.stderr[-3000:])
    if n:
      assert 'resuming after round' in result.stderr, crash_at
    point, r = crash_at.split(':')
    r = int(r)
    # Either the old round or the new one is complete, never half of one:
    latest, ledger, history = _committed(workdir)
    assert latest == (r if point in ('committed', 'metrics_written') else r - 1), crash_at
    assert _strip_timings(history) == _strip_timings(want_lines[:latest + 1]), crash_at
    assert [e['id'] for e in ledger] == sorted(sum(want_ids[:latest], [])), crash_at
    progress = workdir / 'rounds' / f'round_{r}' / 'progress.json'
    if latest < r:
      done = json.loads(progress.read_text())['done'] if progress.exists() else []
      assert done == PERSISTED[point], crash_at
  last = _launch(workdir, data_dir, '--config.rounds.num_rounds=2', HISTORY_FORMULA)
  assert last.returncode == 0, last.stderr[-3000:]
  got_lines, got_sel = _read(workdir)
  assert got_sel == want_sel
  assert _strip_timings(got_lines) == _strip_timings(want_lines)
  latest, ledger, _, pool = _committed(workdir, pool=True)
  assert latest == 2 and [e['id'] for e in ledger] == sorted(sum(want_ids, []))
  # The round state a history-reading formula reads is the uninterrupted run's.
  _, want_ledger, _, want_pool = _committed(reference, pool=True)
  assert ledger == want_ledger and all(e['iou_at_pick'] is not None for e in ledger)
  assert want_pool['rounds'].tolist() == [1, 2]
  chex.assert_trees_all_equal(pool, want_pool)
  assert not (workdir / 'rounds' / 'round_2').exists()  # cleared after its commit


@pytest.mark.slow
def test_shared_pretrained_model_and_reset_fine_tuning(tmp_path, smoke_config, monkeypatch):
  base = loop.run(smoke_config, str(tmp_path / 'base'))
  config = smoke_config.copy_and_resolve_references()
  monkeypatch.chdir(tmp_path)
  config.pretrain.from_workdir = 'base'  # relative, as the docs' commands give it
  config.finetune.init = 'pretrained'
  config.priority.name = 'iou_diversity'
  config.rounds.num_rounds = 2
  history = loop.run(config, str(tmp_path / 'shared'))
  # Same source model: round 0 is evaluated identically.
  assert history[0]['iou'] == base[0]['iou'] and history[0]['head_mae'] == base[0]['head_mae']
  assert history[0]['pretrained_from'] == 'base'
  assert [r['labels'] for r in history] == [0, 6, 12]


@pytest.mark.slow
def test_from_workdir_without_checkpoint_is_a_clear_error(tmp_path, smoke_config):
  from priojax.errors import WorkdirError

  config = smoke_config.copy_and_resolve_references()
  (tmp_path / 'empty').mkdir()
  config.pretrain.from_workdir = str(tmp_path / 'empty')
  with pytest.raises(WorkdirError, match='no round-0 checkpoint there'):
    loop.run(config, str(tmp_path / 'w'))


@pytest.mark.slow
def test_resume_with_a_changed_config_is_refused_unless_allowed(tmp_path, smoke_config):
  from priojax.errors import WorkdirError

  workdir = str(tmp_path / 'w')
  config = smoke_config.copy_and_resolve_references()
  config.rounds.num_rounds = 0
  loop.run(config, workdir)
  changed = config.copy_and_resolve_references()
  changed.finetune.learning_rate = 0.5
  changed.rounds.num_rounds = 1  # extending a run is always allowed
  with pytest.raises(WorkdirError, match=r"another config \(finetune.learning_rate: 0.001 -> 0.5\)"):
    loop.run(changed, workdir)
  changed.allow_config_change = True
  history = loop.run(changed, workdir)
  assert [r['round'] for r in history] == [0, 1]
  assert json.loads((tmp_path / 'w' / 'config.json').read_text())['finetune']['learning_rate'] == 0.5


@pytest.mark.slow
def test_a_run_started_with_conv_transpose_upsampling_resumes_with_depth_to_space(tmp_path, smoke_config):
  """Both upsampling forms share one parameter tree and map: a workdir from
  before the depth-to-space default (or with 'conv_transpose' set) resumes."""
  old = smoke_config.copy_and_resolve_references()
  old.model.upsample = 'conv_transpose'
  old.rounds.num_rounds = 0
  first = loop.run(old, str(tmp_path / 'w'))
  new = smoke_config.copy_and_resolve_references()
  assert new.model.upsample == 'depth_to_space'
  history = loop.run(new, str(tmp_path / 'w'))
  assert history[0] == first[0] and history[1]['labels'] == new.rounds.k
  # The round-0 model scores the same either way.
  exp_old = loop.Experiment(old, loop.Workdir(tmp_path / 'w'))
  exp_new = loop.Experiment(new, loop.Workdir(tmp_path / 'w'))
  state, _ = exp_new.ckpts.restore(0, exp_new.template())
  a = exp_old.scorer.score(state.params, exp_old.data['target_test'])
  b = exp_new.scorer.score(state.params, exp_new.data['target_test'])
  np.testing.assert_allclose(a.pred_iou, b.pred_iou, atol=1e-5)
  exp_old.ckpts.close()
  exp_new.ckpts.close()


@pytest.mark.parametrize('given, want', [
    ('', '--xla_gpu_deterministic_ops=true'),
    ('--xla_cpu_foo=1', '--xla_cpu_foo=1 --xla_gpu_deterministic_ops=true'),
    ('--xla_gpu_deterministic_ops=false', '--xla_gpu_deterministic_ops=false'),  # the user's choice wins
])
def test_the_launchers_ask_xla_gpu_for_deterministic_reductions(given, want):
  from experiments import launch

  assert launch.deterministic_xla_flags(given) == want
