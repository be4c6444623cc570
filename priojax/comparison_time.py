"""Where a comparison's time goes, from its runs' metric histories (pure).

A comparison runs for hours and is often paused, resumed or shares its
machine, so the seconds a round records are sometimes far from what it
costs. Each part is therefore counted as the **median** of its records
times their number: one paused round (a resume after a stop records the
wait) moves a median by nothing. The sum of the records as they were is
kept beside it, so a reader sees how far the two are apart.

Parts: pretraining each source model (its U-Net steps, the round-0
``finetune_seconds``), then per strategy and round step (fine-tuning, the
IoU head, pool scoring, the source tiles' embeddings for the
diversity strategies, selection, test evaluation and the rest of the
round: checkpoints, stores, the review page), then the full-pool reference
runs (``round_seconds``). A strategy's step is its own median, so a slow
selection is charged to the strategy that has it.
"""

from __future__ import annotations

import numpy as np

# (metric, what it is) of a strategy's round; 'rest' is round_seconds less the others.
ROUND_PARTS = (('finetune_seconds', 'fine-tuning the U-Net'), ('head_seconds', 'fitting the IoU head'),
               ('score_seconds', 'scoring the pool'),
               ('reference_seconds', 'embedding the source tiles (diversity strategies)'),
               ('select_seconds', 'selection'),
               ('eval_seconds', 'test evaluation'))
REST = 'the rest of a round (checkpoints, stores, review page)'


def _part(name: str, values: list[float]) -> dict:
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
  median = float(np.median(v)) if len(v) else 0.0
  return {'part': name, 'count': int(len(v)), 'median_seconds': median,
          'minutes': median * len(v) / 60, 'recorded_minutes': float(v.sum()) / 60}


def _rest(record: dict) -> float | None:
  if record.get('round_seconds') is None:
    return None
  return max(0.0, record['round_seconds'] - sum(record.get(k) or 0.0 for k, _ in ROUND_PARTS))


def time_spent(histories: dict[str, list[list[dict]]], pretrain: list[list[dict]] = (),
               reference: list[list[dict]] = ()) -> dict:
  """``histories``: strategy -> one metrics history per seed; ``pretrain``:
  the history of each source model trained (one per seed, or one when
  shared); ``reference``: each full-pool reference run's history."""
  parts = [_part('pretraining a source model', [run[0].get('finetune_seconds') for run in pretrain if run])]
  round_parts = [*ROUND_PARTS, ('rest', REST)]
  by_step = {key: {'count': 0, 'minutes': 0.0, 'recorded_minutes': 0.0} for key, _ in round_parts}
  per_strategy = []
  for name, runs in histories.items():
    records = [r for run in runs for r in run if r.get('round', 0) > 0]
    minutes = 0.0
    for key, _ in round_parts:
      p = _part(key, [_rest(r) if key == 'rest' else r.get(key) for r in records])
      for field in ('count', 'minutes', 'recorded_minutes'):
        by_step[key][field] += p[field]
      minutes += p['minutes']
    per_strategy.append({'strategy': name, 'rounds': len(records), 'minutes': minutes})
  for key, label in round_parts:
    step = by_step[key]
    parts.append({'part': label, 'count': step['count'],
                  'median_seconds': 60 * step['minutes'] / step['count'] if step['count'] else 0.0,
                  'minutes': step['minutes'], 'recorded_minutes': step['recorded_minutes']})
  parts.append(_part('full-pool reference run', [run[-1].get('round_seconds') for run in reference if run]))
  parts = [p for p in parts if p['count']]
  return {'parts': parts, 'per_strategy': sorted(per_strategy, key=lambda s: -s['minutes']),
          'minutes': sum(p['minutes'] for p in parts),
          'recorded_minutes': sum(p['recorded_minutes'] for p in parts)}


def _clock(minutes: float) -> str:
  return f'{minutes:.0f} min' if minutes < 90 else f'{int(minutes // 60)} h {minutes % 60:02.0f} min'


def markdown(spent: dict) -> list[str]:
  """The table of where the time went, and the strategies that cost most."""
  if not spent['parts']:
    return []
  lines = [f'Where the time went: **{_clock(spent["minutes"])}** of compute, counted as each part\'s median '
           f'(per strategy for a round\'s steps) times its count (the records as they were sum to {_clock(spent["recorded_minutes"])}: pauses, '
           'resumes and a shared machine count there).', '',
           '| part | count | seconds each | minutes |', '|---|---:|---:|---:|']
  for p in spent['parts']:
    lines.append(f'| {p["part"]} | {p["count"]} | {p["median_seconds"]:.1f} | {p["minutes"]:.1f} |')
  costly = ', '.join(f'`{s["strategy"]}` {s["minutes"]:.0f} min' for s in spent['per_strategy'][:3])
  if costly:
    lines.extend(['', f'Most costly strategies (their rounds, every seed): {costly}.'])
  return lines
