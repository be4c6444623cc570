"""The paths of one run's workdir.

Layout::

  workdir/
    config.json              the config of the first start (or the last
                             allowed change)
    checkpoints/<round>/     orbax: train state + round meta (ledger, history)
    metrics.jsonl            one line per finished round
    selected_round_<r>.json  the tiles picked in round r, with priorities
    rounds/round_<r>/        the unfinished round's finished steps
                             (round_steps.py)
    tb/                      TensorBoard events
    learning_curve.png
    test_predictions.png     test chips: image, truth, the last model's prediction
    export/round_<r>/        GeoTIFF runs: the selection for annotators
    annotations/round_<r>/   human mode: the annotators' GeoJSON
    labels/round_<r>.npz     human mode: the imported masks

A round is finished exactly when its orbax checkpoint is committed
(checkpoints.py); metrics.jsonl is rebuilt from the checkpoint's history on
resume. Until then the round's finished steps live in rounds/round_<r>/, so
a crash at any instant leaves the previous round complete and the next one
resumable from its last finished step.
"""

from __future__ import annotations

import json
import os
import pathlib

from priojax.atomic_io import atomic_write_json
from priojax.errors import WorkdirError


class Workdir:
  """Paths of one run; creates the workdir but never its parents."""

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path).expanduser().absolute()
    if not self.path.parent.is_dir():
      raise WorkdirError(f'workdir {self.path}: parent directory {self.path.parent} does not exist')
    if self.path.exists() and not self.path.is_dir():
      raise WorkdirError(f'workdir {self.path}: exists and is not a directory')
    self.path.mkdir(exist_ok=True)
    self.checkpoints = self.path / 'checkpoints'
    self.metrics = self.path / 'metrics.jsonl'
    self.tensorboard = self.path / 'tb'
    self.learning_curve = self.path / 'learning_curve.png'
    self.test_predictions = self.path / 'test_predictions.png'
    self.config = self.path / 'config.json'

  def read_config(self) -> dict | None:
    """The recorded config, or None before the first start."""
    if not self.config.exists():
      return None
    try:
      return json.loads(self.config.read_text())
    except ValueError as e:
      raise WorkdirError(f'{self.config}: not valid JSON ({e}); restore it or start a new '
                         'workdir') from None

  def write_config(self, config: dict) -> None:
    atomic_write_json(self.config, config)

  def export(self, round_index: int) -> pathlib.Path:
    return self.path / 'export' / f'round_{round_index}'

  def annotations(self, round_index: int) -> pathlib.Path:
    """Where annotators put their GeoJSON for the round (human mode)."""
    return self.path / 'annotations' / f'round_{round_index}'

  def imported_labels(self, round_index: int) -> pathlib.Path:
    return self.path / 'labels' / f'round_{round_index}.npz'

  def imported_label_files(self) -> list[pathlib.Path]:
    return sorted((self.path / 'labels').glob('round_*.npz'))

  def selected(self, round_index: int) -> pathlib.Path:
    return self.path / f'selected_round_{round_index}.json'

  def rounds(self) -> pathlib.Path:
    return self.path / 'rounds'

  def round_folder(self, round_index: int) -> pathlib.Path:
    """The unfinished round's steps (see round_steps.py)."""
    return self.rounds() / f'round_{round_index}'
