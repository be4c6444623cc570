"""Error mass: label where the most of the split's IoU error can be removed.

The test figure is the pooled IoU, Σ|P ∩ T| / Σ|P ∪ T| over every tile, so
a tile weighs in it by its union, not once per tile: a stray pixel on an
empty tile (tile IoU 0) costs it one pixel; a half-missed block of
buildings costs it hundreds. ``iou`` and ``iou_gain`` rank per-tile error
1 - IoU_hat and so spend labels on small unions (empty ground, a few false
positives); foreground-aware random avoids those by construction. With
predicted building fraction P_i and predicted IoU q_i, the union
U = P + T - I and the intersection I = q·U give the union exactly once the
true fraction T_i is known:

    U_i = (P_i + T̂_i) / (1 + q_i),
    T̂_i = (Σ_j w_ij T_j + P_i) / (Σ_j w_ij + 1),   w_ij = exp(-||e_i - e_j||² / 2σ²),

T̂_i the kernel regression of the labelled tiles' true building fractions
T_j (from their masks) near tile i in the embedding, shrunk (weight 1)
towards the model's own P_i: with no label near, predicted and true areas
are assumed equal (U = 2P / (1 + q)); a neighbourhood whose labels showed
buildings the model misses (haze) or none where it predicts some (empty
ground with stray pixels) corrects it. σ is ``iou_gain``'s kernel width.
Its error pixels, of which a label removes the learnable share ℓ̂_i
(learnability.py), are its expected mass

    m_i = (1 - q_i) · ℓ̂_i · U_i.

A label teaches the model about the tiles like it, so the unit of choice is
a cluster: TypiClust's |L| + k k-means clusters of the pool's embedding
(Hacohen et al. 2022), each valued by its unlabelled mass

    G_c = Σ_{i in c, unlabelled} m_i,

and ``typical_error_mass`` takes one tile from each of the k clusters of
highest G_c: the one of highest m_i · τ_i / max_{j in c} τ_j (τ TypiClust's
typicality among the cluster's unlabelled tiles), i.e. the typical tile of
the cluster's error. Ties: the more typical tile, then the lowest id;
clusters of equal mass, the larger first.

Every m_i rests on the IoU head, and before the first target labels that
head is fitted on source tiles alone. So until the head ranks the labelled
target tiles better than chance at 95 % (``typiclust_then_gain``'s rule,
budget.py: the Fisher interval of the Spearman ρ between its predictions
at pick and the true IoU at pick), the round takes TypiClust's picks from
the same clusters; round 1 always does.

No constant is tuned: the pseudo-count 1, σ and ℓ̂ are ``iou_gain``'s,
the clusters and τ are TypiClust's, the switch is ``typiclust_then_gain``'s.
The formula was written, and fixed, before the comparisons that judge it
(seeds 10-14; docs/results.md).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from priojax.priority import learnability, typicality
from priojax.priority.budget import GAIN_READS, TIE_RTOL, calibration_info
from priojax.priority.registry import Picks, SelectionContext, register_picker


def expected_union(pred_iou, predicted, true) -> np.ndarray:
  """U_i = (P_i + T̂_i) / (1 + q_i), as a fraction of the tile."""
  q = np.clip(np.asarray(pred_iou, np.float64), 0.0, 1.0)
  return (np.asarray(predicted, np.float64) + np.asarray(true, np.float64)) / (1.0 + q)


def true_fraction(stats, ctx: SelectionContext) -> np.ndarray:
  """T̂_i: the labelled tiles' true building fractions near tile i, shrunk
  (weight 1) towards its predicted fraction P_i; P_i where no label is known."""
  predicted = np.clip(np.asarray(stats.fg_fraction, np.float64), 0.0, 1.0)
  true = np.asarray(stats.label_fg_fraction, np.float64)
  known = (true >= 0) & ~np.asarray(ctx.selectable, bool)
  if not known.any():
    return predicted
  sigma = typicality.kernel_width(stats.embedding, stats.ids)
  return learnability.labelled_regression(stats.embedding, known, true[known], sigma, predicted)


def error_mass(stats, ctx: SelectionContext, true: np.ndarray | None = None) -> np.ndarray:
  """m_i = (1 - q_i) · ℓ̂_i · U_i: the tile's learnable error pixels, as a
  fraction of the tile; ``true`` the building fractions T_i where they are
  known for every tile (the oracle ceiling), else T̂_i."""
  predicted = np.clip(np.asarray(stats.fg_fraction, np.float64), 0.0, 1.0)
  true = true_fraction(stats, ctx) if true is None else np.asarray(true, np.float64)
  union = expected_union(stats.pred_iou, predicted, true)
  return learnability.iou_gain_priority(stats, ctx) * union


def _best(score: np.ndarray, typical: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> int:
  """The row of highest score (within TIE_RTOL of it: the most typical,
  then the lowest id)."""
  top = score[rows].max()
  tied = rows[score[rows] >= top - TIE_RTOL * abs(top)]
  return int(tied[np.lexsort((ids[tied], -typical[tied]))[0]])


@register_picker('typical_error_mass', reads=GAIN_READS + ('fg_fraction', 'label_fg_fraction', 'label_pred_iou_at_pick'))
def typical_error_mass_priority(stats, ctx: SelectionContext):
  """The k clusters (of TypiClust's |L| + k) of highest learnable error
  mass G_c = Σ_{i in c} (1 - IoU_hat_i) · ℓ̂_i · U_i, U_i the expected
  union (P_i + T̂_i) / (1 + IoU_hat_i); from each, the tile of
  highest m_i · τ_i / max_{j in c} τ_j (module docstring). Each pick's
  priority is its cluster's G_c. Until the IoU head is trusted on the
  target (``typiclust_then_gain``'s rule; never in round 1), TypiClust's
  picks from the same clusters, with their typicality as priority. The
  round's metrics record the rule's ρ, bound, n and phase."""
  return typical_mass_picks(stats, ctx, error_mass)


def typical_mass_picks(stats, ctx: SelectionContext, mass_of: Callable[[Any, SelectionContext], np.ndarray]):
  """``typical_error_mass``'s picks for a given per-tile mass m_i =
  ``mass_of(stats, ctx)`` (computed only once the head is trusted)."""
  x = np.asarray(stats.embedding, np.float32)
  ids = np.asarray(stats.ids)
  selectable = np.asarray(ctx.selectable, bool)
  n_clusters = int(min(len(x), typicality.MAX_CLUSTERS, (~selectable).sum() + ctx.k))
  assign = np.asarray(typicality.kmeans(x, ids, ctx.rng, clusters=n_clusters))
  info = calibration_info(stats)
  if not info['gain_phase']:
    positions, priorities = typicality.typiclust_picks(x, ids, selectable, assign, ctx.k)
    return Picks(positions, priorities, info=info)
  mass = np.where(selectable, mass_of(stats, ctx), 0.0)
  relative = typicality.relative_typicality(x, ids, selectable, assign)
  score = mass * relative
  clusters = np.unique(assign[selectable])
  cluster_mass = np.bincount(assign, weights=mass, minlength=n_clusters)
  unlabelled = np.bincount(assign[selectable], minlength=n_clusters)
  reps = np.asarray([_best(score, relative, ids, np.flatnonzero(selectable & (assign == c))) for c in clusters],
                    np.int64)
  order = np.lexsort((ids[reps], -unlabelled[clusters], -cluster_mass[clusters]))
  picks = reps[order[:ctx.k]]
  priorities = cluster_mass[assign[picks]]
  if len(picks) < ctx.k:  # fewer clusters with unlabelled tiles than picks: the best of the rest
    available = selectable.copy()
    available[picks] = False
    extra = []
    while len(picks) + len(extra) < ctx.k:
      extra.append(_best(score, relative, ids, np.flatnonzero(available)))
      available[extra[-1]] = False
    picks = np.concatenate([picks, np.asarray(extra, np.int64)])
    priorities = np.concatenate([priorities, cluster_mass[assign[extra]]])
  return Picks(picks, priorities, info=info)
