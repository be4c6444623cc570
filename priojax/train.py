"""Losses, the jitted train steps, and the fine-tuning and head-fitting loops.

Two networks, two optimisers, one state:

* the U-Net is trained on labelled tiles with BCE + soft Dice;
* the IoU head is trained on *precomputed* head inputs (gradients stopped
  into the U-Net) with regression to the true tile IoU plus the pairwise
  ranking loss of Learning Loss (Yoo & Kweon 2019), on tiles the U-Net is not
  fitting, so that it does not learn training-set optimism.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import flax
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from priojax import compile_cache, hooks
from priojax import mesh as mesh_lib
from priojax.data.pool import TileSource
from priojax.errors import TrainingError
from priojax.models.unet import preprocess
from priojax.models.networks import Networks
from priojax.train_losses import ranking_loss, segmentation_loss


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # U-Net steps taken so far, over all rounds
  head_step: jax.Array
  params: dict  # {'unet': ..., 'head': ...}
  unet_opt: optax.OptState
  head_opt: optax.OptState


def _encoder_mask(params: dict) -> dict:
  return {name: jax.tree.map(lambda _: name == 'encoder', tree) for name, tree in params.items()}


def make_optimizer(weight_decay: float, clip_norm: float,
                   encoder_lr_scale: float = 1.0) -> optax.GradientTransformation:
  """AdamW behind gradient clipping; the learning rate lives in the state so
  that pretraining and fine-tuning share one compiled step. A pretrained
  encoder's updates (the ``encoder`` subtree) are scaled by
  ``encoder_lr_scale``: a lower rate keeps its ImageNet features while the
  decoder, trained from scratch, learns at the full rate."""

  def make(learning_rate):
    parts = [optax.clip_by_global_norm(clip_norm), optax.adamw(learning_rate, weight_decay=weight_decay)]
    if encoder_lr_scale != 1.0:
      parts.append(optax.masked(optax.scale(encoder_lr_scale), _encoder_mask))
    return optax.chain(*parts)

  return optax.inject_hyperparams(make)(learning_rate=1e-3)


def with_learning_rate(opt_state, learning_rate: float):
  hp = dict(opt_state.hyperparams)
  hp['learning_rate'] = jnp.asarray(learning_rate, jnp.float32)
  return opt_state._replace(hyperparams=hp)


def augment(rng: jax.Array, images: jnp.ndarray, masks: jnp.ndarray):
  """Random dihedral transforms (flips and transposes), one per tile."""

  def one(key, x, y):
    flips = jax.random.bernoulli(key, 0.5, (3,))
    for flip, fn in zip(flips, (lambda a: a[::-1], lambda a: a[:, ::-1],
                                lambda a: jnp.swapaxes(a, 0, 1))):
      x, y = jnp.where(flip, fn(x), x), jnp.where(flip, fn(y), y)
    return x, y

  keys = jax.random.split(rng, images.shape[0])
  return jax.vmap(one)(keys, images, masks)


IOU_TARGET_EPS = 0.005  # IoU targets of the head are clipped to [ε, 1 - ε]


@dataclasses.dataclass(frozen=True)
class HeadLoss:
  rank_weight: float = 1.0
  rank_margin: float = 0.05
  loss_rank_margin: float = 0.1  # ξ of the Learning-Loss head (on the loss scale)


def _heads(params: dict) -> dict:
  return {'head': params['head'], 'loss_head': params['loss_head']}


def seg_step(networks: Networks, tx: optax.GradientTransformation, state: TrainState, images, masks,
             rng, learning_rate):
  """One U-Net step: augment, BCE + Dice, gradient, clipped AdamW."""
  state = state.replace(unet_opt=with_learning_rate(state.unet_opt, learning_rate))
  rng = jax.random.fold_in(rng, state.step)
  aug_rng, drop_rng = jax.random.split(rng)
  x, y = augment(aug_rng, preprocess(images), masks)

  def loss_fn(p):
    logits, _ = networks.unet.apply({'params': p}, x, train=True, rngs={'dropout': drop_rng})
    return segmentation_loss(logits, y)

  loss, grads = jax.value_and_grad(loss_fn)(state.params['unet'])
  updates, unet_opt = tx.update(grads, state.unet_opt, state.params['unet'])
  unet = optax.apply_updates(state.params['unet'], updates)
  new = state.replace(step=state.step + 1, params={**state.params, 'unet': unet}, unet_opt=unet_opt)
  return new, {'loss': loss, 'grad_norm': optax.tree.norm(grads)}


def head_step(networks: Networks, tx: optax.GradientTransformation, hl: HeadLoss, state: TrainState,
              feats, iou_targets, loss_targets, learning_rate):
  """Both heads on stop-gradient features: the IoU head by regression plus
  ranking, the loss head by the Learning-Loss ranking term alone."""
  state = state.replace(head_opt=with_learning_rate(state.head_opt, learning_rate))

  # The IoU is regressed by cross-entropy on the head's logit, with targets
  # inside [ε, 1 - ε]. By squared error through the sigmoid, a batch of
  # tiles with IoU exactly 1 (empty, predicted empty) put the optimum at an
  # infinite logit; Adam's normalised steps walked there, the output became
  # exactly 1.0 for every tile, its gradient exactly 0, and the head never
  # moved again. The cross-entropy's gradient, p - y, stays alive.
  iou_targets = jnp.clip(iou_targets, IOU_TARGET_EPS, 1.0 - IOU_TARGET_EPS)
  logit_head = networks.head.clone(activation=lambda z: z)

  def loss_fn(p):
    logits = logit_head.apply({'params': p['head']}, feats)
    pred = jax.nn.sigmoid(logits)
    fit = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, iou_targets))
    mse = jnp.mean((pred - iou_targets) ** 2)
    rank = ranking_loss(pred, iou_targets, hl.rank_margin)
    pred_loss = networks.predicted_loss(p, feats)
    loss_rank = ranking_loss(pred_loss, loss_targets, hl.loss_rank_margin)
    return fit + hl.rank_weight * rank + loss_rank, (mse, rank, loss_rank)

  heads = _heads(state.params)
  (loss, (mse, rank, loss_rank)), grads = jax.value_and_grad(loss_fn, has_aux=True)(heads)
  updates, head_opt = tx.update(grads, state.head_opt, heads)
  heads = optax.apply_updates(heads, updates)
  new = state.replace(head_step=state.head_step + 1, params={**state.params, **heads},
                      head_opt=head_opt)
  return new, {'loss': loss, 'mse': mse, 'rank': rank, 'loss_rank': loss_rank,
               'grad_norm': optax.tree.norm(grads)}


def _opt_init(tx: optax.GradientTransformation, params) -> optax.OptState:
  # optax stores the injected learning rate weakly typed; the steps return it
  # strongly typed. Starting strongly typed keeps one trace of each step.
  return with_learning_rate(tx.init(params), 0.0)


def _fresh_state(tx, head_tx, params: dict) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), head_step=jnp.zeros((), jnp.int32), params=params,
                    unet_opt=_opt_init(tx, params['unet']), head_opt=_opt_init(head_tx, _heads(params)))


def _init_state(networks: Networks, tx, head_tx, tile_size: int, key: jax.Array) -> TrainState:
  return _fresh_state(tx, head_tx, networks.init(key, tile_size))


@compile_cache.cached
def _compiled(networks: Networks, weight_decay: float, clip_norm: float, head_loss: HeadLoss,
              encoder_lr_scale: float):
  """The optimisers and jitted steps of one configuration, built once per
  process: every run of a comparison with this configuration reuses them."""
  config = (networks, weight_decay, clip_norm, head_loss, encoder_lr_scale)
  tx = make_optimizer(weight_decay, clip_norm, encoder_lr_scale)
  head_tx = make_optimizer(0.0, clip_norm)
  seg = compile_cache.counted('seg_step', config, functools.partial(seg_step, networks, tx))
  head = compile_cache.counted('head_step', config, functools.partial(head_step, networks, head_tx, head_loss))
  init = functools.partial(_init_state, networks, tx, head_tx)
  return (tx, head_tx, compile_cache.jit(seg, donate_argnums=0), compile_cache.jit(head, donate_argnums=0),
          init, compile_cache.jit(init, static_argnums=0))


class Trainer:
  """The optimisers and the compiled steps for one pair of networks."""

  def __init__(self, networks: Networks, mesh: Mesh, *, weight_decay: float = 1e-4,
               clip_norm: float = 1.0, head_loss: HeadLoss = HeadLoss(), encoder_lr_scale: float = 1.0):
    self.networks = networks
    self.mesh = mesh
    self.head_loss = head_loss
    (self.tx, self.head_tx, self.seg_step, self.head_step, self._init,
     self._init_jit) = _compiled(networks, float(weight_decay), float(clip_norm), head_loss,
                                 float(encoder_lr_scale))

  def initial_state(self, key: jax.Array, tile_size: int) -> TrainState:
    """A freshly initialised state (a pretrained encoder's weights loaded),
    replicated over the mesh (jitted: op by op, the U-Net's initialisation
    takes seconds of dispatch)."""
    state = self._init_jit(tile_size, key)
    unet = self.networks.load_pretrained(state.params['unet'])
    if unet is not state.params['unet']:
      state = state.replace(params={**state.params, 'unet': unet})
    return mesh_lib.replicate(self.mesh, state)

  def state_shapes(self, key: jax.Array, tile_size: int) -> TrainState:
    """The state's shapes and dtypes; nothing is computed."""
    return jax.eval_shape(functools.partial(self._init, tile_size), key)

  def init_state(self, params: dict) -> TrainState:
    # The steps donate the state: own copies keep the caller's params alive.
    # Every state lives replicated over the mesh: a state placed otherwise
    # (one device) would make the steps trace and compile a second time.
    return mesh_lib.replicate(self.mesh, _fresh_state(self.tx, self.head_tx, jax.tree.map(jnp.copy, params)))

  def reset_unet(self, state: TrainState, unet_params: dict) -> TrainState:
    # A copy: the train step donates the state's buffers, and the caller keeps
    # ``unet_params`` for the next reset.
    unet_params = jax.tree.map(jnp.copy, unet_params)
    params = {**state.params, 'unet': unet_params}
    return mesh_lib.replicate(self.mesh, state.replace(params=params, unet_opt=_opt_init(self.tx, unet_params)))

  def fine_tune(self, state: TrainState, target: dict | None, source: TileSource | dict, *, steps: int,
                batch_size: int, learning_rate: float, replay: float, rng: jax.Array,
                log_every: int = 0, what: str = 'fine-tune'):
    """``steps`` U-Net steps on batches mixing labelled target tiles (in
    memory: a few hundred) and source tiles (a ``TileSource``, read as the
    steps need them, or arrays), a ``replay`` fraction of each batch; returns
    (state, metrics). In a multi-process run each process reads only its
    rows of every batch (mesh.process_rows).

    The learning rate warms up over 5 % of the steps and decays to zero by a
    cosine, every call: each round ends on a settled model, so rounds are
    compared at rest rather than mid-oscillation. Announces the
    ``fine_tuning`` point after each step is dispatched."""
    batch_size = mesh_lib.batch_multiple(self.mesh, batch_size)
    n_t = 0 if target is None else len(target['image'])
    b_s = batch_size if n_t == 0 else min(batch_size - 1, int(round(batch_size * replay)))
    b_t = batch_size - b_s
    k_t, k_s, k_step = jax.random.split(rng, 3)
    fields = ('image', 'mask')
    if isinstance(source, dict):
      n_s, read_source = len(source['image']), lambda p: {k: source[k][p] for k in fields}
    else:
      n_s, read_source = len(source), lambda p: source.read(p, fields=fields)
    idx_s = np.asarray(jax.random.randint(k_s, (steps, b_s), 0, n_s))
    idx_t = np.asarray(jax.random.randint(k_t, (steps, b_t), 0, max(n_t, 1)))
    first, share = mesh_lib.process_rows(batch_size)
    rows = np.arange(first, first + share)  # of each global batch: source rows, then target rows
    source_rows, target_rows = rows[rows < b_s], rows[rows >= b_s] - b_s

    def read_step(s):
      parts = []
      if len(source_rows):
        parts.append(read_source(idx_s[s][source_rows]))
      if len(target_rows):
        parts.append({k: target[k][idx_t[s][target_rows]] for k in fields})
      return tuple(np.concatenate([p[k] for p in parts]) for k in fields)

    # Read ahead on a thread while the device trains.
    local_batches = iter(grain.MapDataset.range(steps).map(read_step).to_iter_dataset(
        grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, max(1, steps // 20), max(steps, 2), end_value=0.0)
    lrs = np.asarray([schedule(s + 1) for s in range(steps)], np.float32)
    losses, grad_norms = [], []
    for s in range(steps):
      batch = mesh_lib.from_process_rows(self.mesh, next(local_batches), batch_size)
      state, metrics = self.seg_step(state, *batch, k_step, lrs[s])
      losses.append(metrics['loss'])
      grad_norms.append(metrics['grad_norm'])
      if (s + 1) % 50 == 0 or s + 1 == steps:
        # Checked every 50 steps (not every step) to keep the device busy; a
        # non-finite state is thrown away with the round, never committed.
        _check_finite({'loss': losses[-50:], 'gradient norm': grad_norms[-50:]}, f'{what} of the U-Net',
                      int(state.step))
      hooks.point('fine_tuning', step=s + 1, steps=steps)
      if log_every and (s + 1) % log_every == 0:
        logging.info('%s step %d/%d | loss %.4f', what, s + 1, steps,
                     float(np.mean(jax.device_get(losses[-log_every:]))))
    losses = np.asarray(jax.device_get(losses))
    window = max(1, math.ceil(len(losses) / 10))
    return state, {'loss_start': float(losses[:window].mean()),
                   'loss_end': float(losses[-window:].mean())}

  def fit_head(self, state: TrainState, sets: Sequence[dict[str, np.ndarray]], *,
               steps: int, batch_size: int, learning_rate: float, rng: jax.Array):
    """Trains both heads on sets of tiles the U-Net is not fitting (dicts with
    'head_inputs', 'true_iou', 'true_loss'), each set an equal share of every
    batch (so a few target tiles are not drowned by source tiles)."""
    sets = [t for t in sets if len(t['true_iou'])]
    if not sets or steps == 0:
      return state, {}
    per_set = max(2, batch_size // len(sets))
    keys = jax.random.split(rng, len(sets))
    idx = [np.asarray(jax.random.randint(k, (steps, per_set), 0, len(t['true_iou'])))
           for k, t in zip(keys, sets)]
    order = np.asarray(jax.random.uniform(jax.random.fold_in(rng, len(sets)), (steps, per_set * len(sets))))
    losses, grad_norms = [], []
    for s in range(steps):
      batch = {k: np.concatenate([t[k][i[s]] for t, i in zip(sets, idx)])
               for k in ('head_inputs', 'true_iou', 'true_loss')}
      # Shuffle across sets so the ranking term's halves pair source with target.
      perm = np.argsort(order[s])
      state, metrics = self.head_step(state, batch['head_inputs'][perm],
                                      batch['true_iou'][perm].astype(np.float32),
                                      batch['true_loss'][perm].astype(np.float32),
                                      np.float32(learning_rate))
      losses.append(metrics['loss'])
      grad_norms.append(metrics['grad_norm'])
    _check_finite({'loss': losses, 'gradient norm': grad_norms}, 'IoU head fitting',
                  int(state.head_step))
    losses = np.asarray(jax.device_get(losses))
    return state, {'head_loss_end': float(losses[-max(1, steps // 10):].mean())}


def _check_finite(series: dict[str, list], what: str, last_step: int) -> None:
  """``series`` holds the last steps' loss and gradient norm, the final
  entries at ``last_step``; names the first step where either is NaN/inf."""
  values = {k: np.asarray(jax.device_get(v), np.float64) for k, v in series.items()}
  bad = np.zeros(len(next(iter(values.values()))), bool)
  for v in values.values():
    bad |= ~np.isfinite(v)
  if bad.any():
    first = int(np.flatnonzero(bad)[0])
    shown = ', '.join(f'{k} {v[first]:.4g}' for k, v in values.items())
    raise TrainingError(f'{what}: non-finite at step {last_step - len(bad) + 1 + first} ({shown}); '
                        'the round is stopped and the last committed checkpoint is kept (lower the '
                        'learning rate, then rerun with --config.allow_config_change=True)')
