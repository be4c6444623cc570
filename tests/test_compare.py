"""The comparison: smoke config end to end, resume, and the summaries."""

import csv
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import recorded_blocks
from conftest import ROOT, subprocess_env
from priojax import compare, comparison_report, comparison_stats, comparison_time, compile_cache, priority, tile_stats
from priojax.errors import ConfigError, SelectionError, WorkdirError


@pytest.mark.slow
def test_compare_smoke_writes_table_csv_and_plot(tmp_path, data_dir):
  from configs import compare as compare_config

  config = compare_config.get_config('smoke')
  config.base.data.data_dir = data_dir
  # One of each kind, to keep the suite short: random, a low-budget picker,
  # a picker with a reference set, a score formula reading the labelled
  # tiles, and its power draw. Every formula's selection has its own tests.
  config.strategies = ('random', 'typiclust', 'coreset', 'iou_gain', 'iou_gain+power')
  traced_before = compile_cache.traces()
  summary = compare.run_comparison(config, str(tmp_path / 'cmp'))
  # 5 strategies + the source model + the reference, one process: each
  # distinct scoring and training configuration is traced once, not per run.
  new = {k: v - traced_before.get(k, 0) for k, v in compile_cache.traces().items()}
  assert all(n <= 1 for n in new.values()), new
  hp = {'aggregation': config.base.priority.aggregation}
  formulas = [priority.get(s.removesuffix(compare.POWER)) for s in config.strategies]
  distinct = {(tile_stats.for_formula(f, hp), f.needs_mc) for f in formulas}
  assert sum(new[k] for k in new if k[0] == 'stats') <= len(distinct) < len(config.strategies)
  assert sum(new[k] for k in new if k[0] in ('seg_step', 'head_step')) <= 2
  names = {r['strategy'] for r in summary['rows']}
  assert names == set(config.strategies) and len(names) == len(config.strategies)
  with open(tmp_path / 'cmp' / 'comparison.csv') as f:
    table = list(csv.DictReader(f))
  assert {r['strategy'] for r in table} == names
  assert all(0.0 <= float(r['iou@6']) <= 1.0 for r in table)
  md = (tmp_path / 'cmp' / 'comparison.md').read_text()
  assert '| `iou_gain` |' in md and 'Full-pool reference IoU' in md and 'Labelled tiles per stratum' in md
  # Where the time went: one source model, every strategy's rounds, the reference.
  parts = {p['part']: p['count'] for p in summary['time']['parts']}
  rounds = config.base.rounds.num_rounds * len(config.strategies)
  assert parts['pretraining a source model'] == 1 and parts['full-pool reference run'] == 1
  assert parts['fine-tuning the U-Net'] == rounds and 'Where the time went' in md
  assert (tmp_path / 'cmp' / 'learning_curves.png').stat().st_size > 5000
  assert (tmp_path / 'cmp' / 'picks.png').stat().st_size > 5000
  # The reference trains on every pool label in one round (rounds.k=0), none held out.
  reference = [json.loads(l) for l in (tmp_path / 'cmp' / 'reference' / 'seed0' / 'metrics.jsonl').open()]
  pool = config.base.data.num_target_pool
  assert [(r['labels'], r['labels_fit']) for r in reference] == [(0, 0), (pool, pool)]
  # Every round records what it labelled, by sub-population.
  run = [json.loads(l) for l in (tmp_path / 'cmp' / 'runs' / 'typiclust' / 'seed0' / 'metrics.jsonl').open()]
  assert sum(v for k, v in run[1].items() if k.startswith('picked/')) == config.base.rounds.k
  assert 0 <= run[1]['picked_with_buildings'] <= config.base.rounds.k and run[1]['pool_tiles'] == pool
  # Same pretrained model for every strategy: identical round-0 IoU.
  assert len({r['iou_mean'][0] for r in summary['rows']}) == 1
  # Resuming a finished comparison recomputes nothing and gives the same table.
  again = compare.run_comparison(config, str(tmp_path / 'cmp'))
  assert again['rows'] == summary['rows'] and again['time'] == summary['time']


def _history(ious, **extra):
  return [{'round': r, 'labels': b, 'iou': v, 'score_seconds': 0.5, 'select_seconds': 0.1, 'pool_tiles': 100,
           **({k: v[r - 1] for k, v in extra.items()} if r else {})}
          for r, (b, v) in enumerate(zip((0, 10, 20), ious))]


