"""A comparison's summary as files: comparison.csv, comparison.md (the
tables docs/results.md shows), learning_curves.png and picks.png."""

from __future__ import annotations

import csv
import io
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from priojax import comparison_records, comparison_time, results_page  # noqa: E402
from priojax.atomic_io import atomic_path, atomic_write_text  # noqa: E402
from priojax.comparison_stats import spread  # noqa: E402


def write_outputs(directory: pathlib.Path, summary: dict, title: str = '') -> None:
  atomic_write_text(directory / 'comparison.csv', table_csv(summary))
  atomic_write_text(directory / 'comparison.md', markdown(summary))
  plot_curves(summary, directory / 'learning_curves.png', title)
  if any(r['picks'] for r in summary['rows']):
    plot_picks(summary['rows'], directory / 'picks.png', title)


def _vs(row: dict) -> tuple[str, str, str]:
  if 'vs_baseline' not in row:
    return ('', '', '')
  return tuple(f'{v:+.4f}' for v in row['vs_baseline'])


def table_csv(summary: dict) -> str:
  rows = summary['rows']
  budgets = rows[0]['labels'] if rows else []
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(['strategy', *[f'iou@{b}' for b in budgets], *[f'iou_std@{b}' for b in budgets],
                   'aulc', 'aulc_std', f'aulc_minus_{summary["baseline"]}', 'ci95_low', 'ci95_high',
                   'labels_to_95pct_reference', 'score_ms_per_tile', 'select_ms_per_round'])
  for r in rows:
    writer.writerow([r['strategy'], *[f'{v:.4f}' for v in r['iou_mean']], *[f'{v:.4f}' for v in r['iou_std']],
                     f"{r['aulc_mean']:.4f}", f"{r['aulc_std']:.4f}", *_vs(r),
                     spread(r['labels_to_95']) if 'labels_to_95' in r else '',
                     f"{r['score_ms_per_tile']:.3f}", f"{r['select_ms_per_round']:.1f}"])
  return out.getvalue()


def _interval(d: float, lo: float, hi: float) -> str:
  mark = ' **>0**' if lo > 0 else (' **<0**' if hi < 0 else '')
  return f'{d:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark}'


def _vs_cell(r: dict, base: str) -> str:
  if 'vs_baseline' not in r:
    return '(baseline)' if r['strategy'] == base else ''
  return _interval(*r['vs_baseline'])


def anchors_markdown(summary: dict) -> list[str]:
  """Every strategy paired against each low-budget anchor that ran."""
  anchors = summary.get('anchors') or []
  rows = [r for r in summary['rows'] if r.get('vs_anchors')]
  if not anchors or not rows:
    return []
  lines = ['Paired against the low-budget anchors (AULC difference, 95 % CI over seeds):', '',
           '| strategy | ' + ' | '.join(f'AULC − {a} [95 % CI]' for a in anchors) + ' |',
           '|' + '---|' * (len(anchors) + 1)]
  for r in rows:
    cells = [_interval(*r['vs_anchors'][a]) if a in r['vs_anchors'] else '(anchor)' for a in anchors]
    lines.append(f'| `{r["strategy"]}` | ' + ' | '.join(cells) + ' |')
  return lines


def _source_models(models: int | None, seeds: int) -> str:
  """What the intervals over seeds hold fixed: with one source model for
  every seed they leave out how much another pretraining would move them."""
  if not models or seeds < 2:
    return ''
  if models == 1:
    return ', one source model for every seed (the intervals hold it fixed)'
  return ', a source model each (the intervals span source models)'


def markdown(summary: dict) -> str:
  rows = summary['rows']
  budgets = rows[0]['labels'] if rows else []
  base = summary['baseline']
  head = ['strategy', *[f'IoU @{b}' for b in budgets], 'AULC', f'AULC − {base} [95 % CI]',
          'labels to 95 % ref', 'scoring ms/tile', 'selection ms/round']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    vs = _vs_cell(r, base)
    cells = [f'`{r["strategy"]}`', *[f'{m:.3f} ± {s:.3f}' for m, s in zip(r['iou_mean'], r['iou_std'])],
             f"{r['aulc_mean']:.3f} ± {r['aulc_std']:.3f}", vs,
             spread(r['labels_to_95']) if 'labels_to_95' in r else '',
             f"{r['score_ms_per_tile']:.2f}", f"{r['select_ms_per_round']:.0f}"]
    lines.append('| ' + ' | '.join(cells) + ' |')
  ref = summary['reference_runs']
  seeds = len(rows[0]['aulc']) if rows else 0
  lines.append('')
  said = f'{seeds} seeds{_source_models(summary.get("source_models"), seeds)}.'
  if ref:
    lines.append(f'{said} Full-pool reference IoU (every pool label): {np.mean(ref):.3f} ± '
                 f'{np.std(ref):.3f}; labels to reach 95 % of each seed\'s reference: median [min, max] '
                 'over seeds, ∞ = not within the budget.')
  else:
    lines.append(f'{said} No full-pool reference run.')
  anchored = anchors_markdown(summary)
  if anchored:
    lines.extend(['', *anchored])
  switches = [r for r in rows if 'switch_rounds' in r]
  if switches:
    lines.append('')
    for r in switches:
      shown = ', '.join('never' if s is None else str(s) for s in r['switch_rounds'])
      lines.append(f'`{r["strategy"]}` picked by expected gain from round (per seed, in seed order): {shown}.')
  lines.extend(['', *picks_markdown(rows)])
  if summary.get('time'):
    lines.extend(['', *comparison_time.markdown(summary['time'])])
  return '\n'.join(lines) + '\n'


