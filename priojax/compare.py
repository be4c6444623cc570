"""Strategies x seeds on one benchmark, one budget schedule, one source model.

``run_comparison(config, workdir)``::

  workdir/pretrain/seed<s>/          the source model of seed s (round 0 only)
  workdir/runs/<strategy>/seed<s>/   one loop run per strategy and seed, all
                                     starting from that model
  workdir/reference/seed<s>/         fine-tuning on the whole labelled pool
  workdir/comparison.csv|.md, learning_curves.png

Every run is a resumable loop workdir, so an interrupted comparison resumes
where it stopped. Summaries (mean ± std over seeds):

* test IoU at each budget;
* normalised AULC: the trapezoid area under IoU-vs-labels divided by the
  budget range, i.e. the mean test IoU over the budget;
* labels to reach 95 % of the full-pool reference IoU (first budget whose
  mean IoU reaches it; ``>B`` if none does). The reference fine-tunes the
  seed's source model on every pool label in one round of
  ``num_rounds x finetune.steps`` steps, as many as a strategy gets in all;
* scoring cost: seconds of pool scoring per pool tile.
"""

from __future__ import annotations

import csv
import io
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import logging  # noqa: E402

from priojax import loop  # noqa: E402
from priojax.config_checks import set_field  # noqa: E402
from priojax.errors import ConfigError  # noqa: E402
from priojax.atomic_io import atomic_path, atomic_write_text  # noqa: E402
from priojax.workdir import Workdir  # noqa: E402


def _run(base, workdir: pathlib.Path, **overrides) -> list[dict]:
  config = base.copy_and_resolve_references()
  for dotted, value in overrides.items():
    set_field(config, dotted, value)
  workdir.parent.mkdir(parents=True, exist_ok=True)
  return loop.run(config, str(workdir))


def run_comparison(config, workdir: str) -> dict:
  wd = Workdir(workdir)
  base = config.base
  if not config.strategies:
    raise ConfigError('config.strategies: expected at least one strategy name')
  if not config.seeds:
    raise ConfigError('config.seeds: expected at least one seed')
  histories: dict[str, list[list[dict]]] = {}
  reference: list[float] = []
  summary: dict = {}
  for seed in config.seeds:
    pretrain = wd.path / 'pretrain' / f'seed{seed}'
    logging.info('seed %d: source model', seed)
    _run(base, pretrain, seed=seed, **{'rounds.num_rounds': 0})
    for name in config.strategies:
      logging.info('seed %d: %s', seed, name)
      histories.setdefault(name, []).append(_run(
          base, wd.path / 'runs' / name / f'seed{seed}', seed=seed,
          **{'priority.name': name, 'pretrain.from_workdir': str(pretrain)}))
    if config.reference:
      logging.info('seed %d: full-pool reference', seed)
      # As many U-Net steps as a strategy gets over all its rounds, in one
      # round on every label (k=0): the reference is not under-trained.
      ref = _run(base, wd.path / 'reference' / f'seed{seed}', seed=seed,
                 **{'priority.name': 'random', 'pretrain.from_workdir': str(pretrain),
                    'rounds.num_rounds': 1, 'rounds.k': 0,
                    'finetune.steps': base.finetune.steps * max(1, base.rounds.num_rounds)})
      reference.append(ref[-1]['iou'])
    # Written after every seed, so a long comparison shows its numbers early.
    summary = summarise(histories, reference, base.data.num_target_pool)
    write_outputs(wd.path, summary)
    logging.info('seed %d done: %s', seed, wd.path / 'comparison.md')
  return summary


