"""Validation on in-memory samples with the evaluator's metrics, and the row-prior baseline."""

from __future__ import annotations

import numpy as np
import torch

from monodepth_ros.evaluation.metrics import average_metrics, compute_depth_metrics
from monodepth_ros.evaluation.row_prior import RowPrior
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
    """The row prior of the training samples: (H,) mean valid depth of each image row.

    Rows with no valid training pixel get the overall mean (see evaluation.row_prior).
    """
    prior = RowPrior(max_depth=np.nextafter(depth_max, np.inf), min_depth=0.0)
    for sample in train_samples:
        prior.add(sample['depth'])
    return prior.row_means()


def row_mean_predictions(row_means: np.ndarray, samples) -> list[np.ndarray]:
    return [np.repeat(row_means[:, None], s['depth'].shape[1], axis=1) for s in samples]
