"""When a run writes its review page.

* After a round's selection (before any label is asked for): the round's
  picture is made and kept (``review/round.json``) and the page written,
  so that a human-in-the-loop round that waits for annotators already has
  its page.
* After the round commits: the page again, with the round's learning-curve
  point (nothing is recomputed).
* At the end of a run, and after a resume that had nothing left to do: the
  page, if it is missing.

The predictions the page shows are computed by every process of a
multi-process run (the model is sharded over all of them); only the main
process writes.
"""

from __future__ import annotations

import json

import numpy as np
from absl import logging

from priojax import distributed
from priojax.review import page, round_view


class ReviewWriter:

  def __init__(self, experiment, enabled: bool = True):
    self.exp = experiment
    self.enabled = enabled
    self.limits = round_view.Limits.of(experiment.config)

  def config_line(self) -> str:
    c = self.exp.config
    return (f'{c.priority.name} · {c.rounds.k} tiles a round · {c.rounds.num_rounds} rounds · seed {c.seed} · '
            f'data: {c.data.kind} · workdir {self.exp.workdir.path} (config.json there has every field)')

  def round_picked(self, params, stats, picked, labelled, round_index: int) -> None:
    """Makes and keeps the round's picture, then writes the page."""
    if not self.enabled:
      return
    exp = self.exp
    heat, heat_label = exp.heat(stats, picked)
    inputs = round_view.RoundInputs(
        round=round_index, formula=exp.formula.name, ids=np.asarray(picked.ids, np.int64),
        priorities=np.asarray(picked.priorities), pred_iou=np.asarray(picked.pred_iou),
        pool_ids=np.asarray(stats.ids, np.int64), heat=np.asarray(heat, np.float64), heat_label=heat_label,
        earlier={int(e.id): int(e.round) for e in labelled.entries},
        strata=exp.stratum_names(np.asarray(picked.ids, np.int64)) if len(picked.ids) else np.zeros(0, object))
    labels = {int(i): m for i, m in zip(labelled.ids, labelled.masks)}
    view = round_view.round_view(inputs, exp.data['target_pool'], exp.geo,
                                 lambda images: exp.scorer.predict_masks(params, images), labels, self.limits)
    if distributed.is_main():
      page.save_view(exp.workdir.path, view)
      path = page.write(exp.workdir.path, self._history(), title=exp.title, config_line=self.config_line())
      logging.info('round %d: review page %s', round_index, path)

  def refresh(self, history: list[dict], only_if_missing: bool = False) -> None:
    """The page from the kept picture and ``history``."""
    if not self.enabled or not distributed.is_main():
      return
    if only_if_missing and (self.exp.workdir.path / page.PAGE).exists():
      return
    # The loop has just drawn this history's learning_curve.png.
    page.write(self.exp.workdir.path, history, title=self.exp.title, config_line=self.config_line(),
               curve_file=self.exp.workdir.learning_curve)

  def _history(self) -> list[dict]:
    """The committed history, from metrics.jsonl (what the round started from)."""
    path = self.exp.workdir.metrics
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