def test_summaries_on_hand_made_histories():
  histories = {'a': [_history((0.2, 0.6, 0.8), **{'picked/haze': (3, 1)}), _history((0.2, 0.4, 0.8))],
               'random': [_history((0.2, 0.3, 0.4), **{'picked/empty': (2, 2)})] * 2}
  summary = comparison_stats.summarise(histories, reference=[0.8, 0.9])
  a, b = summary['rows']
  assert a['strategy'] == 'a'  # sorted by AULC
  np.testing.assert_allclose(a['iou_mean'], [0.2, 0.5, 0.8])
  np.testing.assert_allclose(a['iou_std'], [0.0, 0.1, 0.0])
  # Trapezoid: (0.2 + 0.5)/2 * 10 + (0.5 + 0.8)/2 * 10 = 10, over a span of 20.
  assert a['aulc_mean'] == pytest.approx(0.5)
  # Per seed against its own reference: 0.76 is reached at 20 labels, 0.855 never.
  assert a['labels_to_95'] == [20, float('inf')] and b['labels_to_95'] == [float('inf')] * 2
  assert comparison_stats.spread(a['labels_to_95']) == '∞ [20, ∞]'
  assert a['score_ms_per_tile'] == pytest.approx(5.0)  # round 1 (compilation) left out
  assert a['select_ms_per_round'] == pytest.approx(100.0)
  # Picks per stratum and round, every stratum in every row.
  assert a['picks'] == {'empty': [0.0, 0.0], 'haze': [1.5, 0.5]}
  assert b['picks'] == {'empty': [2.0, 2.0], 'haze': [0.0, 0.0]}
  assert 'vs_baseline' in a and 'vs_baseline' not in b
  md = comparison_report.markdown(summary)
  assert '| `a` |' in md and '(baseline)' in md and '| `a` | 0.0 (0.0/0.0) | 2.0 (1.5/0.5) |' in md
  assert 'switch_rounds' not in a and 'by expected gain' not in md
  # What the intervals over seeds hold fixed: the source model, or not.
  assert '2 seeds. Full-pool' in md  # no count of source models given
  md = comparison_report.markdown({**summary, 'source_models': 2})
  assert '2 seeds, a source model each (the intervals span source models). Full-pool' in md
  md = comparison_report.markdown({**summary, 'source_models': 1, 'reference_runs': []})
  assert '2 seeds, one source model for every seed (the intervals hold it fixed). No full-pool' in md


def test_a_budget_aware_strategys_switch_round_is_reported_per_seed():
  phase = 'select/gain_phase'
  histories = {'t': [_history((0.2, 0.6, 0.8), **{phase: (0.0, 1.0)}), _history((0.2, 0.4, 0.8), **{phase: (0.0, 0.0)}),
                     _history((0.2, 0.4, 0.7), **{phase: (1.0, 1.0)})],
               'random': [_history((0.2, 0.3, 0.4))] * 3}
  summary = comparison_stats.summarise(histories, [])
  (t,) = [r for r in summary['rows'] if r['strategy'] == 't']
  assert t['switch_rounds'] == [2, None, 1]
  assert '`t` picked by expected gain from round (per seed, in seed order): 2, never, 1.' in \
      comparison_report.markdown(summary)


def _timed(rounds):
  """A history whose rounds took ``rounds`` = [(finetune, round), ...] seconds."""
  return [{'round': 0, 'finetune_seconds': 100.0}] + [
      {'round': r, 'finetune_seconds': ft, 'head_seconds': 1.0, 'score_seconds': 2.0, 'reference_seconds': 0.0,
       'select_seconds': 0.5, 'eval_seconds': 0.5, 'round_seconds': total} for r, (ft, total) in enumerate(rounds, 1)]


