"""Model files: checks, hashes and ONNX loading shared by export, the engines and the tools.

Numpy-free and torch-free at module level; ``onnx`` is imported where a file is loaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from monodepth_ros.errors import ModelFileError
from monodepth_ros.model.metadata import METADATA_KEY, ModelMetadata

CHECKPOINT_SUFFIXES = ('.pt', '.pth', '.ckpt')
ONNX_SUFFIX = '.onnx'


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


def has_onnx_metadata(model) -> bool:
    """True for an ONNX model written by ``monodepth export`` (it carries our metadata)."""
    return any(prop.key == METADATA_KEY for prop in model.metadata_props)


def read_onnx_metadata(model, source: str) -> ModelMetadata:
    """The ``ModelMetadata`` stored in an ONNX model's metadata_props."""
    props = {prop.key: prop.value for prop in model.metadata_props}
    if METADATA_KEY not in props:
        raise ModelFileError(
            f'ONNX file {source} carries no {METADATA_KEY!r} metadata (expected a file '
            'written by "monodepth export")')
    return ModelMetadata.from_json(props[METADATA_KEY], source=source)


def check_onnx_io(model, source: str, metadata: ModelMetadata) -> None:
    """Check the graph's input and outputs by name, and its input size against the metadata.

    A size that disagrees would fail every frame after a model that seemed to load.
    """
    from monodepth_ros.model.metadata import INPUT_NAME, OUTPUT_NAMES

    inputs = [value.name for value in model.graph.input]
    outputs = [value.name for value in model.graph.output]
    if INPUT_NAME not in inputs or any(name not in outputs for name in OUTPUT_NAMES):
        raise ModelFileError(
            f'ONNX file {source} has inputs {inputs} and outputs {outputs}, expected input '
            f'{INPUT_NAME!r} and outputs {list(OUTPUT_NAMES)}')
    graph_input = next(value for value in model.graph.input if value.name == INPUT_NAME)
    # Fixed sizes only: a named (dynamic) axis takes whatever size the metadata gives.
    dims = [dim.dim_value if dim.HasField('dim_value') else None
            for dim in graph_input.type.tensor_type.shape.dim]
    expected = [None, 3, metadata.input_height, metadata.input_width]
    if len(dims) != 4 or any(size is not None and want is not None and size != want
                             for size, want in zip(dims, expected)):
        shown = 'x'.join('?' if size is None else str(size) for size in dims)
        raise ModelFileError(
            f'ONNX file {source} has a graph input {INPUT_NAME!r} of shape {shown}, but its '
            f'metadata says 3x{metadata.input_height}x{metadata.input_width} (CxHxW); '
            'expected a file written by "monodepth export", unmodified')


def default_model_path() -> Path:
    """The packaged default model (monodepth_ros/models/default.pt)."""
    return Path(__file__).resolve().parents[1] / 'models' / 'default.pt'
