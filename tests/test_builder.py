"""The synthetic TFDS benchmark: splits, determinism, sub-populations."""

import collections

import numpy as np
import pytest

from priojax.data import builders, synthetic
from priojax.data.pool import TileSource
from priojax.errors import ConfigError, DataError

SIZES = dict(num_source_train=30, num_source_val=8, num_target_pool=60, num_target_test=12)


def _load(data_dir, seed=0):
  cfg = builders.make_builder_config(tile_size=32, seed=seed, **SIZES)
  return builders.load_crisis_bench(cfg, data_dir)


def test_splits_and_fields(tmp_path):
  sources = _load(str(tmp_path))
  assert set(sources) == set(builders.SPLITS)
  for split, n in zip(builders.SPLITS, SIZES.values()):
    src = TileSource(sources[split], split)
    assert len(src) == n
    ids = src.ids()
    assert sorted(ids.tolist()) == list(range(n))
    rec = sources[split][0]
    assert rec['image'].shape == (32, 32, 3) and rec['image'].dtype == np.uint8
    assert rec['mask'].shape == (32, 32) and set(np.unique(rec['mask'])) <= {0, 1}


def test_regions_have_their_sub_populations(tmp_path):
  sources = _load(str(tmp_path))
  names = synthetic.SUBPOPULATIONS
  pool = collections.Counter(names[s] for b in TileSource(sources['target_pool'], 'p').batches(64)
                             for s in b['subpopulation'])
  assert set(pool) == {'like_source', 'informal', 'damaged', 'haze', 'empty'}
  src = collections.Counter(names[s] for b in TileSource(sources['source_train'], 's').batches(64)
                            for s in b['subpopulation'])
  assert set(src) <= {'source', 'empty'} and src['source'] > 0


def test_deterministic_per_seed_and_different_across_seeds(tmp_path):
  a = TileSource(_load(str(tmp_path / 'a'))['target_pool'], 'a')
  b = TileSource(_load(str(tmp_path / 'b'))['target_pool'], 'b')
  c = TileSource(_load(str(tmp_path / 'c'), seed=1)['target_pool'], 'c')
  ids = [0, 5, 17]
  ra, rb, rc = a.read_ids(ids), b.read_ids(ids), c.read_ids(ids)
  np.testing.assert_array_equal(ra['image'], rb['image'])
  np.testing.assert_array_equal(ra['mask'], rb['mask'])
  assert not np.array_equal(ra['image'], rc['image'])


def test_generator_is_a_pure_function():
  t1 = synthetic.make_tile(3, 'target_test', 11, 32)
  t2 = synthetic.make_tile(3, 'target_test', 11, 32)
  np.testing.assert_array_equal(t1.image, t2.image)
  assert t1.subpopulation == t2.subpopulation


def test_domain_shift_between_regions():
  src = np.stack([synthetic.make_tile(0, 'source_train', i, 32).image for i in range(40)])
  tgt = np.stack([synthetic.make_tile(0, 'target_pool', i, 32).image for i in range(40)])
  # Green vegetation vs arid ground: the mean green-minus-red differs clearly.
  gr = lambda x: (x[..., 1].astype(float) - x[..., 0]).mean()
  assert gr(src) - gr(tgt) > 20


def test_bad_builder_config_is_one_line_error():
  with pytest.raises(ConfigError, match=r'config.data.num_target_pool: expected a positive tile count, got 0'):
    builders.make_builder_config(tile_size=32, seed=0, num_source_train=1, num_source_val=1,
                                 num_target_pool=0, num_target_test=1)
  with pytest.raises(ConfigError, match='config.data.tile_size'):
    builders.make_builder_config(tile_size=30, seed=0, **SIZES)


def test_unknown_ids_are_reported(tmp_path):
  src = TileSource(_load(str(tmp_path))['target_test'], 'target_test')
  with pytest.raises(DataError, match=r'^target_test: unknown tile ids \[99\] \(1 in all\)$'):
    src.read_ids([1, 99])
