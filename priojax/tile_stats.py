"""What one tile maps to for scoring: the catalogue of per-tile statistics.

A priority formula declares the statistics it reads (``reads=`` in
``priority.register``); scoring computes those and nothing else. The set is
static: it is fixed before tracing, so the compiled scoring function of the
``iou`` formula holds the U-Net and the IoU head only, with no MC-dropout
passes, no BADGE embedding and no pixel-score aggregations.

The statistics, for a tile with predicted building probabilities p:

* ``pred_iou``: the IoU head's estimate of IoU(thresholded prediction, truth);
* ``pred_loss``: the Learning-Loss head's predicted segmentation loss;
* ``entropy``: mean pixel entropy H(p) (nats), the same as ``entropy/mean``;
* ``fg_fraction``: fraction of pixels with p above the mask threshold;
* ``embedding``: mean-pooled bottleneck features (at most ``embed_dim``);
* ``badge``: BADGE gradient embedding (BCE at the pseudo-label, gradient
  w.r.t. the 1x1 output layer's weights and bias, pooled over pixels);
* ``<map>/<aggregation>``: a pixel map (entropy, margin, least_confidence;
  with MC dropout bald, mc_variance; see uncertainty.py) aggregated over the
  tile by mean, topq or region;
* ``stratum``: what the data says a tile belongs to, not the model (the
  scene of a chip, the sub-population of a synthetic tile), as an integer;
* ``label_iou``: for a labelled tile the U-Net trained on, its true IoU
  under the current model (-1 for every other tile);
* ``label_iou_at_pick``: for the same tiles, the true IoU of the model that
  picked it (the ledger's ``iou_at_pick``; -1 for every other tile);
* ``label_pred_iou_at_pick``: for the same tiles, the IoU head's prediction
  when it was picked (the ledger's ``pred_iou_at_pick``; -1 elsewhere);
* ``label_fg_fraction``: for the same tiles, the fraction of building
  pixels in their mask (-1 elsewhere);
* ``oracle_iou``, ``oracle_fg_fraction`` (benchmarks only): every pool
  tile's true IoU under the current model (what ``pred_iou`` estimates) and
  its mask's building fraction, from the pool's hidden masks. They exist
  for the oracle ceilings (priority/oracle_ceiling.py), which measure how
  far a perfect IoU head could take a formula; a pool whose labels come
  from annotators has no hidden masks, and a run that asks for them there
  stops with one error.

The last seven come from the pool's records, its hidden masks and the
ledger (experiment.py), not from the network alone, and are not computed
here.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import jax
import jax.numpy as jnp

from priojax import uncertainty
from priojax.errors import ConfigError
from priojax.models.head_features import pooled_embedding
from priojax.models.networks import Networks

SCALARS = ('pred_iou', 'pred_loss', 'entropy', 'fg_fraction', 'embedding', 'badge')
MAP_STATS = tuple(f'{m}/{a}' for m in uncertainty.MAPS for a in uncertainty.AGGREGATIONS)
MC_STATS = tuple(f'{m}/{a}' for m in uncertainty.MC_MAPS for a in uncertainty.AGGREGATIONS)
LABEL_STATS = ('label_iou', 'label_iou_at_pick', 'label_pred_iou_at_pick', 'label_fg_fraction')
ORACLE_STATS = ('oracle_iou', 'oracle_fg_fraction')
META = ('stratum',) + LABEL_STATS + ORACLE_STATS
ALL = SCALARS + MAP_STATS + MC_STATS + META
# What every round records about its picks (their predicted IoU), whatever
# the formula reads.
ALWAYS = ('pred_iou',)


def needs_mc(names: Iterable[str]) -> bool:
  return any(n in MC_STATS for n in names)


def check_names(names: Iterable[str], what: str) -> tuple[str, ...]:
  """The sorted, de-duplicated statistics; an unknown name is one clear error."""
  names = tuple(sorted(set(names)))
  unknown = [n for n in names if n not in ALL]
  if unknown:
    raise ConfigError(f'{what}: unknown statistic(s) {unknown}; scoring computes {", ".join(ALL)}')
  return names


@dataclasses.dataclass(frozen=True)
class StatsSpec:
  """What scoring computes per tile (static: one compiled function each)."""

  names: tuple[str, ...]
  mc_passes: int = 0  # MC-dropout passes, for the bald and mc_variance maps
  top_q: float = 0.1  # 'topq' aggregation: mean of the top 10 % of pixels
  region: int = 8  # 'region' aggregation: 8 x 8 px regions

  @classmethod
  def of(cls, names: Iterable[str], *, mc_passes: int = 0, top_q: float = 0.1,
         region: int = 8) -> 'StatsSpec':
    """Checked names; MC passes kept only when a statistic needs them."""
    names = check_names(names, 'scoring statistics')
    return cls(names, int(mc_passes) if needs_mc(names) else 0, float(top_q), int(region))


def badge_embedding(probs: jnp.ndarray, fine: jnp.ndarray, threshold: float) -> jnp.ndarray:
  """BADGE (Ash et al. 2020) for a per-pixel sigmoid output: the gradient of
  BCE at the pseudo-label (p > threshold) w.r.t. the 1x1 output layer's
  weights and bias, pooled over pixels: mean((p - y) * features), mean(p - y)."""
  residual = probs - (probs > threshold)
  return jnp.concatenate([jnp.mean(residual[..., None] * fine, axis=(0, 1)), residual.mean()[None]])


def tile_stats(networks: Networks, params: dict, image: jnp.ndarray, tile_id: jnp.ndarray,
               key: jax.Array, spec: StatsSpec) -> dict:
  """The statistics ``spec.names`` of one uint8 tile, and only those.

  ``key`` drives MC dropout; each tile folds in its id, so a tile's passes do
  not depend on the batch it was scored in.
  """
  wanted = set(spec.names)
  logits, aux = networks.unet_forward(params, image)
  out = {}
  if wanted & {'pred_iou', 'pred_loss'}:
    feats = networks.head_inputs(image, logits, aux)
    if 'pred_iou' in wanted:
      out['pred_iou'] = networks.head.apply({'params': params['head']}, feats)
    if 'pred_loss' in wanted:
      out['pred_loss'] = networks.predicted_loss(params, feats)
  probs = jax.nn.sigmoid(logits)
  if 'fg_fraction' in wanted:
    out['fg_fraction'] = jnp.mean((probs > networks.threshold).astype(jnp.float32))
  if 'embedding' in wanted:
    out['embedding'] = pooled_embedding(aux['bottleneck'], networks.embed_dim)
  if 'badge' in wanted:
    out['badge'] = badge_embedding(probs, aux['decoder'][-1].astype(jnp.float32), networks.threshold)
  map_names = {n.split('/')[0] for n in wanted if '/' in n} | ({'entropy'} if 'entropy' in wanted else set())
  maps = uncertainty.pixel_maps(probs, map_names & set(uncertainty.MAPS))
  if map_names & set(uncertainty.MC_MAPS):
    if spec.mc_passes < 1:
      raise ConfigError(f'statistics {sorted(n for n in wanted if n in MC_STATS)} need MC-dropout '
                        'passes; expected config.priority.mc_passes >= 1')
    # T stochastic passes, vmapped: one traced computation, not a loop.
    keys = jax.random.split(jax.random.fold_in(key, tile_id), spec.mc_passes)
    probs_t = jax.vmap(lambda k: jax.nn.sigmoid(networks.unet_forward(params, image, rng=k)[0]))(keys)
    maps.update(uncertainty.mc_maps(probs_t))
  if 'entropy' in wanted:
    out['entropy'] = jnp.mean(maps['entropy'])
  for name in wanted:
    if '/' in name:
      kind, agg = name.split('/')
      out[name] = uncertainty.aggregate(maps[kind], agg, spec.top_q, spec.region)
  return out


def for_formula(formula, hparams: dict) -> tuple[str, ...]:
  """What a run scores for ``formula``: what it reads, the picks' predicted
  IoU, and the embedding when it measures distances to a reference set."""
  names = set(ALWAYS) | set(formula.stat_names(hparams))
  if formula.needs_reference:
    names.add('embedding')
  return check_names(names, f'priority formula {formula.name!r} reads')
