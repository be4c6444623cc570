"""Oracle ceilings: the IoU formulas with a perfect IoU head (benchmarks only).

Every IoU-based formula rests on the head's estimate q_i of how well the
model segments tile i. How much of a formula's result is the head's
fault, and how much the formula's? Give it the truth instead: on a
benchmark the pool's masks are hidden from the strategies but known, so
the true IoU_i of every pool tile under the current model, and its true
building fraction T_i, can be computed each round (``oracle_iou`` and
``oracle_fg_fraction``, tile_stats.py). A formula run on them is its
ceiling: if it does not beat random, no better head will make it; if it
does, the gap between it and the formula is what a better head is worth.

* ``oracle_error``: p_i = 1 - IoU_i, the ``iou`` formula (our reading of
  Janik & Sankaran 2022: label the tiles the model segments worst) with
  the true IoU in place of the prediction.
* ``oracle_error_mass``: ``typical_error_mass`` (error_mass.py) with the
  head replaced by the truth: q_i := IoU_i, T̂_i := T_i, so its union
  U_i = (P_i + T_i) / (1 + IoU_i) is the tile's true union (up to the
  IoU's smoothing) and m_i = (1 - IoU_i) · ℓ̂_i · U_i its learnable error
  pixels; and the head's predictions at pick := the true IoU at pick, so
  its switch trusts the head as soon as it has 4 labelled pairs (round 2).
  ℓ̂_i is still measured on the labelled tiles: no mask says what a label
  will teach.

They are ceilings of these formulas, not of active learning: the best
possible picks would need a model fine-tuned on every candidate set.
They read hidden masks, so a run whose labels come from annotators
refuses them (experiment.py). No constant of their own.
"""

from __future__ import annotations

import numpy as np

from priojax.priority.budget import GAIN_READS
from priojax.priority.error_mass import error_mass, typical_mass_picks
from priojax.priority.registry import SelectionContext, register, register_picker


@register('oracle_error', reads=('oracle_iou',))
def oracle_error_priority(stats, ctx: SelectionContext) -> np.ndarray:
  """p_i = 1 - IoU_i, IoU_i the tile's true IoU under the current model
  (benchmarks only): ``iou`` with a perfect head (module docstring)."""
  del ctx
  return np.clip(1.0 - np.asarray(stats.oracle_iou, np.float64), 0.0, 1.0)


def perfect_head(stats):
  """The stats as a perfect IoU head would give them: predicted IoU :=
  true IoU, now and at each labelled tile's pick."""
  return stats.replace(pred_iou=np.asarray(stats.oracle_iou, np.float32),
                       label_pred_iou_at_pick=np.asarray(stats.label_iou_at_pick, np.float32))


def _true_mass(stats, ctx: SelectionContext) -> np.ndarray:
  return error_mass(stats, ctx, true=np.clip(np.asarray(stats.oracle_fg_fraction, np.float64), 0.0, 1.0))


@register_picker('oracle_error_mass', reads=GAIN_READS + ('fg_fraction', 'label_fg_fraction', 'label_pred_iou_at_pick',
                                                          'oracle_iou', 'oracle_fg_fraction'))
def oracle_error_mass_priority(stats, ctx: SelectionContext):
  """``typical_error_mass`` with a perfect head (benchmarks only): the
  k clusters of highest G_c = Σ_{i in c} (1 - IoU_i) · ℓ̂_i · U_i, U_i =
  (P_i + T_i) / (1 + IoU_i) from the true IoU_i and building fraction
  T_i; TypiClust's picks until 4 labelled tiles have a true IoU at pick
  (module docstring)."""
  return typical_mass_picks(perfect_head(stats), ctx, _true_mass)
