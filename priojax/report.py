"""Metrics out: JSON lines, TensorBoard events (TF-free) and a learning curve."""

from __future__ import annotations

import json
import math
import os
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (backend first)
import tensorboardX  # noqa: E402

from priojax.errors import TrainingError  # noqa: E402
from priojax.state import Workdir, atomic_write_text  # noqa: E402

# Undefined rather than broken when the predictions are constant.
MAY_BE_NAN = frozenset({'head_spearman', 'pool_spearman'})


def check_record(record: dict) -> dict:
  """Fails loudly on NaN/inf; returns a JSON-safe copy (undefined -> null)."""
  out = {}
  for key, value in record.items():
    if isinstance(value, float) and not math.isfinite(value):
      if key.split('/')[-1] not in MAY_BE_NAN:
        raise TrainingError(f'metric {key!r} of round {record.get("round")} is {value}; '
                            'refusing to record a non-finite result')
      value = None
    out[key] = value
  return out


class MetricsWriter:
  def __init__(self, workdir: Workdir):
    self.workdir = workdir
    self._tb = None

  def rewrite(self, history: list[dict]) -> None:
    """Makes metrics.jsonl hold exactly the finished rounds (used on resume)."""
    text = ''.join(json.dumps(r, sort_keys=True) + '\n' for r in history)
    path = self.workdir.metrics
    if not path.exists() or path.read_text() != text:
      atomic_write_text(path, text)

  def write(self, record: dict) -> dict:
    record = check_record(record)
    with open(self.workdir.metrics, 'a') as f:
      f.write(json.dumps(record, sort_keys=True) + '\n')
      f.flush()
      os.fsync(f.fileno())
    if self._tb is None:
      self._tb = tensorboardX.SummaryWriter(str(self.workdir.tensorboard))
    step = int(record.get('labels', record.get('round', 0)))
    for key, value in record.items():
      if isinstance(value, (int, float)) and value is not None and key not in ('round', 'labels'):
        self._tb.add_scalar(key, value, step)
    self._tb.flush()
    return record

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def plot_learning_curve(history: list[dict], path: pathlib.Path, title: str) -> None:
  """Test IoU and the head's Spearman against labels used."""
  labels = [r['labels'] for r in history]
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  axes[0].plot(labels, [r['iou'] for r in history], 'o-', label='test IoU')
  axes[0].plot(labels, [r['f1'] for r in history], 's--', alpha=0.6, label='test F1')
  axes[0].set_xlabel('target labels used')
  axes[0].set_ylabel('score')
  axes[0].legend()
  axes[0].grid(alpha=0.3)
  spear = [r.get('head_spearman') for r in history]
  axes[1].plot(labels, [s if s is not None else float('nan') for s in spear], 'o-', label='Spearman')
  axes[1].plot(labels, [r['head_mae'] for r in history], 's--', label='MAE')
  axes[1].set_xlabel('target labels used')
  axes[1].set_title('IoU head on target test')
  axes[1].legend()
  axes[1].grid(alpha=0.3)
  fig.suptitle(title)
  fig.tight_layout()
  tmp = path.with_name(f'.{path.name}.tmp.png')
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)


def markdown_table(history: list[dict]) -> str:
  """The per-round figures a README or a paper table shows."""
  rows = ['| round | labels | test IoU | F1 | mean tile IoU | head Spearman | head MAE | round time (s) |',
          '|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in history:
    spear = r.get('head_spearman')
    seconds = r.get('round_seconds', r.get('finetune_seconds', 0.0))
    rows.append(f"| {r['round']} | {r['labels']} | {r['iou']:.3f} | {r['f1']:.3f} | "
                f"{r['mean_tile_iou']:.3f} | {'n/a' if spear is None else f'{spear:.3f}'} | "
                f"{r['head_mae']:.3f} | {seconds:.0f} |")
  return '\n'.join(rows)
