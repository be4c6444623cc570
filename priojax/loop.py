"""``run(config, workdir)``: pretrain, then rounds of prioritised fine-tuning.

One round::

  score pool -> priority formula -> select k -> oracle reveals masks
  -> fine-tune the U-Net -> refit the IoU head -> evaluate on target test
  -> orbax checkpoint (the round is now done) -> metrics.jsonl + TensorBoard

Round 0 is the pretrained source model, evaluated on the target before any
target label. Each later round runs as a persisted state machine
(round_state.py: scored -> selected -> labelled -> fine_tuned -> evaluated),
committed by its orbax checkpoint. A restart with the same workdir resumes
after the last committed round, skips the steps of the next round that were
finished and redoes the first unfinished one exactly (every key is
``fold_in(seed, round, purpose)``).
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from priojax import export, faults, priority, rngs, round_state, selection, tile_metrics, tile_stats
from priojax.config_checks import check_config, check_same_config
from priojax.data import builders, geo_builder, synthetic
from priojax.data.manifest import load_manifest
from priojax.data.pool import TileSource
from priojax.errors import ConfigError, DataError, WorkdirError
from priojax.mesh import make_mesh
from priojax.models.iou_head import IoUHead
from priojax.models.unet import UNet
from priojax.annotations import AwaitingLabels, HumanOracle
from priojax.oracle import BenchmarkOracle, LedgerEntry, is_calibration, mask_hash, verify_labels
from priojax.report import MetricsWriter, check_record, plot_learning_curve
from priojax.networks import Networks
from priojax.scoring import Scorer
from priojax.state import RoundCheckpoints, Workdir, disk_errors
from priojax.train import HeadLoss, Trainer


def build_networks(config) -> Networks:
  m = config.model
  dtype = jnp.dtype(m.dtype)
  return Networks(unet=UNet(depth=m.depth, width=m.width, norm=m.norm, dropout=m.dropout,
                            upsample=m.upsample, dtype=dtype),
                  head=IoUHead(hidden=m.head_hidden),
                  loss_head=IoUHead(hidden=m.head_hidden, output='softplus'), embed_dim=m.embed_dim,
                  threshold=config.eval.threshold, iou_smoothing=config.head.iou_smoothing,
                  top_q=config.priority.top_q, region=config.priority.region)


def load_data(config) -> tuple[dict[str, TileSource], dict | None]:
  """Split name -> TileSource, and the scenes' metadata for GeoTIFF data."""
  d = config.data
  if d.kind == 'geotiff':
    manifest = load_manifest(d.manifest)
    gcfg = geo_builder.make_geo_config(manifest, tile_size=d.tile_size,
                                       source_val_fraction=d.source_val_fraction, seed=config.seed)
    sources, meta = geo_builder.load_geo_chips(gcfg, d.data_dir)
  else:
    bcfg = builders.make_builder_config(
        tile_size=d.tile_size, seed=config.seed, num_source_train=d.num_source_train,
        num_source_val=d.num_source_val, num_target_pool=d.num_target_pool,
        num_target_test=d.num_target_test)
    sources, meta = builders.load_crisis_bench(bcfg, d.data_dir), None
  data = {name: TileSource(src, name) for name, src in sources.items()}
  for name, src in data.items():
    if len(src) == 0 and name != 'source_val':
      where = d.manifest if d.kind == 'geotiff' else 'the benchmark'
      raise DataError(f'{where}: split {name!r} has no chips (scenes smaller than '
                      f'{d.tile_size} px, or mostly nodata?)')
  return data, meta


