"""Pixel uncertainty maps and their per-tile aggregations (pure jnp).

Per pixel, with p the predicted building probability:

* entropy            H(p) = -p log p - (1-p) log(1-p)
* margin             1 - |2p - 1|           (high where p is near 0.5)
* least_confidence   1 - max(p, 1 - p)

and from T MC-dropout passes p_1..p_T (Gal et al. 2017):

* bald               H(mean_t p_t) - mean_t H(p_t)   (mutual information)
* mc_variance        var_t p_t

Per tile, each map is aggregated three ways: ``mean`` over pixels, ``topq``
(mean of the top q fraction of pixels) and ``region`` (mean over r x r
regions, r dividing the tile side, then the max region, as in baal's
segmentation example), giving
stats keys like ``'entropy/topq'``.
"""

from __future__ import annotations

import math

import einops
import jax
import jax.numpy as jnp

AGGREGATIONS = ('mean', 'topq', 'region')
MAPS = ('entropy', 'margin', 'least_confidence')
MC_MAPS = ('bald', 'mc_variance')
_EPS = 1e-6


def pixel_entropy(probs: jnp.ndarray) -> jnp.ndarray:
  """Binary entropy in nats, H = -p log p - (1-p) log(1-p)."""
  p = jnp.clip(probs, _EPS, 1 - _EPS)
  return -(p * jnp.log(p) + (1 - p) * jnp.log1p(-p))


def pixel_maps(probs: jnp.ndarray, names=MAPS) -> dict[str, jnp.ndarray]:
  """The single-pass maps ``names`` (a subset of ``MAPS``) of one tile."""
  maps = {
      'entropy': lambda: pixel_entropy(probs),
      'margin': lambda: 1.0 - jnp.abs(2.0 * probs - 1.0),
      'least_confidence': lambda: 1.0 - jnp.maximum(probs, 1.0 - probs),
  }
  return {name: maps[name]() for name in names}


def mc_maps(probs_t: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """``probs_t``: [T, H, W] probabilities from T stochastic passes."""
  mean = probs_t.mean(axis=0)
  return {
      'bald': pixel_entropy(mean) - pixel_entropy(probs_t).mean(axis=0),
      'mc_variance': probs_t.var(axis=0),
  }


def aggregate(value_map: jnp.ndarray, kind: str, top_q: float, region: int) -> jnp.ndarray:
  if kind == 'mean':
    return value_map.mean()
  if kind == 'topq':
    k = max(1, math.ceil(top_q * value_map.size))
    return jax.lax.top_k(value_map.reshape(-1), k)[0].mean()
  if kind == 'region':
    h, w = value_map.shape
    if h % region or w % region:
      # config_checks refuses such a config; a direct caller gets the reason.
      raise ValueError(f'region={region} px does not divide the {h} x {w} px tile')
    return einops.reduce(value_map, '(h r1) (w r2) -> h w', 'mean', r1=region, r2=region).max()
  raise ValueError(f'unknown aggregation {kind!r}; expected one of {AGGREGATIONS}')

