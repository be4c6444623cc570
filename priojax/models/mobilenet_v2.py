"""MobileNetV2 (Sandler et al. 2018, torchvision's layout) with BatchNorm
folded into its convolutions, and the conversion of torchvision's weights.

**BatchNorm as a frozen affine, folded.** torchvision's ImageNet weights
carry BatchNorm statistics estimated on batches of 256 ImageNet images. A
crisis-area fine-tuning sees batches of 16 chips of one scene: batch
statistics there are noisy and far from ImageNet's, and a BatchNorm in
training mode would also make a tile's output depend on the other tiles of
its batch, which would break the per-tile purity that vmapped, sharded pool
scoring relies on. So every BatchNorm is used in inference mode, and
inference-mode BatchNorm after a convolution is an affine map per output
channel: ``γ (conv(x) − μ) / √(σ² + ε) + β``. It is folded into the
convolution (kernel × ``γ/√(σ²+ε)``, bias ``β − μ γ/√(σ²+ε)``), which is
the same function, costs nothing at run time, and leaves the scale and
shift trainable through the kernel and bias (statistics frozen, affine
learnt). The decoder, trained from scratch, uses GroupNorm
(``encoder_unet.py``).

The network takes RGB in [0, 1] and applies ImageNet's normalisation itself
(``normalise``), so callers never need to know it. Convolutions pad
symmetrically by ``k // 2`` as PyTorch does (Flax's ``'SAME'`` pads stride-2
convolutions of even inputs asymmetrically, which would shift every map
by half a pixel against the weights).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from priojax.models.torch_pickle import WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-5  # torchvision's BatchNorm2d default
# (expansion t, output channels c, repeats n, first stride s), torchvision's table.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
STEM, LAST = 32, 1280
# Index of the block (torchvision's features.N) whose output is the
# feature map at stride 2, 4, 8, 16 and 32: the U-Net's skips and bottleneck.
STAGE_ENDS = (1, 3, 6, 13, 18)
SKIP_CHANNELS = (16, 24, 32, 96, 1280)


def normalise(x: jnp.ndarray) -> jnp.ndarray:
  """Images in [0, 1] with C channels -> ImageNet-normalised. Channels past
  the third (NIR, other bands) get the mean of the RGB statistics; one band
  is treated as grey, i.e. as RGB with equal values."""
  c = x.shape[-1]
  mean = np.asarray(IMAGENET_MEAN + (np.mean(IMAGENET_MEAN),) * max(0, c - 3), np.float32)
  std = np.asarray(IMAGENET_STD + (np.mean(IMAGENET_STD),) * max(0, c - 3), np.float32)
  if c == 1:  # grey replicated to RGB, then normalised per channel
    x = jnp.repeat(x, 3, axis=-1)
    mean, std = mean[:3], std[:3]
  return (x - mean) / std


def depthwise_conv(x: jnp.ndarray, kernel: jnp.ndarray, stride: int) -> jnp.ndarray:
  """A depthwise convolution (``kernel`` [k, k, 1, C], padding k // 2) as a
  sum of k² shifted, strided slices times one tap each.

  The same function as ``lax.conv_general_dilated`` with
  ``feature_group_count=C``; XLA:CPU runs that grouped convolution on a
  generic kernel, at 0.3-0.4 GFLOP/s here, and its gradient slower still
  (measured in ``benchmarks/train_step.py``'s notes: 10-40x slower forward
  and 6-40x slower backward than these slices, which XLA fuses into one
  elementwise loop each way).
  """
  k = kernel.shape[0]
  p = k // 2
  b, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  ho, wo = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
  y = None
  for i in range(k):
    for j in range(k):
      window = jax.lax.slice(xp, (0, i, j, 0), (b, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
                             (1, stride, stride, 1))
      term = window * kernel[i, j, 0]
      y = term if y is None else y + term
  return y


class DepthwiseConv(nn.Module):
  """``nn.Conv(C, (k, k), feature_group_count=C)``'s parameters (kernel
  [k, k, 1, C], bias [C]), computed by ``depthwise_conv``."""

  kernel_size: int = 3
  stride: int = 1
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (self.kernel_size, self.kernel_size, 1, c))
    bias = self.param('bias', nn.initializers.zeros_init(), (c,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return depthwise_conv(x, kernel, self.stride) + bias


class ConvAffine(nn.Module):
  """Convolution + folded BatchNorm (a bias), then ReLU6 unless ``linear``;
  ``depthwise``: one filter per channel."""

  features: int
  kernel: int = 1
  stride: int = 1
  depthwise: bool = False
  linear: bool = False
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):
    if self.depthwise:
      x = DepthwiseConv(self.kernel, self.stride, self.dtype, self.kernel_init, name='conv')(x)
    else:
      p = self.kernel // 2
      x = nn.Conv(self.features, (self.kernel, self.kernel), strides=self.stride, padding=((p, p), (p, p)),
                  use_bias=True, dtype=self.dtype, kernel_init=self.kernel_init, name='conv')(x)
    return x if self.linear else jnp.clip(x, 0.0, 6.0)


class InvertedResidual(nn.Module):
  """1x1 expansion (unless t = 1), 3x3 depthwise, 1x1 linear projection;
  a residual connection when the shape is kept."""

  features: int
  stride: int
  expansion: int
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):
    hidden = x.shape[-1] * self.expansion
    init = dict(dtype=self.dtype, kernel_init=self.kernel_init)
    y = x
    if self.expansion != 1:
      y = ConvAffine(hidden, 1, **init, name='expand')(y)
    y = ConvAffine(hidden, 3, self.stride, depthwise=True, **init, name='depthwise')(y)
    y = ConvAffine(self.features, 1, linear=True, **init, name='project')(y)
    if self.stride == 1 and x.shape[-1] == self.features:
      y = x + y
    return y


class MobileNetV2(nn.Module):
  """``x`` in [0, 1], ``[B, H, W, C]`` -> ``(out, {'features': maps at
  strides 2, 4, 8, 16, 32})``; ``out`` is the stride-32 map, or ImageNet
  class logits when ``num_classes`` > 0 (global mean pool + the classifier)."""

  num_classes: int = 0
  dtype: Any = jnp.float32
  # Zeros where pretrained weights will replace the initialisation: 160
  # truncated-normal draws take XLA:CPU about 20 s to compile.
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    del train  # no dropout and no batch statistics in the encoder
    init = dict(dtype=self.dtype, kernel_init=self.kernel_init)
    x = normalise(x.astype(jnp.float32)).astype(self.dtype)
    x = ConvAffine(STEM, 3, 2, **init, name='block_0')(x)
    features, index = [], 1
    for t, c, n, s in SETTINGS:
      for i in range(n):
        x = InvertedResidual(c, s if i == 0 else 1, t, **init, name=f'block_{index}')(x)
        if index in STAGE_ENDS:
          features.append(x)
        index += 1
    x = ConvAffine(LAST, 1, **init, name=f'block_{index}')(x)
    features.append(x)
    if self.num_classes:
      pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
      x = nn.Dense(self.num_classes, dtype=jnp.float32, name='classifier')(pooled)
    return x, {'features': tuple(features)}


# --- torchvision's state dict -> these parameters ------------------------------------


def fold_batchnorm(weight: np.ndarray, gamma, beta, mean, var, eps: float = BN_EPS):
  """A PyTorch conv weight ``[O, I, kh, kw]`` followed by inference-mode
  BatchNorm -> (Flax HWIO kernel, bias) of the same function."""
  scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
  kernel = np.transpose(np.asarray(weight, np.float64), (2, 3, 1, 0)) * scale
  bias = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
  return kernel.astype(np.float32), bias.astype(np.float32)


def adapt_input_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
  """The stem's RGB kernel ``[kh, kw, 3, O]`` for ``channels`` input bands.
  Inputs of one band are replicated to RGB by ``normalise``, so the kernel
  stays RGB; extra bands (NIR, multispectral) get the mean of the RGB
  filters, the usual practice, so that they start as one more view of
  brightness and training learns what sets them apart."""
  if channels in (1, 3):
    return kernel
  if channels < 3:
    raise WeightsError(f'the ImageNet stem takes 1, 3 or more bands, not {channels}; '
                       'choose bands with "bands:" in the manifest')
  extra = np.repeat(kernel.mean(axis=2, keepdims=True), channels - 3, axis=2)
  return np.concatenate([kernel, extra], axis=2)


def _conv_bn(sd: dict, conv: str, bn: str) -> dict:
  kernel, bias = fold_batchnorm(sd[f'{conv}.weight'], sd[f'{bn}.weight'], sd[f'{bn}.bias'],
                                sd[f'{bn}.running_mean'], sd[f'{bn}.running_var'])
  return {'conv': {'kernel': kernel, 'bias': bias}}


def convert_torchvision(sd: dict[str, np.ndarray], classifier: bool = False) -> dict:
  """torchvision ``mobilenet_v2`` state dict -> this module's parameters for
  RGB input (``adapt_input_kernel`` extends the stem to more bands)."""
  try:
    params = {'block_0': _conv_bn(sd, 'features.0.0', 'features.0.1')}
    index = 1
    for t, _, n, _ in SETTINGS:
      for _ in range(n):
        f = f'features.{index}.conv'
        if t == 1:
          parts = {'depthwise': _conv_bn(sd, f'{f}.0.0', f'{f}.0.1'), 'project': _conv_bn(sd, f'{f}.1', f'{f}.2')}
        else:
          parts = {'expand': _conv_bn(sd, f'{f}.0.0', f'{f}.0.1'), 'depthwise': _conv_bn(sd, f'{f}.1.0', f'{f}.1.1'),
                   'project': _conv_bn(sd, f'{f}.2', f'{f}.3')}
        params[f'block_{index}'] = parts
        index += 1
    params[f'block_{index}'] = _conv_bn(sd, f'features.{index}.0', f'features.{index}.1')
    if classifier:
      params['classifier'] = {'kernel': np.asarray(sd['classifier.1.weight']).T.copy(),
                              'bias': np.asarray(sd['classifier.1.bias'])}
  except KeyError as e:
    raise WeightsError(f'not a torchvision MobileNetV2 state dict: no {e.args[0]!r}') from None
  return params
