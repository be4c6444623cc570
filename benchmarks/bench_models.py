"""Which network a benchmark times, built the same way on both sides: the
from-scratch U-Net (``encoder='none'``) or the U-Net over the ImageNet
MobileNetV2 encoder, in priojax (weights loaded as a run loads them) and in
eager PyTorch (the same weights, copied)."""

from __future__ import annotations

import jax

from priojax.models.encoder_unet import EncoderUNet
from priojax.models.heads import iou_head
from priojax.models.networks import Networks
from priojax.models.unet import UNet


def priojax_networks(encoder: str, *, depth: int, width: int, dropout: float = 0.0,
                     upsample: str = 'depth_to_space', tile_size: int = 64) -> tuple[Networks, dict]:
  """(networks, parameters); a pretrained encoder holds its ImageNet weights."""
  if encoder == 'none':
    unet = UNet(depth=depth, width=width, dropout=dropout, upsample=upsample)
  else:
    unet = EncoderUNet(encoder=encoder, width=width, dropout=dropout)
  net = Networks(unet, iou_head())
  params = jax.jit(net.init, static_argnums=1)(jax.random.key(0), tile_size)
  return net, {**params, 'unet': net.load_pretrained(params['unet'])}


def torch_model(unet_params: dict, encoder: str, *, depth: int, dropout: float = 0.0):
  """The same U-Net in PyTorch (``torch_unet`` / ``torch_encoder_unet``)."""
  import torch_encoder_unet  # noqa: PLC0415  (torch is the bench extra)
  import torch_unet  # noqa: PLC0415

  unet_params = jax.device_get(unet_params)
  if encoder == 'none':
    return torch_unet.TorchUNet.from_flax(unet_params, depth, dropout)
  return torch_encoder_unet.TorchEncoderUNet.from_flax(unet_params, dropout)


def describe(encoder: str, depth: int) -> str:
  return f'U-Net depth {depth}' if encoder == 'none' else f'U-Net over the ImageNet {encoder} encoder'
