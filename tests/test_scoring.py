"""The jitted, vmapped per-tile statistics and the streaming pool driver."""

import chex
import jax
import numpy as np
import pytest

from priojax import mesh as mesh_lib
from priojax import tile_stats
from priojax.data.pool import TileSource
from priojax.models.heads import iou_head
from priojax.models.unet import UNet
from priojax.models.networks import Networks
from priojax.scoring import Scorer
from priojax.tile_stats import StatsSpec


def fake_pool(n, size=16, seed=0):
  rng = np.random.default_rng(seed)
  return [{'id': np.int64(1000 + 3 * i), 'image': rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
           'mask': (rng.random((size, size)) > 0.7).astype(np.uint8)} for i in range(n)]


@pytest.fixture(scope='module')
def setup():
  net = Networks(UNet(depth=2, width=4), iou_head(8), embed_dim=8)
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
    one = tile_stats.tile_stats(net, params, records[i]['image'], np.uint32(records[i]['id']),
                                jax.random.key(0), StatsSpec.of(('embedding', 'pred_iou')))
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
  chex.assert_shape(out['head_inputs'], (5, 8 + 4 + 7 + 7))


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


@pytest.mark.slow
def test_mc_dropout_passes_are_one_traced_call_per_pool():
  net = Networks(UNet(depth=2, width=4, dropout=0.3), iou_head(8), embed_dim=8)
  params = net.init(jax.random.key(0), 16)
  scorer = Scorer(net, mesh_lib.make_mesh(), batch_size=4, spec=StatsSpec.of(tile_stats.ALL, mc_passes=5))
  records = fake_pool(11)  # three batches
  stats = scorer.score(params, TileSource(records, 'pool'), key=jax.random.key(3))
  assert scorer.traces == 1  # not once per pass, nor once per batch
  for name in ('bald', 'mc_variance'):
    for agg in ('mean', 'topq', 'region'):
      values = stats[f'{name}/{agg}']
      chex.assert_shape(values, (11,))
      assert np.isfinite(values).all() and (values >= -1e-6).all()
  assert (stats['bald/mean'] > 0).all()  # dropout makes the passes differ
  assert (stats['bald/topq'] >= stats['bald/mean'] - 1e-6).all()
  # Order-free: a tile's MC draws depend on its id, not on its batch or position.
  again = scorer.score(params, TileSource(records[::-1], 'pool'), key=jax.random.key(3))
  chex.assert_trees_all_close(again['bald/mean'][::-1], stats['bald/mean'],
                              rtol=1e-4, atol=1e-6)
  assert scorer.traces == 1


def test_without_mc_passes_there_are_no_mc_statistics(setup):
  net, params = setup
  stats = Scorer(net, mesh_lib.make_mesh(), 8).score(params, TileSource(fake_pool(3), 'pool'))
  maps = {k for k in stats.columns if '/' in k}
  assert not any(k.startswith(('bald', 'mc_variance')) for k in maps)
  assert maps == {f'{m}/{a}' for m in ('entropy', 'margin', 'least_confidence')
                                   for a in ('mean', 'topq', 'region')}
  chex.assert_shape(stats.badge, (3, 5))  # finest decoder width 4 + bias


@pytest.mark.slow
def test_iou_scoring_computes_the_head_only_and_no_mc_branch():
  from priojax import priority

  net = Networks(UNet(depth=2, width=4, dropout=0.3), iou_head(8), embed_dim=8)
  params = net.init(jax.random.key(0), 16)
  names = tile_stats.for_formula(priority.get('iou'), {'aggregation': 'mean'})
  assert names == ('pred_iou',)
  scorer = Scorer(net, mesh_lib.make_mesh(), batch_size=4, spec=StatsSpec.of(names, mc_passes=5))
  assert scorer.spec.mc_passes == 0  # the formula reads no MC statistic: no passes
  stats = scorer.score(params, TileSource(fake_pool(6), 'pool'))
  assert set(stats.columns) == {'pred_iou'}
  args = (params, np.zeros((4, 16, 16, 3), np.uint8), np.zeros(4, np.uint32), jax.random.key(0))
  iou_hlo = scorer._stats.lower(*args).as_text()
  bald = Scorer(net, mesh_lib.make_mesh(), batch_size=4, spec=StatsSpec.of(
      tile_stats.for_formula(priority.get('bald'), {'aggregation': 'mean'}), mc_passes=5))
  bald_hlo = bald._stats.lower(*args).as_text()
  # MC dropout draws random numbers and runs more U-Nets; iou scoring neither.
  assert 'threefry' in bald_hlo and 'threefry' not in iou_hlo
  assert bald_hlo.count('stablehlo.convolution') > iou_hlo.count('stablehlo.convolution')
  # Nor BADGE, the pixel maps or their aggregations (top-k, regions).
  everything = Scorer(net, mesh_lib.make_mesh(), batch_size=4)._stats.lower(*args).as_text()
  assert 'top_k' in everything and 'top_k' not in iou_hlo
  assert iou_hlo.count('stablehlo.reduce') < everything.count('stablehlo.reduce') - 9
  assert set(bald.score(params, TileSource(fake_pool(6), 'pool'), key=jax.random.key(1)).columns) == {'pred_iou', 'bald/mean'}


