"""Flax models: the segmentation U-Net and the IoU predictor head."""
