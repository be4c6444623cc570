"""Shapes, parameter counts and output ranges of the tiny network variants."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from priojax import tile_stats
from priojax.models import head_features
from priojax.models.heads import iou_head
from priojax.models.unet import UNet
from priojax.models.networks import Networks


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.slow
def test_unet_shapes_and_parameter_count():
  model = UNet(depth=2, width=4)
  x = jnp.zeros((3, 32, 32, 3))
  # Jitted: one compile, not one per operation.
  variables = jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(0), x)
  logits, aux = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  chex.assert_shape(logits, (3, 32, 32))
  chex.assert_shape(aux['bottleneck'], (3, 8, 8, 16))
  chex.assert_shape(aux['decoder'][0], (3, 16, 16, 8))
  chex.assert_shape(aux['decoder'][1], (3, 32, 32, 4))
  # Encoder 3->4->4, 4->8->8; bottleneck 8->16->16; decoder up 16->8 (2x2),
  # block 16->8->8, up 8->4, block 8->4->4; output 4->1; GroupNorm 2 per conv.
  convs = [(3, 4), (4, 4), (4, 8), (8, 8), (8, 16), (16, 16), (16, 8), (8, 8), (8, 4), (4, 4)]
  expected = sum(9 * i * o + o + 2 * o for i, o in convs)
  expected += (4 * 16 * 8 + 8) + (4 * 8 * 4 + 4)  # transposed convs
  expected += 4 * 1 + 1  # 1x1 output conv
  assert _count(variables['params']) == expected


@pytest.mark.parametrize('norm', ['group', 'layer', 'instance', 'none'])
@pytest.mark.slow
def test_unet_norms_and_dropout(norm):
  model = UNet(depth=1, width=4, norm=norm, dropout=0.5)
  x = jnp.ones((2, 16, 16, 3))
  params = model.init(jax.random.key(0), x, train=False)
  a, _ = model.apply(params, x, train=True, rngs={'dropout': jax.random.key(1)})
  b, _ = model.apply(params, x, train=True, rngs={'dropout': jax.random.key(2)})
  c, _ = model.apply(params, x, train=False)
  d, _ = model.apply(params, x, train=False)
  chex.assert_trees_all_close(c, d)  # deterministic at eval
  assert not np.allclose(a, b)  # MC dropout is stochastic in train mode


@pytest.mark.slow
def test_bfloat16_unet_keeps_float32_logits():
  model = UNet(depth=1, width=4, dtype=jnp.bfloat16)
  x = jnp.ones((1, 16, 16, 3))
  logits, aux = model.apply(model.init(jax.random.key(0), x, train=False), x, train=False)
  assert logits.dtype == jnp.float32
  assert aux['bottleneck'].dtype == jnp.bfloat16


@pytest.mark.slow
def test_head_inputs_and_prediction_range():
  net = Networks(UNet(depth=2, width=4), iou_head(8), embed_dim=8)
  params = net.init(jax.random.key(0), 32)
  image = jnp.asarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3)), jnp.uint8)
  logits, _, feats, pred = net.forward_tile(params, image)
  embedding = tile_stats.tile_stats(net, params, image, jnp.uint32(0), jax.random.key(0),
                                    tile_stats.StatsSpec.of(('embedding',)))['embedding']
  chex.assert_shape(logits, (32, 32))
  # bottleneck (16 ch pooled to 8) + finest decoder (4) + mask and image statistics
  n_in = 8 + 4 + head_features.NUM_MASK_STATS + head_features.NUM_IMAGE_STATS
  chex.assert_shape(feats, (n_in,))
  chex.assert_shape(embedding, (8,))
  assert 0.0 <= float(pred) <= 1.0
  head_params = params['head']
  assert _count(head_params) == (n_in * 8 + 8) + (8 * 8 + 8) + (8 + 1)


@pytest.mark.slow
def test_head_inputs_stop_gradient_into_unet():
  net = Networks(UNet(depth=1, width=4), iou_head(8), embed_dim=8)
  params = net.init(jax.random.key(0), 16)
  image = jnp.full((16, 16, 3), 100, jnp.uint8)
  grads = jax.jit(jax.grad(lambda p: net.forward_tile(p, image)[3]))(params)
  assert all(float(jnp.abs(g).sum()) == 0.0 for g in jax.tree.leaves(grads['loss_head']))
  assert all(float(jnp.abs(g).sum()) == 0.0 for g in jax.tree.leaves(grads['unet']))
  assert any(float(jnp.abs(g).sum()) > 0.0 for g in jax.tree.leaves(grads['head']))


def test_image_stats_against_numpy():
  image = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
  x = image / 255.0
  grey = x.mean(-1)
  texture = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
  expected = np.concatenate([x.mean((0, 1)), x.std((0, 1)), [texture]])
  chex.assert_trees_all_close(head_features.image_stats(jnp.asarray(image)), expected, rtol=1e-5)


def test_pooled_embedding_caps_dimension():
  x = jnp.arange(4 * 4 * 300, dtype=jnp.float32).reshape(4, 4, 300)
  chex.assert_shape(head_features.pooled_embedding(x, 128), (128,))
  chex.assert_shape(head_features.pooled_embedding(x, 512), (300,))


@pytest.mark.slow
def test_depth_to_space_upsampling_equals_conv_transpose_on_the_same_parameters():
  from priojax.models.unet import Upsample2x

  x = jax.random.normal(jax.random.key(0), (2, 5, 7, 6))
  conv_t = nn.ConvTranspose(4, (2, 2), strides=(2, 2))
  params = conv_t.init(jax.random.key(1), x)
  params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), params)
  want = conv_t.apply(params, x)
  for method in ('depth_to_space', 'conv_transpose'):
    up = Upsample2x(4, method)
    # The same initialiser and parameter tree as nn.ConvTranspose.
    chex.assert_trees_all_equal(up.init(jax.random.key(1), x), conv_t.init(jax.random.key(1), x))
    chex.assert_trees_all_close(up.apply(params, x), want, atol=1e-5, rtol=1e-5)
  # The orientation matters: a flipped kernel gives another map.
  flipped = jax.tree.map(lambda a: a[::-1, ::-1] if a.ndim == 4 else a, params)
  assert not np.allclose(Upsample2x(4).apply(flipped, x), want, atol=1e-3)


def test_a_conv_transpose_checkpoint_loads_into_the_depth_to_space_unet():
  old = UNet(depth=2, width=4, upsample='conv_transpose')
  new = UNet(depth=2, width=4, upsample='depth_to_space')
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
  params = old.init(jax.random.key(1), x, train=False)
  chex.assert_trees_all_equal_structs(params, new.init(jax.random.key(1), x, train=False))
  chex.assert_trees_all_close(new.apply(params, x, train=False)[0], old.apply(params, x, train=False)[0],
                              atol=1e-5, rtol=1e-5)
  with pytest.raises(ValueError, match='unknown upsample'):
    UNet(depth=1, width=4, upsample='nearest').init(jax.random.key(0), x[:, :8, :8], train=False)


@pytest.mark.slow
def test_reshape_max_pool_equals_nn_max_pool_and_routes_gradients_to_the_maximum():
  from priojax.models.unet import max_pool_2x2

  x = jax.random.normal(jax.random.key(0), (3, 8, 6, 5))
  chex.assert_trees_all_equal(max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))
  weights = jax.random.normal(jax.random.key(1), (3, 4, 3, 5))
  grad = jax.grad(lambda a: jnp.sum(max_pool_2x2(a) * weights))(x)
  want = jax.grad(lambda a: jnp.sum(nn.max_pool(a, (2, 2), strides=(2, 2)) * weights))(x)
  chex.assert_trees_all_close(grad, want)
