"""Export a checkpoint to ONNX (opset 17, static image size) with the model metadata inside.

The ONNX file has one input ``image`` (Nx3xHxW float32, normalised RGB; the batch size N is
free, HxW fixed) and three outputs ``depth`` (metres), ``semantic_logits`` and
``confidence``; the argmax over the logits runs outside the graph. The export checks itself:
onnx.checker, then ONNX Runtime against PyTorch on a real KITTI frame (or a synthetic image
when the excerpt is not there).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monodepth_ros.errors import ConfigError, EngineError, ModelFileError
from monodepth_ros.io.outputs import atomic_output
from monodepth_ros.model.files import check_model_path, file_sha256
from monodepth_ros.model.metadata import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, ModelMetadata
from monodepth_ros.model.preprocess import preprocess

LOGGER = logging.getLogger(__name__)

OPSET = 17
# Self-check tolerances (ONNX Runtime vs PyTorch, both fp32 on CPU): depth within
# DEPTH_REL_TOL * depth + DEPTH_ABS_TOL metres, confidence within CONFIDENCE_TOL, and at least
# LABEL_AGREEMENT of the pixels with the same argmax label (near-ties may flip).
DEPTH_REL_TOL = 1e-3
DEPTH_ABS_TOL = 1e-4
CONFIDENCE_TOL = 1e-3
LABEL_AGREEMENT = 0.999
SHARED_DATA_ENV = 'MONODEPTH_SHARED_DATA'


@dataclass
class ParityReport:
    """ONNX Runtime vs PyTorch on one image."""

    image_source: str
    depth_max_abs_diff: float
    depth_max_rel_diff: float
    confidence_max_abs_diff: float
    label_agreement: float

    def passed(self) -> bool:
        return (self.depth_max_rel_diff <= DEPTH_REL_TOL + 1e-12
                and self.confidence_max_abs_diff <= CONFIDENCE_TOL
                and self.label_agreement >= LABEL_AGREEMENT)

    def summary(self) -> str:
        offset = DEPTH_ABS_TOL / DEPTH_REL_TOL
        return (f'ONNX Runtime vs PyTorch on {self.image_source}: depth max |diff| '
                f'{self.depth_max_abs_diff:.3g} m, max |diff|/(depth + {offset:g} m) '
                f'{self.depth_max_rel_diff:.3g} (tolerance {DEPTH_REL_TOL:g}); confidence '
                f'max |diff| {self.confidence_max_abs_diff:.3g} (tolerance {CONFIDENCE_TOL:g}); '
                f'labels agree on {100 * self.label_agreement:.3f}% of pixels '
                f'(required {100 * LABEL_AGREEMENT:g}%)')


@dataclass
class ExportResult:
    path: Path
    metadata: ModelMetadata
    parity: ParityReport | None


def decompose_channel_log_softmax(model) -> int:
    """Rewrite LogSoftmax over a non-last axis as max-shifted Exp/ReduceSum/Log, in place.

    ONNX Runtime's CPU LogSoftmax transposes when the axis is not the last one (here: the
    80 depth bins on axis 1 at full resolution), which made it most of the CPU inference time;
    the decomposition is the same stable formula, x - max - log(sum(exp(x - max))), in ops
    that run along the channel axis directly. Returns the number of nodes rewritten.
    """
    from onnx import helper, numpy_helper

    nodes, rewritten = [], 0
    for index, node in enumerate(model.graph.node):
        axis = next((a.i for a in node.attribute if a.name == 'axis'), -1)
        if node.op_type != 'LogSoftmax' or axis == -1:
            nodes.append(node)
            continue
        source, target = node.input[0], node.output[0]
        prefix = f'{node.name or "log_softmax"}_{index}'
        model.graph.initializer.append(
            numpy_helper.from_array(np.array([axis], dtype=np.int64), f'{prefix}_axes'))
        nodes += [
            helper.make_node('ReduceMax', [source], [f'{prefix}_max'], axes=[axis], keepdims=1,
                             name=f'{prefix}_max'),
            helper.make_node('Sub', [source, f'{prefix}_max'], [f'{prefix}_shifted'],
                             name=f'{prefix}_shift'),
            helper.make_node('Exp', [f'{prefix}_shifted'], [f'{prefix}_exp'],
                             name=f'{prefix}_exp'),
            helper.make_node('ReduceSum', [f'{prefix}_exp', f'{prefix}_axes'],
                             [f'{prefix}_sum'], keepdims=1, name=f'{prefix}_sum'),
            helper.make_node('Log', [f'{prefix}_sum'], [f'{prefix}_log_sum'],
                             name=f'{prefix}_log_sum'),
            helper.make_node('Sub', [f'{prefix}_shifted', f'{prefix}_log_sum'], [target],
                             name=f'{prefix}_out')]
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten


def network_stride(model) -> int:
    return int(getattr(model, 'stride', 32))


def check_input_size(height: int, width: int, stride: int) -> None:
    if height <= 0 or width <= 0 or height % stride or width % stride:
        raise ConfigError(
            f'export size {width}x{height} (WxH) must be positive multiples of the network '
            f'stride {stride}; e.g. {max(stride, round(width / stride) * stride)}x'
            f'{max(stride, round(height / stride) * stride)}')


def default_check_image_path() -> Path | None:
    """The first KITTI frame of the shared excerpt, if present."""
    roots = []
    if os.environ.get(SHARED_DATA_ENV):
        roots.append(Path(os.environ[SHARED_DATA_ENV]))
    roots.append(Path(__file__).resolve().parents[3] / 'shared' / 'data')
    for root in roots:
        matches = sorted((root / 'kitti_raw').glob('*/*_sync/image_02/data/0000000000.png'))
        if matches:
            return matches[0]
    return None


def load_check_image(height: int, width: int, path: str | os.PathLike | None = None
                     ) -> tuple[np.ndarray, str]:
    """HxWx3 uint8 RGB at the network size: a real frame when one is found, else synthetic."""
    import cv2

    path = Path(path) if path else default_check_image_path()
    if path is not None:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ModelFileError(f'check image {path} cannot be read (expected a PNG/JPEG)')
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA), str(path)
    # Smooth gradients plus texture: exercises every output without any data on disk.
    rng = np.random.default_rng(0)
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    cols = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    base = np.concatenate([rows + 0 * cols, cols + 0 * rows, (rows + cols) / 2], axis=2)
    noisy = base * 200 + rng.uniform(0, 55, size=(height, width, 3))
    return noisy.astype(np.uint8), 'a synthetic gradient image'


def compare_outputs(reference: dict, candidate: dict, source: str) -> ParityReport:
    """Compare two dicts of numpy outputs (names OUTPUT_NAMES, batch of one)."""
    depth_ref = reference['depth'].astype(np.float64)
    depth_diff = np.abs(candidate['depth'].astype(np.float64) - depth_ref)
    rel = depth_diff / (np.abs(depth_ref) + DEPTH_ABS_TOL / DEPTH_REL_TOL)
    conf_diff = np.abs(candidate['confidence'].astype(np.float64)
                       - reference['confidence'].astype(np.float64))
    labels_ref = reference['semantic_logits'][0].argmax(axis=0)
    labels = candidate['semantic_logits'][0].argmax(axis=0)
    return ParityReport(image_source=source, depth_max_abs_diff=float(depth_diff.max()),
                        depth_max_rel_diff=float(rel.max()),
                        confidence_max_abs_diff=float(conf_diff.max()),
                        label_agreement=float(np.mean(labels == labels_ref)))


def export_model(model, metadata: ModelMetadata, out, height: int | None = None,
                 width: int | None = None, verify: bool = True, check_image=None
                 ) -> ExportResult:
    """Export an in-memory network (dict outputs) with its metadata to ``out``."""
    import onnx
    import torch

    height = int(height or metadata.input_height)
    width = int(width or metadata.input_width)
    check_input_size(height, width, network_stride(model))
    out = Path(out)
    metadata = dataclasses.replace(metadata, input_height=height, input_width=width)

    from monodepth_ros.model.network import InferenceWrapper

    # The graph outputs are exactly OUTPUT_NAMES, in that order.
    wrapped = InferenceWrapper(model.cpu().eval()).eval()
    dummy = torch.zeros(1, 3, height, width, dtype=torch.float32)
    # Written beside ``out`` and renamed only when checked: a failure leaves nothing there.
    with atomic_output(out, 'file', 'export') as temp_path:
        with warnings.catch_warnings():
            # The TorchScript exporter (dynamo=False) warns that it is deprecated.
            warnings.simplefilter('ignore', category=DeprecationWarning)
            warnings.simplefilter('ignore', category=FutureWarning)
            # Input sizes become constants on purpose: the export is static HxW.
            warnings.simplefilter('ignore', category=torch.jit.TracerWarning)
            # The batch size stays free: the far pass runs with the first as a batch of two.
            batch_axis = {name: {0: 'batch'} for name in (INPUT_NAME, *OUTPUT_NAMES)}
            with torch.no_grad():
                torch.onnx.export(wrapped, (dummy,), str(temp_path), opset_version=OPSET,
                                  dynamo=False, input_names=[INPUT_NAME],
                                  output_names=list(OUTPUT_NAMES), do_constant_folding=True,
                                  dynamic_axes=batch_axis)
                output_shapes = [tuple(output.shape) for output in wrapped(dummy)]
        graph = onnx.load(str(temp_path))
        # The exporter names every output dim after the free batch (the resizes take their
        # sizes from the input's shape): the fixed ones are written back, as readers expect.
        for value, shape in zip(graph.graph.output, output_shapes):
            for dim, size in zip(value.type.tensor_type.shape.dim[1:], shape[1:]):
                dim.dim_value = size
        decompose_channel_log_softmax(graph)
        entry = graph.metadata_props.add()
        entry.key = METADATA_KEY
        entry.value = metadata.to_json()
        graph.producer_name = 'monodepth_ros'
        graph.doc_string = metadata.description or 'monodepth_ros depth + semantics network'
        try:
            onnx.checker.check_model(graph, full_check=True)
        except onnx.checker.ValidationError as error:
            raise EngineError(f'exported ONNX fails onnx.checker: {error}') from error
        onnx.save(graph, str(temp_path))
        parity = None
        if verify:   # before the file takes its name: a failed check leaves nothing behind
            parity = check_parity(wrapped, temp_path, metadata, check_image)
            LOGGER.debug('%s', parity.summary())
            if not parity.passed():
                raise EngineError(f'export self-check failed for {out}: {parity.summary()}')
    return ExportResult(path=out, metadata=metadata, parity=parity)


def check_parity(wrapped_model, onnx_path, metadata: ModelMetadata, check_image=None
                 ) -> ParityReport:
    """Run PyTorch and ONNX Runtime (CPU, fp32) on the same real image and compare."""
    import onnxruntime
    import torch

    rgb, source = load_check_image(metadata.input_height, metadata.input_width, check_image)
    batch = preprocess(rgb, metadata)
    with torch.no_grad():
        reference = {name: value.numpy() for name, value in
                     zip(OUTPUT_NAMES, wrapped_model(torch.from_numpy(batch)))}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = onnxruntime.InferenceSession(str(onnx_path), sess_options=options,
                                           providers=['CPUExecutionProvider'])
    candidate = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})))
    return compare_outputs(reference, candidate, source)


def export_onnx(checkpoint, out, height: int | None = None, width: int | None = None,
                verify: bool = True, check_image=None) -> ExportResult:
    """Export a ``.pt`` checkpoint (``save_checkpoint``) to ``out`` with metadata inside.

    ``height``/``width`` default to the checkpoint's training input size and must be multiples
    of the network stride. With ``verify`` the ONNX Runtime output is compared to PyTorch.
    """
    from monodepth_ros.model.checkpoint import load_model

    path = check_model_path(checkpoint)
    if path.suffix.lower() == '.onnx':
        raise ModelFileError(f'{path} is already an ONNX file; export expects a .pt checkpoint')
    model, metadata = load_model(str(path), device='cpu')
    metadata = dataclasses.replace(metadata, source_checkpoint_sha256=file_sha256(path))
    return export_model(model, metadata, out, height, width, verify, check_image)


def add_arguments(parser) -> None:
    from monodepth_ros.options import bounded_int

    parser.add_argument('checkpoint', help='a .pt checkpoint written by "monodepth train"')
    parser.add_argument('--out', '-o', default=None,
                        help='ONNX file to write (default: the checkpoint name with .onnx)')
    parser.add_argument('--height', type=bounded_int(1, 8192), default=None,
                        help='network input height, 1..8192, a multiple of the network stride '
                        '(default: the training size)')
    parser.add_argument('--width', type=bounded_int(1, 8192), default=None,
                        help='network input width, 1..8192, a multiple of the network stride '
                        '(default: the training size)')
    parser.add_argument('--check-image', default=None,
                        help='image for the ONNX Runtime vs PyTorch check (default: the first '
                        'KITTI frame of the shared data, else a synthetic image)')
    parser.add_argument('--no-verify', action='store_true',
                        help='skip the ONNX Runtime vs PyTorch comparison')


def run(args) -> int:
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix('.onnx')
    result = export_onnx(args.checkpoint, out, args.height, args.width,
                         verify=not args.no_verify, check_image=args.check_image)
    meta = result.metadata
    print(f'wrote {result.path} (input {meta.input_width}x{meta.input_height}, opset {OPSET}, '
          f'outputs {", ".join(OUTPUT_NAMES)})')
    if result.parity is not None:
        print(result.parity.summary())
    return 0
