"""``priojax.models.encoder_unet.EncoderUNet`` (MobileNetV2 encoder) in
PyTorch, loading the Flax parameters, for the benchmarks' eager baseline.
Not part of the library (``pip install -e '.[bench]'``).

The encoder is torchvision's MobileNetV2 with each BatchNorm folded into
its convolution's bias, as priojax holds it (``mobilenet_v2.py``), so both
sides compute the same function; depthwise convolutions are PyTorch's own
grouped ``Conv2d`` (the path a PyTorch user runs), where priojax computes
them as shifted slices. The decoder mirrors ``EncoderUNet``: nearest 2x
upsampling, concatenation with the skip, two 3x3 convolutions with
GroupNorm and ReLU per stride.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from priojax.models import mobilenet_v2
from torch_unet import _block_from, _t


def _conv(p: dict, stride: int = 1, groups: int = 1) -> nn.Conv2d:
  kernel = np.asarray(p['conv']['kernel'])  # [kh, kw, in / groups, out]
  kh, _, cin_g, cout = kernel.shape
  conv = nn.Conv2d(cin_g * groups, cout, kh, stride=stride, padding=kh // 2, groups=groups)
  conv.weight.data = _t(kernel.transpose(3, 2, 0, 1))
  conv.bias.data = _t(p['conv']['bias'])
  return conv


class _Inverted(nn.Module):
  def __init__(self, p: dict, stride: int):
    super().__init__()
    hidden = np.asarray(p['depthwise']['conv']['kernel']).shape[-1]
    self.expand = _conv(p['expand']) if 'expand' in p else None
    self.depthwise = _conv(p['depthwise'], stride, groups=hidden)
    self.project = _conv(p['project'])
    c_in = (self.expand or self.depthwise).in_channels
    self.residual = stride == 1 and c_in == self.project.out_channels

  def forward(self, x):
    y = x if self.expand is None else F.relu6(self.expand(x))
    y = self.project(F.relu6(self.depthwise(y)))
    return x + y if self.residual else y


class TorchMobileNetV2(nn.Module):
  """Input in [0, 1], NCHW -> the five maps at strides 2..32."""

  def __init__(self, params: dict):
    super().__init__()
    self.stem = _conv(params['block_0'], stride=2)
    blocks, index = [], 1
    for _, _, n, s in mobilenet_v2.SETTINGS:
      for i in range(n):
        blocks.append(_Inverted(params[f'block_{index}'], s if i == 0 else 1))
        index += 1
    self.blocks = nn.ModuleList(blocks)
    self.last = _conv(params[f'block_{index}'])
    self.register_buffer('mean', torch.tensor(mobilenet_v2.IMAGENET_MEAN).view(1, 3, 1, 1))
    self.register_buffer('std', torch.tensor(mobilenet_v2.IMAGENET_STD).view(1, 3, 1, 1))

  def forward(self, x):
    x = F.relu6(self.stem((x - self.mean) / self.std))
    features = []
    for index, block in enumerate(self.blocks, start=1):
      x = block(x)
      if index in mobilenet_v2.STAGE_ENDS:
        features.append(x)
    features.append(F.relu6(self.last(x)))
    return features


class TorchEncoderUNet(nn.Module):
  """Returns ``(logits [B, H, W], bottleneck, finest decoder map)`` from
  priojax's preprocessed input ([0, 1] - 0.5, NCHW), as ``TorchUNet``."""

  def __init__(self, encoder, blocks, out, dropout: float = 0.0):
    super().__init__()
    self.encoder, self.blocks, self.out = encoder, nn.ModuleList(blocks), out
    self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

  @classmethod
  def from_flax(cls, params: dict, dropout: float = 0.0) -> 'TorchEncoderUNet':
    encoder = TorchMobileNetV2(params['encoder'])
    blocks = [_block_from(params[f'decoder_{level}'], dropout if level else 0.0) for level in range(4, -1, -1)]
    out = nn.Conv2d(np.asarray(params['logits']['kernel']).shape[2], 1, 1)
    out.weight.data = _t(np.asarray(params['logits']['kernel']).transpose(3, 2, 0, 1))
    out.bias.data = _t(params['logits']['bias'])
    return cls(encoder, blocks, out, dropout)

  def forward(self, x):
    *skips, x = self.encoder(x + 0.5)
    bottleneck = x
    x = self.drop(x)
    for block, skip in zip(self.blocks, list(reversed(skips)) + [None]):
      x = F.interpolate(x, scale_factor=2, mode='nearest')
      if skip is not None:
        x = torch.cat([x, skip], dim=1)
      x = block(x)
    return self.out(x)[:, 0], bottleneck, x