def test_reading_a_statistic_that_was_not_computed_is_one_clear_line():
  from priojax import priority, selection
  from priojax.scoring import MissingStatError, PoolStats

  stats = PoolStats(np.arange(4), pred_iou=np.linspace(0, 1, 4, dtype=np.float32))
  assert stats.pred_iou.shape == (4,)
  with pytest.raises(AttributeError):
    getattr(stats, "no_such_field")  # not a statistic at all: a plain AttributeError
  ctx = priority.SelectionContext(k=2, rng=jax.random.key(0), selectable=np.ones(4, bool),
                                  reference_embedding=np.zeros((0, 0), np.float32))

  def sneaky(stats, ctx):  # declares pred_iou, reads fg_fraction too
    return stats.pred_iou * stats.fg_fraction

  formula = priority.registry.Formula('sneaky', priority.registry.top_k('sneaky', sneaky), reads=('pred_iou',))
  with pytest.raises(MissingStatError) as e:
    selection.select(formula, stats, ctx)
  message = str(e.value)
  assert '\n' not in message
  assert message.startswith("priority formula 'sneaky' reads statistic 'fg_fraction'")
  assert 'computed: pred_iou' in message
  # A declared read that scoring did not compute fails the same way, up front.
  declared = priority.registry.Formula('declared', priority.registry.top_k('declared', sneaky),
                                       reads=('pred_iou', 'fg_fraction'))
  with pytest.raises(MissingStatError, match="'declared' reads statistic 'fg_fraction'"):
    selection.select(declared, stats, ctx)
  with pytest.raises(Exception, match="unknown statistic"):
    tile_stats.check_names(['pred_iou', 'entropy/median'], 'test')


def test_scorers_of_one_configuration_share_one_traced_function(setup):
  net, params = setup
  records = fake_pool(9)
  first = Scorer(net, mesh_lib.make_mesh(), batch_size=4, spec=StatsSpec.of(('pred_iou', 'entropy/topq')))
  before = first.traces
  first.score(params, TileSource(records, 'pool'))
  again = Scorer(net, mesh_lib.make_mesh(), batch_size=4, spec=StatsSpec.of(('entropy/topq', 'pred_iou')))
  again.score(params, TileSource(records, 'pool'))
  assert again.traces == first.traces == max(before, 1)


def _blind_unet(params: dict) -> dict:
  """The U-Net's output layer set to predict no building anywhere (the state
  of a model that learnt nothing on new imagery)."""
  out = jax.tree.map(np.asarray, params)
  last = max((k for k in out['unet'] if k.startswith('Conv_')), key=lambda k: int(k.split('_')[1]))
  out['unet'][last] = {'kernel': np.zeros_like(out['unet'][last]['kernel']),
                       'bias': np.full_like(out['unet'][last]['bias'], -20.0)}
  return out


@pytest.mark.slow
def test_head_of_a_model_that_predicts_nothing_still_ranks_tiles_with_buildings_first():
  """Every predicted mask is empty, so the mask statistics are the same on
  every tile: the head must read the image to predict IoU 1 for empty ground
  and a low IoU where buildings are missed; the priorities must not tie and
  fall back to the first ids."""
  from priojax import priority, selection
  from priojax.data import synthetic
  from priojax.tile_metrics import smoothed_iou, spearman
  from priojax.train import Trainer

  net = Networks(UNet(depth=2, width=8), iou_head(16), embed_dim=16)
  params = _blind_unet(net.init(jax.random.key(0), 32))
  mesh = mesh_lib.make_mesh()

  def tiles(split, n):
    made = [synthetic.make_tile(0, split, i, 32) for i in range(n)]
    return [{'id': np.int64(i), 'image': t.image, 'mask': t.mask} for i, t in enumerate(made)]

  scorer = Scorer(net, mesh, batch_size=16, iou_smoothing=4.0)
  calibration = scorer.evaluate_tiles(params, TileSource(tiles('target_test', 96), 'calibration'))
  trainer = Trainer(net, mesh)
  state, _ = trainer.fit_head(trainer.init_state(params), [calibration], steps=300, batch_size=32,
                              learning_rate=3e-3, rng=jax.random.key(1))
  pool_records = tiles('target_pool', 64)
  pool = TileSource(pool_records, 'pool')
  stats = scorer.score(state.params, pool)
  truth = scorer.evaluate_tiles(state.params, pool)
  assert truth['pred_area'].sum() == 0  # the model really predicts nothing
  true_iou = np.asarray(smoothed_iou(truth['intersection'], truth['union'], 4.0))
  assert np.ptp(stats.pred_iou) > 0.1
  assert spearman(stats.pred_iou, true_iou) > 0.4

  k = 8
  ctx = priority.SelectionContext(k=k, rng=jax.random.key(2), selectable=np.ones(len(pool), bool),
                                  reference_embedding=np.zeros((0, 0), np.float32))
  picked = selection.select(priority.get('iou'), stats, ctx)
  assert sorted(picked.ids.tolist()) != list(range(k))
  has_buildings = np.array([r['mask'].any() for r in pool_records])
  assert has_buildings[np.isin(stats.ids, picked.ids)].mean() > has_buildings.mean()
