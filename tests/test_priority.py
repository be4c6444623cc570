"""Priority formulas and selection on hand-made pool statistics."""

import chex
import jax
import numpy as np
import pytest

from priojax import priority, selection, uncertainty
from priojax.errors import SelectionError
from priojax.scoring import PoolStats


def make_stats(pred_iou, entropy=None, ids=None, dim=3, seed=0):
  n = len(pred_iou)
  rng = np.random.default_rng(seed)
  entropy = np.asarray(entropy if entropy is not None else rng.random(n), np.float32)
  aggregates = {f'{m}/{a}': rng.random(n).astype(np.float32)
                for m in uncertainty.MAPS + uncertainty.MC_MAPS for a in uncertainty.AGGREGATIONS}
  aggregates['entropy/mean'] = entropy
  return PoolStats(
      ids=np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64),
      pred_iou=np.asarray(pred_iou, np.float32),
      entropy=entropy,
      fg_fraction=rng.random(n).astype(np.float32),
      embedding=np.abs(rng.normal(size=(n, dim))).astype(np.float32),
      pred_loss=rng.random(n).astype(np.float32),
      badge=rng.normal(size=(n, dim + 1)).astype(np.float32),
      **aggregates)


def ctx(stats, k, selectable=None, reference=None, seed=0, **hparams):
  n = len(stats)
  return priority.SelectionContext(
      k=k, rng=jax.random.key(seed),
      selectable=np.ones(n, bool) if selectable is None else np.asarray(selectable),
      reference_embedding=np.zeros((0, stats.embedding.shape[1]), np.float32)
      if reference is None else reference, hparams=hparams)


def pick(name, stats, c):
  return selection.select(priority.get(name), stats, c)


ALL = priority.BUILTIN


def test_registry_lists_builtins():
  # The one place the list is written out: losing a strategy must fail here.
  assert ALL == ('badge', 'bald', 'coreset', 'entropy', 'fg_random', 'iou', 'iou_density', 'iou_diversity',
                 'iou_gain', 'iou_trend', 'learning_loss', 'least_confidence', 'margin', 'maxherding',
                 'mc_variance', 'oracle_error', 'oracle_error_mass', 'random', 'stratified_random', 'typical_error_mass', 'typical_gain', 'typiclust',
                 'typiclust_then_gain')
  assert set(ALL) <= set(priority.names())


@pytest.mark.parametrize('name, stat', [('margin', 'margin'), ('least_confidence', 'least_confidence'),
                                        ('bald', 'bald'), ('mc_variance', 'mc_variance'),
                                        ('entropy', 'entropy')])
@pytest.mark.parametrize('aggregation', ['mean', 'topq', 'region'])
def test_pixel_formulas_read_their_aggregation(name, stat, aggregation):
  # Each aggregation's column ranks a different trio of tiles first (and the
  # plain 'entropy' column yet another): the picks say which column was read.
  stats = make_stats(np.full(12, 0.5), seed=3)
  trios = {'mean': [2, 0, 1], 'topq': [5, 3, 4], 'region': [8, 6, 7]}
  columns = {}
  for agg, trio in trios.items():
    column = np.zeros(12, np.float32)
    column[trio] = [0.9, 0.8, 0.7]
    columns[f'{stat}/{agg}'] = column
  stats = stats.replace(**columns, entropy=np.where(np.arange(12) >= 9, 1.0, 0.0).astype(np.float32))
  sel = pick(name, stats, ctx(stats, 3, aggregation=aggregation))
  assert sel.ids.tolist() == trios[aggregation]
  np.testing.assert_allclose(sel.priorities, [0.9, 0.8, 0.7], rtol=1e-6)


def test_learning_loss_picks_highest_predicted_loss():
  stats = make_stats(np.full(6, 0.5))
  np.testing.assert_array_equal(pick('learning_loss', stats, ctx(stats, 2)).ids,
                                np.argsort(-stats.pred_loss)[:2])


def test_iou_density_weights_uncertainty_by_representativeness():
  emb = np.array([[1, 0], [1, 0.1], [0.9, 0], [0, 1]], np.float32)  # tile 3 is an outlier
  stats = make_stats([0.1, 0.2, 0.2, 0.05], dim=2)
  stats = stats.replace(embedding=emb)
  scores = np.asarray(priority.get('iou_density').pick(stats, ctx(stats, 1)).scores)
  e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  want = (1 - stats.pred_iou) * np.maximum((e @ e.T).mean(1), 0)
  np.testing.assert_allclose(scores, want, rtol=1e-5)
  assert pick('iou_density', stats, ctx(stats, 1)).ids.tolist() == [0]  # not the outlier 3


def test_iou_picks_lowest_predicted_iou():
  stats = make_stats([0.9, 0.1, 0.5, 0.3])
  sel = pick('iou', stats, ctx(stats, 2))
  np.testing.assert_array_equal(sel.ids, [1, 3])
  chex.assert_trees_all_close(sel.priorities, np.array([0.9, 0.7]), atol=1e-6)
  chex.assert_trees_all_close(sel.pred_iou, np.array([0.1, 0.3]))


def test_entropy_picks_highest_entropy():
  stats = make_stats([0.5] * 4, entropy=[0.1, 0.6, 0.3, 0.65])
  np.testing.assert_array_equal(pick('entropy', stats, ctx(stats, 2)).ids, [3, 1])