def test_where_the_time_went_counts_medians_so_a_paused_round_does_not():
  # Strategy 'slow': fine-tuning 20 s a round, and one round paused for 1,000 s
  # inside its fine-tuning; 'fast': 10 s. Every round has 1 s outside its steps.
  slow = [_timed([(20, 25), (20, 25)]), _timed([(1020, 1025), (20, 25)])]
  fast = [_timed([(10, 15), (10, 15)])] * 2
  pretrain = [[{'round': 0, 'finetune_seconds': s}] for s in (100.0, 120.0, 5000.0)]
  reference = [[{'round': 0}, {'round': 1, 'round_seconds': s}] for s in (60.0, 70.0, 80.0)]
  spent = comparison_time.time_spent({'slow': slow, 'fast': fast}, pretrain, reference)
  parts = {p['part']: p for p in spent['parts']}
  assert parts['pretraining a source model']['median_seconds'] == 120.0
  assert parts['pretraining a source model']['minutes'] == pytest.approx(3 * 120 / 60)
  tuning = parts['fine-tuning the U-Net']
  assert tuning['count'] == 8 and tuning['minutes'] == pytest.approx((4 * 20 + 4 * 10) / 60)
  assert tuning['recorded_minutes'] == pytest.approx((1000 + 4 * 20 + 4 * 10) / 60)
  assert parts[comparison_time.REST]['minutes'] == pytest.approx(8 * 1.0 / 60)
  assert parts['full-pool reference run']['minutes'] == pytest.approx(3 * 70 / 60)
  assert 'embedding the source tiles (diversity strategies)' not in parts or \
      parts['embedding the source tiles (diversity strategies)']['minutes'] == 0.0
  per_round = 20 + 1 + 2 + 0.5 + 0.5 + 1
  assert [s['strategy'] for s in spent['per_strategy']] == ['slow', 'fast']
  assert spent['per_strategy'][0]['minutes'] == pytest.approx(4 * per_round / 60)
  assert spent['minutes'] == pytest.approx(sum(p['minutes'] for p in spent['parts']))
  assert spent['recorded_minutes'] - spent['minutes'] == pytest.approx((1000 + (5220 - 3 * 120)) / 60)
  histories = {'slow': [_history((0.2, 0.5, 0.6))] * 2, 'random': [_history((0.2, 0.3, 0.4))] * 2}
  summary = {**comparison_stats.summarise(histories, []), 'time': spent}
  md = comparison_report.markdown(summary)
  assert f'| fine-tuning the U-Net | 8 | 15.0 | {120 / 60:.1f} |' in md
  assert 'Most costly strategies (their rounds, every seed): `slow` 2 min, `fast` 1 min.' in md


def test_every_strategy_is_also_paired_against_typiclust_and_foreground_random():
  seed_level = np.array([0.50, 0.70, 0.55, 0.80, 0.62])
  hist = lambda v: [{'round': 0, 'labels': 0, 'iou': v}, {'round': 1, 'labels': 10, 'iou': v}]
  arms = {'random': seed_level, 'typiclust': seed_level + 0.02, 'fg_random': seed_level + 0.01,
          's': seed_level + np.array([0.030, 0.028, 0.031, 0.012, 0.029])}
  summary = comparison_stats.summarise({k: [hist(v) for v in a] for k, a in arms.items()}, [])
  assert summary['anchors'] == ['typiclust', 'fg_random']
  rows = {r['strategy']: r for r in summary['rows']}
  for anchor in summary['anchors']:
    assert rows['s']['vs_anchors'][anchor] == pytest.approx(comparison_stats.paired_bootstrap(arms['s'], arms[anchor]))
  assert set(rows['typiclust']['vs_anchors']) == {'fg_random'}
  lo, hi = rows['s']['vs_anchors']['typiclust'][1:]
  assert lo < 0 < hi  # one seed 0.008 below TypiClust: the interval straddles zero
  assert rows['s']['vs_anchors']['fg_random'][1] > 0
  md = comparison_report.markdown(summary)
  assert '| strategy | AULC − typiclust [95 % CI] | AULC − fg_random [95 % CI] |' in md
  assert '| `typiclust` | (anchor) | +0.010 [+0.010, +0.010] **>0** |' in md
  # Without the anchors in the comparison, no such table.
  plain = comparison_stats.summarise({k: [hist(v) for v in arms[k]] for k in ('random', 's')}, [])
  assert 'low-budget anchors' not in comparison_report.markdown(plain)


