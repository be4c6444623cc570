"""One process of the multi-process scoring test (tests/test_multiprocess.py).

Scores a generated pool with a tiny network (all of it, then a subset whose
last global batch leaves the second process no rows), evaluates it and
predicts masks of a few tiles in memory; writes everything it got to
``<out>/process<id>.npz``. Run alone (``--num_processes=1``) it is the
single-process reference. With ``--check_data`` it first compares the
processes' pools as a run does (``--pool_seed`` makes them differ).
"""

import argparse
import pathlib
import sys

import jax
import numpy as np

from priojax import distributed, mesh
from priojax.data.pool import TileSource
from priojax.models.heads import iou_head
from priojax.models.networks import Networks
from priojax.models.unet import UNet
from priojax.scoring import Scorer


def pool(n: int, size: int = 16, seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)
  return [{'id': np.int64(2**40 + 7 * i),  # beyond 32 bits: ids are gathered whole
           'image': rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
           'mask': (rng.random((size, size)) > 0.7).astype(np.uint8),
           'subpopulation': np.int64(i % 3)} for i in range(n)]


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--process_id', type=int, default=0)
  parser.add_argument('--num_processes', type=int, default=1)
  parser.add_argument('--coordinator', default='')
  parser.add_argument('--devices', type=int, default=1)
  parser.add_argument('--tiles', type=int, default=37)
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--out', required=True)
  parser.add_argument('--pool_seed', type=int, default=0)
  parser.add_argument('--check_data', action='store_true', help='compare the pools first, as a run does')
  a = parser.parse_args()
  mesh.use_cpu_devices(a.devices)
  distributed.initialize(distributed.ProcessSpec(a.coordinator, a.num_processes, a.process_id, timeout_s=60),
                         {'tiles': str(a.tiles), 'batch': str(a.batch)})
  records = pool(a.tiles, seed=a.pool_seed)
  source = TileSource(records, 'pool')
  if a.check_data:
    try:
      distributed.agree('different data', {'pool': source.fingerprint()})
    except distributed.DistributedError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
  net = Networks(UNet(depth=2, width=4, dropout=0.1), iou_head(8), embed_dim=8)
  params = jax.jit(net.init, static_argnums=1)(jax.random.key(0), 16)
  scorer = Scorer(net, mesh.make_mesh(), batch_size=a.batch)
  out = {}
  stats = scorer.score(params, source, key=jax.random.key(1))
  out.update({'ids': stats.ids, **{f'stat:{k}': v for k, v in stats.columns.items()}})
  # 2 batches of 8, then 2 rows: the second process has none of the last batch.
  subset = np.arange(a.tiles)[::-1][:2 * a.batch + 2]
  part = scorer.score(params, source, subset, key=jax.random.key(1))
  out.update({'subset_ids': part.ids, 'subset_pred_iou': part.pred_iou})
  evaluated = scorer.evaluate_tiles(params, source)
  out.update({f'eval:{k}': v for k, v in evaluated.items()})
  out['predicted'] = scorer.predict_masks(params, np.stack([r['image'] for r in records[:5]]))
  out['devices'] = np.asarray([jax.device_count(), jax.process_count()])
  np.savez(pathlib.Path(a.out) / f'process{a.process_id}.npz', **out)


if __name__ == '__main__':
  main()
