"""Validation on in-memory samples with the evaluator's metrics, and the row-mean baseline."""

from __future__ import annotations

import numpy as np
import torch

from monodepth_ros.evaluation.metrics import average_metrics, compute_depth_metrics
from monodepth_ros.training.datasets import normalize_image

REPORTED = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'delta1', 'delta2', 'delta3')


def predict_depth(model, samples, device, batch_size: int = 8) -> list[np.ndarray]:
    """Network depth (HxW float32 metres) of each sample, in eval mode."""
    model.eval()
    predictions = []
    with torch.no_grad():
        for first in range(0, len(samples), batch_size):
            chunk = samples[first:first + batch_size]
            images = torch.stack([normalize_image(s['rgb']) for s in chunk]).to(device)
            depth = model(images)['depth'][:, 0].float().cpu().numpy()
            predictions.extend(depth)
    return predictions


def metrics_at_caps(samples, predictions, caps=(50.0, 80.0)) -> dict:
    """Per-image metrics averaged over images, for each cap; keys like 'abs_rel@80'."""
    result = {}
    for cap in caps:
        per_image = [compute_depth_metrics(s['depth'], p, max_depth=cap)
                     for s, p in zip(samples, predictions)]
        mean = average_metrics(per_image)
        for name in REPORTED:
            result[f'{name}@{cap:g}'] = mean[name]
    return result


def evaluate_samples(model, samples, device, caps=(50.0, 80.0)) -> dict:
    return metrics_at_caps(samples, predict_depth(model, samples, device), caps)


def row_mean_depth(train_samples, depth_max: float = 80.0) -> np.ndarray:
    """The trivial baseline: for each image row, the mean valid training depth of that row.

    Rows with no valid training pixel get the overall mean. Returns an (H,) array.
    """
    sums, counts = None, None
    for sample in train_samples:
        depth = sample['depth']
        valid = np.isfinite(depth) & (depth > 0) & (depth <= depth_max)
        row_sum = np.where(valid, depth, 0.0).sum(axis=1)
        row_count = valid.sum(axis=1)
        sums = row_sum if sums is None else sums + row_sum
        counts = row_count if counts is None else counts + row_count
    overall = sums.sum() / max(counts.sum(), 1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), overall).astype(np.float32)


def row_mean_predictions(row_means: np.ndarray, samples) -> list[np.ndarray]:
    return [np.repeat(row_means[:, None], s['depth'].shape[1], axis=1) for s in samples]
