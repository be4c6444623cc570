"""Budget-aware IoU priorities: typical tiles while the IoU head cannot yet
be trusted on the target, learnable predicted error once it can.

With few labels, typical tiles beat uncertain ones; with more, error or
uncertainty wins (the phase transition of Hacohen et al., ICML 2022). TCM
(Doucet et al. 2024) runs TypiClust for a fixed number of rounds, then
margin; SelectAL (Hacohen & Weinshall 2023) chooses the regime from the
budget. Here the switch is read off the IoU head itself. Every labelled
tile j has the head's prediction q_j and the true IoU a_j of the model
that picked it, both from before any model trained on it (the ledger's
``pred_iou_at_pick`` and ``iou_at_pick``): a held-out test of the head on
the target. With ρ their Spearman correlation over n such tiles, the head
is trusted once the lower end of ρ's 95 % interval is above zero,

    tanh(atanh(ρ) - 1.96 · sqrt(1.06 / (n - 3))) > 0,   n >= 4,

the Fisher z interval with Fieller, Hartley & Pearson's (1957) variance for
Spearman's ρ. Nothing in the rule is tuned: it asks only that the head
rank target tiles better than chance with 95 % confidence, on tiles that
(from round 1's typical picks) span the pool.

* ``typiclust_then_gain``: TypiClust's picks until the head is trusted,
  then ``iou_gain``'s (the expected gain (1 - IoU_hat_i) · ℓ̂_i).
* ``typical_gain``: one ranking, diversified: the pool in TypiClust's
  |L| + k clusters, each tile's score its expected gain times its
  typicality relative to its cluster's most typical unlabelled tile,

      s_i = (1 - IoU_hat_i) · ℓ̂_i · τ_i / max_{j in c(i), unlabelled} τ_j,

  one pick per cluster (the best s of each), the k clusters of highest best
  s. Round 1 (ℓ̂ = 1): the typical tiles of the clusters where the model
  fails most; later, those whose error labels have been seen to remove.

The constants (1.96, 1.06, n >= 4) are fixed, stated in the README, and
were set before the fresh-seed comparisons that report them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from priojax import tile_metrics
from priojax.priority import learnability, typicality
from priojax.priority.registry import Picks, SelectionContext, register_picker, top_k

Z_95 = 1.959963984540054  # two-sided 95 %
SPEARMAN_VARIANCE = 1.06  # Fieller, Hartley & Pearson (1957): var(atanh ρ) ≈ 1.06 / (n - 3)
MIN_PAIRS = 4
_RHO_MAX = 1.0 - 1e-12  # atanh(±1) is infinite

GAIN_READS = ('pred_iou', 'embedding', 'label_iou', 'label_iou_at_pick')


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman's ρ; 0 where either side is constant (no evidence of a
  ranking either way)."""
  rho = tile_metrics.spearman(a, b)
  return 0.0 if np.isnan(rho) else rho


def spearman_lower_bound(rho: float, n: int) -> float:
  """The lower end of the 95 % interval of ρ from n pairs (-1 below MIN_PAIRS)."""
  if n < MIN_PAIRS:
    return -1.0
  z = np.arctanh(np.clip(rho, -_RHO_MAX, _RHO_MAX))
  return float(np.tanh(z - Z_95 * np.sqrt(SPEARMAN_VARIANCE / (n - 3))))


def head_calibration(stats) -> tuple[float, float, int]:
  """(ρ, its 95 % lower bound, n) of the head's predictions at pick against
  the true IoU at pick, over the labelled tiles that have both."""
  q = np.asarray(stats.label_pred_iou_at_pick, np.float64)
  a = np.asarray(stats.label_iou_at_pick, np.float64)
  known = (q >= 0) & (a >= 0)
  n = int(known.sum())
  rho = spearman(q[known], a[known]) if n >= 2 else 0.0
  return rho, spearman_lower_bound(rho, n), n


def calibration_info(stats) -> dict[str, float]:
  """What a budget-aware round records: ρ, its lower bound, n and the
  phase (1 once the head is trusted)."""
  rho, lower, n = head_calibration(stats)
  return {'head_rho_at_pick': rho, 'head_rho_lower': lower, 'head_pairs': float(n),
          'gain_phase': float(lower > 0.0)}


@register_picker('typiclust_then_gain', reads=GAIN_READS + ('label_pred_iou_at_pick',))
def typiclust_then_gain_priority(stats, ctx: SelectionContext):
  """TypiClust (Hacohen et al. 2022) until the IoU head ranks the labelled
  target tiles, as predicted when picked, better than chance at 95 %
  (Spearman ρ's Fisher interval, module docstring); from then on
  ``iou_gain``, p_i = (1 - IoU_hat_i) · ℓ̂_i. The round's metrics record
  ρ, its lower bound, n and the phase (``select/gain_phase``)."""
  info = calibration_info(stats)
  if info['gain_phase']:
    return dataclasses.replace(_IOU_GAIN(stats, ctx), info=info)
  positions, priorities = typicality.typiclust(stats.embedding, stats.ids, ctx.selectable, ctx.rng, ctx.k)
  return Picks(positions, priorities, info=info)


_IOU_GAIN = top_k('iou_gain', learnability.iou_gain_priority)  # iou_gain's picks, ties and all


@register_picker('typical_gain', reads=GAIN_READS)
def typical_gain_priority(stats, ctx: SelectionContext):
  """Typicality-weighted expected gain, one pick per cluster:
  s_i = (1 - IoU_hat_i) · ℓ̂_i · τ_i / max_{j in c(i)} τ_j over TypiClust's
  |L| + k clusters (τ TypiClust's typicality among a cluster's unlabelled
  tiles); the best s of each cluster, the k clusters of highest best s
  (module docstring)."""
  x = np.asarray(stats.embedding, np.float32)
  ids = np.asarray(stats.ids)
  selectable = np.asarray(ctx.selectable, bool)
  gain = learnability.iou_gain_priority(stats, ctx)
  n_clusters = int(min(len(x), typicality.MAX_CLUSTERS, (~selectable).sum() + ctx.k))
  assign = np.asarray(typicality.kmeans(x, ids, ctx.rng, clusters=n_clusters))
  relative = typicality.relative_typicality(x, ids, selectable, assign)
  score = gain * relative
  best = np.asarray([_argmax_lowest_id(score, ids, np.flatnonzero(selectable & (assign == c)))
                     for c in np.unique(assign[selectable])], np.int64)  # each cluster's best tile
  picks = _ranked(score, ids, best, ctx.k)
  if len(picks) < ctx.k:  # fewer non-empty clusters than picks: the best of the rest
    rest = np.setdiff1d(np.flatnonzero(selectable), picks)
    picks = np.concatenate([picks, _ranked(score, ids, rest, ctx.k - len(picks))])
  return Picks(picks, score[picks])


# Scores within this relative distance of the best tie, and the lowest id
# wins: the expected gain is float32 arithmetic whose last bit can depend on
# a tile's row in the pool, so identical tiles would otherwise be told apart
# by the pool's order.
TIE_RTOL = 1e-6


def _argmax_lowest_id(score: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> int:
  best = score[rows].max()
  tied = rows[score[rows] >= best - TIE_RTOL * abs(best)]
  return int(tied[np.argmin(ids[tied])])


def _ranked(score: np.ndarray, ids: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
  """The k of ``rows`` of highest score, in order, near-ties by lowest id."""
  rows, out = list(rows), []
  while rows and len(out) < k:
    out.append(_argmax_lowest_id(score, ids, np.asarray(rows)))
    rows.remove(out[-1])
  return np.asarray(out, np.int64)
