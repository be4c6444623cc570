"""``run(config, workdir)``: pretrain, then rounds of prioritised fine-tuning.

One round, as persisted steps (round_steps.py)::

  scored      score the pool (the statistics the formula reads)
  selected    priority formula -> k tiles (GeoTIFF runs: exported for annotators)
  labelled    the oracle (or the annotators' import) reveals their masks -> ledger entries
  fine_tuned  fine-tune the U-Net on the labels, refit the IoU and loss heads
  evaluated   metrics on the target test split
  then        orbax checkpoint with ledger, history and the pool's predicted IoU
              (pool_history.py; the round is now done)
              -> metrics.jsonl + TensorBoard -> learning curve

Round 0 is the pretrained source model, evaluated on the target before any
target label. A restart with the same workdir resumes after the last
committed round, skips the steps of the next round that were finished and
redoes the first unfinished one exactly (every key is
``fold_in(seed, round, purpose)``).
"""

from __future__ import annotations

import json
from typing import Callable

from absl import logging

from priojax import distributed, hooks, ledger, round_steps
from priojax.atomic_io import disk_errors
from priojax.config_checks import check_config, check_same_config
from priojax.experiment import Experiment
from priojax.geo.annotations import AwaitingLabels
from priojax.geo.scene_table import check_same_scenes
from priojax.labelled_set import LabelledSet
from priojax.pool_history import PoolHistory
from priojax.report import check_record, plot_learning_curve
from priojax.workdir import Workdir

ROUND_STEPS = ('scored', 'selected', 'labelled', 'fine_tuned', 'evaluated')
# The launcher's exit status while a round waits for annotators (BSD's
# EX_TEMPFAIL: try again later), so that a script can tell it from done (0).
EXIT_WAITING = 75


def waiting_for_labels(history: list[dict], config) -> bool:
  """Did ``run`` stop before its last round (it only does so to wait for
  annotators' labels)?"""
  return history[-1]['round'] < config.rounds.num_rounds


def _restore_or_pretrain(exp: Experiment):
  """(last finished round, state, labelled set, history, pool history),
  pretraining if needed."""
  latest = exp.ckpts.latest_step()
  if latest is not None:
    state, meta = exp.ckpts.restore(latest, exp.template())
    logging.info('resuming after round %d from %s', latest, exp.workdir.checkpoints)
    exp.writer.sync(meta['history'])
    pool = PoolHistory.from_arrays(exp.ckpts.read_pool(latest))
    labelled = LabelledSet.reveal(ledger.from_json(meta['ledger']), exp.oracle,
                                  f'{exp.workdir.checkpoints} (round {latest})')
    return latest, state, labelled, meta['history'], pool
  logging.info('pretraining on the source region')
  state, info = exp.pretrain()
  record = check_record({'round': 0, 'labels': 0, 'labels_fit': 0, 'labels_calibration': 0,
                         **exp.evaluate(state), **info})
  exp.commit(0, state, LabelledSet.empty(), [record], PoolHistory.empty())
  exp.writer.sync([record])
  _log_record(record)
  return 0, state, LabelledSet.empty(), [record], PoolHistory.empty()


def _log_record(r: dict) -> None:
  logging.info('round %d | labels %d | test IoU %.3f F1 %.3f | head Spearman %s MAE %.3f%s',
               r['round'], r['labels'], r['iou'], r['f1'],
               'n/a' if r.get('head_spearman') is None else f"{r['head_spearman']:.3f}", r['head_mae'],
               f" | source-val IoU {r['source_val_iou']:.3f}" if 'source_val_iou' in r else '')


def run(config, workdir: str, on_round: Callable[[dict], None] | None = None) -> list[dict]:
  """Runs (or resumes) the experiment; returns the metrics history.
  ``on_round``: called with each round's record once it is committed."""
  check_config(config)
  wd = Workdir(workdir)
  with disk_errors(wd.path):
    exp = Experiment(config, wd)
    try:
      return _run_rounds(exp, on_round)
    finally:
      exp.writer.close()
      exp.ckpts.close()


def _run_rounds(exp: Experiment, on_round: Callable[[dict], None] | None) -> list[dict]:
  config, wd = exp.config, exp.workdir
  old_config, new_config = wd.read_config(), json.loads(config.to_json())
  changed = check_same_config(old_config, new_config, wd.path)
  if exp.geo is not None and config.data.kind == 'geotiff':
    check_same_scenes(wd.path, exp.geo['scenes'], config.data.manifest)
  distributed.barrier('config read')  # by every process, before the main one replaces it
  if old_config != new_config and distributed.is_main():
    wd.write_config(new_config)
  done, state, labelled, history, pool = _restore_or_pretrain(exp)
  round_steps.clear_finished(wd, done)
  for r in range(done + 1, config.rounds.num_rounds + 1):
    try:
      with hooks.within(round=r):
        state, labelled, history, pool = _run_round(exp, r, state, labelled, history, pool,
                                                    config_changed=changed)
    except AwaitingLabels as waiting:
      logging.info('waiting for labels: %s', waiting)
      break
    changed = []
    if on_round is not None:
      on_round(history[-1])
  if done >= config.rounds.num_rounds:
    logging.info('all %d rounds were already done in %s', config.rounds.num_rounds, wd.path)
  if distributed.is_main() and (history[-1]['round'] > done or not wd.learning_curve.exists()):
    plot_learning_curve(history, wd.learning_curve, exp.title)
  exp.review.refresh(history, only_if_missing=history[-1]['round'] <= done)
  if history[-1]['round'] > done or not wd.test_predictions.exists():
    exp.plot_test_predictions(state, history[-1]['round'])
  return history


def _run_round(exp: Experiment, r: int, state, labelled: LabelledSet, history: list[dict],
               pool: PoolHistory, config_changed: list[str]):
  """Round ``r`` through its persisted steps, then its commit; returns the
  new (state, labelled set, history, pool history)."""
  progress = round_steps.RoundProgress(exp.workdir, r, ROUND_STEPS)
  distributed.barrier(f'round {r} progress read')
  if config_changed and progress.has('fine_tuned'):
    logging.info('round %d: config changed (%s); redoing its training', r, ', '.join(config_changed))
    progress.rewind('labelled')
  if progress.done:
    logging.info('round %d: resuming after step %r', r, progress.done[-1])
  out = round_steps.run_steps(progress, exp.round_steps(r, state, labelled, pool))
  labelled = labelled.union(out['labelled'], str(progress.folder))
  state, record = out['fine_tuned'][0], out['evaluated']
  history = history + [record]
  scored = out['scored'][0]
  pool = pool.appended(r, scored.ids, scored.pred_iou)
  exp.commit(r, state, labelled, history, pool)
  hooks.point('committed')
  exp.writer.write(record)
  hooks.point('metrics_written')
  round_steps.clear_finished(exp.workdir, r)
  _log_record(record)
  if distributed.is_main():
    plot_learning_curve(history, exp.workdir.learning_curve, exp.title)
  exp.review.refresh(history)
  return state, labelled, history, pool
