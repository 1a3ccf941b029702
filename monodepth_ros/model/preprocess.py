"""Image -> network input tensor: the one normalisation used by export, engines and training."""

from __future__ import annotations

import numpy as np

from monodepth_ros.errors import EngineError
from monodepth_ros.model.metadata import ModelMetadata


def preprocess(rgb: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """HxWx3 uint8 RGB at the network size -> (1,3,H,W) float32, ``(x / 255 - mean) / std``."""
    rgb = np.asarray(rgb)
    expected = (metadata.input_height, metadata.input_width, 3)
    if rgb.shape != expected:
        raise EngineError(
            f'preprocess: image has shape {rgb.shape}, expected {expected} (HxWx3 RGB at the '
            'network size; resize it first)')
    if rgb.dtype != np.uint8:
        raise EngineError(f'preprocess: image dtype is {rgb.dtype}, expected uint8')
    # x * (1 / (255 std)) - mean / std in float32, one channel plane at a time straight into
    # the NCHW output (several times faster than transposing then converting the whole image).
    std = np.asarray(metadata.std, dtype=np.float64)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    offset = (np.asarray(metadata.mean, dtype=np.float64) / std).astype(np.float32)
    batch = np.empty((1, 3) + rgb.shape[:2], dtype=np.float32)
    for channel in range(3):
        np.multiply(rgb[:, :, channel], scale[channel], out=batch[0, channel],
                    dtype=np.float32)
        batch[0, channel] -= offset[channel]
    return batch