def test_the_bootstrap_interval_is_over_paired_seeds():
  """Seeds differ a lot (source models of different luck); the strategy is
  always 0.01 better on the same seed. Paired, the interval is tight and
  above zero; an unpaired bootstrap on the same numbers would straddle it."""
  seed_level = np.array([0.50, 0.70, 0.55, 0.80, 0.62])
  base, strategy = seed_level, seed_level + np.array([0.010, 0.012, 0.008, 0.011, 0.009])
  mean, lo, hi = comparison_stats.paired_bootstrap(strategy, base)
  assert mean == pytest.approx(0.01) and 0.0085 < lo < mean < hi < 0.0115
  # Through summarise: the pairing is by seed position in each strategy's list.
  hist = lambda v: [{'round': 0, 'labels': 0, 'iou': v}, {'round': 1, 'labels': 10, 'iou': v}]
  summary = comparison_stats.summarise({'random': [hist(v) for v in base], 's': [hist(v) for v in strategy]}, [])
  row = next(r for r in summary['rows'] if r['strategy'] == 's')
  assert row['vs_baseline'][1] > 0
  # Shuffle one arm's seeds: the pairing breaks, and the interval widens past zero.
  shuffled = comparison_stats.summarise(
      {'random': [hist(v) for v in base], 's': [hist(v) for v in strategy[[3, 0, 4, 1, 2]]]}, [])
  row = next(r for r in shuffled['rows'] if r['strategy'] == 's')
  assert row['vs_baseline'][1] < 0 < row['vs_baseline'][2]
  # A fixed resampling seed: the same interval every time.
  assert comparison_stats.paired_bootstrap(strategy, base) == (mean, lo, hi)
  with pytest.raises(ValueError, match='paired'):
    comparison_stats.paired_bootstrap(strategy, base[:4])


@pytest.mark.parametrize('given, want', [
    (('random', 'iou'), ('random', 'iou')), (('(random,iou)',), ('random', 'iou')),
    (('random,iou_gain+power',), ('random', 'iou_gain+power')), ("('random', 'iou')", ('random', 'iou'))])
def test_strategies_from_the_command_line(given, want):
  assert compare.strategy_names(given) == want


def test_bad_strategies_and_seeds_are_one_line():
  with pytest.raises(SelectionError, match="unknown priority formula 'nope'"):
    compare.strategy_names(('(random,nope)',))
  with pytest.raises(ConfigError, match='names a strategy twice'):
    compare.strategy_names(('random', 'random'))
  assert compare.seed_list((0, 1)) == (0, 1) and compare.seed_list('(3,4)') == (3, 4) and compare.seed_list(5) == (5,)
  with pytest.raises(ConfigError, match='config.seeds: expected integers'):
    compare.seed_list(('a',))
  assert compare.strategy_overrides('iou+power') == {'priority.name': 'iou', 'priority.acquisition': 'power'}


def test_progress_estimates_the_time_left():
  p = compare.Progress(seeds=2, strategies=3, num_rounds=4, reference=True, pretrain_per_seed=2)
  assert p.rounds_left == 2 * 4 * 4 and p.eta() == 'time still unknown'
  p.pretrained(30.0)
  p.round_done({'round': 1, 'round_seconds': 100.0})  # compiles: not timed
  p.round_done({'round': 2, 'round_seconds': 10.0})
  assert p.rounds_left == 30
  assert p.eta() == 'about 6 min'  # 30 rounds x 10 s + 1 pretraining x 30 s
  p.round_done({'round': 1, 'round_seconds': 80.0}, weight=4)  # a reference round: 4 rounds' steps
  assert p.rounds_left == 26


@pytest.mark.slow
def test_a_formula_defined_outside_the_package_runs_through_the_launcher(tmp_path, data_dir):
  (tmp_path / 'my_formulas.py').write_text(textwrap.dedent('''
      from priojax import priority

      @priority.register('large_unsure', reads=('pred_iou', 'fg_fraction'))
      def large_unsure(stats, ctx):
        return (1.0 - stats.pred_iou) * stats.fg_fraction
  '''))
  cmd = [sys.executable, '-m', 'experiments.run', '--config=configs/iou_priority.py:smoke',
         '--config.priority.name=my_formulas:large_unsure', f'--config.data.data_dir={data_dir}',
         f'--workdir={tmp_path / "w"}']
  env = subprocess_env()
  env['PYTHONPATH'] = f'{tmp_path}:{env["PYTHONPATH"]}'
  result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'round 1 | labels 6' in result.stderr
  assert '"formula": "large_unsure"' in (tmp_path / 'w' / 'selected_round_1.json').read_text()
  # The same function without the decorator: one line naming the fix, nothing written.
  (tmp_path / 'plain_formulas.py').write_text(
      'def large_unsure(stats, ctx):\n  return (1.0 - stats.pred_iou) * stats.fg_fraction\n')
  cmd[4] = '--config.priority.name=plain_formulas:large_unsure'
  cmd[-1] = f'--workdir={tmp_path / "plain"}'
  result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 2
  assert [l for l in result.stderr.splitlines() if l.startswith('error:')] == [
      "error: priority formula 'plain_formulas:large_unsure' is not registered, so what it reads is "
      "unknown; decorate it with @priojax.priority.register('<name>', reads=(...)) in module "
      "'plain_formulas'"]
  assert not (tmp_path / 'plain' / 'checkpoints').exists()


