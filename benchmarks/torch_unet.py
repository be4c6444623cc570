"""The priojax networks written in PyTorch, loading the Flax parameters, for
the benchmarks' eager baseline. Not part of the library (torch is no
dependency; ``pip install -e '.[bench]'``).

Everything here mirrors a priojax function so that both sides of a benchmark
compute the same numbers: ``TorchUNet`` is ``priojax.models.unet.UNet``
(GroupNorm, dropout in the bottleneck and decoder, 2x2 stride-2 transposed
convolutions for the upsampling, whose map ``Upsample2x`` reproduces),
``TorchIoUHead`` is ``IoUHead``, ``head_inputs`` is
``priojax.models.head_features.head_inputs`` and ``segmentation_loss`` is
``priojax.train_losses.segmentation_loss``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

_EPS = 1e-6


def _t(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, np.float32))


def _conv_from(flax_conv: dict, transpose: bool = False) -> nn.Module:
  kernel = np.asarray(flax_conv['kernel'])  # [kh, kw, in, out]
  kh, kw, cin, cout = kernel.shape
  if transpose:
    conv = nn.ConvTranspose2d(cin, cout, (kh, kw), stride=2)
    # Flax's ConvTranspose does not flip the kernel; PyTorch's does.
    conv.weight.data = _t(kernel[::-1, ::-1].transpose(2, 3, 0, 1))
  else:
    conv = nn.Conv2d(cin, cout, (kh, kw), padding=kh // 2)
    conv.weight.data = _t(kernel.transpose(3, 2, 0, 1))
  conv.bias.data = _t(flax_conv['bias'])
  return conv


def _norm_from(flax_norm: dict) -> nn.Module:
  scale = np.asarray(flax_norm['scale'])
  c = scale.shape[0]
  norm = nn.GroupNorm(min(8, c), c, eps=1e-6)
  norm.weight.data = _t(scale)
  norm.bias.data = _t(flax_norm['bias'])
  return norm


def _block_from(p: dict, dropout: float) -> nn.Sequential:
  layers = [_conv_from(p['Conv_0']), _norm_from(p['GroupNorm_0']), nn.ReLU(),
            _conv_from(p['Conv_1']), _norm_from(p['GroupNorm_1']), nn.ReLU()]
  if dropout > 0:
    layers.append(nn.Dropout(dropout))
  return nn.Sequential(*layers)


class TorchUNet(nn.Module):
  """Returns ``(logits [B, H, W], bottleneck [B, C, h, w], finest decoder [B, C, H, W])``."""

  def __init__(self, down, bottleneck, ups, up_blocks, out):
    super().__init__()
    self.down, self.bottleneck = nn.ModuleList(down), bottleneck
    self.ups, self.up_blocks, self.out = nn.ModuleList(ups), nn.ModuleList(up_blocks), out

  @classmethod
  def from_flax(cls, params: dict, depth: int, dropout: float = 0.0) -> 'TorchUNet':
    blocks = [_block_from(params[f'ConvBlock_{i}'], dropout if i >= depth else 0.0)
              for i in range(2 * depth + 1)]
    ups = [_conv_from(params[f'ConvTranspose_{i}'], transpose=True) for i in range(depth)]
    return cls(blocks[:depth], blocks[depth], ups, blocks[depth + 1:], _conv_from(params['Conv_0']))

  def forward(self, x):
    skips = []
    for block in self.down:
      x = block(x)
      skips.append(x)
      x = F.max_pool2d(x, 2)
    x = self.bottleneck(x)
    bottleneck = x
    for up, block, skip in zip(self.ups, self.up_blocks, reversed(skips)):
      x = block(torch.cat([up(x), skip], dim=1))
    return self.out(x)[:, 0], bottleneck, x


class TorchIoUHead(nn.Module):
  """``IoUHead``: Dense-GELU (tanh form, as ``nn.gelu``) x 2, Dense, sigmoid."""

  def __init__(self, params: dict):
    super().__init__()
    self.layers = nn.ModuleList()
    for i in range(3):
      kernel = np.asarray(params[f'Dense_{i}']['kernel'])
      dense = nn.Linear(*kernel.shape)
      dense.weight.data = _t(kernel.T)
      dense.bias.data = _t(params[f'Dense_{i}']['bias'])
      self.layers.append(dense)

  def forward(self, x):
    x = F.gelu(self.layers[0](x), approximate='tanh')
    x = F.gelu(self.layers[1](x), approximate='tanh')
    return torch.sigmoid(self.layers[2](x)[:, 0])


def pixel_entropy(p: torch.Tensor) -> torch.Tensor:
  p = p.clamp(_EPS, 1 - _EPS)
  return -(p * p.log() + (1 - p) * torch.log1p(-p))


def pooled_embedding(bottleneck: torch.Tensor, max_dim: int) -> torch.Tensor:
  v = bottleneck.mean(dim=(2, 3))
  c = v.shape[1]
  if c > max_dim:
    groups = -(-c // max_dim)
    v = F.pad(v, (0, groups * max_dim - c)).reshape(v.shape[0], max_dim, groups).mean(-1)
  return v


def mask_stats(logits: torch.Tensor) -> torch.Tensor:
  probs = torch.sigmoid(logits)
  ent = pixel_entropy(probs)
  pred = (probs > 0.5).float()
  n = pred[0].numel()
  area = pred.mean(dim=(1, 2))
  uncertain = ((probs > 0.1) & (probs < 0.9)).float().mean(dim=(1, 2))
  ent_in = (ent * pred).sum(dim=(1, 2)) / (pred.sum(dim=(1, 2)) + 1.0)
  edges = (pred.diff(dim=1).abs().mean(dim=(1, 2)) + pred.diff(dim=2).abs().mean(dim=(1, 2)))
  return torch.stack([probs.mean(dim=(1, 2)), area, ent.mean(dim=(1, 2)), uncertain, ent_in, edges,
                      torch.log1p(pred.sum(dim=(1, 2))) / np.log1p(n)], dim=1)


def image_stats(x: torch.Tensor) -> torch.Tensor:
  """As ``head_features.image_stats``, from the model input (``to_input``)."""
  x = x + 0.5
  grey = x.mean(dim=1)
  texture = grey.diff(dim=1).abs().mean(dim=(1, 2)) + grey.diff(dim=2).abs().mean(dim=(1, 2))
  return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3), correction=0), texture[:, None]], dim=1)


def head_inputs(x, logits, bottleneck, fine, embed_dim: int) -> torch.Tensor:
  return torch.cat([pooled_embedding(bottleneck, embed_dim), fine.mean(dim=(2, 3)), mask_stats(logits),
                    image_stats(x)], dim=1)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
  y = masks.float()
  bce = F.binary_cross_entropy_with_logits(logits, y)
  p = torch.sigmoid(logits)
  dice = (2 * (p * y).sum() + 1.0) / (p.sum() + y.sum() + 1.0)
  return bce + (1.0 - dice)


def to_input(images: np.ndarray) -> torch.Tensor:
  """uint8 NHWC tiles -> float NCHW in channels-last memory, as ``preprocess``."""
  x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)
  return x.contiguous(memory_format=torch.channels_last)


def augment(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator):
  """Per-tile random flips and transposes, as ``priojax.train.augment`` (the
  same work: three selects over the whole batch)."""
  flips = torch.rand((3, images.shape[0]), generator=generator) < 0.5
  for flip, (dims_x, dims_y) in zip(flips, (((2,), (1,)), ((3,), (2,)), (None, None))):
    if dims_x is None:
      tx, ty = images.transpose(2, 3), masks.transpose(1, 2)
    else:
      tx, ty = images.flip(dims_x), masks.flip(dims_y)
    images = torch.where(flip[:, None, None, None], tx, images)
    masks = torch.where(flip[:, None, None], ty, masks)
  return images.contiguous(memory_format=torch.channels_last), masks
