"""Per-tile and per-split segmentation metrics, and the IoU head's quality.

Tile IoU (what the head predicts) is smoothed:

    IoU_s(P, T) = (|P ∩ T| + s) / (|P ∪ T| + s),   s = ``smoothing`` pixels.

So a tile with no buildings that is predicted empty has IoU 1 (nothing to
find, nothing wrongly found), and a few stray pixels on such a tile lower it
gradually (s stray pixels give 0.5) instead of dropping it straight to 0.
For tiles with buildings, s is small next to the union and IoU_s ≈ IoU.
The split-level IoU is the usual building-detection figure:
Σ|P ∩ T| / Σ|P ∪ T| over all tiles, with F1 = 2Σ|P ∩ T| / (Σ|P| + Σ|T|).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from priojax.models.networks import Networks
from priojax.train_losses import tile_segmentation_loss


def tile_counts(logits: jnp.ndarray, mask: jnp.ndarray, threshold: float) -> dict:
  """Pixel counts of one tile's thresholded prediction against its mask."""
  pred = logits > jnp.log(threshold / (1 - threshold))
  truth = mask > 0
  return {
      'intersection': jnp.sum(pred & truth).astype(jnp.float32),
      'union': jnp.sum(pred | truth).astype(jnp.float32),
      'pred_area': jnp.sum(pred).astype(jnp.float32),
      'true_area': jnp.sum(truth).astype(jnp.float32),
  }


def predict_mask(networks: Networks, params: dict, image: jnp.ndarray) -> jnp.ndarray:
  """One uint8 tile -> its predicted building mask (uint8 0/1)."""
  # The U-Net alone: the heads' inputs and outputs would be thrown away.
  probs = jax.nn.sigmoid(networks.unet_forward(params, image)[0])
  return (probs > networks.threshold).astype(jnp.uint8)


def tile_eval(networks: Networks, params: dict, image: jnp.ndarray, mask: jnp.ndarray,
              smoothing: float) -> dict:
  """One labelled tile: counts, true and predicted IoU, true loss (what the
  Learning-Loss head learns) and the heads' inputs."""
  logits, _, feats, pred_iou = networks.forward_tile(params, image)
  counts = tile_counts(logits, mask, networks.threshold)
  true_iou = smoothed_iou(counts['intersection'], counts['union'], smoothing)
  return {**counts, 'pred_iou': pred_iou, 'true_iou': true_iou, 'head_inputs': feats,
          'true_loss': tile_segmentation_loss(logits, mask)}


def smoothed_iou(intersection, union, smoothing: float):
  """Works on jax and numpy arrays; an empty union is IoU 1 even when s = 0."""
  denom = union + smoothing
  safe = denom + (denom == 0)
  return (intersection + smoothing + (denom == 0)) / safe


def average_ranks(x: np.ndarray) -> np.ndarray:
  """Ranks 1..n, ties given their average rank."""
  x = np.asarray(x, np.float64)
  order = np.argsort(x, kind='stable')
  sorted_x = x[order]
  starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
  ends = np.r_[starts[1:], len(x)]
  ranks = np.empty(len(x), np.float64)
  ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
  return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman rank correlation (Pearson on average ranks, as SciPy's
  spearmanr; NumPy, since importing SciPy's stats costs a launcher 0.7 s);
  NaN when either side is constant."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
    return float('nan')
  ra, rb = average_ranks(a), average_ranks(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def summarise(counts: dict[str, np.ndarray], pred_iou: np.ndarray, smoothing: float,
              groups: np.ndarray | None = None, group_names=None) -> dict[str, float]:
  """Split-level metrics from per-tile counts and the head's predictions."""
  inter, union = counts['intersection'].sum(), counts['union'].sum()
  denom = counts['pred_area'].sum() + counts['true_area'].sum()
  true_iou = np.asarray(smoothed_iou(counts['intersection'], counts['union'], smoothing))
  out = {
      'iou': float(inter / union) if union > 0 else 1.0,
      'f1': float(2 * inter / denom) if denom > 0 else 1.0,
      'mean_tile_iou': float(true_iou.mean()),
      'head_spearman': spearman(pred_iou, true_iou),
      'head_mae': float(np.abs(pred_iou - true_iou).mean()),
  }
  if groups is not None:
    # Mean tile IoU per group: a split-level IoU is meaningless for a group of
    # empty tiles (any stray pixel makes it 0).
    for g in np.unique(groups):
      sel = groups == g
      name = group_names[g] if group_names is not None else str(g)
      out[f'tile_iou/{name}'] = float(true_iou[sel].mean())
      out[f'head_mae/{name}'] = float(np.abs(pred_iou[sel] - true_iou[sel]).mean())
  return out
