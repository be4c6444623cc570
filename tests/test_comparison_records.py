"""Seed records: a finished run stands for itself in a comparison, without its folder."""

import json

import pytest

from priojax import comparison_records
from priojax.comparison_records import SeedRecords
from priojax.errors import ConfigError, WorkdirError


def _config(**changes):
  from configs import compare as compare_config

  config = compare_config.get_config('smoke').base
  for dotted, value in changes.items():
    section, field = dotted.split('.')
    config[section][field] = value
  return config


def _history(iou):
  return [{'round': 0, 'labels': 0, 'iou': 0.1}, {'round': 1, 'labels': 4, 'iou': iou}]


def test_the_digest_reads_what_a_run_computes_and_not_where_its_files_live():
  base = comparison_records.digest(_config())
  assert comparison_records.digest(_config(**{'data.data_dir': '/elsewhere', 'pretrain.from_workdir': '/x/seed0',
                                              'review.max_rows': 3})) == base
  for change in ({'finetune.steps': 7}, {'priority.name': 'coreset'}, {'rounds.num_rounds': 9}, {'model.dropout': 0.3}):
    assert comparison_records.digest(_config(**change)) != base, change


def test_a_record_stands_for_a_run_only_with_the_same_config(tmp_path):
  records = SeedRecords(tmp_path)
  assert records.history(5, 'runs/iou', _config()) is None
  records.put(5, 'runs/iou', _config(), _history(0.5), {'priority.name': 'iou'})
  records.put(5, 'reference', _config(), _history(0.9))
  records.put(6, 'runs/iou', _config(), _history(0.4))
  assert records.history(5, 'runs/iou', _config(**{'data.data_dir': '/moved'})) == _history(0.5)
  assert records.history(6, 'runs/iou', _config()) == _history(0.4)
  assert records.history(5, 'runs/iou', _config(**{'finetune.steps': 7})) is None
  assert records.history(5, 'runs/random', _config()) is None
  saved = json.loads((tmp_path / 'records' / 'seed5.json').read_text())
  assert saved['seed'] == 5 and set(saved['runs']) == {'runs/iou', 'reference'}
  assert saved['runs']['runs/iou']['settings'] == {'priority.name': 'iou'}
  # Another process than the main one reads records but never writes them.
  SeedRecords(tmp_path, write=False).put(7, 'runs/iou', _config(), _history(0.3))
  assert not (tmp_path / 'records' / 'seed7.json').exists()


def test_records_made_elsewhere_are_read_and_copied_into_the_workdir(tmp_path):
  for workdir in ('other', 'mine'):
    (tmp_path / workdir).mkdir()
  SeedRecords(tmp_path / 'other').put(5, 'runs/iou', _config(), _history(0.5))
  records = SeedRecords(tmp_path / 'mine', str(tmp_path / 'other' / 'records'))
  assert records.history(5, 'runs/iou', _config()) == _history(0.5)
  assert SeedRecords(tmp_path / 'mine').history(5, 'runs/iou', _config()) == _history(0.5)
  with pytest.raises(ConfigError, match=r'^config\.records: .*none is not a folder of seed records$'):
    SeedRecords(tmp_path, str(tmp_path / 'none'))


@pytest.mark.parametrize('text', ['{"seed": 5', '[1, 2]', '{"runs": {}}'])
def test_a_broken_record_is_one_line_naming_it(tmp_path, text):
  (tmp_path / 'records').mkdir()
  (tmp_path / 'records' / 'seed5.json').write_text(text)
  with pytest.raises(WorkdirError, match=r'seed5\.json: .*delete it to rerun its runs$'):
    SeedRecords(tmp_path).history(5, 'runs/iou', _config())


def test_export_holds_exactly_the_seeds_of_one_comparison(tmp_path):
  for seed in (5, 6):
    SeedRecords(tmp_path).put(seed, 'runs/iou', _config(), _history(0.5))
  to = tmp_path / 'docs' / 'records' / 'real'
  to.mkdir(parents=True)
  (to / 'seed0.json').write_text('{}')
  written = comparison_records.export(tmp_path, (5, 6), to)
  assert sorted(p.name for p in to.iterdir()) == ['seed5.json', 'seed6.json'] == [p.name for p in written]
  assert json.loads((to / 'seed6.json').read_text())['runs']['runs/iou']['history'] == _history(0.5)
  with pytest.raises(WorkdirError, match=r'seed7\.json: the comparison has not finished those seeds$'):
    comparison_records.export(tmp_path, (5, 7), to)
  assert sorted(p.name for p in to.iterdir()) == ['seed5.json', 'seed6.json']


def test_a_comparison_looks_each_run_up_once(tmp_path, monkeypatch):
  """Planning a seed asks whether a run is recorded, and so does the run:
  one lookup, so a stale record is reported once and a record found
  elsewhere is copied once."""
  from priojax import compare

  overrides = {'seed': 5}
  records = SeedRecords(tmp_path)
  records.put(5, 'runs/iou', compare._resolved(_config(), overrides), _history(0.5))
  lookups = []
  looked_up = records.history
  monkeypatch.setattr(records, 'history', lambda *a: lookups.append(a[1]) or looked_up(*a))
  runs = compare._Runs(_config(), records, 5)
  assert runs.recorded('runs/iou', overrides) == _history(0.5)
  assert runs.run('runs/iou', tmp_path / 'unused', overrides) == _history(0.5)
  assert lookups == ['runs/iou']
  assert not (tmp_path / 'unused').exists()
