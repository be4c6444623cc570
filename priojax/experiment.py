"""A run's pieces, built once from its config, and the computations of a
round: ``Experiment`` holds the data, networks, scorer, trainer, oracle,
checkpoints and writers, and builds each round's persisted steps
(``round_steps``) that ``loop.run`` drives."""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from priojax import (distributed, hooks, ledger, priority, rngs, round_steps, round_stores, selection, tile_metrics,
                     tile_stats)
from priojax.checkpoints import RoundCheckpoints
from priojax.config_checks import check_budget
from priojax.data import synthetic
from priojax.data.loading import data_name, load_data
from priojax.errors import ConfigError, WorkdirError
from priojax.geo import export
from priojax.geo.annotations import HumanOracle
from priojax.labelled_set import LabelledSet
from priojax.mesh import make_mesh
from priojax.models import heads
from priojax.models.encoder_unet import EncoderUNet
from priojax.models.networks import Networks
from priojax.models.unet import UNet
from priojax.oracle import BenchmarkOracle
from priojax.pool_history import PoolHistory
from priojax.review.writer import ReviewWriter
from priojax.report import MetricsWriter, check_record, plot_test_predictions
from priojax.scoring import Scorer
from priojax.train import HeadLoss, Trainer
from priojax.workdir import Workdir


def build_networks(config, channels: int = 3) -> Networks:
  """The networks a config names, for tiles of ``channels`` channels."""
  m = config.model
  if m.encoder == 'none':
    unet = UNet(depth=m.depth, width=m.width, norm=m.norm, dropout=m.dropout, upsample=m.upsample,
                dtype=jnp.dtype(m.dtype))
  else:
    unet = EncoderUNet(encoder=m.encoder, width=m.width, norm=m.norm, dropout=m.dropout,
                       dtype=jnp.dtype(m.dtype), weights=m.encoder_weights)
  return Networks(unet=unet,
                  head=heads.iou_head(m.head_hidden), loss_head=heads.loss_head(m.head_hidden),
                  embed_dim=m.embed_dim, threshold=config.eval.threshold, channels=channels)


