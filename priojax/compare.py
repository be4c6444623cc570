"""Strategies x seeds on one benchmark, one budget schedule, one source model per seed.

``run_comparison(config, workdir)``::

  workdir/pretrain/seed<s>/          the source model of seed s (round 0 only)
  workdir/runs/<strategy>/seed<s>/   one loop run per strategy and seed, all
                                     starting from that model
  workdir/reference/seed<s>/         fine-tuning on every label of the pool
  workdir/comparison.csv|.md, learning_curves.png, picks.png

Every run is a resumable loop workdir, so an interrupted comparison resumes
where it stopped. The summaries are comparison_stats.py's. The reference
fine-tunes the seed's source model on every pool label (none held out for
the head) in one round of ``num_rounds x finetune.steps`` steps, as many as
a strategy gets in all. A strategy is a registered formula name, or
``<name>+power`` for its stochastic power acquisition (Kirsch et al. 2023).
"""

from __future__ import annotations

import pathlib
import time

from absl import logging

from priojax import comparison_records, comparison_report, comparison_stats, comparison_time, distributed, loop, priority
from priojax.data import loading
from priojax.config_checks import set_field
from priojax.errors import ConfigError, WorkdirError
from priojax.workdir import Workdir

POWER = '+power'


def strategy_names(value) -> tuple[str, ...]:
  """``config.strategies`` as names: a tuple of names, or what a command
  line gives for it (``'(random,iou)'`` arrives as one string)."""
  if isinstance(value, str):
    value = (value,)
  names = []
  for item in value:
    names += [p.strip().strip('\'"') for p in str(item).strip('()[] ').split(',') if p.strip()]
  for name in names:
    priority.get(name.removesuffix(POWER))  # unknown: one line naming it
  if not names:
    raise ConfigError('config.strategies: expected at least one strategy name, e.g. "(random,iou)"')
  if len(set(names)) != len(names):
    raise ConfigError(f'config.strategies: {names} names a strategy twice')
  return tuple(names)


def seed_list(value) -> tuple[int, ...]:
  values = (value,) if isinstance(value, (int, str)) else tuple(value)
  try:
    seeds = tuple(int(p) for v in values for p in str(v).strip('()[] ').split(',') if p.strip())
  except ValueError:
    raise ConfigError(f'config.seeds: expected integers, e.g. "(0,1,2)", got {value!r}') from None
  if not seeds or len(set(seeds)) != len(seeds):
    raise ConfigError(f'config.seeds: expected distinct integers, e.g. "(0,1,2)", got {value!r}')
  return seeds


def strategy_overrides(name: str) -> dict:
  if name.endswith(POWER):
    return {'priority.name': name.removesuffix(POWER), 'priority.acquisition': 'power'}
  return {'priority.name': name}


class Progress:
  """Logs which seed, strategy and round is running, and the time left:
  pretraining and rounds are timed apart (a reference round counts as
  ``num_rounds`` rounds: it trains as long)."""

  def __init__(self, seeds: int, strategies: int, num_rounds: int, reference: bool, pretrain_per_seed: int):
    self.rounds_left = seeds * (strategies + (1 if reference else 0)) * num_rounds
    self.pretrains_left = pretrain_per_seed
    self.num_rounds = num_rounds
    self.times = {'round': [], 'pretrain': []}
    self.what = ''
    self._start = time.perf_counter()

  def start(self, what: str) -> None:
    self.what = what
    self._start = time.perf_counter()

  def pretrained(self, seconds: float) -> None:
    self.pretrains_left -= 1
    self.times['pretrain'].append(seconds)

  def round_done(self, record: dict, weight: int = 1) -> None:
    if record['round'] == 0:
      return
    seconds = record.get('round_seconds')
    self.rounds_left -= weight
    if seconds is not None and record['round'] > 1:  # round 1 includes compiling
      self.times['round'].append(seconds / weight)
    logging.info('[compare] %s | round %d done | %s left', self.what, record['round'], self.eta())

  def eta(self) -> str:
    per_round = sum(self.times['round']) / len(self.times['round']) if self.times['round'] else None
    per_pre = sum(self.times['pretrain']) / len(self.times['pretrain']) if self.times['pretrain'] else None
    if per_round is None:
      return 'time still unknown'
    seconds = self.rounds_left * per_round + self.pretrains_left * (per_pre or 0.0)
    return f'about {seconds / 60:.0f} min' if seconds >= 60 else f'{seconds:.0f} s'


def _resolved(base, overrides: dict):
  config = base.copy_and_resolve_references()
  for dotted, value in overrides.items():
    set_field(config, dotted, value)
  return config


class _Runs:
  """The seed's runs: each taken from its record when one was made with the
  same config (comparison_records.py), else run (or resumed) in its folder
  and recorded."""

  def __init__(self, base, records: comparison_records.SeedRecords, seed: int):
    self.base, self.records, self.seed = base, records, seed
    # Looked up once a run: planning asks first, then the run itself, and a
    # lookup logs a stale record and copies one found elsewhere.
    self._found: dict[str, list[dict] | None] = {}

  def recorded(self, run: str, overrides: dict) -> list[dict] | None:
    if run not in self._found:
      self._found[run] = self.records.history(self.seed, run, _resolved(self.base, overrides))
    return self._found[run]

  def run(self, run: str, workdir: pathlib.Path, overrides: dict, on_round=None,
          need_folder: bool = False) -> list[dict]:
    """``need_folder``: run (or resume) it in its folder even if recorded,
    because another run starts from its checkpoint."""
    history = None if need_folder else self.recorded(run, overrides)
    if history is None:
      config = _resolved(self.base, overrides)
      workdir.parent.mkdir(parents=True, exist_ok=True)
      history = loop.run(config, str(workdir), on_round=on_round)
      if not loop.waiting_for_labels(history, config):
        self.records.put(self.seed, run, config, history,
                         {k: v for k, v in overrides.items() if k != 'pretrain.from_workdir'})
    return history


