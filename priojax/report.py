"""Metrics out: JSON lines, TensorBoard events (TF-free), a learning curve
and a picture of test chips with the model's predictions."""

from __future__ import annotations

import io
import json
import math
import os
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (backend first)
import tensorboardX  # noqa: E402

import numpy as np  # noqa: E402

from priojax.errors import TrainingError  # noqa: E402
from priojax.atomic_io import atomic_write_bytes, atomic_write_text  # noqa: E402
from priojax.workdir import Workdir  # noqa: E402

# Undefined rather than broken when the predictions are constant.
MAY_BE_NAN = frozenset({'head_spearman'})


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
  """metrics.jsonl and TensorBoard: a view of the committed history (the
  checkpoint's meta is the record; these files are rebuilt from it)."""

  def __init__(self, workdir: Workdir, enabled: bool = True):
    """``enabled``: False on the processes of a multi-process run other
    than the main one, which writes these files for all."""
    self.workdir = workdir
    self.enabled = enabled
    self._tb = None

  def sync(self, history: list[dict]) -> None:
    """Makes metrics.jsonl hold exactly the committed rounds (used on resume):
    drops lines of a round that did not commit and adds, to both files, a
    committed round whose lines a crash kept from being written."""
    if not self.enabled:
      return
    path = self.workdir.metrics
    old = path.read_text().splitlines() if path.exists() else []
    new = [json.dumps(r, sort_keys=True) for r in history]
    if old == new:
      return
    atomic_write_text(path, ''.join(line + '\n' for line in new))
    written = 0
    while written < min(len(old), len(new)) and old[written] == new[written]:
      written += 1
    for record in history[written:]:
      self._scalars(record)

  def write(self, record: dict) -> dict:
    record = check_record(record)
    if not self.enabled:
      return record
    with open(self.workdir.metrics, 'a') as f:
      f.write(json.dumps(record, sort_keys=True) + '\n')
      f.flush()
      os.fsync(f.fileno())
    self._scalars(record)
    return record

  def _scalars(self, record: dict) -> None:
    if self._tb is None:
      self._tb = tensorboardX.SummaryWriter(str(self.workdir.tensorboard))
    step = int(record.get('labels', record.get('round', 0)))
    for key, value in record.items():
      if isinstance(value, (int, float)) and value is not None and key not in ('round', 'labels'):
        self._tb.add_scalar(key, value, step)
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


ROUND_COLUMNS = (('round', 'round', '{}'), ('labels', 'labels', '{}'), ('iou', 'test IoU', '{:.3f}'),
                 ('f1', 'F1', '{:.3f}'), ('mean_tile_iou', 'mean tile IoU', '{:.3f}'),
                 ('head_spearman', 'head Spearman', '{:.3f}'), ('head_mae', 'head MAE', '{:.3f}'),
                 ('picked_with_buildings', 'chips with buildings picked', '{}'),
                 ('round_seconds', 'round time (s)', '{:.0f}'))


def rounds_markdown(history: list[dict]) -> str:
  """One row per committed round: what the README's and docs/results.md's
  per-round tables show (a column a record lacks reads '-')."""
  lines = ['| ' + ' | '.join(title for _, title, _ in ROUND_COLUMNS) + ' |',
           '|' + '---:|' * len(ROUND_COLUMNS)]
  for record in history:
    cells = [fmt.format(record[key]) if record.get(key) is not None else '-' for key, _, fmt in ROUND_COLUMNS]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot_learning_curve(history: list[dict], path: pathlib.Path, title: str) -> None:
  """Test IoU and the head's Spearman against labels used."""
  atomic_write_bytes(path, learning_curve_png(history, title))


def learning_curve_png(history: list[dict], title: str) -> bytes:
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
  return _png(fig)


def _png(fig) -> bytes:
  buf = io.BytesIO()
  fig.savefig(buf, dpi=110, format='png')
  plt.close(fig)
  return buf.getvalue()


def _save(fig, path: pathlib.Path) -> None:
  atomic_write_bytes(path, _png(fig))


def plot_test_predictions(images: np.ndarray, truth: np.ndarray, pred: np.ndarray, ids: np.ndarray,
                          path: pathlib.Path, title: str) -> None:
  """One column per chip: the image, the true mask, the predicted mask and
  their overlay (green: hit, red: false alarm, blue: missed)."""
  n = len(images)
  fig, axes = plt.subplots(4, n, figsize=(1.7 * n, 7.2), squeeze=False)
  for j in range(n):
    t, p = truth[j] > 0, pred[j] > 0
    overlay = np.zeros(t.shape + (3,), np.float32)
    overlay[t & p] = (0.1, 0.8, 0.1)
    overlay[~t & p] = (0.9, 0.1, 0.1)
    overlay[t & ~p] = (0.1, 0.3, 0.9)
    inter, union = (t & p).sum(), (t | p).sum()
    panels = ((images[j][..., :3], f'{int(ids[j])}'), (t, 'truth'), (p, 'prediction'),
              (overlay, f'IoU {inter / union:.2f}' if union else 'IoU -'))
    for i, (img, label) in enumerate(panels):
      axes[i, j].imshow(img, cmap='gray' if img.ndim == 2 else None, vmin=0, vmax=1 if img.ndim == 2 else None,
                        interpolation='nearest')
      axes[i, j].set_title(label, fontsize=8)
      axes[i, j].axis('off')
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  _save(fig, path)
