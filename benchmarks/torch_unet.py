"""The priojax U-Net written in PyTorch, loading the Flax parameters, for the
benchmarks' eager baseline. Not part of the library (torch is no dependency)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _conv_from(flax_conv: dict, transpose: bool = False) -> nn.Module:
  kernel = np.asarray(flax_conv['kernel'])  # [kh, kw, in, out]
  kh, kw, cin, cout = kernel.shape
  if transpose:
    conv = nn.ConvTranspose2d(cin, cout, (kh, kw), stride=2)
    # Flax's ConvTranspose does not flip the kernel; PyTorch's does.
    conv.weight.data = torch.from_numpy(kernel[::-1, ::-1].transpose(2, 3, 0, 1).copy())
  else:
    conv = nn.Conv2d(cin, cout, (kh, kw), padding=kh // 2)
    conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
  conv.bias.data = torch.from_numpy(np.asarray(flax_conv['bias']).copy())
  return conv


def _norm_from(flax_norm: dict) -> nn.Module:
  scale = np.asarray(flax_norm['scale'])
  c = scale.shape[0]
  norm = nn.GroupNorm(min(8, c), c, eps=1e-6)
  norm.weight.data = torch.from_numpy(scale.copy())
  norm.bias.data = torch.from_numpy(np.asarray(flax_norm['bias']).copy())
  return norm


def _block_from(p: dict) -> nn.Sequential:
  return nn.Sequential(_conv_from(p['Conv_0']), _norm_from(p['GroupNorm_0']), nn.ReLU(),
                       _conv_from(p['Conv_1']), _norm_from(p['GroupNorm_1']), nn.ReLU())


class TorchUNet(nn.Module):
  def __init__(self, down, bottleneck, ups, up_blocks, out):
    super().__init__()
    self.down, self.bottleneck = nn.ModuleList(down), bottleneck
    self.ups, self.up_blocks, self.out = nn.ModuleList(ups), nn.ModuleList(up_blocks), out

  @classmethod
  def from_flax(cls, params: dict, depth: int) -> 'TorchUNet':
    blocks = [_block_from(params[f'ConvBlock_{i}']) for i in range(2 * depth + 1)]
    ups = [_conv_from(params[f'ConvTranspose_{i}'], transpose=True) for i in range(depth)]
    return cls(blocks[:depth], blocks[depth], ups, blocks[depth + 1:], _conv_from(params['Conv_0']))

  def forward(self, x):
    skips = []
    for block in self.down:
      x = block(x)
      skips.append(x)
      x = nn.functional.max_pool2d(x, 2)
    x = self.bottleneck(x)
    bottleneck = x
    for up, block, skip in zip(self.ups, self.up_blocks, reversed(skips)):
      x = block(torch.cat([up(x), skip], dim=1))
    return self.out(x)[:, 0], bottleneck