def test_ties_break_by_the_keyed_id_hash_whatever_the_order():
  from priojax import rngs

  stats = make_stats([0.2, 0.2, 0.2, 0.9], ids=[7, 3, 5, 1])
  bits = rngs.keyed_bits(jax.random.fold_in(jax.random.key(0), 0x7469), [7, 3, 5])
  want = [i for _, i in sorted(zip(bits.tolist(), [7, 3, 5]))][:2]
  np.testing.assert_array_equal(pick('iou', stats, ctx(stats, 2)).ids, want)
  perm = np.array([2, 0, 3, 1])
  np.testing.assert_array_equal(pick('iou', stats.take(perm), ctx(stats, 2)).ids, want)


def test_never_reselects_labelled_tiles():
  stats = make_stats([0.1, 0.2, 0.3, 0.4])
  sel = pick('iou', stats, ctx(stats, 2, selectable=[False, True, False, True]))
  np.testing.assert_array_equal(sel.ids, [1, 3])


def test_k_zero_and_k_equal_to_remaining():
  stats = make_stats([0.1, 0.2, 0.3])
  assert len(pick('iou', stats, ctx(stats, 0)).ids) == 0
  sel = pick('iou_diversity', stats, ctx(stats, 2, selectable=[True, False, True]))
  assert sorted(sel.ids.tolist()) == [0, 2]
  assert sorted(pick('random', stats, ctx(stats, 3)).ids.tolist()) == [0, 1, 2]


def test_k_larger_than_remaining_is_a_clear_error():
  stats = make_stats([0.1, 0.2, 0.3])
  with pytest.raises(SelectionError, match=r'k=3 exceeds the 2 unlabelled tiles left'):
    pick('iou', stats, ctx(stats, 3, selectable=[True, True, False]))


def test_nan_stats_are_a_clear_error():
  stats = make_stats([0.1, np.nan, 0.3])
  with pytest.raises(SelectionError, match=r"field 'pred_iou' is not finite for 1 tiles \(ids 1\)"):
    pick('iou', stats, ctx(stats, 1))
  # A NaN on an already-labelled tile is not read, so it is no error.
  assert pick('iou', stats, ctx(stats, 1, selectable=[True, False, True])).ids.tolist() == [0]


def test_nan_embedding_is_an_error_for_diversity():
  stats = make_stats([0.1, 0.2, 0.3])
  embedding = np.array(stats.embedding)
  embedding[2, 0] = np.inf
  stats = stats.replace(embedding=embedding)
  with pytest.raises(SelectionError, match="field 'embedding'"):
    pick('iou_diversity', stats, ctx(stats, 1))


def test_unknown_formula_name():
  with pytest.raises(SelectionError, match=r"unknown priority formula 'iuo'; registered: .*iou"):
    priority.get('iuo')


def test_formula_from_module_reference():
  # A function that nobody registered: what it reads is unknown, so it is
  # refused with the fix, never run on a guessed set of statistics.
  with pytest.raises(SelectionError, match=r"^priority formula 'numpy:negative' is not registered, so "
                                           r"what it reads is unknown; decorate it with "):
    priority.get('numpy:negative')
  with pytest.raises(SelectionError, match="has no function 'nope'"):
    priority.get('numpy:nope')
  with pytest.raises(SelectionError, match="cannot import module"):
    priority.get('no_such_module_xyz:f')


def test_random_is_deterministic_and_order_free():
  stats = make_stats(np.linspace(0, 1, 20), ids=np.arange(100, 120))
  a = pick('random', stats, ctx(stats, 5, seed=3))
  b = pick('random', stats, ctx(stats, 5, seed=3))
  perm = np.random.default_rng(0).permutation(20)
  c = pick('random', stats.take(perm), ctx(stats, 5, seed=3))
  d = pick('random', stats, ctx(stats, 5, seed=4))
  np.testing.assert_array_equal(a.ids, b.ids)
  np.testing.assert_array_equal(a.ids, c.ids)
  assert a.ids.tolist() != d.ids.tolist()


def test_user_registered_formula():
  @priority.register('test_low_fg', reads=('fg_fraction',))
  def low_fg(stats, ctx):
    return -stats.fg_fraction

  stats = make_stats([0.5] * 5)
  sel = pick('test_low_fg', stats, ctx(stats, 2))
  np.testing.assert_array_equal(sel.ids, np.argsort(stats.fg_fraction)[:2])


def test_formula_returning_wrong_shape_is_reported():
  @priority.register('test_bad_shape', reads=())
  def bad(stats, ctx):
    return np.zeros(2)

  stats = make_stats([0.5] * 5)
  with pytest.raises(SelectionError, match=r"returned shape \(2,\), expected \(5,\)"):
    pick('test_bad_shape', stats, ctx(stats, 1))


def test_ties_fall_to_a_keyed_hash_of_the_id_not_to_storage_order():
  """A model that predicts nothing gives every tile the same priority: the
  picks must not be the first ids (the top-left strip of a scene)."""
  ids = np.arange(1_000_000, 1_000_040)
  stats = make_stats(np.ones(40), ids=ids)  # every `iou` priority is 0
  a = pick('iou', stats, ctx(stats, 5, seed=0))
  assert sorted(a.ids.tolist()) != ids[:5].tolist()
  # Independent of pool order, and another key (seed or round) breaks ties otherwise.
  perm = np.random.default_rng(1).permutation(40)
  assert pick('iou', stats.take(perm), ctx(stats, 5, seed=0)).ids.tolist() == a.ids.tolist()
  assert pick('iou', stats, ctx(stats, 5, seed=1)).ids.tolist() != a.ids.tolist()
  # Ties only: a higher priority still wins.
  better = stats.replace(pred_iou=np.where(ids == ids[-1], 0.5, 1.0).astype(np.float32))
  assert pick('iou', better, ctx(better, 5, seed=0)).ids[0] == ids[-1]
