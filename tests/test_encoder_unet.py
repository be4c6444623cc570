"""The U-Net over a pretrained encoder: decoder shapes per chip size, input
bands, the encoder's learning rate, and the configs that use it."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import iou_priority
from priojax import config_defaults
from priojax import config_checks
from priojax.errors import ConfigError
from priojax.models import mobilenet_v2
from priojax.models.encoder_unet import EncoderUNet
from priojax.train import make_optimizer


@pytest.mark.parametrize('size', [64, 128, 256])
def test_decoder_shapes_for_64_128_and_256_px_chips(size):
  model = EncoderUNet(width=8, weights='random')
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  params = jax.eval_shape(lambda k: model.init(k, jnp.zeros(x.shape), train=False), jax.random.key(0))
  logits, aux = jax.eval_shape(lambda p: model.apply(p, jnp.zeros(x.shape), train=False), params)
  chex.assert_shape(logits, (2, size, size))
  chex.assert_shape(aux['bottleneck'], (2, size // 32, size // 32, 1280))
  # Decoder blocks at strides 16, 8, 4, 2, 1 with 8 x (16, 8, 4, 2, 1) channels.
  assert [a.shape for a in aux['decoder']] == [(2, size // s, size // s, 8 * s) for s in (16, 8, 4, 2, 1)]
  # A 3x3 block over [upsampled, skip] channels: the skips are the encoder's.
  first = params['params']['decoder_4']['Conv_0']['kernel']
  assert first.shape == (3, 3, 1280 + mobilenet_v2.SKIP_CHANNELS[3], 128)


def test_chips_not_a_multiple_of_32_are_refused():
  with pytest.raises(ValueError, match='tiles of 48x48 px; the mobilenet_v2 encoder needs a multiple of 32'):
    EncoderUNet(weights='random').init(jax.random.key(0), jnp.zeros((1, 48, 48, 3)), train=False)
  config = iou_priority.get_config('real')
  config.data.tile_size = 48
  with pytest.raises(ConfigError, match=r"config.data.tile_size: expected a multiple of 32 for "
                                        r"model.encoder='mobilenet_v2', got 48"):
    config_checks.check_config(config)


@pytest.fixture(scope='module')
def small_encoder_unet():
  # Zero-initialised encoder (fast to compile), then random values drawn
  # here in NumPy.
  model = EncoderUNet(width=4)
  shapes = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3)), train=False), jax.random.key(0))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.2, s.shape), jnp.float32), shapes)
  return model, params


@pytest.mark.slow
def test_one_band_is_grey_replicated_to_rgb(small_encoder_unet):
  model, params = small_encoder_unet
  grey = jax.random.uniform(jax.random.key(1), (2, 32, 32, 1)) - 0.5
  apply = jax.jit(lambda x: model.apply(params, x, train=False)[0])
  chex.assert_trees_all_close(apply(grey), apply(jnp.repeat(grey, 3, axis=-1)), atol=1e-5)


@pytest.mark.slow
def test_four_bands_extend_the_first_convolution_by_the_mean_rgb_filter(small_encoder_unet):
  model, params = small_encoder_unet
  stem = params['params']['encoder']['block_0']['conv']['kernel']
  four = mobilenet_v2.adapt_input_kernel(np.asarray(stem), 4)
  p4 = jax.tree.map(lambda a: a, params)
  p4['params']['encoder']['block_0']['conv']['kernel'] = jnp.asarray(four)
  rgb = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  # A fourth band equal to the mean of the RGB normalised inputs adds, through
  # the mean filter, what the RGB filters see on average.
  nir = jax.random.uniform(jax.random.key(2), (2, 32, 32, 1))
  logits, _ = jax.jit(lambda x: model.apply(p4, x, train=False))(jnp.concatenate([rgb, nir], -1) - 0.5)
  chex.assert_shape(logits, (2, 32, 32))
  assert bool(jnp.all(jnp.isfinite(logits)))
  # The stem's response to the 4th band is the mean RGB filter's response.
  x4 = mobilenet_v2.normalise(jnp.concatenate([rgb, nir], -1))
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)),
                                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  chex.assert_trees_all_close(conv(x4, jnp.asarray(four)) - conv(x4[..., :3], stem),
                              conv(x4[..., 3:], jnp.mean(stem, axis=2, keepdims=True)), atol=1e-4)
  with pytest.raises(Exception, match='takes 1, 3 or more bands, not 2'):
    mobilenet_v2.adapt_input_kernel(np.asarray(stem), 2)


def test_the_encoder_learns_at_a_fraction_of_the_decoders_rate():
  params = {'encoder': {'w': jnp.ones(3)}, 'decoder_0': {'w': jnp.ones(3)}}
  grads = {'encoder': {'w': jnp.full(3, 0.5)}, 'decoder_0': {'w': jnp.full(3, 0.5)}}
  tx = make_optimizer(0.0, 1e6, encoder_lr_scale=0.1)
  updates, _ = tx.update(grads, tx.init(params), params)
  plain = make_optimizer(0.0, 1e6)
  full, _ = plain.update(grads, plain.init(params), params)
  chex.assert_trees_all_close(updates['encoder']['w'], 0.1 * full['encoder']['w'])
  chex.assert_trees_all_close(updates['decoder_0']['w'], full['decoder_0']['w'])
  assert float(optax.tree.norm(updates['decoder_0'])) > 0


def test_geotiff_runs_get_the_real_imagery_recipe():
  geotiff, real = iou_priority.get_config('geotiff'), iou_priority.get_config('real')
  for section, values in config_defaults.REAL_IMAGERY_RECIPE.items():
    for key, value in values.items():
      assert geotiff[section][key] == real[section][key] == value, (section, key)
  assert geotiff.model.encoder == 'mobilenet_v2' and geotiff.model.encoder_weights == 'imagenet'
  assert iou_priority.get_config(None).model.encoder == 'none'  # the synthetic benchmark's own U-Net
  assert iou_priority.get_config('geotiff,smoke').model.encoder == 'none'


def test_encoder_fields_are_checked():
  config = iou_priority.get_config('real')
  config.model.encoder = 'resnet50'
  with pytest.raises(ConfigError, match=r"config.model.encoder: expected one of \('none', 'mobilenet_v2'\)"):
    config_checks.check_config(config)
  config = iou_priority.get_config('real')
  config.model.encoder_lr_scale = 0
  with pytest.raises(ConfigError, match='config.model.encoder_lr_scale: expected a positive number'):
    config_checks.check_config(config)


def test_a_workdir_started_before_the_encoder_existed_resumes():
  new = iou_priority.get_config(None).to_dict()
  old = {**new, 'model': {k: v for k, v in new['model'].items() if not k.startswith('encoder')}}
  assert config_checks.check_same_config(old, new, 'w') == []
  new['model']['encoder'] = 'mobilenet_v2'
  with pytest.raises(Exception, match=r"model.encoder: 'none' -> 'mobilenet_v2'"):
    config_checks.check_same_config(old, new, 'w')
