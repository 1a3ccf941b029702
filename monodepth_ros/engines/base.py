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
DEFAULT_THREADS = 2    # ONNX Runtime intra-op threads unless told otherwise
# What EngineOutput.depth holds (see there); model.cards maps each card kind to one of these.
DEPTH_KINDS = ('metric', 'affine_depth', 'affine_inverse_depth')


@dataclass
class EngineOutput:
    """One frame of network output at the network resolution.

    depth: HxW float32; ``depth_kind`` says what it holds: 'metric' (metres: every metric
    convention of a model card is converted already; a canonical-focal model's depth is still
    scaled by the pipeline, ModelMetadata.depth_scale), 'affine_depth' (metres = s * depth + t)
    or 'affine_inverse_depth' (1 / metres = s * depth + t), the raw values, NaN invalid.
    semantics: HxW uint8 Cityscapes trainIds (argmax of the logits); confidence: HxW float32
    in [0, 1]; sky: HxW bool. Each of these is None when the model has no such output.
    """

    depth: np.ndarray
    semantics: np.ndarray | None = None
    confidence: np.ndarray | None = None
    depth_kind: str = 'metric'
    sky: np.ndarray | None = None


class DepthEngine:
    """Base class of the backends: ``infer`` takes a (1,3,H,W) float32 batch from ``preprocess``.

    ``name`` is the backend ('torch', 'onnxruntime', 'tensorrt'), ``precision`` the precision
    it actually runs at, ``info`` a flat dict for diagnostics (backend, precision, providers,
    versions, device).
    """

    def __init__(self, name: str, precision: str, metadata: ModelMetadata,
                 info: dict | None = None, card=None):
        from monodepth_ros.model.cards import ModelCard

        self.name = name
        self.precision = precision
        self.metadata = metadata
        # How to feed and read the network (model.cards); ours follows from the metadata.
        self.card = card or ModelCard.from_metadata(metadata)
        self.info = {'backend': name, 'precision': precision, **(info or {})}

    def infer(self, batch: np.ndarray, intrinsics: np.ndarray | None = None) -> EngineOutput:
        """One batch; ``intrinsics`` (3x3 K of the network input) for cards that take it."""
        raise NotImplementedError

    def infer_pair(self, batch: np.ndarray, far_batch: np.ndarray
                   ) -> tuple[EngineOutput, np.ndarray]:
        """The first pass's output and the far pass's depth (runtime.far_pass).

        Two (1,3,H,W) batches of our network. Here one after the other; a backend that can
        run them as one batch of two does (a small input keeps a CPU's cores or a GPU's units
        busier at batch two than at batch one).
        """
        return self.infer(batch), self.infer(far_batch).depth

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
        card = self.card
        shape = tuple(batch.shape)
        if card.dynamic_size:
            # Any size the long-side policy can plan: 3 channels, sides multiples of K.
            nchw = card.layout == 'NCHW'
            fits = len(shape) == 4 and shape[0] == 1 and shape[1 if nchw else 3] == 3 and all(
                size > 0 and size % card.multiple == 0
                for size in (shape[2:] if nchw else shape[1:3]))
            expected = ('(1, 3, H, W)' if nchw else '(1, H, W, 3)') + (
                f' with H and W multiples of {card.multiple}')
        else:
            expected = card.batch_shape(card.width, card.height)
            fits = shape == expected
        if not fits:
            raise EngineError(
                f'{self.name} engine: input batch has shape {shape}, expected {expected} (use '
                'preprocess() on an image framed to the network size)')

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(name={self.name!r}, precision={self.precision!r}, '
                f'input={self.metadata.input_width}x{self.metadata.input_height})')


def _plane(array: np.ndarray, name: str, size: tuple[int, int]) -> np.ndarray:
    """One HxW float32 plane of a (1,1,H,W), (1,H,W,1), (1,H,W) or (H,W) output.

    Resized (bilinear) to the network ``size`` (width, height) when the model outputs another.
    """
    import cv2

    plane = np.asarray(array)
    while plane.ndim > 2 and plane.shape[0] == 1:
        plane = plane[0]
    if plane.ndim == 3 and plane.shape[-1] == 1:
        plane = plane[..., 0]
    if plane.ndim != 2:
        raise EngineError(f'output {name!r} has shape {np.shape(array)}, expected one plane '
                          '(HxW, 1xHxW or 1x1xHxW)')
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    if plane.shape[::-1] != tuple(size):
        plane = cv2.resize(plane, tuple(size), interpolation=cv2.INTER_LINEAR)
    return plane


def outputs_from_card(card, arrays: dict, size: tuple[int, int]) -> EngineOutput:
    """Network outputs by name -> EngineOutput at the network ``size`` (width, height).

    Converts every metric convention of the card to metres (inverse depth, the z of a point
    map); affine-invariant outputs stay raw with their ``depth_kind``. Non-finite values are
    NaN.
    """
    output = EngineOutput(depth=depth_from_card(card, arrays[card.output_name], size),
                          depth_kind=card.depth_kind)
    if card.semantics_output:
        logits = np.asarray(arrays[card.semantics_output])
        output.semantics = np.argmax(logits[0], axis=0).astype(np.uint8)
    if card.confidence_output:
        output.confidence = _plane(arrays[card.confidence_output], card.confidence_output, size)
    if card.sky_output:
        output.sky = _plane(arrays[card.sky_output], card.sky_output, size) > card.sky_threshold
    return output


def depth_from_card(card, raw, size: tuple[int, int]) -> np.ndarray:
    """The depth plane of one image's raw depth output (see ``outputs_from_card``)."""
    kind = card.output_kind
    if kind == 'point_map':
        points = np.asarray(raw)
        points = points[0] if points.ndim == 4 else points
        z = points[2] if points.shape[0] == 3 else points[..., 2]
        depth = _plane(z, card.output_name, size)
    else:
        depth = _plane(raw, card.output_name, size)
    if kind == 'metric_inverse_depth':
        with np.errstate(divide='ignore', invalid='ignore'):
            depth = np.where(depth > 0, np.float32(1.0) / depth, np.nan).astype(np.float32)
    depth[~np.isfinite(depth)] = np.nan
    return depth


def outputs_from_tensors(depth, logits, confidence) -> EngineOutput:
    """(1,1,H,W), (1,C,H,W), (1,1,H,W) torch outputs of our network -> ``EngineOutput``.

    The argmax runs where the logits are.
    """
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
