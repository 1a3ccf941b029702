"""The one inference interface every backend implements, and the helpers they share.

Numpy only at module level: torch, onnx and onnxruntime are imported where they are needed so
that importing this module (the node does) stays fast.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from monodepth_ros.errors import EngineError
from monodepth_ros.model.metadata import ModelMetadata

LOGGER = logging.getLogger(__name__)

PRECISIONS = ('fp16', 'fp32', 'int8')


@dataclass
class EngineOutput:
    """One frame of network output at the network resolution.

    depth: HxW float32 metres; semantics: HxW uint8 Cityscapes trainIds (argmax of the logits);
    confidence: HxW float32 in [0, 1].
    """

    depth: np.ndarray
    semantics: np.ndarray
    confidence: np.ndarray


class DepthEngine:
    """Base class of the backends: ``infer`` takes a (1,3,H,W) float32 batch from ``preprocess``.

    ``name`` is the backend ('torch', 'onnxruntime', 'tensorrt'), ``precision`` the precision
    it actually runs at, ``info`` a flat dict for diagnostics (backend, precision, providers,
    versions, device).
    """

    def __init__(self, name: str, precision: str, metadata: ModelMetadata,
                 info: dict | None = None):
        self.name = name
        self.precision = precision
        self.metadata = metadata
        self.info = {'backend': name, 'precision': precision, **(info or {})}

    def infer(self, batch: np.ndarray) -> EngineOutput:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return getattr(self, '_closed', False)

    def close(self) -> None:
        """Release the backend's resources (sessions, GPU buffers); later calls do nothing."""
        if self.closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        """What ``close`` frees; backends with resources override it."""

    def __enter__(self) -> DepthEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def check_batch(self, batch) -> None:
        """Reject a batch of the wrong shape (or a closed engine) with a clear message."""
        if self.closed:
            raise EngineError(f'{self.name} engine is closed; create a new one to infer')
        expected = (1, 3, self.metadata.input_height, self.metadata.input_width)
        if tuple(batch.shape) != expected:
            raise EngineError(
                f'{self.name} engine: input batch has shape {tuple(batch.shape)}, expected '
                f'{expected} (use preprocess() on an image resized to the network size)')

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(name={self.name!r}, precision={self.precision!r}, '
                f'input={self.metadata.input_width}x{self.metadata.input_height})')


def outputs_from_arrays(depth: np.ndarray, logits: np.ndarray,
                        confidence: np.ndarray) -> EngineOutput:
    """Turn (1,1,H,W), (1,C,H,W), (1,1,H,W) network outputs into an ``EngineOutput``."""
    return EngineOutput(
        depth=np.ascontiguousarray(depth[0, 0], dtype=np.float32),
        semantics=np.argmax(logits[0], axis=0).astype(np.uint8),
        confidence=np.ascontiguousarray(confidence[0, 0], dtype=np.float32))


def outputs_from_tensors(depth, logits, confidence) -> EngineOutput:
    """Same as ``outputs_from_arrays`` for torch tensors: argmax runs where the logits are."""
    labels = logits[0].argmax(dim=0).to(dtype=_torch().uint8)
    return EngineOutput(
        depth=depth[0, 0].float().cpu().numpy(),
        semantics=labels.cpu().numpy(),
        confidence=confidence[0, 0].float().cpu().numpy())


def _torch():
    import torch
    return torch


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise EngineError(f'unknown precision {precision!r}, expected one of {PRECISIONS}')
    return precision
