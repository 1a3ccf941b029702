"""TensorRT backend: builds (or reuses from the cache) an engine from ONNX and runs it.

Written against the name-based API that exists from TensorRT 8.5 (JetPack 5) through 10.x and
11.x: ``num_io_tensors``, ``get_tensor_name/mode/shape/dtype``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``, ``build_serialized_network``. Flags that come and
go between versions are looked up with ``hasattr``. Buffers are torch CUDA tensors on a
dedicated non-default ``torch.cuda.Stream`` (no pycuda), so callers may keep pre- and
post-processing on the GPU. INT8 only through explicit Q/DQ quantization (NVIDIA ModelOpt);
``engine_host_code_allowed`` is never set.
"""

from __future__ import annotations

import inspect
import logging
import re
import tempfile
from pathlib import Path

import numpy as np

from monodepth_ros.engines.base import (
    DepthEngine,
    EngineOutput,
    check_precision,
    outputs_from_card,
    outputs_from_tensors,
)
from monodepth_ros.engines.cache import EngineCache, EngineKey
from monodepth_ros.errors import EngineError, reraise_interruption
from monodepth_ros.model.cards import card_for
from monodepth_ros.model.files import load_onnx_model
from monodepth_ros.model.metadata import INPUT_NAME

LOGGER = logging.getLogger(__name__)

DEFAULT_WORKSPACE_GB = 4.0
# Part of every cache key: bump it when the build recipe (flags, ONNX preparation) changes so
# that engines built the old way are rebuilt. 2: fp32 without TF32, int8 with FP16 outside Q/DQ.
BUILD_RECIPE = 2


def tensorrt_status() -> tuple[bool, str]:
    """(usable, why): TensorRT importable and a CUDA GPU visible to torch."""
    try:
        import tensorrt as trt
    except ImportError as error:
        reraise_interruption(error)
        return False, f'the tensorrt Python package is not installed ({error})'
    try:
        import torch
    except ImportError as error:
        reraise_interruption(error)
        return False, f'torch is not installed; it holds the CUDA buffers ({error})'
    if not torch.cuda.is_available():
        return False, f'TensorRT {trt.__version__} is installed but torch sees no CUDA GPU'
    return True, f'TensorRT {trt.__version__} on {torch.cuda.get_device_name()}'


def cuda_device_index(device: str = 'auto') -> int:
    import torch

    if device in (None, 'auto', 'cuda'):
        return torch.cuda.current_device()
    if str(device).startswith('cuda:'):
        return int(str(device).split(':', 1)[1])
    raise EngineError(f'the tensorrt backend runs on a CUDA device, not {device!r}')


def make_engine_key(onnx_bytes: bytes, precision: str, input_shape, device_index: int,
                    extra: str = '') -> EngineKey:
    """The cache key of this ONNX on this GPU with the installed TensorRT."""
    import hashlib

    import tensorrt as trt
    import torch

    props = torch.cuda.get_device_properties(device_index)
    return EngineKey(onnx_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
                     tensorrt_version=str(trt.__version__), gpu_name=props.name,
                     compute_capability=f'{props.major}.{props.minor}',
                     sm_count=int(props.multi_processor_count),
                     precision=precision + (f'-{extra}' if extra else ''),
                     input_shape=tuple(int(v) for v in input_shape), build_recipe=BUILD_RECIPE)


def model_name_of(onnx_path) -> str:
    """Name the cache groups engines by: the ONNX stem less the hash ``ensure_onnx`` appends.

    ``tiny-0123456789abcdef.onnx`` -> ``tiny``, so the exports of retrained versions share it.
    """
    return re.sub(r'-[0-9a-f]{16}$', '', Path(onnx_path).stem)


def _torch_dtype(trt_dtype):
    """Torch dtype of a TensorRT tensor type (types added in later versions are guarded)."""
    import tensorrt as trt
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
             trt.DataType.INT32: torch.int32, trt.DataType.INT8: torch.int8,
             trt.DataType.BOOL: torch.bool}
    for name, dtype in (('INT64', torch.int64), ('BF16', torch.bfloat16),
                        ('UINT8', torch.uint8)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = dtype
    if trt_dtype not in table:
        raise EngineError(f'TensorRT tensor type {trt_dtype} has no torch equivalent here')
    return table[trt_dtype]


def _batch_of_one(onnx_path: Path, work_dir: Path) -> Path:
    """``onnx_path``, or a copy in ``work_dir`` whose image input has a batch size of 1.

    Our exports leave the batch size free (the far pass runs with the first pass as a batch of
    two on ONNX Runtime and PyTorch); TensorRT would need an optimisation profile for that,
    and this engine runs one image at a time, so it is built for exactly one.
    """
    import onnx

    # The graph alone: a model with its weights in external files is left as it is (a copy
    # elsewhere would lose them; TensorRT then needs a fixed batch in the file itself).
    model = onnx.load(str(onnx_path), load_external_data=False)
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL
           for tensor in model.graph.initializer):
        return onnx_path
    initializers = {tensor.name for tensor in model.graph.initializer}
    image = next(tensor for tensor in model.graph.input if tensor.name not in initializers)
    batch = image.type.tensor_type.shape.dim[0]
    if batch.HasField('dim_value') and batch.dim_value > 0:
        return onnx_path
    batch.dim_value = 1   # replaces the symbolic name
    static_path = work_dir / 'model_batch1.onnx'
    onnx.save(model, str(static_path))
    return static_path


