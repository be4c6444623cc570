"""Learnability-aware IoU priorities: label where a label will raise the IoU.

``iou`` (1 - IoU_hat) spends the budget on tiles that cannot be learnt
(haze over the scene: the model stays wrong whatever it is shown). What a
label did for the tiles labelled so far tells those apart. For a labelled
tile j that the U-Net has trained on, with true IoU a_j under the model that
picked it (the ledger's ``iou_at_pick``) and b_j under the current model,

    ℓ_j = clip((b_j - a_j) / max(1 - a_j, 0.05), 0, 1)

is the share of its error that its label removed (dataset maps,
Swayamdipta et al. 2020: confidence that stays low once trained = hard to
learn; RHO-LOSS, Mindermann et al. 2022: 1 - b_j is its irreducible part).
A pool tile's learnability is the kernel regression of ℓ over the labelled
tiles near it in the model's embedding, shrunk towards the learnability of
its cluster, which is shrunk towards 1 (a region with no label yet is
assumed learnable: it is explored, not skipped):

    ℓ̂_i = (Σ_j w_ij ℓ_j + ℓ_c(i)) / (Σ_j w_ij + 1),  w_ij = exp(-||e_i - e_j||² / 2σ²),
    ℓ_c = (Σ_{j in c} ℓ_j + 1) / (n_c + 1),

σ the pool's typicality scale (typicality.py), c(i) tile i's cluster among
k-means clusters of the pool's embedding, as many as the round picks
(at least 2): a round-1 TypiClust pick per cluster then speaks for every
tile of its cluster, where the kernel alone reaches only its near
neighbours (a hazy sub-population keeps attracting labels at its far
edge). A cluster without labelled tiles has ℓ_c = 1. Formulas:

* ``iou_gain``: expected IoU gain p_i = (1 - IoU_hat_i) · ℓ̂_i;
* ``iou_trend``: dataset-map style from the pool history alone (no labels
  read): p_i = (1 - IoU_hat_i) · sigmoid(Δ̄_i / s), Δ̄_i the change of
  predicted IoU since the previous round averaged over tile i and its 20
  nearest pool tiles (s their standard deviation over the pool): low and
  rising = being learnt; low and stuck or falling = skip. Round 1 has no
  history: sigmoid(0) = 1/2, the ``iou`` order.

Every constant here (0.05, the pseudo-counts 1, K = 20, σ, the cluster
count) is fixed, stated in the README, and was set before the comparisons
that report them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from priojax.priority import diversity, typicality
from priojax.priority.registry import SelectionContext, register

MIN_ROOM = 0.05  # a tile picked at IoU > 0.95 has little error left to remove
PRIOR_WEIGHT = 1.0  # pseudo-count of the prior ℓ = 1


def learnable_fraction(now: np.ndarray, at_pick: np.ndarray) -> np.ndarray:
  """ℓ_j: the share of a labelled tile's error that training on it removed."""
  now, at_pick = np.asarray(now, np.float64), np.asarray(at_pick, np.float64)
  return np.clip((now - at_pick) / np.maximum(1.0 - at_pick, MIN_ROOM), 0.0, 1.0)


@jax.jit
def kernel_sums(x, centres, values, sigma):
  """(Σ_j w_ij v_j, Σ_j w_ij) with an RBF kernel, the centres consumed in
  chunks (memory N x chunk); centres of value -1 (padding) weigh nothing."""
  rows, valid = diversity.row_chunks(jnp.asarray(centres, jnp.float32))
  vals, _ = diversity.row_chunks(jnp.asarray(values, jnp.float32)[:, None])
  valid = valid & (vals[..., 0] >= 0)

  def block(x):
    def step(carry, chunk):
      num, den = carry
      c, v, ok = chunk
      w = jnp.exp(-diversity.pairwise_distances(x, c) ** 2 / (2.0 * sigma ** 2)) * ok[None, :]
      return (num + diversity.matmul(w, v[:, 0]), den + w.sum(1)), None

    zero = jnp.zeros(x.shape[0], jnp.float32)
    (num, den), _ = jax.lax.scan(step, (zero, zero), (rows, vals, valid))
    return jnp.stack([num, den], axis=1)

  sums = diversity.map_rows(block, jnp.asarray(x, jnp.float32))
  return sums[:, 0], sums[:, 1]


def kernel_regression(x, centres, values, sigma, prior, prior_weight):
  """(Σ_j w_ij v_j + c·prior_i) / (Σ_j w_ij + c), ``prior`` a scalar or
  one value per row of ``x``."""
  num, den = kernel_sums(x, centres, values, sigma)
  return (np.asarray(num, np.float64) + prior_weight * np.asarray(prior, np.float64)) / \
      (np.asarray(den, np.float64) + prior_weight)


