"""The tile IoU definition (empty tiles included) and split-level summaries."""

import jax.numpy as jnp
import numpy as np

from priojax import tile_metrics


def _iou(logits, mask, s=4.0):
  c = tile_metrics.tile_counts(jnp.asarray(logits), jnp.asarray(mask), 0.5)
  return float(tile_metrics.smoothed_iou(c['intersection'], c['union'], s))


def test_empty_tile_predicted_empty_has_iou_one():
  assert _iou(-np.ones((8, 8)), np.zeros((8, 8))) == 1.0


def test_stray_pixels_on_empty_tile_lower_iou_gradually():
  logits = -np.ones((8, 8))
  logits[0, :4] = 1.0  # 4 false-positive pixels, smoothing 4 -> 0.5
  assert abs(_iou(logits, np.zeros((8, 8))) - 0.5) < 1e-6


def test_perfect_and_disjoint_predictions():
  mask = np.zeros((8, 8))
  mask[:4] = 1
  assert _iou(np.where(mask > 0, 1.0, -1.0), mask, s=0.0) == 1.0
  assert _iou(np.where(mask > 0, -1.0, 1.0), mask, s=0.0) == 0.0


def test_summarise_split_metrics():
  counts = {'intersection': np.array([2.0, 0.0]), 'union': np.array([4.0, 0.0]),
            'pred_area': np.array([3.0, 0.0]), 'true_area': np.array([3.0, 0.0])}
  out = tile_metrics.summarise(counts, np.array([0.5, 1.0]), 0.0, np.array([0, 1]), ['a', 'b'])
  assert out['iou'] == 0.5
  assert abs(out['f1'] - 2 * 2 / 6) < 1e-9
  assert out['tile_iou/a'] == 0.5 and out['tile_iou/b'] == 1.0
  assert out['head_mae/a'] == 0.0 and out['head_mae/b'] == 0.0
  assert abs(out['head_spearman'] - 1.0) < 1e-9  # empty tile: IoU 1 even with s = 0
  assert out['mean_tile_iou'] == 0.75


def test_spearman_is_nan_for_constant_input():
  assert np.isnan(tile_metrics.spearman(np.ones(5), np.arange(5)))
  assert abs(tile_metrics.spearman(np.arange(5), np.arange(5) ** 2) - 1.0) < 1e-9
