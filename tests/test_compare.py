"""The comparison: smoke config end to end, resume, and the summaries."""

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT, subprocess_env
from priojax import compare, compile_cache, priority, tile_stats


def test_compare_smoke_writes_table_csv_and_plot(tmp_path, data_dir):
  from configs import compare as compare_config

  config = compare_config.get_config('smoke')
  config.base.data.data_dir = data_dir
  traced_before = compile_cache.traces()
  summary = compare.run_comparison(config, str(tmp_path / 'cmp'))
  # 12 strategies + the source model + the reference, one process: each
  # distinct scoring and training configuration is traced once, not per run.
  new = {k: v - traced_before.get(k, 0) for k, v in compile_cache.traces().items()}
  assert all(n <= 1 for n in new.values()), new
  hp = {'aggregation': config.base.priority.aggregation}
  distinct = {(tile_stats.for_formula(priority.get(s), hp), priority.get(s).needs_mc) for s in config.strategies}
  assert sum(new[k] for k in new if k[0] == 'stats') <= len(distinct) < len(config.strategies)
  assert sum(new[k] for k in new if k[0] in ('seg_step', 'head_step')) <= 2
  names = {r['strategy'] for r in summary['rows']}
  assert names == set(priority.BUILTIN) and len(names) == 12
  with open(tmp_path / 'cmp' / 'comparison.csv') as f:
    table = list(csv.DictReader(f))
  assert {r['strategy'] for r in table} == names
  assert all(0.0 <= float(r['iou@6']) <= 1.0 for r in table)
  md = (tmp_path / 'cmp' / 'comparison.md').read_text()
  assert '| `iou` |' in md and 'Full-pool reference IoU' in md
  assert (tmp_path / 'cmp' / 'learning_curves.png').stat().st_size > 5000
  # The reference labels the whole pool in one round (rounds.k=0).
  reference = [json.loads(l) for l in (tmp_path / 'cmp' / 'reference' / 'seed0' / 'metrics.jsonl').open()]
  assert [r['labels'] for r in reference] == [0, config.base.data.num_target_pool]
  # Same pretrained model for every strategy: identical round-0 IoU.
  assert len({r['iou_mean'][0] for r in summary['rows']}) == 1
  # Resuming a finished comparison recomputes nothing and gives the same table.
  again = compare.run_comparison(config, str(tmp_path / 'cmp'))
  assert again['rows'] == summary['rows']


def test_summaries_on_hand_made_histories():
  run = lambda ious: [{'labels': b, 'iou': v, 'score_seconds': 0.5} for b, v in zip((0, 10, 20), ious)]
  histories = {'a': [run((0.2, 0.6, 0.8)), run((0.2, 0.4, 0.8))], 'b': [run((0.2, 0.3, 0.4))] * 2}
  summary = compare.summarise(histories, reference=[0.8, 0.8], pool_size=100)
  a, b = summary['rows']
  assert a['strategy'] == 'a'  # sorted by AULC
  np.testing.assert_allclose(a['iou_mean'], [0.2, 0.5, 0.8])
  np.testing.assert_allclose(a['iou_std'], [0.0, 0.1, 0.0])
  # Trapezoid: (0.2 + 0.5)/2 * 10 + (0.5 + 0.8)/2 * 10 = 10, over a span of 20.
  assert a['aulc_mean'] == pytest.approx(0.5)
  assert a['labels_to_95'] == 20 and b['labels_to_95'] is None
  assert a['score_ms_per_tile'] == pytest.approx(5.0)  # round 1 (compilation) left out


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
