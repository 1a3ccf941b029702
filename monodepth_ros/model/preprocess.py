"""Image -> network input tensor: the one normalisation used by export, engines and training.

Our models are the special case of a model card (:mod:`monodepth_ros.model.cards`): RGB,
``(x / 255 - mean) / std``, float32 NCHW at the metadata's size.
"""

from __future__ import annotations

import numpy as np

from monodepth_ros.errors import EngineError
from monodepth_ros.model.metadata import ModelMetadata


def normalize(rgb: np.ndarray, mean, std, scale: float = 1.0 / 255.0, layout: str = 'NCHW',
              bgr: bool = False, dtype=np.float32) -> np.ndarray:
    """HxWx3 uint8 RGB -> (1,3,H,W) (or (1,H,W,3) for NHWC), ``(x * scale - mean) / std``.

    ``mean``/``std`` are per channel of the network input (BGR order when ``bgr``).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise EngineError(f'preprocess: image has shape {rgb.shape}, expected HxWx3 RGB')
    if rgb.dtype != np.uint8:
        raise EngineError(f'preprocess: image dtype is {rgb.dtype}, expected uint8')
    # x * (scale / std) - mean / std in float32, one channel plane at a time straight into
    # the output (several times faster than transposing then converting the whole image).
    std = np.asarray(std, dtype=np.float64)
    factor = (float(scale) / std).astype(np.float32)
    offset = (np.asarray(mean, dtype=np.float64) / std).astype(np.float32)
    height, width = rgb.shape[:2]
    nchw = layout == 'NCHW'
    batch = np.empty((1, 3, height, width) if nchw else (1, height, width, 3), dtype=np.float32)
    for channel in range(3):
        plane = batch[0, channel] if nchw else batch[0, :, :, channel]
        np.multiply(rgb[:, :, 2 - channel if bgr else channel], factor[channel], out=plane,
                    dtype=np.float32)
        plane -= offset[channel]
    return batch if dtype == np.float32 else batch.astype(dtype)


def preprocess(rgb: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """HxWx3 uint8 RGB at the network size -> (1,3,H,W) float32, ``(x / 255 - mean) / std``."""
    rgb = np.asarray(rgb)
    expected = (metadata.input_height, metadata.input_width, 3)
    if rgb.shape != expected:
        raise EngineError(
            f'preprocess: image has shape {rgb.shape}, expected {expected} (HxWx3 RGB at the '
            'network size; resize it first)')
    return normalize(rgb, metadata.mean, metadata.std)


def preprocess_for_card(rgb: np.ndarray, card) -> np.ndarray:
    """HxWx3 uint8 RGB at the network size -> the input tensor a ModelCard describes."""
    return normalize(rgb, card.mean, card.std, card.pixel_scale, card.layout,
                     card.channel_order == 'BGR',
                     np.float16 if card.input_dtype == 'float16' else np.float32)