def cluster_learnability(ell: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
  """ℓ_c = (Σ_{j in c} ℓ_j + 1) / (n_c + 1) for each of ``n_clusters``,
  given the labelled tiles' ℓ and clusters."""
  sums = np.bincount(clusters, weights=np.asarray(ell, np.float64), minlength=n_clusters)
  counts = np.bincount(clusters, minlength=n_clusters)
  return (sums + PRIOR_WEIGHT * 1.0) / (counts + PRIOR_WEIGHT)


def learnability_clusters(stats, ctx: SelectionContext) -> tuple[np.ndarray, int]:
  """Each pool tile's cluster for ℓ_c, and the cluster count: k-means
  (typicality.kmeans, keyed by tile id) into max(k, 2) clusters."""
  n_clusters = int(min(len(stats), max(int(ctx.k), 2)))
  key = jax.random.fold_in(ctx.rng, _CLUSTER_KEY)
  return np.asarray(typicality.kmeans(stats.embedding, stats.ids, key, clusters=n_clusters)), n_clusters


_CLUSTER_KEY = 0x6c63  # folded into the round's key: not the key TypiClust's clusters use


def learnability(stats, ctx: SelectionContext) -> np.ndarray:
  """ℓ̂_i for every pool tile (1 where no labelled tile is known)."""
  now, at_pick = np.asarray(stats.label_iou), np.asarray(stats.label_iou_at_pick)
  known = (now >= 0) & (at_pick >= 0) & ~ctx.selectable
  if not known.any():
    return np.ones(len(stats), np.float64)
  sigma = typicality.kernel_width(stats.embedding, stats.ids)  # on a sample of 4096 at most
  ell = learnable_fraction(now[known], at_pick[known])
  clusters, n_clusters = learnability_clusters(stats, ctx)
  prior = cluster_learnability(ell, clusters[known], n_clusters)[clusters]
  return labelled_regression(stats.embedding, known, ell, sigma, prior)


def labelled_regression(embedding, known, values, sigma, prior) -> np.ndarray:
  """kernel_regression of ``values`` (one per ``known`` row) over the
  ``known`` rows' embeddings, shrunk with weight PRIOR_WEIGHT to ``prior``.
  The centres are padded on the host to a fixed multiple, so that one
  compiled function serves every round (the labelled set grows each round)."""
  pad = -int(np.sum(known)) % diversity.CHUNK
  centres = np.pad(np.asarray(embedding, np.float32)[known], ((0, pad), (0, 0)))
  values = np.pad(np.asarray(values, np.float64), (0, pad), constant_values=-1.0)
  return kernel_regression(embedding, centres, values, sigma, prior, PRIOR_WEIGHT)


@register('iou_gain', reads=('pred_iou', 'embedding', 'label_iou', 'label_iou_at_pick'))
def iou_gain_priority(stats, ctx: SelectionContext) -> np.ndarray:
  """Expected IoU gain: p_i = (1 - IoU_hat_i) · ℓ̂_i, ℓ̂ the learnability
  of tile i's embedding neighbourhood and cluster, measured on the labelled
  tiles (module docstring)."""
  room = np.clip(1.0 - np.asarray(stats.pred_iou, np.float64), 0.0, 1.0)
  return room * learnability(stats, ctx)


def neighbourhood_mean(x, values, ids, *, k: int) -> np.ndarray:
  """Mean of ``values`` over each row and its k nearest other rows of ``x``;
  in a pool of more than typicality.SAMPLE tiles, its k nearest among the
  pool's sample (typicality.pool_sample). Computed in tile-id order, so
  that neighbours at equal distance are taken by lowest id, not by their
  row in the pool."""
  order = np.argsort(np.asarray(ids), kind='stable')
  x = np.asarray(x, np.float32)[order]
  values = np.asarray(values, np.float32)[order]
  sample = typicality.pool_sample(np.asarray(ids)[order])
  k = max(1, min(k, len(sample) - 1))
  index = np.arange(len(x))
  _, nearest = typicality.nearest(x, index, x[sample], sample, np.ones(len(sample), bool), k=k)
  neighbours = values[sample][np.asarray(nearest)]
  out = np.empty(len(x), np.float32)
  out[order] = np.concatenate([values[:, None], neighbours], axis=1).mean(1)
  return out


@register('iou_trend', reads=('pred_iou', 'embedding'))
def iou_trend_priority(stats, ctx: SelectionContext) -> np.ndarray:
  """Dataset-map style, from the pool history: p_i = (1 - IoU_hat_i) ·
  sigmoid(Δ̄_i / s), Δ̄_i = mean over tile i and its 20 nearest pool tiles
  of IoU_hat(now) - IoU_hat(previous round), s = std_i Δ̄_i (module
  docstring). Round 1: p_i = (1 - IoU_hat_i) / 2."""
  q = np.asarray(stats.pred_iou, np.float64)
  room = np.clip(1.0 - q, 0.0, 1.0)
  if ctx.history.shape[0] == 0:
    return room / 2
  change = q - ctx.history[-1]
  smooth = np.asarray(neighbourhood_mean(stats.embedding, change, stats.ids, k=typicality.K_NEIGHBOURS),
                      np.float64)
  scale = max(float(smooth.std()), 1e-6)
  return room * 0.5 * (1.0 + np.tanh(smooth / (2.0 * scale)))  # sigmoid, without overflow
