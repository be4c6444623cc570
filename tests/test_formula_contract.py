"""What a priority formula may rely on, and the misreads that are refused:
``reads`` decides the MC-dropout checks and the reference embedding, a
formula gets its own constants from ``config.priority.params``, a cell run
twice replaces its formula, and nothing a formula does changes the round's
statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import iou_priority
from priojax import loop, priority, selection
from priojax.config_checks import check_config
from priojax.errors import ConfigError, SelectionError
from priojax.pool_history import PoolHistory
from priojax.labelled_set import LabelledSet
from priojax.workdir import Workdir
from test_priority import ctx, make_stats


def _define_bald_reader():
  @priority.register('test_my_bald', reads=('bald/mean',))
  def my_bald(stats, ctx):
    return stats['bald/mean']

  return my_bald


@pytest.mark.parametrize('name', ['bald', 'test_my_bald'])
def test_a_formula_reading_mc_statistics_gets_the_dropout_checks(name):
  _define_bald_reader()  # no needs_mc=True: it follows from reads
  assert priority.get(name).needs_mc
  config = iou_priority.get_config('smoke')
  config.priority.name = name
  config.model.dropout = 0.0
  with pytest.raises(ConfigError, match=rf"^config.model.dropout: expected a dropout rate > 0 for the "
                                        rf"MC-dropout formula '{name}', got 0.0$"):
    check_config(config)


def test_needs_mc_that_contradicts_reads_is_refused():
  with pytest.raises(ValueError, match=r"'test_wrong_mc': needs_mc=True but reads=\('entropy',\) names no "
                                       r'MC-dropout statistic'):
    priority.register('test_wrong_mc', reads=('entropy',), needs_mc=True)


def test_reading_the_reference_embedding_without_declaring_it_is_an_error():
  @priority.register('test_sneaky_reference', reads=('embedding',))
  def sneaky(stats, ctx):
    return np.linalg.norm(stats.embedding[:, None] - np.asarray(ctx.reference_embedding)[None], axis=-1).min(1)

  @priority.register('test_sneaky_jax', reads=('embedding',))
  def sneaky_jax(stats, ctx):
    return jnp.zeros(len(stats)) + len(ctx.reference_embedding)

  stats = make_stats(np.linspace(0, 1, 8))
  for name in ('test_sneaky_reference', 'test_sneaky_jax'):
    with pytest.raises(SelectionError, match=rf"^priority formula '{name}' reads ctx.reference_embedding "
                                             r"without declaring it; add 'reference_embedding' to its "
                                             r'reads=\(...\)$'):
      selection.select(priority.get(name), stats, ctx(stats, 2))


def test_declaring_the_reference_embedding_fills_it():
  seen = []

  @priority.register('test_declared_reference', reads=('embedding', priority.REFERENCE))
  def declared(stats, ctx):
    seen.append(np.asarray(ctx.reference_embedding))
    return np.zeros(len(stats))

  formula = priority.get('test_declared_reference')
  assert formula.needs_reference
  assert formula.stat_names({}) == ('embedding',)  # what scoring computes
  stats = make_stats(np.linspace(0, 1, 8))
  reference = np.ones((3, stats.embedding.shape[1]), np.float32)
  selection.select(formula, stats, ctx(stats, 2, reference=reference))
  np.testing.assert_array_equal(seen[0], reference)


def test_reads_as_one_string_is_one_statistic_and_anything_else_is_refused():
  @priority.register('test_one_string', reads='pred_iou')
  def one(stats, ctx):
    return -stats.pred_iou

  assert priority.get('test_one_string').reads == ('pred_iou',)
  with pytest.raises(ValueError, match=r"'test_bad_reads': reads=7; expected a tuple of statistic names"):
    priority.register('test_bad_reads', reads=7)


def test_a_cell_run_twice_replaces_its_formula_and_another_function_may_not_take_the_name():
  first = _define_bald_reader()
  second = _define_bald_reader()  # the same definition, run again: a new function object
  assert first is not second
  assert priority.get('test_my_bald').source is second

  with pytest.raises(ValueError, match=r"'test_my_bald' is already registered \(by "
                                       r'test_formula_contract._define_bald_reader.<locals>.my_bald\)'):
    @priority.register('test_my_bald', reads=('entropy',))
    def other(stats, ctx):
      return stats.entropy


def test_a_formula_cannot_change_the_statistics_or_the_history():
  @priority.register('test_vandal', reads=('pred_iou',))
  def vandal(stats, ctx):
    stats.pred_iou[:] = 0.0
    return -stats.pred_iou

  @priority.register('test_history_vandal', reads=('pred_iou',))
  def history_vandal(stats, ctx):
    ctx.history[:] = 0.0
    return -stats.pred_iou

  stats = make_stats(np.linspace(0, 1, 8))
  history = PoolHistory.empty().appended(1, stats.ids, stats.pred_iou)
  c = priority.SelectionContext(k=2, rng=jax.random.key(0), selectable=np.ones(8, bool),
                                history=history.aligned(stats.ids))
  for name in ('test_vandal', 'test_history_vandal'):
    with pytest.raises(ValueError, match='read-only'):
      selection.select(priority.get(name), stats, c)
  np.testing.assert_array_equal(stats.pred_iou, np.linspace(0, 1, 8).astype(np.float32))
  np.testing.assert_array_equal(history.pred_iou[0], np.linspace(0, 1, 8).astype(np.float32))


def test_a_user_formula_reads_its_own_params(tmp_path, data_dir):
  seen = {}

  @priority.register('test_with_gamma', reads=('pred_iou',))
  def with_gamma(stats, ctx):
    seen['gamma'] = ctx.hparam('gamma')
    return (1.0 - stats.pred_iou) ** ctx.hparam('gamma')

  config = iou_priority.get_config('smoke')
  config.data.data_dir = data_dir
  config.priority.name = 'test_with_gamma'
  config.priority.params = {'gamma': 3.0}
  check_config(config)
  exp = loop.Experiment(config, Workdir(str(tmp_path / 'w')))
  stats = make_stats(np.linspace(0, 1, 8))
  exp.select(stats, None, LabelledSet.empty(), 1, PoolHistory.empty())
  assert seen == {'gamma': 3.0}

  config.priority.params = {'alpha': 2.0}
  with pytest.raises(ConfigError, match=r'^config.priority.params.alpha: expected a name other than the '
                                        r'built-in hparams'):
    check_config(config)
  config.priority.params = {'gamma': [1, 2]}
  with pytest.raises(ConfigError, match=r'^config.priority.params.gamma: expected a number, a bool or a '
                                        r'string, got \[1, 2\]$'):
    check_config(config)
