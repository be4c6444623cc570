"""The training mechanics the loop relies on: augmentation keeps image and
mask aligned, the ranking loss's sign and ties, the source-replay share of
each batch, and the IoU head learning to rank tiles it never saw."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from priojax import mesh as mesh_lib
from priojax import tile_metrics
from priojax.models.heads import iou_head
from priojax.models.networks import Networks
from priojax.models.unet import UNet
from priojax.train import Trainer, augment
from priojax.train_losses import ranking_loss


def test_augmentation_moves_image_and_mask_together():
  rng = np.random.default_rng(0)
  masks = (rng.random((64, 8, 8)) > 0.5).astype(np.uint8)
  # The image's first channel is the mask, the others say where each pixel was.
  rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing='ij')
  images = np.stack([masks.astype(np.float32),
                     np.broadcast_to(rows, masks.shape), np.broadcast_to(cols, masks.shape)], -1)
  x, y = augment(jax.random.key(3), jnp.asarray(images), jnp.asarray(masks))
  x, y = np.asarray(x), np.asarray(y)
  np.testing.assert_array_equal(x[..., 0], y)
  # Every tile is one of the 8 dihedral transforms of itself, and they vary.
  moved = 0
  for i in range(64):
    forms = [images[i]]
    for _ in range(3):
      forms.append(np.rot90(forms[-1]))
    forms += [f.swapaxes(0, 1) for f in forms]
    assert any(np.array_equal(x[i], f) for f in forms), i
    moved += not np.array_equal(x[i], images[i])
  assert 40 <= moved < 64  # 7/8 of the tiles move, on average


def _ranking_reference(pred, target, margin):
  half = len(pred) // 2
  losses, pairs = 0.0, 0
  for i in range(half):
    j = i + half
    sign = np.sign(target[i] - target[j])
    if sign == 0:
      continue
    losses += max(0.0, -sign * (pred[i] - pred[j]) + margin)
    pairs += 1
  return losses / max(pairs, 1)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
@pytest.mark.slow
def test_ranking_loss_against_numpy(data):
  n = data.draw(st.integers(2, 12))
  pred = np.asarray(data.draw(st.lists(st.floats(0, 1, width=32), min_size=n, max_size=n)), np.float32)
  # Few distinct targets: ties are common.
  target = np.asarray(data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=n, max_size=n)), np.float32)
  got = float(ranking_loss(jnp.asarray(pred), jnp.asarray(target), 0.1))
  assert got == pytest.approx(_ranking_reference(pred, target, 0.1), abs=1e-5)


def test_ranking_loss_sign_and_ties():
  # Target says tile 0 beats tile 1 (pairs are (i, i + half)).
  right = ranking_loss(jnp.array([0.9, 0.2]), jnp.array([1.0, 0.0]), 0.1)
  wrong = ranking_loss(jnp.array([0.2, 0.9]), jnp.array([1.0, 0.0]), 0.1)
  assert float(right) == 0.0 and float(wrong) == pytest.approx(0.8)
  # A tied pair costs nothing and does not dilute the others' mean.
  tied = ranking_loss(jnp.array([0.2, 0.0, 0.9, 0.5]), jnp.array([1.0, 0.3, 0.0, 0.3]), 0.1)
  assert float(tied) == pytest.approx(0.8)


@pytest.fixture(scope='module')
def trainer():
  net = Networks(UNet(depth=1, width=4), iou_head(8), embed_dim=8)
  return net, Trainer(net, mesh_lib.make_mesh())


@pytest.mark.parametrize('replay, batch, want_source', [(0.25, 8, 2), (0.5, 8, 4), (0.0, 8, 0),
                                                         (0.9, 8, 7)])
@pytest.mark.slow
def test_source_replay_mixes_the_stated_share(trainer, monkeypatch, replay, batch, want_source):
  net, tr = trainer
  source = {'image': np.full((10, 8, 8, 3), 10, np.uint8), 'mask': np.zeros((10, 8, 8), np.uint8)}
  target = {'image': np.full((5, 8, 8, 3), 200, np.uint8), 'mask': np.ones((5, 8, 8), np.uint8)}
  seen = []
  real = tr.seg_step

  def spy(state, images, masks, rng, lr):
    seen.append(np.asarray(images)[:, 0, 0, 0])
    return real(state, images, masks, rng, lr)

  monkeypatch.setattr(tr, 'seg_step', spy)
  state = tr.initial_state(jax.random.key(0), 8)
  tr.fine_tune(state, target, source, steps=3, batch_size=batch, learning_rate=1e-3, replay=replay,
               rng=jax.random.key(1))
  assert len(seen) == 3
  for values in seen:
    assert len(values) == mesh_lib.batch_multiple(tr.mesh, batch)
    assert (values == 10).sum() == want_source and (values == 200).sum() == len(values) - want_source
  # Without target labels every tile is a source tile.
  seen.clear()
  tr.fine_tune(tr.initial_state(jax.random.key(0), 8), None, source, steps=2, batch_size=batch,
               learning_rate=1e-3, replay=replay, rng=jax.random.key(1))
  assert all((values == 10).all() for values in seen)


@pytest.mark.slow
def test_fitting_the_iou_head_makes_it_rank_unseen_tiles(smoke_config):
  """The paper's mechanism: an IoU head fitted on tiles the U-Net does not
  train on ranks other unseen tiles by their true IoU; unfitted, it does not."""
  from priojax import loop
  from priojax.workdir import Workdir
  import tempfile

  config = smoke_config.copy_and_resolve_references()
  config.pretrain.steps = 60
  exp = loop.Experiment(config, Workdir(tempfile.mkdtemp()))
  state = exp.initial_state()
  state, _ = exp.trainer.fine_tune(state, None, exp.source_train, steps=60, batch_size=8,
                                   learning_rate=2e-3, replay=1.0, rng=jax.random.key(0))
  test = exp.data['target_test']

  def spearman(state):
    tiles = exp.scorer.evaluate_tiles(state.params, test)
    return tile_metrics.spearman(tiles['pred_iou'], tiles['true_iou'])

  before = spearman(state)
  sets = [exp.scorer.evaluate_tiles(state.params, exp.data['source_val'])]
  fitted, _ = exp.trainer.fit_head(state, sets, steps=300, batch_size=16, learning_rate=3e-3,
                                   rng=jax.random.key(2))
  after = spearman(fitted)
  exp.ckpts.close()
  assert after > 0.5 and after > before + 0.3, (before, after)


@pytest.mark.slow
def test_the_iou_head_does_not_saturate_on_perfect_targets(smoke_config):
  """Every target exactly 1 (empty tiles predicted empty) for many steps:
  the head stays below 1 with a live gradient, and refitting it on varied
  targets makes it rank again. Unclipped, Adam drove the sigmoid to exactly
  1.0 for every input and the head never moved again."""
  from priojax import loop
  from priojax.workdir import Workdir
  import tempfile

  exp = loop.Experiment(smoke_config.copy_and_resolve_references(), Workdir(tempfile.mkdtemp()))
  state = exp.initial_state()
  tiles = exp.scorer.evaluate_tiles(state.params, exp.data['target_test'])
  perfect = {**tiles, 'true_iou': np.ones_like(tiles['true_iou'])}
  state, _ = exp.trainer.fit_head(state, [perfect], steps=1500, batch_size=16, learning_rate=3e-2,
                                  rng=jax.random.key(0))
  pred = np.asarray(exp.scorer.evaluate_tiles(state.params, exp.data['target_test'])['pred_iou'])
  assert pred.max() < 1.0 - 1e-3, pred.max()
  # Then real targets (a fixed function of the inputs): it learns to rank them.
  target = 1 / (1 + np.exp(-8 * (tiles['head_inputs'][:, -7] - tiles['head_inputs'][:, -7].mean())))
  varied = {**tiles, 'true_iou': target.astype(np.float32)}
  state, _ = exp.trainer.fit_head(state, [varied], steps=300, batch_size=16, learning_rate=3e-3,
                                  rng=jax.random.key(1))
  pred = np.asarray(exp.scorer.evaluate_tiles(state.params, exp.data['target_test'])['pred_iou'])
  exp.ckpts.close()
  assert tile_metrics.spearman(pred, target) > 0.8