@pytest.mark.slow
def test_a_shared_source_model_and_data_for_every_seed(tmp_path, data_dir):
  """shared_source: one pretraining (the first seed's), one dataset; the
  seeds then differ in their selections only. Then its seed records."""
  from configs import compare as compare_config

  config = compare_config.get_config('smoke')
  config.base.data.data_dir = data_dir
  config.strategies = ('random',)
  config.seeds = (3, 4)
  config.reference = False
  config.shared_source = True
  summary = compare.run_comparison(config, str(tmp_path / 'cmp'))
  assert sorted(p.name for p in (tmp_path / 'cmp' / 'pretrain').iterdir()) == ['seed3']
  runs = [[json.loads(l) for l in (tmp_path / 'cmp' / 'runs' / 'random' / f'seed{s}' / 'metrics.jsonl').open()]
          for s in (3, 4)]
  assert runs[0][0]['iou'] == runs[1][0]['iou']  # same source model on the same test tiles
  picks = [json.loads((tmp_path / 'cmp' / 'runs' / 'random' / f'seed{s}' / 'selected_round_1.json').read_text())
           for s in (3, 4)]
  assert picks[0]['ids'] != picks[1]['ids']
  configs = [json.loads((tmp_path / 'cmp' / 'runs' / 'random' / f'seed{s}' / 'config.json').read_text())
             for s in (3, 4)]
  assert [c['data']['split_seed'] for c in configs] == [3, 3] and [c['seed'] for c in configs] == [3, 4]
  assert len(summary['rows'][0]['aulc']) == 2 and summary['source_models'] == 1
  assert 'one source model for every seed' in (tmp_path / 'cmp' / 'comparison.md').read_text()
  # Its seed records: with every folder but the records gone, the report is
  # rebuilt and nothing runs.
  first = summary
  assert sorted(p.name for p in (tmp_path / 'cmp' / 'records').iterdir()) == ['seed3.json', 'seed4.json']
  for folder in ('runs', 'pretrain'):
    shutil.rmtree(tmp_path / 'cmp' / folder)
  again = compare.run_comparison(config, str(tmp_path / 'cmp'))
  assert again['rows'] == first['rows'] and again['time'] == first['time']
  assert not (tmp_path / 'cmp' / 'runs').exists() and not (tmp_path / 'cmp' / 'pretrain').exists()
  # Read elsewhere with one strategy more: only_recorded refuses before
  # anything runs; without it only the new one runs, from a rebuilt source
  # model equal to the recorded one (comparison_records.py).
  config.records = str(tmp_path / 'cmp' / 'records')
  config.strategies = ('random', 'iou')
  config.only_recorded = True
  with pytest.raises(WorkdirError, match=r': seed 3: runs/iou not recorded with this config'):
    compare.run_comparison(config, str(tmp_path / 'second'))
  assert not (tmp_path / 'second' / 'pretrain').exists() and not (tmp_path / 'second' / 'runs').exists()
  config.only_recorded = False
  both = compare.run_comparison(config, str(tmp_path / 'second'))
  assert sorted(p.name for p in (tmp_path / 'second' / 'runs').iterdir()) == ['iou']
  assert sorted(p.name for p in (tmp_path / 'second' / 'pretrain').iterdir()) == ['seed3']
  rows = {r['strategy']: r for r in both['rows']}
  assert rows['random']['aulc'] == first['rows'][0]['aulc']
  assert rows['iou']['iou_mean'][0] == rows['random']['iou_mean'][0]
  recorded = json.loads((tmp_path / 'second' / 'records' / 'seed4.json').read_text())
  assert set(recorded['runs']) == {'runs/random', 'runs/iou'}


