"""The built-in priority formulas, one small pure function each.

The paper's (Janik & Sankaran, arXiv 2202.04766) exact equations are not
public to us; ``iou`` and ``iou_diversity`` are our reading of its abstract
("sample priority from estimated model and sample properties, like predicted
IoU score"; "two formulas"). The rest are the baselines a comparison needs,
each with its equation and reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from priojax import rngs
from priojax.priority import diversity, typicality
from priojax.priority.registry import REFERENCE, Picks, SelectionContext, register, register_picker


@register('random', reads=())
def random_priority(stats, ctx: SelectionContext) -> jax.Array:
  """p_i = U(0, 1) drawn from fold_in(key, id_i): independent of pool order."""
  return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(ctx.rng, i)))(rngs.id_keys(stats.ids))


@register('iou', reads=('pred_iou',))
def iou_priority(stats, ctx: SelectionContext) -> jax.Array:
  """Formula 1 (our reading): p_i = 1 - IoU_hat_i, label where the model
  expects to fail."""
  del ctx
  return 1.0 - jnp.asarray(stats.pred_iou, jnp.float32)


@register('entropy', reads=('entropy/{aggregation}',))
def entropy_priority(stats, ctx: SelectionContext) -> jax.Array:
  """p_i = agg over pixels of H(p) = -p log p - (1-p) log(1-p);
  agg = config.priority.aggregation in mean | topq | region (default mean)."""
  return _aggregate(stats, ctx, 'entropy')


@register_picker('iou_diversity', reads=('pred_iou', 'embedding', REFERENCE))
def iou_diversity_priority(stats, ctx: SelectionContext):
  """Formula 2 (our reading), greedy:

      p_i = (1 - IoU_hat_i)^α · (d_i / max_j d_j)^β,
      d_i = min over labelled tiles l of ||e_i - e_l||,

  source training tiles count as labelled, and d is updated after each
  pick. α = config.priority.alpha, β = config.priority.beta (default 1, 1).
  """
  uncertainty = jnp.clip(1.0 - jnp.asarray(stats.pred_iou, jnp.float32), 0.0, 1.0)
  return _picks(diversity.greedy_weighted_distance(
      uncertainty, stats.embedding, ctx.reference_embedding, ctx.selectable, stats.ids,
      k=ctx.k, alpha=float(ctx.hparam('alpha')), beta=float(ctx.hparam('beta'))))


def _aggregate(stats, ctx: SelectionContext, name: str) -> jax.Array:
  return jnp.asarray(stats[f'{name}/{ctx.hparam("aggregation")}'], jnp.float32)


def _picks(positions_and_priorities) -> Picks:
  positions, priorities = positions_and_priorities
  return Picks(np.asarray(positions), np.asarray(priorities, np.float64))


@register('margin', reads=('margin/{aggregation}',))
def margin_priority(stats, ctx: SelectionContext) -> jax.Array:
  """p_i = agg over pixels of 1 - |2p - 1| (smallest margin |p - 0.5| first);
  agg = config.priority.aggregation in mean | topq | region."""
  return _aggregate(stats, ctx, 'margin')


@register('least_confidence', reads=('least_confidence/{aggregation}',))
def least_confidence_priority(stats, ctx: SelectionContext) -> jax.Array:
  """p_i = agg over pixels of 1 - max(p, 1 - p)."""
  return _aggregate(stats, ctx, 'least_confidence')


@register('bald', reads=('bald/{aggregation}',))
def bald_priority(stats, ctx: SelectionContext) -> jax.Array:
  """BALD with MC dropout (Gal et al. 2017): p_i = agg over pixels of
  H[mean_t p_t] - mean_t H[p_t], T = config.priority.mc_passes."""
  return _aggregate(stats, ctx, 'bald')


@register('mc_variance', reads=('mc_variance/{aggregation}',))
def mc_variance_priority(stats, ctx: SelectionContext) -> jax.Array:
  """p_i = agg over pixels of var_t p_t over MC-dropout passes."""
  return _aggregate(stats, ctx, 'mc_variance')


@register('learning_loss', reads=('pred_loss',))
def learning_loss_priority(stats, ctx: SelectionContext) -> jax.Array:
  """Learning Loss (Yoo & Kweon 2019): p_i = l_hat_i, the loss head's
  predicted segmentation loss (trained with the pairwise ranking loss)."""
  del ctx
  return jnp.asarray(stats.pred_loss, jnp.float32)


@register('iou_density', reads=('pred_iou', 'embedding'))
def iou_density_priority(stats, ctx: SelectionContext) -> jax.Array:
  """Information density (Settles & Craven 2008) on the IoU formula:

      p_i = (1 - IoU_hat_i) · (max(0, mean_j cos(e_i, e_j)))^β,

  the mean over the whole pool; computed as ê_i · mean_j ê_j (O(N D))."""
  e = jnp.asarray(stats.embedding, jnp.float32)
  e = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
  density = jnp.maximum(diversity.matmul(e, e.mean(axis=0)), 0.0)
  return (1.0 - jnp.asarray(stats.pred_iou, jnp.float32)) * density ** float(ctx.hparam('beta'))


@register_picker('coreset', reads=('embedding', REFERENCE))
def coreset_priority(stats, ctx: SelectionContext):
  """Core-set (Sener & Savarese 2018), k-center greedy: each pick is the pool
  tile farthest from its nearest centre; centres start as the labelled set
  (source reference tiles and labelled target tiles)."""
  ones = jnp.ones(len(stats.ids), jnp.float32)
  return _picks(diversity.greedy_weighted_distance(ones, stats.embedding, ctx.reference_embedding,
                                                   ctx.selectable, stats.ids, k=ctx.k, alpha=0.0, beta=1.0))


@register_picker('badge', reads=('badge',))
def badge_priority(stats, ctx: SelectionContext):
  """BADGE (Ash et al. 2020): k-means++ seeding on gradient embeddings g_i
  (BCE gradient at the pseudo-label w.r.t. the output layer, pooled per tile).
  The first pick is the largest ||g_i||; each next one is drawn with
  probability ∝ D(g_i)^2, the squared distance to the nearest pick."""
  return _picks(diversity.kmeans_pp(stats.badge, ctx.selectable, stats.ids, ctx.rng, k=ctx.k))


FOREGROUND_MIN = 0.01  # fg_random: a tile "contains buildings" from 1 % of its pixels


@register('fg_random', reads=('fg_fraction',))
def foreground_random_priority(stats, ctx: SelectionContext) -> jax.Array:
  """Foreground-aware random (the baseline nnActive, Lüth et al. 2025, found
  no AL method to beat reliably): random among the tiles the model predicts
  to contain buildings (predicted building fraction >= 1 %), then random
  among the rest: p_i = 1[f_i >= 0.01] + U(0, 1), U as ``random``."""
  return (jnp.asarray(stats.fg_fraction, jnp.float32) >= FOREGROUND_MIN).astype(jnp.float32) + \
      random_priority(stats, ctx)


@register_picker('stratified_random', reads=('stratum',))
def stratified_random_priority(stats, ctx: SelectionContext):
  """Stratified random where strata are known (a chip's scene; on the
  synthetic benchmark the generator's sub-population, an oracle stratum):
  each stratum gets k · (its unlabelled tiles / all unlabelled tiles) picks
  by largest remainder (ties by stratum number), random within it (the
  per-tile uniforms of ``random``)."""
  strata = np.asarray(stats.stratum, np.int64)
  u = np.asarray(random_priority(stats, ctx), np.float64)
  names, counts = np.unique(strata[ctx.selectable], return_counts=True)
  quota = ctx.k * counts / counts.sum()
  take = np.floor(quota).astype(int)
  extra = np.lexsort((names, -(quota - take)))[:ctx.k - take.sum()]
  take[extra] += 1
  positions = []
  for name, n in zip(names, take):
    members = np.flatnonzero(ctx.selectable & (strata == name))
    positions.extend(members[np.lexsort((stats.ids[members], -u[members]))[:n]].tolist())
  positions = np.asarray(positions, np.int64)
  # Pick order: by the uniform draw, so the order does not follow the strata.
  positions = positions[np.lexsort((stats.ids[positions], -u[positions]))]
  return Picks(positions, u[positions])


@register_picker('typiclust', reads=('embedding',))
def typiclust_priority(stats, ctx: SelectionContext):
  """TypiClust (Hacohen et al., ICML 2022), for low budgets: cluster the pool
  embeddings into |L| + k clusters, take the most typical unlabelled tile,
  typicality(x) = (mean distance to its K = 20 nearest neighbours)^-1, of
  each cluster with the fewest labels (largest first); see typicality.py."""
  return _picks(typicality.typiclust(stats.embedding, stats.ids, ctx.selectable, ctx.rng, ctx.k))


@register_picker('maxherding', reads=('embedding',))
def maxherding_priority(stats, ctx: SelectionContext):
  """MaxHerding (Bae et al., ECCV 2024): greedy max of the pool's kernel
  coverage C(L) = 1/N Σ_x max_{l in L} exp(-||x - l||² / 2σ²), L the
  labelled pool tiles and the picks; σ the median kNN distance of the pool
  (typicality.py). Priority: each pick's coverage gain."""
  sigma = typicality.kernel_width(stats.embedding, stats.ids)
  return _picks(typicality.maxherding(stats.embedding, ctx.selectable, stats.ids, sigma, k=ctx.k))