def _jobs(base, strategies: tuple[str, ...], seed: int, reference: bool, start: dict) -> dict[str, dict]:
  """A seed's runs, by name, with their config overrides; ``start``: where
  they start from (the source model's folder, the data's seed)."""
  jobs = {f'runs/{name}': {'seed': seed, **strategy_overrides(name), **start} for name in strategies}
  if reference:
    # As many U-Net steps as a strategy gets over all its rounds, in one
    # round on every label (k=0; none held out for the head).
    jobs['reference'] = {'seed': seed, **start, 'priority.name': 'random', 'rounds.num_rounds': 1, 'rounds.k': 0,
                         'head.holdout_fraction': 0.0,
                         'finetune.steps': base.finetune.steps * max(1, base.rounds.num_rounds)}
  return jobs


def _source_model(runs: _Runs, folder: pathlib.Path, need_folder: bool, progress: Progress | None) -> list[dict]:
  """The source model's history: recorded, unless a run of the seed still
  has to start from its checkpoint (then pretrained, or resumed, in
  ``folder``). ``progress``: counts it, where this seed is its first use."""
  overrides = {'seed': runs.seed, 'rounds.num_rounds': 0}
  history = None if need_folder else runs.recorded('pretrain', overrides)
  if history is not None:
    if progress is not None:
      progress.pretrains_left -= 1
    return history
  logging.info('[compare] seed %d: source model', runs.seed)
  started = time.perf_counter()
  history = runs.run('pretrain', folder, overrides, need_folder=True)
  if progress is not None:
    progress.pretrained(time.perf_counter() - started)
  return history


def run_comparison(config, workdir: str) -> dict:
  wd = Workdir(workdir)
  base = config.base
  strategies, seeds = strategy_names(config.strategies), seed_list(config.seeds)
  shared = bool(config.get('shared_source', False))
  records = comparison_records.SeedRecords(wd.path, config.get('records', ''), write=distributed.is_main())
  title = loading.data_name(base).removeprefix('the ')
  histories: dict[str, list[list[dict]]] = {}
  reference: list[float] = []
  pretrained: list[list[dict]] = []  # each source model's history, for the time table
  references: list[list[dict]] = []
  summary: dict = {}
  rounds = base.rounds.num_rounds
  progress = Progress(len(seeds), len(strategies), rounds, config.reference, 1 if shared else len(seeds))
  for seed in seeds:
    # With shared_source, every seed starts from the first seed's source
    # model and uses its data (the seeds then vary the selections, the
    # calibration draw and fine-tuning only).
    source_seed = seeds[0] if shared else seed
    pretrain = wd.path / 'pretrain' / f'seed{source_seed}'
    data = {'data.split_seed': seeds[0]} if shared else {}
    jobs = _jobs(base, strategies, seed, config.reference, {**data, 'pretrain.from_workdir': str(pretrain)})
    runs = _Runs(base, records, seed)
    to_run = [job for job, overrides in jobs.items() if runs.recorded(job, overrides) is None]
    if to_run and config.get('only_recorded', False):
      raise WorkdirError(f'{records.folder}: seed {seed}: {", ".join(to_run)} not recorded with this config '
                         f'(config.only_recorded=True: nothing may run; config.records={config.records!r})')
    first_use = not (shared and seed != seeds[0])
    if first_use:
      progress.start(f'seed {seed} · source model')
    source = _source_model(_Runs(base, records, source_seed), pretrain, need_folder=bool(to_run),
                           progress=progress if first_use else None)
    if first_use:
      pretrained.append(source)
    for name in strategies:
      progress.start(f'seed {seed} · {name}')
      if f'runs/{name}' in to_run:
        logging.info('[compare] seed %d · %s | %s left', seed, name, progress.eta())
      else:
        progress.rounds_left -= rounds
      histories.setdefault(name, []).append(
          runs.run(f'runs/{name}', wd.path / 'runs' / name / f'seed{seed}', jobs[f'runs/{name}'],
                   on_round=progress.round_done))
    if config.reference:
      progress.start(f'seed {seed} · full-pool reference')
      if 'reference' in to_run:
        logging.info('[compare] seed %d · full-pool reference', seed)
      else:
        progress.rounds_left -= rounds
      ref = runs.run('reference', wd.path / 'reference' / f'seed{seed}', jobs['reference'],
                     on_round=lambda r: progress.round_done(r, weight=rounds))
      reference.append(ref[-1]['iou'])
      references.append(ref)
    # Written after every seed, so a long comparison shows its numbers early.
    summary = comparison_stats.summarise(histories, reference)
    summary['time'] = comparison_time.time_spent(histories, pretrained, references)
    summary['source_models'] = len(pretrained)
    summary['seeds'] = list(seeds[:seeds.index(seed) + 1])
    if distributed.is_main():
      comparison_report.write_outputs(wd.path, summary, title)
    logging.info('[compare] seed %d done: %s', seed, wd.path / 'comparison.md')
  return summary