@pytest.mark.slow
def test_the_launcher_takes_strategies_and_seeds_and_writes_the_results_block(tmp_path, data_dir):
  readme = tmp_path / 'docs' / 'results.md'
  readme.parent.mkdir()
  readme.write_text('# x\n\n<!-- comparison:mine -->\nold\n<!-- /comparison:mine -->\nafter\n')
  front = tmp_path / 'README.md'
  front.write_text('# y\n<!-- summary:mine -->\nold\n<!-- /summary:mine -->\nend\n')
  cmd = [sys.executable, '-m', 'experiments.compare', '--config=configs/compare.py:smoke',
         '--config.strategies=(random,iou_gain+power)', '--config.seeds=(0,)', '--config.reference=False',
         f'--config.base.data.data_dir={data_dir}', f'--workdir={tmp_path / "cmp"}',
         '--results_section=mine', f'--results={readme}']
  result = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert '[compare] seed 0 · iou_gain+power | round 1 done |' in result.stderr
  text = readme.read_text()
  assert text.startswith('# x\n\n<!-- comparison:mine -->\nGenerated by `python -m experiments.compare '
                         "--config=configs/compare.py:smoke '--config.strategies=(random,iou_gain+power)'")
  assert '| `iou_gain+power` |' in text and '\nold\n' not in text and text.endswith('<!-- /comparison:mine -->\nafter\n')
  assert '![learning curves](comparison_mine_learning_curves.png)' in text
  assert (tmp_path / 'docs' / 'comparison_mine_picks.png').stat().st_size > 5000
  # The runs behind the block ship beside it, and the block says where.
  assert [p.name for p in (tmp_path / 'docs' / 'records' / 'mine').iterdir()] == ['seed0.json']
  assert "Each seed's runs, as recorded: [records/mine/](records/mine/)" in text
  # The shipped records rebuild both blocks exactly, running nothing; an
  # edited block is told apart.
  assert recorded_blocks.sections_with_records(readme) == ['mine']
  rebuilt = recorded_blocks.rebuild(readme, 'mine', tmp_path / 'again')
  assert set(rebuilt) == {'results', 'readme'} and all(a == b for a, b in rebuilt.values())
  assert not (tmp_path / 'again' / 'work' / 'runs').exists()
  edited = text.replace('| `random` | 0.', '| `random` | 1.')
  assert edited != text and recorded_blocks.block_of(edited, 'comparison', 'mine') != rebuilt['results'][1]
  short = front.read_text()
  assert short.startswith('# y\n<!-- summary:mine -->\nGenerated by `python -m experiments.compare --config=')
  assert '\n| strategy | AULC | AULC − random [95 % CI] | labels to 95 % ref |\n' in short
  assert '| `random` |' in short and '(baseline)' in short and 'old' not in short
  assert short.endswith('[docs/results.md](docs/results.md).\n<!-- /summary:mine -->\nend\n')
  run = json.loads((tmp_path / 'cmp' / 'runs' / 'iou_gain+power' / 'seed0' / 'config.json').read_text())
  assert run['priority']['name'] == 'iou_gain' and run['priority']['acquisition'] == 'power'
  # A README without the block: refused before anything runs.
  cmd[-2] = '--results_section=other'
  cmd[-3] = f'--workdir={tmp_path / "none"}'
  result = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 2 and not (tmp_path / 'none').exists()
  assert result.stderr.strip().splitlines()[-1].startswith(f'error: {readme}: --results_section=other: expected one')


def test_the_geotiff_argument_compares_on_the_users_scenes_with_the_real_recipe():
  from configs import compare as compare_config
  from priojax import config_defaults

  config = compare_config.get_config('geotiff')
  assert config.base.data.kind == 'geotiff' and config.base.data.manifest == ''
  for field, value in config_defaults.REAL_IMAGERY_RECIPE['model'].items():
    assert config.base.model[field] == value
  assert config.strategies == compare_config.REAL and config.shared_source
  assert not compare_config.get_config('real').shared_source  # the benchmark: a source model per seed
  with pytest.raises(ValueError, match='exclude each other'):
    compare_config.get_config('geotiff,real')


def test_the_confirm_argument_runs_the_new_formula_against_the_anchors_on_fresh_seeds():
  from configs import compare as compare_config

  for args, schedule in (('confirm', ''), ('low,confirm', 'low'), ('real,confirm', 'real')):
    config = compare_config.get_config(args)
    assert config.strategies == compare_config.CONFIRM and config.seeds == (10, 11, 12, 13, 14)
    plain = compare_config.get_config(schedule or None)
    assert config.base.to_dict() == plain.base.to_dict()  # the same budget schedule and recipe
    assert not set(config.seeds) & set(range(10))  # no seed an earlier comparison ran
  assert set(compare_config.CONFIRM) <= set(priority.BUILTIN)