class Experiment:
  """The pieces of one run, built once, and the computations of a round."""

  def __init__(self, config, workdir: Workdir):
    self.config = config
    self.workdir = workdir
    self.formula = priority.get(config.priority.name)
    self.data, self.geo = load_data(config)
    distributed.agree('different data', {name: split.fingerprint() for name, split in self.data.items()})
    if self.geo is not None:  # the benchmark's pool size was checked with the config
      check_budget(config, len(self.data['target_pool']), data_name(config))
    channels = self.data['source_train'].read([0], fields=('image',))['image'].shape[-1]
    self.networks = build_networks(config, channels)
    self.mesh = make_mesh()
    p = config.priority
    self.hparams = {**p.get('params', {}), 'alpha': p.alpha, 'beta': p.beta, 'aggregation': p.aggregation,
                    'acquisition': p.acquisition, 'power_beta': p.power_beta}
    spec = tile_stats.StatsSpec.of(tile_stats.for_formula(self.formula, self.hparams),
                                   mc_passes=p.mc_passes, top_q=p.top_q, region=p.region)
    self.scorer = Scorer(self.networks, self.mesh, config.scoring.batch_size, spec,
                         iou_smoothing=config.head.iou_smoothing)
    self.trainer = Trainer(self.networks, self.mesh, head_loss=HeadLoss(
        config.head.rank_weight, config.head.rank_margin, config.head.loss_rank_margin),
                           encoder_lr_scale=config.model.encoder_lr_scale)
    self.oracle = self._make_oracle()
    oracle_reads = sorted(set(tile_stats.ORACLE_STATS) & set(self.scorer.stat_names))
    if oracle_reads and not isinstance(self.oracle, BenchmarkOracle):
      raise ConfigError(f'config.priority.name={self.formula.name!r} reads {", ".join(oracle_reads)}, every '
                        "pool tile's true IoU from hidden masks; this pool's labels come from annotators, so "
                        'there are none: expected a benchmark pool (every chip labelled) or another formula')
    self.source_train = self.data['source_train']  # read as the steps need it
    self.ckpts = RoundCheckpoints(workdir.checkpoints, commits_rounds=True)
    self.writer = MetricsWriter(workdir, enabled=distributed.is_main())
    self._pretrained_unet = None  # for finetune.init='pretrained', read once
    self.review = ReviewWriter(self, enabled=config.review.enabled)

  @property
  def title(self) -> str:
    where = (f'GeoTIFF scenes of {pathlib.Path(self.config.data.manifest).name}'
             if self.config.data.kind == 'geotiff' else data_name(self.config).removeprefix('the '))
    return f'{self.formula.name} on {where}'

  def _make_oracle(self):
    pool = self.data['target_pool']
    if self.geo is not None and not pool.columns(('has_label',))['has_label'].all():
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

  # --- the computations of a round ----------------------------------------

  def fit_head(self, state, calibration: LabelledSet, round_index: int, source_tiles: dict | None = None):
    """Refits the head on source-val tiles and the held-out target labels
    (``calibration``), both unseen by the U-Net, with features of the
    *current* U-Net (``source_tiles``: the source-val tiles already
    evaluated with it)."""
    c = self.config.head
    if source_tiles is None:
      source_tiles = self.scorer.evaluate_tiles(state.params, self.data['source_val'])
    sets = [source_tiles]
    if len(calibration):
      sets.append(self.scorer.evaluate_arrays(state.params, **self.labelled_arrays(calibration)))
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
    return tile_metrics.summarise(tiles, tiles['pred_iou'], self.config.head.iou_smoothing, groups, names)

  def source_metrics(self, tiles: dict) -> dict:
    """IoU on the held-out source chips (evaluated ``tiles``): what
    pretraining reached at home, beside the target test IoU it starts the
    rounds from. It depends on the U-Net alone, not on the heads."""
    return {'source_val_iou': tile_metrics.summarise(tiles, tiles['pred_iou'], self.config.head.iou_smoothing)['iou']}

  def plot_test_predictions(self, state, round_index: int, n: int = 8) -> None:
    """``n`` test chips with buildings, evenly spaced by id (not chosen by
    how well they are segmented), with the model's predictions."""
    test = self.data['target_test']
    found = [(b['id'], b['mask'].reshape(len(b['id']), -1).any(axis=1))
             for b in test.batches(256, fields=('id', 'mask'))]
    ids, has_buildings = (np.concatenate(c) for c in zip(*found))
    with_buildings = np.flatnonzero(has_buildings)
    order = with_buildings[np.argsort(ids[with_buildings], kind='stable')]
    if not len(order):
      return
    chips = test.read(order[np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int)])
    pred = self.scorer.predict_masks(state.params, chips['image'])  # every process computes
    if distributed.is_main():
      plot_test_predictions(chips['image'], chips['mask'], pred, chips['id'], self.workdir.test_predictions,
                            f'{self.title}: target test chips after round {round_index}')

  def pretrain(self):
    c = self.config.pretrain
    if c.from_workdir:
      directory = pathlib.Path(c.from_workdir).expanduser() / 'checkpoints'
      other = RoundCheckpoints(directory, read_only=True) if directory.is_dir() else None
      if other is None or 0 not in other.all_steps():
        raise WorkdirError(f'config.pretrain.from_workdir={c.from_workdir!r}: no round-0 checkpoint there')
      state, _ = other.restore(0, self.template())
      info = {'pretrained_from': c.from_workdir}
      if len(self.data['source_val']):
        info.update(self.source_metrics(self.scorer.evaluate_tiles(state.params, self.data['source_val'])))
      return state, info
    state = self.initial_state()
    start = time.perf_counter()
    state, fit = self.trainer.fine_tune(
        state, None, self.source_train, steps=c.steps, batch_size=c.batch_size,
        learning_rate=c.learning_rate, replay=1.0, rng=rngs.round_key(self.config.seed, 0, 'pretrain'),
        log_every=max(1, c.steps // 7), what='pretrain')
    source_tiles = self.scorer.evaluate_tiles(state.params, self.data['source_val'])
    state, head = self.fit_head(state, LabelledSet.empty(), 0, source_tiles)
    return state, {**fit, **head, **self.source_metrics(source_tiles),
                   'finetune_seconds': time.perf_counter() - start}

  def score(self, state, labelled: LabelledSet, round_index: int):
    """(pool stats, reference embedding for distance formulas, (seconds
    scoring the pool, seconds embedding the source reference tiles))."""
    cfg = self.config
    stats = self.scorer.score(state.params, self.data['target_pool'],
                              key=rngs.round_key(cfg.seed, round_index, 'mc_dropout'))
    pool_seconds, reference_seconds = self.scorer.last_seconds, 0.0
    if 'stratum' in self.scorer.stat_names:
      stats = stats.replace(stratum=self.strata(stats.ids))
    if set(tile_stats.LABEL_STATS) & set(self.scorer.stat_names):
      stats = stats.replace(**self.label_stats(state, stats.ids, labelled))
    if set(tile_stats.ORACLE_STATS) & set(self.scorer.stat_names):
      stats = stats.replace(**self.oracle_stats(state, stats.ids))
    reference = np.zeros((0, 0), np.float32)
    if self.formula.needs_reference:
      n_ref = min(cfg.priority.source_reference, len(self.data['source_train']))
      ref = self.scorer.score(state.params, self.data['source_train'], np.arange(n_ref))
      labelled_rows = np.isin(stats.ids, labelled.ids)
      reference = np.concatenate([ref.embedding, stats.embedding[labelled_rows]])
      reference_seconds = self.scorer.last_seconds
    return stats, reference, (pool_seconds, reference_seconds)

  def label_stats(self, state, ids: np.ndarray, labelled: LabelledSet) -> dict[str, np.ndarray]:
    """``label_iou``, ``label_iou_at_pick``, ``label_pred_iou_at_pick`` and
    ``label_fg_fraction`` (tile_stats.py) per pool tile: the current and the
    picking model's true IoU, the head's prediction at pick and the mask's
    building fraction, on the labelled tiles the U-Net trained on; -1
    elsewhere (and where a ledger written before the prediction was
    recorded lacks it)."""
    out = {name: np.full(len(ids), -1.0, np.float32) for name in tile_stats.LABEL_STATS}
    fit = labelled.fitting()
    fit = fit.where(~np.isnan(fit.iou_at_pick))
    if len(fit):
      order = np.argsort(ids)
      rows = order[np.searchsorted(ids, fit.ids, sorter=order)]
      arrays = self.labelled_arrays(fit)
      out['label_iou'][rows] = self.scorer.true_iou(state.params, arrays['image'], arrays['mask'])
      out['label_iou_at_pick'][rows] = fit.iou_at_pick
      out['label_pred_iou_at_pick'][rows] = np.nan_to_num(fit.pred_iou_at_pick, nan=-1.0)
      masks = np.asarray(arrays['mask'])
      out['label_fg_fraction'][rows] = (masks > 0).reshape(len(masks), -1).mean(1)
    return out

  def oracle_stats(self, state, ids: np.ndarray) -> dict[str, np.ndarray]:
    """``oracle_iou`` and ``oracle_fg_fraction`` (tile_stats.py) per pool
    tile: its true IoU under the current model and its mask's building
    fraction, from the benchmark pool's hidden masks (a second pass over
    the pool, which the oracle ceilings alone pay for)."""
    pool = self.data['target_pool']
    tiles = self.scorer.evaluate_tiles(state.params, pool, pool.positions_of(ids))  # in the order of ids
    pixels = float(self.config.data.tile_size) ** 2
    return {'oracle_iou': tiles['true_iou'].astype(np.float32),
            'oracle_fg_fraction': (tiles['true_area'] / pixels).astype(np.float32)}

  def strata(self, ids: np.ndarray) -> np.ndarray:
    """Each pool tile's stratum as an integer: its sub-population on the
    synthetic benchmark, its scene for chips of scenes."""
    pool = self.data['target_pool']
    field = 'subpopulation' if pool.has_field('subpopulation') else 'scene'
    values = pool.columns((field,))[field][pool.positions_of(ids)]
    return np.unique(values, return_inverse=True)[1].astype(np.int64)

  def stratum_names(self, ids: np.ndarray) -> np.ndarray:
    """Each tile's sub-population (synthetic benchmark) or scene name (chips)."""
    pool = self.data['target_pool']
    rows = pool.positions_of(ids)
    if pool.has_field('subpopulation'):
      return np.asarray(synthetic.SUBPOPULATIONS)[pool.columns(('subpopulation',))['subpopulation'][rows]]
    return np.asarray([export.text(s) for s in pool.columns(('scene',))['scene'][rows]], object)

  def pick_counts(self, picked: LabelledSet) -> dict:
    """What a round labelled: ``picked/<stratum>`` (sub-population, or
    scene for chips) and ``picked_with_buildings`` (picks whose mask has a
    building pixel)."""
    names = self.stratum_names(picked.ids)
    counts = {f'picked/{n}': int((names == n).sum()) for n in sorted(set(names.tolist()))}
    with_buildings = picked.masks.any(axis=(1, 2))
    return {**counts, 'picked_with_buildings': int(with_buildings.sum())}

  def select(self, stats, reference, labelled: LabelledSet, round_index: int, pool: PoolHistory):
    cfg = self.config
    selectable = ~np.isin(stats.ids, labelled.ids)
    ctx = priority.SelectionContext(
        k=cfg.rounds.k or int(selectable.sum()), rng=rngs.round_key(cfg.seed, round_index, 'select'),
        selectable=selectable, reference_embedding=reference if self.formula.needs_reference else None,
        hparams=self.hparams, history=pool.aligned(stats.ids))
    return selection.select(self.formula, stats, ctx)

  def label(self, state, picked, round_index: int) -> LabelledSet:
    """The round's labelled set: the revealed picks, with the true IoU the
    picking model (``state``) had on each."""
    if not len(picked.ids):
      return LabelledSet.empty()
    revealed, sources = self.oracle.label_round(round_index, picked.ids)
    masks = revealed['mask']
    at_pick = self.scorer.true_iou(state.params, revealed['image'], masks)
    entries = ledger.round_entries(picked.ids, masks, sources, round_index, seed=self.config.seed,
                                   holdout_fraction=self.config.head.holdout_fraction, iou_at_pick=at_pick,
                                   pred_iou_at_pick=picked.pred_iou)
    return LabelledSet.of(entries, masks)

  def fine_tune(self, state, labelled: LabelledSet, round_index: int):
    """U-Net on the labelled tiles, then both heads; returns (state, info)."""
    cfg, r = self.config, round_index
    t_ft = time.perf_counter()
    if cfg.finetune.init == 'pretrained':
      if self._pretrained_unet is None:
        self._pretrained_unet = self.ckpts.restore(0, self.template())[0].params['unet']
      state = self.trainer.reset_unet(state, self._pretrained_unet)
    f, train_on = cfg.finetune, labelled.fitting()
    state, fit = self.trainer.fine_tune(
        state, self.labelled_arrays(train_on) if len(train_on) else None, self.source_train, steps=f.steps,
        batch_size=f.batch_size, learning_rate=f.learning_rate, replay=f.source_replay,
        rng=rngs.round_key(cfg.seed, r, 'finetune'))
    hooks.point('unet_trained')
    t_head = time.perf_counter()
    state, head = self.fit_head(state, labelled.held_out(), r)
    return state, {**fit, **head, 'finetune_seconds': t_head - t_ft,
                   'head_seconds': time.perf_counter() - t_head}

  def heat(self, stats, picked) -> tuple[np.ndarray, str]:
    """What the heat maps show per pool tile, and what to call it."""
    if picked.scores is not None:
      return np.asarray(picked.scores), f'priority of {self.formula.name}'
    # A picker has no priority per chip, only for its picks.
    return 1.0 - np.asarray(stats.pred_iou), f'1 - predicted IoU ({self.formula.name} has no priority per chip)'

  def export(self, state, stats, picked, round_index: int) -> None:
    """GeoTIFF runs: the round's chips, outlines, predictions and heat map."""
    if not len(picked.ids):
      return
    pool = self.data['target_pool']
    records = pool.columns(('scene', 'window'))
    rows = pool.positions_of(stats.ids)
    records = {'id': stats.ids, **{k: v[rows] for k, v in records.items()}}
    heat, label = self.heat(stats, picked)

    chips = pool.read_ids(picked.ids)
    masks = self.scorer.predict_masks(state.params, chips['image'])  # every process computes
    if not distributed.is_main():
      return
    export.export_round(self.workdir.export(round_index), scenes=self.geo['scenes'], selected=chips,
                        pred_masks=masks, priorities=picked.priorities, pred_iou=picked.pred_iou,
                        pool_records=records, pool_priority=np.asarray(heat),
                        overlap=int(self.geo.get('overlap', 0)), heat_label=label)

  def labelled_arrays(self, labelled: LabelledSet) -> dict[str, np.ndarray]:
    """``image`` (read from the pool) and ``mask`` (the labels) of a set."""
    pool = self.data['target_pool']
    images = pool.read(pool.positions_of(labelled.ids), fields=('image',))['image']
    return {'image': images, 'mask': labelled.masks}

  def round_steps(self, r: int, state, labelled: LabelledSet, pool: PoolHistory) -> list[round_steps.Step]:
    """Round ``r``'s steps, starting from the committed ``state``, labelled
    set and pool history."""
    start = time.perf_counter()

    def selected(out):
      stats, reference, _ = out['scored']
      picked = self.select(stats, reference, labelled, r, pool)
      if self.geo is not None:
        self.export(state, stats, picked, r)
      self.review.round_picked(state.params, stats, picked, labelled, r)
      return picked

    def after(out):  # the labelled set with this round's labels
      return labelled.union(out['labelled'], str(self.workdir.round_folder(r)))

    def fine_tuned(out):
      return self.fine_tune(state, after(out), r)

    def evaluated(out):
      t_eval = time.perf_counter()
      after_round = after(out)
      n_cal = len(after_round.held_out())
      trained, info = out['fine_tuned']
      return check_record({
          'round': r, 'labels': len(after_round), 'labels_fit': len(after_round) - n_cal,
          'labels_calibration': n_cal,
          **self.evaluate(trained), **info, **self.pick_counts(out['labelled']),
          'pool_tiles': len(out['scored'][0]), 'score_seconds': out['scored'][2][0],
          'reference_seconds': out['scored'][2][1], 'select_seconds': out['selected'].seconds,
          **{f'select/{k}': v for k, v in out['selected'].info.items()},
          'eval_seconds': time.perf_counter() - t_eval, 'round_seconds': time.perf_counter() - start})

    Step = round_steps.Step
    return [
        Step('scored', lambda out: self.score(state, labelled, r), round_stores.SCORES),
        Step('selected', selected, round_stores.selected_store(self.workdir, r, self.formula.name)),
        Step('labelled', lambda out: self.label(state, out['selected'], r),
             round_stores.labels_store(self.oracle)),
        Step('fine_tuned', fine_tuned, round_steps.checkpoint_store('fine_tuned', r, self.template)),
        Step('evaluated', evaluated, round_stores.RECORD),
    ]

  def commit(self, r: int, state, labelled: LabelledSet, history: list[dict], pool: PoolHistory) -> None:
    """Round ``r`` is done once this returns (its orbax checkpoint holds the
    state, the whole ledger, the metrics history and the pool history)."""
    meta = {'round': r, 'seed': self.config.seed, 'ledger': ledger.to_json(labelled.ledger()),
            'history': history}
    self.ckpts.save(r, state, meta, pool.to_arrays())