class Experiment:
  """The pieces of one run, built once; the round logic is in ``run``."""

  def __init__(self, config, workdir: Workdir):
    self.config = config
    self.workdir = workdir
    self.formula = priority.get(config.priority.name)
    self.data, self.geo = load_data(config)
    budget, pool = config.rounds.k * config.rounds.num_rounds, len(self.data['target_pool'])
    if budget > pool:
      raise ConfigError(f'config.rounds: k={config.rounds.k} x num_rounds={config.rounds.num_rounds} '
                        f'= {budget} labels exceeds the {pool} chips of the target pool')
    self.networks = build_networks(config)
    self.mesh = make_mesh()
    p = config.priority
    self.hparams = {'alpha': p.alpha, 'beta': p.beta, 'aggregation': p.aggregation}
    mc_passes = p.mc_passes if self.formula.needs_mc else 0
    self.scorer = Scorer(self.networks, self.mesh, config.scoring.batch_size, mc_passes=mc_passes,
                         stats=tile_stats.for_formula(self.formula, self.hparams))
    self.trainer = Trainer(self.networks, self.mesh, head_loss=HeadLoss(
        config.head.rank_weight, config.head.rank_margin, config.head.loss_rank_margin))
    self.oracle = self._make_oracle()
    self.source_train = self.data['source_train'].read_all()
    self.ckpts = RoundCheckpoints(workdir.checkpoints)
    self.writer = MetricsWriter(workdir)
    self._pretrained_unet = None  # for finetune.init='pretrained', read once

  def _make_oracle(self):
    pool = self.data['target_pool']
    if self.geo is not None:
      labelled = np.concatenate([b['has_label'] for b in pool.batches(256, fields=('has_label',))])
      if not labelled.all():
        logging.info('target pool has unlabelled chips: human-in-the-loop mode')
        return HumanOracle(pool, self.geo['scenes'], self.workdir)
    return BenchmarkOracle(pool)

  def initial_state(self):
    """The freshly initialised train state."""
    return self.trainer.initial_state(rngs.round_key(self.config.seed, 0, 'init'), self.config.data.tile_size)

  def template(self):
    """The train state's shapes, dtypes and placement (replicated over the
    mesh, as the steps keep it), for restoring a checkpoint; nothing is
    computed."""
    device = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
    shapes = self.trainer.state_shapes(rngs.round_key(self.config.seed, 0, 'init'), self.config.data.tile_size)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), shapes)

  # --- steps of a round -------------------------------------------------

  def fit_head(self, state, calibration_ids: list[int], round_index: int):
    """Refits the head on source-val tiles and held-out target tiles, both
    unseen by the U-Net, with features of the *current* U-Net."""
    c = self.config.head
    sets = [self.scorer.evaluate_tiles(state.params, self.data['source_val'])]
    if calibration_ids:
      pool = self.data['target_pool']
      sets.append(self.scorer.evaluate_tiles(state.params, pool, pool.positions_of(calibration_ids)))
    steps = self.config.pretrain.head_steps if round_index == 0 else c.steps
    purpose = 'pretrain_head' if round_index == 0 else 'head'
    return self.trainer.fit_head(state, sets, steps=steps, batch_size=c.batch_size,
                                 learning_rate=c.learning_rate,
                                 rng=rngs.round_key(self.config.seed, round_index, purpose))

  def evaluate(self, state) -> dict:
    tiles = self.scorer.evaluate_tiles(state.params, self.data['target_test'])
    if 'subpopulation' in tiles:
      groups, names = tiles['subpopulation'], synthetic.SUBPOPULATIONS
    else:  # GeoTIFF chips: per test scene
      scenes = [export.text(s) for s in tiles.get('scene', [])]
      names = sorted(set(scenes)) or None
      groups = np.array([names.index(s) for s in scenes]) if names else None
    return tile_metrics.summarise(tiles, tiles['pred_iou'], self.networks.iou_smoothing, groups, names)

  def pretrain(self):
    c = self.config.pretrain
    if c.from_workdir:
      directory = pathlib.Path(c.from_workdir).expanduser() / 'checkpoints'
      other = RoundCheckpoints(directory, read_only=True) if directory.is_dir() else None
      if other is None or 0 not in other.all_steps():
        raise WorkdirError(f'config.pretrain.from_workdir={c.from_workdir!r}: no round-0 checkpoint there')
      state, _ = other.restore(0, self.template())
      return state, {'pretrained_from': c.from_workdir}
    state = self.initial_state()
    start = time.perf_counter()
    state, fit = self.trainer.fine_tune(
        state, None, self.source_train, steps=c.steps, batch_size=c.batch_size,
        learning_rate=c.learning_rate, replay=1.0, rng=rngs.round_key(self.config.seed, 0, 'pretrain'),
        log_every=max(1, c.steps // 7), what='pretrain')
    state, head = self.fit_head(state, [], 0)
    return state, {**fit, **head, 'finetune_seconds': time.perf_counter() - start}

  def score(self, state, labelled: dict[int, LedgerEntry], round_index: int):
    """(pool stats, reference embedding for distance formulas, seconds)."""
    cfg = self.config
    stats = self.scorer.score(state.params, self.data['target_pool'],
                              key=rngs.round_key(cfg.seed, round_index, 'mc_dropout'),
                              on_batch=faults.on_step('scoring', round_index, at=2))
    score_seconds = self.scorer.last_seconds
    reference = np.zeros((0, 0), np.float32)
    if self.formula.needs_reference:
      n_ref = min(cfg.priority.source_reference, len(self.data['source_train']))
      ref = self.scorer.score(state.params, self.data['source_train'], np.arange(n_ref))
      labelled_rows = np.isin(stats.ids, np.fromiter(labelled, np.int64, len(labelled)))
      reference = np.concatenate([ref.embedding, stats.embedding[labelled_rows]])
      score_seconds += self.scorer.last_seconds
    return stats, reference, score_seconds

  def select(self, stats, reference, labelled: dict[int, LedgerEntry], round_index: int):
    cfg = self.config
    selectable = ~np.isin(stats.ids, np.fromiter(labelled, np.int64, len(labelled)))
    ctx = priority.SelectionContext(
        k=cfg.rounds.k, rng=rngs.round_key(cfg.seed, round_index, 'select'),
        selectable=selectable, reference_embedding=reference, hparams=self.hparams)
    return selection.select(self.formula, stats, ctx)

  def fine_tune(self, state, labelled: dict[int, LedgerEntry], round_index: int):
    """U-Net on the labelled tiles, then both heads; returns (state, info)."""
    cfg, r = self.config, round_index
    t_ft = time.perf_counter()
    if cfg.finetune.init == 'pretrained':
      if self._pretrained_unet is None:
        self._pretrained_unet = self.ckpts.restore(0, self.template())[0].params['unet']
      state = self.trainer.reset_unet(state, self._pretrained_unet)
    f = cfg.finetune
    state, fit = self.trainer.fine_tune(
        state, self.labelled_arrays(labelled), self.source_train, steps=f.steps,
        batch_size=f.batch_size, learning_rate=f.learning_rate, replay=f.source_replay,
        rng=rngs.round_key(cfg.seed, r, 'finetune'),
        on_step=faults.on_step('fine_tuning', r, at=max(1, f.steps // 2)))
    faults.crash_point('unet_trained', r)
    t_head = time.perf_counter()
    calibration = sorted(i for i, e in labelled.items() if e.calibration)
    state, head = self.fit_head(state, calibration, r)
    return state, {**fit, **head, 'finetune_seconds': t_head - t_ft,
                   'head_seconds': time.perf_counter() - t_head}

  def export(self, state, stats, picked, round_index: int) -> None:
    """GeoTIFF runs: the round's chips, outlines, predictions and heat map."""
    pool = self.data['target_pool']
    fields = ('id', 'scene', 'window')
    records = {k: np.concatenate([b[k] for b in pool.batches(256, fields=fields)]) for k in fields}
    order = np.argsort(records['id'])
    records = {k: v[order][np.searchsorted(records['id'][order], stats.ids)] for k, v in records.items()}
    heat = picked.scores if picked.scores is not None else 1.0 - stats.pred_iou
    chips = pool.read_ids(picked.ids) if len(picked.ids) else None
    if chips is None:
      return
    masks = self.scorer.predict_masks(state.params, chips['image'])
    export.export_round(self.workdir.export(round_index), scenes=self.geo['scenes'], selected=chips,
                        pred_masks=masks, priorities=picked.priorities, pred_iou=picked.pred_iou,
                        pool_records=records, pool_priority=np.asarray(heat),
                        overlap=int(self.geo.get('overlap', 0)))

  def labelled_arrays(self, labelled: dict[int, LedgerEntry]) -> dict | None:
    fit = sorted(i for i, e in labelled.items() if not e.calibration)
    if not fit:
      return None
    data = self.oracle.reveal(fit)
    verify_labels(self.oracle.pool.name, [labelled[i] for i in fit], data)
    return {'image': data['image'], 'mask': data['mask']}


def _restore_or_pretrain(exp: Experiment):
  """(last finished round, state, ledger, history), pretraining if needed."""
  latest = exp.ckpts.latest_step()
  if latest is not None:
    state, meta = exp.ckpts.restore(latest, exp.template())
    logging.info('resuming after round %d from %s', latest, exp.workdir.checkpoints)
    labelled = {e['id']: LedgerEntry(**e) for e in meta['ledger']}
    exp.writer.sync(meta['history'])
    return latest, state, labelled, meta['history']
  logging.info('pretraining on the source region')
  state, info = exp.pretrain()
  record = {'round': 0, 'labels': 0, 'labels_fit': 0, 'labels_calibration': 0,
            **exp.evaluate(state), **info}
  history = [check_record(record)]
  _save(exp, 0, state, {}, history)
  exp.writer.sync(history)
  _log_record(record)
  return 0, state, {}, history


def _log_record(r: dict) -> None:
  logging.info('round %d | labels %d | test IoU %.3f F1 %.3f | head Spearman %s MAE %.3f',
               r['round'], r['labels'], r['iou'], r['f1'],
               'n/a' if r.get('head_spearman') is None else f"{r['head_spearman']:.3f}", r['head_mae'])


def run(config, workdir: str) -> list[dict]:
  """Runs (or resumes) the experiment; returns the metrics history."""
  check_config(config)
  priority.get(config.priority.name)  # an unknown name fails before anything is written
  wd = Workdir(workdir)
  with disk_errors(wd):
    return _run(config, wd)


def _run(config, wd: Workdir) -> list[dict]:
  exp = Experiment(config, wd)
  try:
    return _run_rounds(exp)
  finally:
    exp.writer.close()
    exp.ckpts.close()


def _run_rounds(exp: Experiment) -> list[dict]:
  config, wd = exp.config, exp.workdir
  changed = check_same_config(wd, json.loads(config.to_json()))
  done, state, labelled, history = _restore_or_pretrain(exp)
  round_state.clear_finished(wd, done)
  for r in range(done + 1, config.rounds.num_rounds + 1):
    try:
      state = _run_round(exp, state, labelled, history, r, config_changed=changed)
    except AwaitingLabels as waiting:
      logging.info('%s', waiting)
      print(f'waiting for labels: {waiting}', flush=True)
      break
    changed = []
  if done >= config.rounds.num_rounds:
    logging.info('all %d rounds were already done in %s', config.rounds.num_rounds, wd.path)
  if history[-1]['round'] > done or not wd.learning_curve.exists():
    plot_learning_curve(history, wd.learning_curve, f'{exp.formula.name} on crisis_bench')
  return history


def _run_round(exp: Experiment, state, labelled: dict[int, LedgerEntry], history: list[dict],
               r: int, config_changed: list[str]):
  """One round through its persisted steps (round_state.py); returns the
  committed state. ``labelled`` and ``history`` are extended in place."""
  cfg, wd = exp.config, exp.workdir
  progress = round_state.RoundProgress(wd, r)
  if config_changed and progress.has('fine_tuned'):
    logging.info('round %d: config changed (%s); redoing its training', r, ', '.join(config_changed))
    progress.rewind('labelled')
  if progress.done:
    logging.info('round %d: resuming after step %r', r, progress.done[-1])
  start = time.perf_counter()
  if progress.has('scored'):
    stats, reference, score_seconds = progress.load_scores()
  else:
    stats, reference, score_seconds = exp.score(state, labelled, r)
    progress.save_scores(stats, reference, score_seconds)
  faults.crash_point('scored', r)
  if progress.has('selected'):
    picked = progress.load_selection()
  else:
    picked = exp.select(stats, reference, labelled, r)
    if exp.geo is not None:
      exp.export(state, stats, picked, r)
    progress.save_selection(picked, exp.formula.name)
  faults.crash_point('selected', r)
  if progress.has('labelled'):
    entries = progress.load_labels()
  else:
    revealed, sources = exp.oracle.label_round(r, picked.ids)
    entries = [LedgerEntry(id=int(i), round=r, source=source, sha256=mask_hash(mask),
                           calibration=is_calibration(cfg.seed, i, cfg.head.holdout_fraction))
               for i, mask, source in zip(picked.ids, revealed.get('mask', []), sources)]
    progress.save_labels(entries)
  faults.crash_point('labelled', r)
  for entry in entries:
    if entry.id in labelled:
      raise WorkdirError(f'{progress.folder}: tile {entry.id} is labelled in round {r} and already '
                         f'in round {labelled[entry.id].round}; the workdir is inconsistent')
    labelled[entry.id] = entry
  if progress.has('fine_tuned'):
    state, info = progress.load_state(exp.template())
  else:
    state, info = exp.fine_tune(state, labelled, r)
    progress.save_state(state, info)
  faults.crash_point('fine_tuned', r)
  if progress.has('evaluated'):
    record = progress.load_record()
  else:
    t_eval = time.perf_counter()
    n_cal = sum(e.calibration for e in labelled.values())
    record = check_record({
        'round': r, 'labels': len(labelled), 'labels_fit': len(labelled) - n_cal,
        'labels_calibration': n_cal, **exp.evaluate(state), **info, 'score_seconds': score_seconds,
        'eval_seconds': time.perf_counter() - t_eval, 'round_seconds': time.perf_counter() - start})
    progress.save_record(record)
  faults.crash_point('evaluated', r)
  history.append(record)
  _save(exp, r, state, labelled, history)  # the round is done once this returns
  faults.crash_point('committed', r)
  exp.writer.write(record)
  faults.crash_point('metrics_written', r)
  round_state.clear_finished(wd, r)
  _log_record(record)
  plot_learning_curve(history, wd.learning_curve, f'{exp.formula.name} on crisis_bench')
  return state


def _save(exp: Experiment, r: int, state, labelled: dict[int, LedgerEntry], history: list[dict]):
  meta = {'round': r, 'seed': exp.config.seed,
          'rng_key_data': np.asarray(jax.random.key_data(jax.random.key(exp.config.seed))).tolist(),
          'ledger': [labelled[i].to_json() for i in sorted(labelled)], 'history': history}
  with faults.inside_checkpoint_write(r):
    exp.ckpts.save(r, state, meta)

