"""The labelled set: hashes that catch a changed mask, calibration labels
that never reach U-Net training, and fine-tuning that restarts from the
source model when asked."""

import json

import jax
import numpy as np
import pytest

from priojax import ledger, loop, rngs
from priojax.data import loading
from priojax.checkpoints import RoundCheckpoints
from priojax.experiment import Experiment
from priojax.errors import DataError, WorkdirError
from priojax.train import Trainer


def _masks(n, seed=0):
  return (np.random.default_rng(seed).random((n, 8, 8)) > 0.5).astype(np.uint8)


def test_verify_labels_rejects_a_changed_mask():
  masks = _masks(3)
  entries = ledger.round_entries([5, 9, 12], masks, ['oracle'] * 3, 1, seed=0, holdout_fraction=0.0)
  ledger.verify_labels('pool', entries, {'mask': masks})  # unchanged: fine
  changed = masks.copy()
  changed[1, 4, 4] ^= 1
  with pytest.raises(DataError, match=r'^pool: the mask of tile 9 changed since round 1 \(hash '):
    ledger.verify_labels('pool', entries, {'mask': changed})


def test_ledger_functions_return_a_new_ledger():
  entries = ledger.round_entries([1, 2], _masks(2), ['oracle'] * 2, 1, seed=0, holdout_fraction=0.5)
  before = {}
  after = ledger.with_entries(before, entries, 'w')
  assert before == {} and sorted(after) == [1, 2]
  with pytest.raises(WorkdirError, match='tile 2 is labelled in round 1 and already in round 1'):
    ledger.with_entries(after, entries[1:], 'w')
  assert ledger.from_json(ledger.to_json(after)) == after


def test_calibration_hold_out_is_per_tile_and_keyed_by_the_seed():
  ids = np.arange(1000, 5000)
  flags = ledger.calibration_flags(3, ids, 0.2)
  assert 0.17 < flags.mean() < 0.23
  # A tile's draw depends on its id and the seed only: not on the others, nor their order.
  np.testing.assert_array_equal(ledger.calibration_flags(3, ids[::-7], 0.2), flags[::-7])
  assert (ledger.calibration_flags(4, ids, 0.2) != flags).any()
  # Large ids (GeoTIFF chips: scene * 10^6 + chip) fold in both 32-bit halves.
  big = np.array([7, 7 + 2**32, 7 + 2**33], np.int64)
  assert len(set(rngs.tile_uniforms(0, 'calibration', big).tolist())) == 3


@pytest.mark.slow
def test_calibration_labels_never_reach_unet_training(tmp_path, smoke_config, monkeypatch):
  config = smoke_config.copy_and_resolve_references()
  config.rounds.update(num_rounds=2, k=8)
  config.head.holdout_fraction = 0.5
  config.priority.name = 'typiclust_then_gain'  # any formula; this one reports its phase
  trained = []
  real = Trainer.fine_tune

  def spy(self, state, target, source, **kwargs):
    trained.append(None if target is None else np.asarray(target['image']).copy())
    return real(self, state, target, source, **kwargs)

  monkeypatch.setattr(Trainer, 'fine_tune', spy)
  label_stats = []
  real_stats = Experiment.label_stats

  def stats_spy(self, state, ids, labelled):
    out = real_stats(self, state, ids, labelled)
    label_stats.append((np.asarray(ids), labelled, out))
    return out

  monkeypatch.setattr(Experiment, 'label_stats', stats_spy)
  loop.run(config, str(tmp_path / 'w'))
  ckpts = RoundCheckpoints(tmp_path / 'w' / 'checkpoints', read_only=True)
  labelled = ledger.from_json(ckpts.read_meta(2)['ledger'])
  ckpts.close()
  calibration = ledger.ids(labelled, calibration=True)
  fit = ledger.ids(labelled, calibration=False)
  assert calibration and fit  # both kinds exist in this run
  pool = loading.load_data(config)[0]['target_pool']
  images = {i: pool.read_ids([i])['image'][0] for i in labelled}
  # Pretraining (no target), then rounds 1 and 2: exactly the fitting labels.
  assert trained[0] is None and len(trained) == 3
  last = trained[-1]
  assert len(last) == len(fit)
  for i in fit:
    assert any(np.array_equal(images[i], x) for x in last), i
  for i in calibration:
    assert not any(np.array_equal(images[i], x) for x in last), i
  # The ledger keeps the head's prediction at pick beside the true IoU at
  # pick: what the budget-aware formulas test the head with.
  for r in (1, 2):
    picked = json.loads((tmp_path / 'w' / f'selected_round_{r}.json').read_text())
    assert [labelled[i].pred_iou_at_pick for i in picked['ids']] == pytest.approx(picked['pred_iou'])
    assert set(picked['info']) == {'head_rho_at_pick', 'head_rho_lower', 'head_pairs', 'gain_phase'}
  metrics = [json.loads(line) for line in (tmp_path / 'w' / 'metrics.jsonl').read_text().splitlines()]
  assert metrics[1]['select/head_pairs'] == 0 and metrics[1]['select/gain_phase'] == 0
  # Round 2 tests the head on round 1's fitting labels (calibration ones have no label_iou).
  assert metrics[2]['select/head_pairs'] == len(fit) - len([i for i in fit if labelled[i].round == 2])
  # Round 2's label statistics: the building fraction of each fitting
  # tile's mask (what typical_error_mass reads), -1 for every other tile.
  ids, known, out = label_stats[-1]
  fitting = known.fitting()
  assert len(fitting) and len(fitting) < len(known)
  rows = np.searchsorted(ids, fitting.ids, sorter=np.argsort(ids))
  rows = np.argsort(ids)[rows]
  np.testing.assert_allclose(out['label_fg_fraction'][rows], (fitting.masks > 0).mean((1, 2)), rtol=1e-6)
  others = np.ones(len(ids), bool)
  others[rows] = False
  assert (out['label_fg_fraction'][others] == -1).all()


@pytest.mark.slow
def test_finetune_init_pretrained_restarts_from_the_source_model(tmp_path, smoke_config, monkeypatch):
  config = smoke_config.copy_and_resolve_references()
  config.rounds.num_rounds = 2
  config.finetune.init = 'pretrained'
  incoming = []
  real = Trainer.fine_tune

  def spy(self, state, target, source, **kwargs):
    incoming.append(jax.tree.map(np.asarray, state.params['unet']))
    return real(self, state, target, source, **kwargs)

  monkeypatch.setattr(Trainer, 'fine_tune', spy)
  loop.run(config, str(tmp_path / 'w'))
  exp = loop.Experiment(config, loop.Workdir(tmp_path / 'w'))
  round0 = jax.tree.map(np.asarray, exp.ckpts.restore(0, exp.template())[0].params['unet'])
  round1 = jax.tree.map(np.asarray, exp.ckpts.restore(1, exp.template())[0].params['unet'])
  exp.ckpts.close()
  same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert not same(round0, round1)  # round 1 moved the U-Net ...
  assert same(incoming[1], round0) and same(incoming[2], round0)  # ... each round starts at the source