def _prepare_onnx(onnx_path: Path, precision: str, work_dir: Path, calibration_data
                  ) -> tuple[Path, bool]:
    """The ONNX to build from and whether to build it as a strongly typed network.

    fp32: the file as exported. fp16: the FP16 builder flag where it exists (TensorRT <= 10),
    else (TensorRT 11, strongly typed only) a mixed-precision copy made by ModelOpt AutoCast.
    int8: explicit Q/DQ nodes inserted by ModelOpt, calibrated on ``calibration_data``; see
    ``_int8_typing`` for how the layers outside the Q/DQ pairs get FP16.
    """
    import tensorrt as trt

    if precision == 'fp32':
        return onnx_path, True
    if precision == 'fp16':
        if hasattr(trt.BuilderFlag, 'FP16'):
            return onnx_path, False
        try:
            from modelopt.onnx.autocast import convert_to_mixed_precision
        except ImportError as error:
            raise EngineError(
                f'TensorRT {trt.__version__} builds FP16 engines only from a mixed-precision '
                'ONNX; install NVIDIA ModelOpt (pip install nvidia-modelopt[onnx]) or use '
                '--precision fp32') from error
        import onnx

        converted = convert_to_mixed_precision(onnx_path=str(onnx_path),
                                               low_precision_type='fp16', keep_io_types=True)
        fp16_path = work_dir / 'model_fp16.onnx'
        onnx.save(converted, str(fp16_path))
        return fp16_path, True
    # int8: the implicit calibrators are deprecated (removed in 11); explicit Q/DQ only.
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as error:
        raise EngineError(
            'INT8 engines are built from an ONNX with explicit Q/DQ nodes made by NVIDIA '
            'ModelOpt, which is not installed (pip install nvidia-modelopt[onnx]); use '
            '--precision fp16 instead') from error
    if calibration_data is None or len(calibration_data) == 0:
        raise EngineError('INT8 needs calibration images (build-engine --calibration-images '
                          'DIR): a few hundred frames like the ones the robot will see')
    int8_path = work_dir / 'model_int8.onnx'
    options = {}
    if 'high_precision_dtype' in inspect.signature(quantize).parameters:
        # ModelOpt's documented option: the layers it does not quantize become FP16 in the ONNX
        # itself, so a strongly typed build runs them in FP16 rather than FP32.
        options['high_precision_dtype'] = 'fp16'
    quantize(onnx_path=str(onnx_path), quantize_mode='int8',
             calibration_data={INPUT_NAME: np.asarray(calibration_data, dtype=np.float32)},
             output_path=str(int8_path), **options)
    return int8_path, _int8_typing(int8_path)


def _int8_typing(qdq_path: Path) -> bool:
    """Whether to build the Q/DQ ONNX at ``qdq_path`` strongly typed.

    NVIDIA's guidance is explicit quantization with strong typing and no precision flags; the
    network's own types then decide the precision outside the Q/DQ pairs. That is FP16 when
    ModelOpt converted the rest of the graph (``high_precision_dtype='fp16'``). Older ModelOpt
    releases apply that option to FP8 only and leave the rest FP32, which a strongly typed build
    would run in FP32; TensorRT <= 10 then builds weakly typed with the FP16 and INT8 flags, so
    those layers may use FP16 kernels (TensorRT 11 has no flags: strongly typed, FP32 there).
    """
    import onnx
    import tensorrt as trt

    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, 'STRONGLY_TYPED')
    model = onnx.load(str(qdq_path), load_external_data=False)
    has_fp16 = any(tensor.data_type == onnx.TensorProto.FLOAT16
                   for tensor in model.graph.initializer)
    if has_fp16 or not strongly_typed:
        return strongly_typed
    if hasattr(trt.BuilderFlag, 'FP16'):
        LOGGER.info('the INT8 ONNX keeps FP32 outside its Q/DQ nodes (older ModelOpt): '
                    'building weakly typed with the FP16 and INT8 flags')
        return False
    LOGGER.warning('the INT8 ONNX keeps FP32 outside its Q/DQ nodes and TensorRT %s builds '
                   'strongly typed only: those layers run in FP32; update NVIDIA ModelOpt',
                   trt.__version__)
    return True


