"""The numbers of a comparison, from the runs' metric histories (pure).

For each strategy, over seeds s (every strategy runs the same seeds, each
seed from its own source model, shared by all strategies of that seed):

* test IoU at each budget, mean ± std;
* AULC: the trapezoid area under IoU-vs-labels over the budget range, i.e.
  the mean test IoU over the budget (normalised to [0, 1]);
* the **paired** AULC difference to the baseline (random): d_s =
  AULC_strategy(s) - AULC_random(s) on the same seed and source model, its
  mean and a 95 % percentile bootstrap interval over seeds (the seeds are
  resampled as pairs, so the source model's luck cancels);
* the same paired difference to each low-budget anchor that ran
  (``ANCHORS``: TypiClust, foreground-aware random);
* labels to reach 95 % of the full-pool reference, per seed against that
  seed's reference: the first budget whose IoU reaches it (``inf`` when
  none does), reported as median [min, max];
* cost: seconds of pool scoring per pool tile (the source reference
  embeddings apart) and seconds of selection per round, leaving round 1
  out when later rounds exist (it includes compiling);
* what was labelled: the mean number of picks per stratum and round
  (``picked/<stratum>`` in each round's record).
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0


def aulc(labels: np.ndarray, iou: np.ndarray) -> np.ndarray:
  """Normalised area under each row of ``iou`` [seeds, budgets]."""
  labels = np.asarray(labels, np.float64)
  span = labels[-1] - labels[0]
  return np.trapezoid(iou, labels, axis=-1) / span if span > 0 else np.asarray(iou)[..., -1]


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
  """Mean of d = a - b over paired seeds and its 95 % percentile bootstrap
  interval: seed indices are resampled with replacement and each draw
  takes the same seeds from both arms."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f'paired bootstrap needs two equal-length runs per seed, got {a.shape} and {b.shape}')
  d = a - b
  draws = np.random.default_rng(seed).integers(0, len(d), size=(samples, len(d)))
  means = d[draws].mean(axis=1)
  lo, hi = np.percentile(means, [2.5, 97.5])
  return float(d.mean()), float(lo), float(hi)


def labels_to_reach(labels: np.ndarray, iou: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """Per seed, the first budget with ``iou >= target`` (inf if none)."""
  out = np.full(len(iou), np.inf)
  for s, (curve, target) in enumerate(zip(iou, targets)):
    hit = np.flatnonzero(np.asarray(curve) >= target)
    if len(hit):
      out[s] = labels[hit[0]]
  return out


def _late_rounds(run: list[dict]) -> list[dict]:
  return run[2:] if len(run) > 2 else run[1:]


def _mean_cost(runs: list[list[dict]], key: str, per_tile: bool) -> float:
  values = [r[key] / (r['pool_tiles'] if per_tile else 1.0) for run in runs for r in _late_rounds(run)
            if r.get(key) is not None and (r.get('pool_tiles') or not per_tile)]
  return float(np.mean(values)) if values else float('nan')


def strata(histories: dict[str, list[list[dict]]]) -> list[str]:
  return sorted({k.removeprefix('picked/') for runs in histories.values() for run in runs for r in run
                 for k in r if k.startswith('picked/')})


def pick_counts(runs: list[list[dict]], names: list[str]) -> dict[str, list[float]]:
  """Stratum -> mean picks per round (rounds 1..R) over seeds."""
  return {n: [float(np.mean([run[i].get(f'picked/{n}', 0) for run in runs])) for i in range(1, len(runs[0]))]
          for n in names}


def switch_rounds(runs: list[list[dict]]) -> list[int | None] | None:
  """Per seed, the first round a budget-aware strategy picked by expected
  gain (its ``select/gain_phase`` metric; None: never within the budget);
  None for a strategy that records no phase."""
  if not any('select/gain_phase' in r for run in runs for r in run):
    return None
  return [next((int(r['round']) for r in run if r.get('select/gain_phase') == 1), None) for run in runs]


# The strongest honest baselines at low budgets besides random: every
# strategy is also paired against these where the comparison ran them.
ANCHORS = ('typiclust', 'fg_random')


def _aulc_per_seed(runs: list[list[dict]]) -> np.ndarray:
  return aulc([r['labels'] for r in runs[0]], np.array([[r['iou'] for r in run] for run in runs]))


def summarise(histories: dict[str, list[list[dict]]], reference: list[float],
              baseline: str = 'random', anchors: tuple[str, ...] = ANCHORS) -> dict:
  """``histories``: strategy -> one metrics history per seed (same seeds,
  same order for every strategy); ``reference``: the full-pool reference
  IoU of each seed (may be empty). Each strategy is paired against
  ``baseline`` and against each of ``anchors`` that ran."""
  seeds = {len(runs) for runs in histories.values()}
  if len(seeds) != 1:
    raise ValueError(f'strategies ran different numbers of seeds: { {k: len(v) for k, v in histories.items()} }')
  ref = np.asarray(reference, np.float64)
  base_aulc = _aulc_per_seed(histories[baseline]) if baseline in histories else None
  anchor_aulc = {a: _aulc_per_seed(histories[a]) for a in anchors if a in histories and a != baseline}
  rows = []
  names = strata(histories)
  for name, runs in histories.items():
    labels = np.array([r['labels'] for r in runs[0]])
    iou = np.array([[r['iou'] for r in run] for run in runs])  # [seeds, budgets]
    area = aulc(labels, iou)
    row = {
        'strategy': name, 'labels': labels.tolist(), 'iou_mean': iou.mean(0).tolist(),
        'iou_std': iou.std(0).tolist(), 'aulc': area.tolist(), 'aulc_mean': float(area.mean()),
        'aulc_std': float(area.std()), 'max_labels': int(labels[-1]),
        'score_ms_per_tile': 1000 * _mean_cost(runs, 'score_seconds', per_tile=True),
        'select_ms_per_round': 1000 * _mean_cost(runs, 'select_seconds', per_tile=False),
        'picks': pick_counts(runs, names),
    }
    switched = switch_rounds(runs)
    if switched is not None:
      row['switch_rounds'] = switched
    if base_aulc is not None and name != baseline and len(runs) > 1:  # no interval from one seed
      row['vs_baseline'] = paired_bootstrap(area, base_aulc)
    if len(runs) > 1:
      row['vs_anchors'] = {a: paired_bootstrap(area, v) for a, v in anchor_aulc.items() if a != name}
    if len(ref) == len(runs):
      reach = labels_to_reach(labels, iou, 0.95 * ref)
      row['labels_to_95'] = reach.tolist()
    rows.append(row)
  rows.sort(key=lambda r: -r['aulc_mean'])
  return {'rows': rows, 'baseline': baseline, 'anchors': list(anchor_aulc), 'reference_runs': ref.tolist(),
          'reference_iou': float(ref.mean()) if len(ref) else float('nan')}


def spread(values: list[float]) -> str:
  """'median [min, max]' of labels-to-reach; '>B'-style for unreached."""
  v = np.asarray(values, np.float64)
  fmt = lambda x: '∞' if not np.isfinite(x) else str(int(x))
  return f'{fmt(np.median(v))} [{fmt(v.min())}, {fmt(v.max())}]'
