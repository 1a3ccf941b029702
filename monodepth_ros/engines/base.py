"""The one inference interface every backend implements, and the helpers they share.

Numpy only at module level: torch, onnx and onnxruntime are imported where they are needed so
that importing this module (the node does) stays fast.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monodepth_ros.errors import EngineError, ModelFileError
from monodepth_ros.model.metadata import METADATA_KEY, ModelMetadata

LOGGER = logging.getLogger(__name__)

PRECISIONS = ('fp16', 'fp32', 'int8')
CHECKPOINT_SUFFIXES = ('.pt', '.pth', '.ckpt')
ONNX_SUFFIX = '.onnx'


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


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def check_model_path(path: str | os.PathLike) -> Path:
    """Return the path of an existing, non-empty .pt/.onnx model file or raise ModelFileError."""
    path = Path(path)
    kinds = f'a PyTorch checkpoint ({"/".join(CHECKPOINT_SUFFIXES)}) or an ONNX file (.onnx)'
    if not path.exists():
        raise ModelFileError(f'model file not found: {path} (expected {kinds})')
    if not path.is_file():
        raise ModelFileError(f'model path is not a file: {path} (expected {kinds})')
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES + (ONNX_SUFFIX,):
        raise ModelFileError(f'model file {path} has an unknown suffix {suffix!r} '
                             f'(expected {kinds})')
    if path.stat().st_size == 0:
        raise ModelFileError(f'model file {path} is empty (expected {kinds})')
    return path


def is_onnx(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ONNX_SUFFIX


def load_onnx_model(path: str | os.PathLike, check: bool = True):
    """Load and check an ONNX file; ModelFileError naming the file when it is unusable."""
    import onnx
    from google.protobuf.message import DecodeError

    path = check_model_path(path)
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, OSError, RuntimeError) as error:
        raise ModelFileError(
            f'ONNX file {path} cannot be parsed (truncated or corrupt?): {error}; expected an '
            'ONNX model written by "monodepth export"') from error
    if check:
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ''
            raise ModelFileError(
                f'ONNX file {path} fails onnx.checker: {first_line}') from error
    return model


def read_onnx_metadata(model, source: str) -> ModelMetadata:
    """The ``ModelMetadata`` stored in an ONNX model's metadata_props."""
    props = {prop.key: prop.value for prop in model.metadata_props}
    if METADATA_KEY not in props:
        raise ModelFileError(
            f'ONNX file {source} carries no {METADATA_KEY!r} metadata (expected a file '
            'written by "monodepth export")')
    return ModelMetadata.from_json(props[METADATA_KEY], source=source)


def check_onnx_io(model, source: str) -> None:
    """The graph must have the input and outputs every backend expects, by name."""
    from monodepth_ros.model.metadata import INPUT_NAME, OUTPUT_NAMES

    inputs = [value.name for value in model.graph.input]
    outputs = [value.name for value in model.graph.output]
    if INPUT_NAME not in inputs or any(name not in outputs for name in OUTPUT_NAMES):
        raise ModelFileError(
            f'ONNX file {source} has inputs {inputs} and outputs {outputs}, expected input '
            f'{INPUT_NAME!r} and outputs {list(OUTPUT_NAMES)}')


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise EngineError(f'unknown precision {precision!r}, expected one of {PRECISIONS}')
    return precision
