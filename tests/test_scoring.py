"""The jitted, vmapped per-tile statistics and the streaming pool driver."""

import chex
import jax
import numpy as np
import pytest

from priojax import mesh as mesh_lib
from priojax.data.pool import TileSource
from priojax.models.iou_head import IoUHead
from priojax.models.unet import UNet
from priojax.scoring import Networks, Scorer


def fake_pool(n, size=16, seed=0):
  rng = np.random.default_rng(seed)
  return [{'id': np.int64(1000 + 3 * i), 'image': rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
           'mask': (rng.random((size, size)) > 0.7).astype(np.uint8)} for i in range(n)]


@pytest.fixture(scope='module')
def setup():
  net = Networks(UNet(depth=2, width=4), IoUHead(hidden=8), embed_dim=8, iou_smoothing=2.0)
  params = net.init(jax.random.key(0), 16)
  return net, params


def test_score_covers_every_tile_once_in_order(setup):
  net, params = setup
  records = fake_pool(23)
  scorer = Scorer(net, mesh_lib.make_mesh(), batch_size=8)  # 23 = 8 + 8 + 7 (padded)
  stats = scorer.score(params, TileSource(records, 'pool'))
  np.testing.assert_array_equal(stats.ids, [r['id'] for r in records])
  chex.assert_shape(stats.embedding, (23, 8))
  chex.assert_tree_all_finite((stats.pred_iou, stats.entropy, stats.embedding))
  assert ((stats.pred_iou >= 0) & (stats.pred_iou <= 1)).all()
  # Batched + padded + vmapped equals one tile at a time.
  for i in (0, 9, 22):
    one = net.tile_stats(params, records[i]['image'])
    chex.assert_trees_all_close(stats.pred_iou[i], one['pred_iou'], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(stats.embedding[i], one['embedding'], rtol=1e-5, atol=1e-6)


def test_score_subset_of_positions(setup):
  net, params = setup
  records = fake_pool(10)
  scorer = Scorer(net, mesh_lib.make_mesh(), batch_size=4)
  stats = scorer.score(params, TileSource(records, 'pool'), np.array([7, 2]))
  np.testing.assert_array_equal(stats.ids, [records[7]['id'], records[2]['id']])


def test_evaluate_tiles_counts(setup):
  net, params = setup
  records = fake_pool(5)
  out = Scorer(net, mesh_lib.make_mesh(), batch_size=4).evaluate_tiles(params, TileSource(records, 'test'))
  np.testing.assert_array_equal(out['true_area'], [r['mask'].sum() for r in records])
  assert (out['intersection'] <= out['union']).all()
  chex.assert_shape(out['head_inputs'], (5, 8 + 4 + 7))


class CountingSource:
  """Records how many tiles were read, to check the driver streams."""

  def __init__(self, records):
    self.records, self.reads = records, 0

  def __len__(self):
    return len(self.records)

  def __getitem__(self, i):
    self.reads += 1
    return self.records[i]


def test_driver_reads_lazily_with_bounded_lookahead():
  source = CountingSource(fake_pool(400, size=8))
  it = TileSource(source, 'big').batches(10)
  next(it)
  # Only the first batch plus a bounded prefetch of batches is read, not 400 tiles.
  assert source.reads <= 10 * 6, source.reads
  rest = sum(len(b['id']) for b in it)
  assert rest == 390


def test_empty_pool_gives_empty_stats(setup):
  net, params = setup
  stats = Scorer(net, mesh_lib.make_mesh(), 4).score(params, TileSource(fake_pool(3), 'p'), np.array([], int))
  assert len(stats) == 0 and stats.embedding.shape == (0, 8)
