r"""Pool-scoring throughput and memory: priojax vs an eager PyTorch loop.

    .venv/bin/pip install torch==2.13.0   # optional; without it only priojax is timed
    .venv/bin/python benchmarks/scoring.py --tile_size=64 --width=8 --pool=2048

priojax: ``Scorer.score`` (jit + vmap of the per-tile statistics, batches
sharded over the mesh, streaming from a random-access source). PyTorch: the
same U-Net (weights copied from the Flax parameters, outputs checked equal)
run eagerly under ``torch.inference_mode`` in channels-last layout, batch by
batch, computing the same per-tile entropy and pooled embedding. Both are
timed in this process, after one warm-up pass, so the ratio compares like
with like on this machine. Memory: peak RSS after scoring a pool 8x larger
shows the driver streams (grows by the stats only, not the pixels).
"""

from __future__ import annotations

import resource
import time

import jax
import numpy as np
from absl import app, flags

from priojax import mesh as mesh_lib
from priojax.data.pool import TileSource
from priojax.models.iou_head import IoUHead
from priojax.models.unet import UNet
from priojax.networks import Networks
from priojax.scoring import Scorer

_TILE = flags.DEFINE_integer('tile_size', 64, 'Tile side in pixels.')
_WIDTH = flags.DEFINE_integer('width', 8, 'U-Net width.')
_DEPTH = flags.DEFINE_integer('depth', 3, 'U-Net depth.')
_POOL = flags.DEFINE_integer('pool', 2048, 'Tiles in the pool.')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Scoring batch size.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed passes (best is reported).')
_TORCH = flags.DEFINE_bool('torch', True, 'Also time the eager PyTorch baseline.')


class SyntheticPool:
  """Tiles made on read: the pool's pixels never sit in memory at once."""

  def __init__(self, n: int, size: int):
    self.n, self.size = n, size

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    rng = np.random.default_rng(i)
    return {'id': np.int64(i), 'image': rng.integers(0, 255, (self.size, self.size, 3), dtype=np.uint8)}


def rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_priojax(scorer, params, pool, repeats):
  scorer.score(params, TileSource(pool, 'pool'))  # compile + warm-up
  best = min(_timed(lambda: scorer.score(params, TileSource(pool, 'pool'))) for _ in range(repeats))
  return len(pool) / best


def _timed(fn):
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def time_torch(params, pool, batch_size, depth, repeats):
  import torch  # noqa: PLC0415

  from torch_unet import TorchUNet  # noqa: PLC0415

  torch.set_num_threads(max(1, torch.get_num_threads()))
  model = TorchUNet.from_flax(params['unet'], depth).eval().to(memory_format=torch.channels_last)

  def run():
    with torch.inference_mode():
      for start in range(0, len(pool), batch_size):
        imgs = np.stack([pool[i]['image'] for i in range(start, min(start + batch_size, len(pool)))])
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)
        x = x.contiguous(memory_format=torch.channels_last)
        logits, bottleneck = model(x)
        p = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
        entropy = -(p * p.log() + (1 - p) * (1 - p).log()).mean(dim=(1, 2))
        embedding = bottleneck.mean(dim=(2, 3))
        entropy.numpy(), embedding.numpy()

  run()
  best = min(_timed(run) for _ in range(repeats))
  return len(pool) / best, model


def check_same_network(net, params, model, size):
  import torch  # noqa: PLC0415

  image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
  logits_jax = np.asarray(net.forward_tile(params, image)[0])
  with torch.inference_mode():
    x = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float() / 255.0 - 0.5
    logits_torch = model(x)[0][0].numpy()
  return float(np.abs(logits_jax - logits_torch).max())


def main(argv):
  del argv
  net = Networks(UNet(depth=_DEPTH.value, width=_WIDTH.value), IoUHead(), embed_dim=128)
  params = net.init(jax.random.key(0), _TILE.value)
  scorer = Scorer(net, mesh_lib.make_mesh(), _BATCH.value)
  print(f'devices: {jax.devices()}')
  print(f'U-Net depth {_DEPTH.value} width {_WIDTH.value}, {_TILE.value} px tiles, '
        f'pool {_POOL.value}, batch {scorer.batch_size}')

  small = SyntheticPool(_POOL.value // 8, _TILE.value)
  scorer.score(params, TileSource(small, 'small'))
  rss_small = rss_mib()
  jax_rate = time_priojax(scorer, params, SyntheticPool(_POOL.value, _TILE.value), _REPEATS.value)
  rss_big = rss_mib()
  print(f'priojax  scoring: {jax_rate:8.1f} tiles/s')
  pixels_mib = _POOL.value * _TILE.value**2 * 3 / 2**20
  print(f'peak RSS after {_POOL.value // 8} tiles: {rss_small:.0f} MiB; after {_POOL.value} tiles: '
        f'{rss_big:.0f} MiB (+{rss_big - rss_small:.0f} MiB; the pool\'s pixels are {pixels_mib:.0f} MiB)')
  if not _TORCH.value:
    return
  try:
    import torch  # noqa: F401, PLC0415
  except ImportError:
    print('PyTorch not installed: no eager baseline (pip install torch==2.13.0)')
    return
  torch_rate, model = time_torch(params, SyntheticPool(_POOL.value, _TILE.value), scorer.batch_size,
                                 _DEPTH.value, _REPEATS.value)
  print(f'PyTorch eager channels-last: {torch_rate:8.1f} tiles/s')
  print(f'ratio priojax / PyTorch: {jax_rate / torch_rate:.2f}x')
  print(f'same network: max |logits difference| = {check_same_network(net, params, model, _TILE.value):.2e}')


if __name__ == '__main__':
  app.run(main)
