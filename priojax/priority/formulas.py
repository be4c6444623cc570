"""The built-in priority formulas, one small pure function each.

The paper's (Janik & Sankaran, arXiv 2202.04766) exact equations are not
public to us; ``iou`` and ``iou_diversity`` are our reading of its abstract
("sample priority from estimated model and sample properties, like predicted
IoU score"; "two formulas"). ``random`` and ``entropy`` are the baselines.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from priojax.priority import diversity
from priojax.priority.registry import SelectionContext, register


@register('random', reads=())
def random_priority(stats, ctx: SelectionContext) -> jax.Array:
  """p_i = U(0, 1) drawn from fold_in(key, id_i): independent of pool order."""
  ids = jnp.asarray(stats.ids, jnp.uint32)
  return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(ctx.rng, i)))(ids)


@register('iou', reads=('pred_iou',))
def iou_priority(stats, ctx: SelectionContext) -> jax.Array:
  """Formula 1 (our reading): p_i = 1 - IoU_hat_i, label where the model
  expects to fail."""
  del ctx
  return 1.0 - jnp.asarray(stats.pred_iou, jnp.float32)


@register('entropy', reads=('entropy',))
def entropy_priority(stats, ctx: SelectionContext) -> jax.Array:
  """p_i = mean over pixels of H(p) = -p log p - (1-p) log(1-p)."""
  del ctx
  return jnp.asarray(stats.entropy, jnp.float32)


@register('iou_diversity', greedy=True, reads=('pred_iou', 'embedding'), needs_reference=True)
def iou_diversity_priority(stats, ctx: SelectionContext):
  """Formula 2 (our reading), greedy:

      p_i = (1 - IoU_hat_i)^α · (d_i / max_j d_j)^β,
      d_i = min over labelled tiles l of ||e_i - e_l||,

  source training tiles count as labelled, and d is updated after each
  pick. α = ctx.hparams['alpha'], β = ctx.hparams['beta'] (default 1, 1).
  """
  uncertainty = jnp.clip(1.0 - jnp.asarray(stats.pred_iou, jnp.float32), 0.0, 1.0)
  return diversity.greedy_weighted_distance(
      uncertainty, stats.embedding, ctx.reference_embedding, ctx.selectable, stats.ids,
      k=ctx.k, alpha=float(ctx.hparam('alpha', 1.0)), beta=float(ctx.hparam('beta', 1.0)))