def build_serialized_engine(onnx_path, precision: str, workspace_gb: float = DEFAULT_WORKSPACE_GB,
                            timing_cache: bytes = b'', calibration_data=None
                            ) -> tuple[bytes, bytes]:
    """Build an engine from ``onnx_path``; returns (engine bytes, updated timing cache bytes)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    with tempfile.TemporaryDirectory(prefix='monodepth_trt_') as work_dir:
        static_path = _batch_of_one(Path(onnx_path), Path(work_dir))
        build_path, strongly_typed = _prepare_onnx(static_path, precision, Path(work_dir),
                                                   calibration_data)
        creation = trt.NetworkDefinitionCreationFlag
        flags = 0
        if hasattr(creation, 'EXPLICIT_BATCH'):   # required on 8.x, a no-op on 10, gone in 11
            flags |= 1 << int(creation.EXPLICIT_BATCH)
        if strongly_typed and hasattr(creation, 'STRONGLY_TYPED'):
            flags |= 1 << int(creation.STRONGLY_TYPED)
        builder = trt.Builder(logger)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(build_path)):
            errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f'TensorRT cannot parse {onnx_path}: {errors}')
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                     int(workspace_gb * (1 << 30)))
        if not strongly_typed or not hasattr(creation, 'STRONGLY_TYPED'):
            # Weakly typed builds (TensorRT <= 10): precision comes from builder flags.
            if precision in ('fp16', 'int8') and hasattr(trt.BuilderFlag, 'FP16'):
                config.set_flag(trt.BuilderFlag.FP16)
            if precision == 'int8' and hasattr(trt.BuilderFlag, 'INT8'):
                config.set_flag(trt.BuilderFlag.INT8)   # Q/DQ networks on 8.x need it
        if precision == 'fp32' and hasattr(trt.BuilderFlag, 'TF32'):
            # The builder allows TF32 by default (10-bit mantissa inputs on Ampere and newer);
            # fp32 is asked for to get IEEE FP32, the reference the other precisions are
            # checked against.
            config.clear_flag(trt.BuilderFlag.TF32)
        timing = config.create_timing_cache(bytes(timing_cache or b''))
        if not config.set_timing_cache(timing, ignore_mismatch=False) and timing_cache:
            # A cache from another device/driver: start afresh rather than mix timings.
            LOGGER.warning('TensorRT timing cache does not match this GPU; starting a new one')
            config.set_timing_cache(config.create_timing_cache(b''), ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError(f'TensorRT failed to build an engine from {onnx_path} '
                              f'({precision}); see the TensorRT log above')
        timing_bytes = bytes(memoryview(config.get_timing_cache().serialize()))
        return bytes(memoryview(serialized)), timing_bytes


class TensorRTEngine(DepthEngine):
    """A deserialized TensorRT engine with its execution context and torch CUDA buffers."""

    def __init__(self, onnx_path, precision: str = 'fp16', cache_dir=None, device: str = 'auto',
                 workspace_gb: float = DEFAULT_WORKSPACE_GB, calibration_data=None, card=None):
        check_precision(precision)
        usable, reason = tensorrt_status()
        if not usable:
            raise EngineError(f'tensorrt backend unavailable: {reason}')
        import tensorrt as trt
        import torch

        onnx_path = Path(onnx_path)
        model = load_onnx_model(onnx_path)
        card, metadata = card_for(model, str(onnx_path), card)
        del model
        if card.dynamic_size:
            # One engine per input size would need an optimisation profile per camera.
            raise EngineError(f'model card {card.name}: size policy long-side gives a network '
                              'size that follows the camera; the tensorrt backend needs a '
                              'fixed size (export the model at a fixed size with a fixed or '
                              'letterbox card, or use backend onnxruntime)')
        if card.intrinsics_input or (card.input_dtype != 'float32' and not card.ours):
            raise EngineError(f'model card {card.name}: the tensorrt backend feeds one float32 '
                              'image input; use backend onnxruntime for an intrinsics input '
                              'or a float16 input')
        if precision == 'int8' and not card.ours:
            raise EngineError(f'model card {card.name}: int8 calibration is for our models; '
                              'use fp16 or fp32')
        self.card = card
        index = cuda_device_index(device)
        self.device = torch.device('cuda', index)
        input_shape = card.batch_shape(card.width, card.height)
        calibration_tag = ''
        if precision == 'int8' and calibration_data is not None:
            import hashlib

            data = np.ascontiguousarray(calibration_data, dtype=np.float32)
            calibration_tag = 'calib' + hashlib.sha256(data.tobytes()).hexdigest()[:8]
        key = make_engine_key(onnx_path.read_bytes(), precision, input_shape, index,
                              calibration_tag)
        cache = EngineCache(cache_dir)

        def build() -> bytes:
            engine_bytes, timing_bytes = build_serialized_engine(
                onnx_path, precision, workspace_gb, cache.load_timing_cache(key),
                calibration_data)
            cache.save_timing_cache(key, timing_bytes)
            return engine_bytes

        try:
            with torch.cuda.device(self.device):
                self.logger = trt.Logger(trt.Logger.WARNING)
                self.runtime = trt.Runtime(self.logger)
                result = cache.get_or_build(key, build, self.runtime.deserialize_cuda_engine,
                                            model_name=model_name_of(onnx_path))
                self.engine = result.engine
                self.context = self.engine.create_execution_context()
                if self.context is None:
                    raise EngineError(f'TensorRT could not create an execution context for '
                                      f'{result.path} (out of GPU memory?)')
                # A dedicated stream: TensorRT must not run on torch's legacy default stream.
                self.stream = torch.cuda.Stream(device=self.device)
                self.buffers = self._allocate(input_shape)
                self.host_input = torch.empty(input_shape, dtype=torch.float32, pin_memory=True)
        except RuntimeError as error:
            # CUDA out of memory and TensorRT's own exceptions: typed, so that backend 'auto'
            # can fall back to another backend.
            raise EngineError(f'TensorRT engine setup for {onnx_path} on {self.device} failed: '
                              f'{error}') from error
        info = {'device': str(self.device), 'gpu': key.gpu_name,
                'compute_capability': key.compute_capability, 'sm_count': key.sm_count,
                'tensorrt_version': key.tensorrt_version, 'engine_file': str(result.path),
                'engine_cache': 'built' if result.built else 'hit',
                'engine_cache_reason': result.reason, 'model_file': str(onnx_path)}
        if not card.ours:
            info['model_card'] = card.source
        super().__init__('tensorrt', precision, metadata, info, card)

    def _allocate(self, input_shape) -> dict:
        """One torch CUDA tensor per I/O tensor, its address given to the context by name."""
        import tensorrt as trt
        import torch

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        card = self.card
        wanted = (card.input_name, card.output_name, card.semantics_output,
                  card.confidence_output, card.sky_output)
        missing = [name for name in wanted if name and name not in names]
        if missing:
            raise EngineError(f'TensorRT engine lacks tensors {missing} (has {names})')
        # The outputs a foreign model's card reads, once rather than per frame.
        self.card_outputs = tuple(name for name in (card.output_name, card.confidence_output,
                                                    card.sky_output) if name)
        for name in names:
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                shape = tuple(self.engine.get_tensor_shape(name))
                if any(dim < 0 for dim in shape):   # dynamic dims: fix them to our size
                    self.context.set_input_shape(name, input_shape)
        buffers = {}
        for name in names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = _torch_dtype(self.engine.get_tensor_dtype(name))
            buffers[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, buffers[name].data_ptr())
        return buffers

    def infer(self, batch, intrinsics=None) -> EngineOutput:
        """Run one (1,3,H,W) batch: a numpy array or a torch tensor (CPU or CUDA)."""
        import torch

        self.check_batch(batch)
        # A CUDA input made on the caller's stream must be complete before ours reads it.
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            if isinstance(batch, np.ndarray):
                self.host_input.copy_(torch.from_numpy(batch))
                batch = self.host_input
            self.buffers[self.card.input_name].copy_(batch, non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EngineError('TensorRT execute_async_v3 failed; see the TensorRT log')
            if not self.card.ours:   # a foreign model: its card reads the outputs
                arrays = {name: self.buffers[name].float().cpu().numpy()
                          for name in self.card_outputs}
                return outputs_from_card(self.card, arrays, (self.card.width, self.card.height))
            # argmax and the copies back run on the same stream; .cpu() waits for them.
            output = outputs_from_tensors(self.buffers['depth'],
                                          self.buffers['semantic_logits'],
                                          self.buffers['confidence'])
        return output

    def _release(self) -> None:
        # The execution context must go before the engine it came from.
        self.context = None
        self.engine = None
        self.buffers = {}
        self.host_input = None
        self.stream = None