def summarise(histories: dict[str, list[list[dict]]], reference: list[float], pool_size: int) -> dict:
  rows = []
  ref_iou = float(np.mean(reference)) if reference else float('nan')
  for name, runs in histories.items():
    labels = np.array([r['labels'] for r in runs[0]])
    iou = np.array([[r['iou'] for r in run] for run in runs])  # [seeds, budgets]
    mean, std = iou.mean(0), iou.std(0)
    span = labels[-1] - labels[0]
    aulc = np.trapezoid(iou, labels, axis=1) / span if span > 0 else iou[:, -1]
    reached = np.flatnonzero(mean >= 0.95 * ref_iou) if reference else np.array([], int)
    # Round 1's scoring includes compiling the stats function: leave it out
    # when later rounds exist.
    score_s = [r.get('score_seconds', np.nan) for run in runs for r in (run[2:] if len(run) > 2 else run[1:])]
    rows.append({
        'strategy': name, 'labels': labels.tolist(), 'iou_mean': mean.tolist(), 'iou_std': std.tolist(),
        'aulc_mean': float(aulc.mean()), 'aulc_std': float(aulc.std()),
        'labels_to_95': int(labels[reached[0]]) if len(reached) else None,
        'max_labels': int(labels[-1]),
        'score_ms_per_tile': 1000 * float(np.nanmean(score_s)) / pool_size if score_s else float('nan'),
    })
  rows.sort(key=lambda r: -r['aulc_mean'])
  return {'rows': rows, 'reference_iou': ref_iou, 'reference_runs': reference}


def write_outputs(directory: pathlib.Path, summary: dict) -> None:
  rows = summary['rows']
  budgets = rows[0]['labels'] if rows else []
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(['strategy', *[f'iou@{b}' for b in budgets], *[f'iou_std@{b}' for b in budgets],
                   'aulc', 'aulc_std', 'labels_to_95pct_reference', 'score_ms_per_tile'])
  for r in rows:
    writer.writerow([r['strategy'], *[f'{v:.4f}' for v in r['iou_mean']], *[f'{v:.4f}' for v in r['iou_std']],
                     f"{r['aulc_mean']:.4f}", f"{r['aulc_std']:.4f}",
                     r['labels_to_95'] if r['labels_to_95'] is not None else f">{r['max_labels']}",
                     f"{r['score_ms_per_tile']:.3f}"])
  atomic_write_text(directory / 'comparison.csv', out.getvalue())
  atomic_write_text(directory / 'comparison.md', markdown(summary))
  plot(rows, summary['reference_iou'], directory / 'learning_curves.png')


def markdown(summary: dict) -> str:
  rows = summary['rows']
  budgets = rows[0]['labels'] if rows else []
  head = ['strategy', *[f'IoU @{b}' for b in budgets], 'AULC', 'labels to 95 % ref', 'scoring ms/tile']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    cells = [f'`{r["strategy"]}`', *[f'{m:.3f} ± {s:.3f}' for m, s in zip(r['iou_mean'], r['iou_std'])],
             f"{r['aulc_mean']:.3f} ± {r['aulc_std']:.3f}",
             str(r['labels_to_95']) if r['labels_to_95'] is not None else f">{r['max_labels']}",
             f"{r['score_ms_per_tile']:.2f}"]
    lines.append('| ' + ' | '.join(cells) + ' |')
  ref = summary['reference_iou']
  lines.append('')
  lines.append(f'Full-pool reference IoU: {ref:.3f} (95 %: {0.95 * ref:.3f}), mean over '
               f'{len(summary["reference_runs"])} seeds.' if np.isfinite(ref) else 'No full-pool reference run.')
  return '\n'.join(lines) + '\n'


def plot(rows: list[dict], reference_iou: float, path: pathlib.Path) -> None:
  fig, ax = plt.subplots(figsize=(8, 5))
  colors = plt.get_cmap('tab20').colors  # twelve strategies: no repeated colour
  for i, r in enumerate(rows):
    labels, mean, std = np.array(r['labels']), np.array(r['iou_mean']), np.array(r['iou_std'])
    style = '-' if r['strategy'].startswith('iou') else '--'
    color = colors[(2 * i) % 20 + (2 * i) // 20]
    ax.plot(labels, mean, style, marker='o', ms=3, color=color, label=r['strategy'])
    ax.fill_between(labels, mean - std, mean + std, color=color, alpha=0.10)
  if np.isfinite(reference_iou):
    ax.axhline(reference_iou, color='k', lw=1, label='full pool')
    ax.axhline(0.95 * reference_iou, color='k', lw=0.8, ls=':', label='95 % of full pool')
  ax.set_xlabel('target labels used')
  ax.set_ylabel('test IoU (mean ± std over seeds)')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=110, format='png')
  plt.close(fig)