def picks_markdown(rows: list[dict]) -> list[str]:
  """Mean picks per stratum over all rounds, and per round (r1/r2/...)."""
  strata = sorted({s for r in rows for s in r['picks']})
  if not strata:
    return []
  lines = ['Labelled tiles per stratum (mean over seeds; total, then per round):', '',
           '| strategy | ' + ' | '.join(strata) + ' |', '|' + '---|' * (len(strata) + 1)]
  for r in rows:
    cells = []
    for s in strata:
      per_round = r['picks'].get(s, [])
      cells.append(f'{sum(per_round):.1f} ({"/".join(f"{v:.1f}" for v in per_round)})')
    lines.append(f'| `{r["strategy"]}` | ' + ' | '.join(cells) + ' |')
  return lines


def _colors(n: int):
  colors = plt.get_cmap('tab20').colors
  return [colors[(2 * i) % 20 + (2 * i) // 20] for i in range(n)]


def plot_curves(summary: dict, path: pathlib.Path, title: str = '') -> None:
  rows, reference_iou = summary['rows'], summary['reference_iou']
  fig, ax = plt.subplots(figsize=(8, 5))
  for r, color in zip(rows, _colors(len(rows))):
    labels, mean, std = np.array(r['labels']), np.array(r['iou_mean']), np.array(r['iou_std'])
    style = '-' if r['strategy'].startswith('iou') else '--'
    ax.plot(labels, mean, style, marker='o', ms=3, color=color, label=r['strategy'])
    ax.fill_between(labels, mean - std, mean + std, color=color, alpha=0.10)
  if np.isfinite(reference_iou):
    ax.axhline(reference_iou, color='k', lw=1, label='full pool')
    ax.axhline(0.95 * reference_iou, color='k', lw=0.8, ls=':', label='95 % of full pool')
  ax.set_xlabel('target labels used')
  ax.set_ylabel('test IoU (mean ± std over seeds)')
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  _save(fig, path)


def plot_picks(rows: list[dict], path: pathlib.Path, title: str = '') -> None:
  """One panel per strategy: picks per round, stacked by stratum."""
  strata = sorted({s for r in rows for s in r['picks']})
  cols = min(4, len(rows))
  nrows = -(-len(rows) // cols)
  fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), sharey=True, squeeze=False)
  colors = dict(zip(strata, plt.get_cmap('tab10').colors))
  for ax, r in zip(axes.flat, rows):
    rounds = np.arange(1, len(next(iter(r['picks'].values()), [])) + 1)
    bottom = np.zeros(len(rounds))
    for s in strata:
      v = np.asarray(r['picks'].get(s, np.zeros(len(rounds))))
      ax.bar(rounds, v, bottom=bottom, color=colors[s], label=s)
      bottom += v
    ax.set_title(r['strategy'], fontsize=8)
    ax.set_xticks(rounds)
  for ax in axes.flat[len(rows):]:
    ax.axis('off')
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='lower center', ncol=len(strata), fontsize=7)
  fig.suptitle(f'{title}: labelled tiles per round (mean over seeds)' if title else
               'labelled tiles per round (mean over seeds)', fontsize=9)
  fig.tight_layout(rect=(0, 0.06, 1, 0.96))
  _save(fig, path)


def _save(fig, path: pathlib.Path) -> None:
  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=110, format='png')
  plt.close(fig)


def summary_markdown(summary: dict) -> str:
  """The short table the README shows: each strategy's AULC, its paired
  difference to the baseline and the labels it needs to reach 95 % of the
  full-pool reference."""
  base = summary['baseline']
  lines = [f'| strategy | AULC | AULC − {base} [95 % CI] | labels to 95 % ref |', '|---|---|---|---|']
  for r in summary['rows']:
    lines.append(f'| `{r["strategy"]}` | {r["aulc_mean"]:.3f} ± {r["aulc_std"]:.3f} | {_vs_cell(r, base)} | '
                 f'{spread(r["labels_to_95"]) if "labels_to_95" in r else ""} |')
  return '\n'.join(lines) + '\n'


def update_results(results: pathlib.Path, section: str, directory: pathlib.Path, summary: dict, command: str,
                   readme: pathlib.Path | None = None) -> None:
  """Replaces the results page's ``comparison:<section>`` block with this
  comparison's tables and plots, and the README's ``summary:<section>``
  block, where it has one, with the short table."""
  records = results.parent / 'records' / section
  comparison_records.export(directory, tuple(summary['seeds']), records)
  rel = records.relative_to(results.parent)
  results_page.update_block(results, 'comparison', section, (directory / 'comparison.md').read_text(), command,
                            {name: directory / f'{name}.png' for name in ('learning_curves', 'picks')},
                            footer=f'Each seed\'s runs, as recorded: [{rel}/]({rel}/) (with '
                                   f'`--config.records=<that folder>`, the command rebuilds this block from them '
                                   'without running anything).')
  if readme is not None and results_page.has_block(readme, 'summary', section):
    link = results.relative_to(readme.parent) if results.is_relative_to(readme.parent) else results
    results_page.update_block(readme, 'summary', section, summary_markdown(summary), command,
                              footer=f'Every table and plot of this comparison: [{link}]({link}).')
