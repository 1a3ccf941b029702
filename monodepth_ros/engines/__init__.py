"""Inference backends behind one interface: TensorRT, ONNX Runtime and PyTorch.

>>> engine = create_engine('model.onnx')            # backend 'auto': the fastest available
>>> out = engine.infer(preprocess(rgb, engine.metadata))   # model.preprocess
>>> out.depth, out.semantics, out.confidence        # HxW float32 m, uint8 trainIds, float32

Backends are imported lazily, so importing this package does not import torch or onnxruntime.
"""

from __future__ import annotations

import logging
from pathlib import Path

from monodepth_ros.engines.base import (
    DEFAULT_THREADS,
    PRECISIONS,
    DepthEngine,
    EngineOutput,
    check_precision,
)
from monodepth_ros.errors import EngineError, reraise_interruption
from monodepth_ros.model.files import check_model_path, file_sha256, is_onnx

__all__ = ['BACKENDS', 'PRECISIONS', 'DepthEngine', 'EngineOutput', 'choose_backend',
           'create_engine', 'ensure_onnx']

LOGGER = logging.getLogger(__name__)

BACKENDS = ('auto', 'tensorrt', 'onnxruntime', 'torch')


def _onnxruntime_providers() -> list[str] | None:
    try:
        import onnxruntime
    except ImportError as error:
        reraise_interruption(error)
        return None
    return list(onnxruntime.get_available_providers())


def _can_export() -> bool:
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as error:
        reraise_interruption(error)
        return False
    return True


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError as error:
        reraise_interruption(error)
        return False
    return torch.cuda.is_available()


def choose_backend(model_path, device: str = 'auto',
                   tensorrt_failed: str = '') -> tuple[str, str]:
    """(backend, why) for ``backend='auto'``: the fastest one that can run this file here.

    Order: TensorRT, ONNX Runtime CUDA, torch CUDA, ONNX Runtime CPU, torch CPU.
    ``tensorrt_failed`` (why TensorRT could not open the model) rules TensorRT out.
    """
    from monodepth_ros.engines.tensorrt_engine import tensorrt_status

    onnx_file = is_onnx(model_path)
    onnx_ready = onnx_file or _can_export()
    cpu_only = device == 'cpu'
    reasons = []
    if cpu_only:
        reasons.append('device is cpu')
    elif tensorrt_failed:
        reasons.append(f'tensorrt failed: {tensorrt_failed}')
    else:
        trt_ok, trt_reason = tensorrt_status()
        if trt_ok and onnx_ready:
            return 'tensorrt', f'{trt_reason} is available'
        reasons.append(f'no tensorrt: {trt_reason}')
    providers = _onnxruntime_providers()
    if providers is None:
        reasons.append('onnxruntime is not installed')
    elif not onnx_ready:
        reasons.append('no ONNX file and torch/onnx are missing to export one')
    elif not cpu_only and 'CUDAExecutionProvider' in providers:
        return 'onnxruntime', '; '.join(reasons + ['onnxruntime has the CUDA provider'])
    else:
        reasons.append(f'onnxruntime providers {providers} have no CUDA')
    if not cpu_only and not onnx_file and _torch_cuda():
        return 'torch', '; '.join(reasons + ['torch sees a CUDA GPU (faster than a CPU)'])
    if providers is not None and onnx_ready:
        return 'onnxruntime', '; '.join(
            reasons + ['onnxruntime on the CPU is faster than PyTorch eager there'])
    if not onnx_file:
        return 'torch', '; '.join(reasons + ['torch on the CPU is what is left'])
    raise EngineError(f'no backend can run {model_path} here: ' + '; '.join(reasons))


EXPORT_FORMAT = 'batch'   # what sets our exports apart from earlier ones: a free batch size


def ensure_onnx(checkpoint, cache_dir=None) -> Path:
    """ONNX export of a ``.pt`` checkpoint, made once and kept in ``<cache_dir>/onnx/``."""
    import hashlib

    from monodepth_ros.engines.cache import default_cache_dir, file_lock
    from monodepth_ros.errors import ModelFileError
    from monodepth_ros.model.export import export_onnx
    from monodepth_ros.model.files import load_onnx_model

    checkpoint = check_model_path(checkpoint)
    folder = Path(cache_dir or default_cache_dir()) / 'onnx'
    # The export format is hashed in: an export of an earlier release (batch fixed at 1) is
    # not taken for one of this release.
    key = hashlib.sha256(f'{file_sha256(checkpoint)} {EXPORT_FORMAT}'.encode()).hexdigest()
    onnx_path = folder / f'{checkpoint.stem}-{key[:16]}.onnx'
    with file_lock(onnx_path.with_suffix('.lock')):
        if onnx_path.is_file():
            try:
                load_onnx_model(onnx_path)
                LOGGER.info('using the ONNX export %s of %s', onnx_path, checkpoint)
                return onnx_path
            except ModelFileError as error:
                LOGGER.warning('re-exporting %s: %s', checkpoint, error)
        LOGGER.info('exporting %s to %s', checkpoint, onnx_path)
        # The parity check is the export command's job; here onnx.checker is enough.
        export_onnx(checkpoint, onnx_path, verify=False)
    return onnx_path


THREADS_ENV = 'MONODEPTH_CPU_THREADS'


def default_threads() -> int:
    """ONNX Runtime intra-op threads: ``$MONODEPTH_CPU_THREADS`` (a fleet worker's), else 2."""
    import os

    text = os.environ.get(THREADS_ENV, '').strip()
    if not text:
        return DEFAULT_THREADS
    if not text.isdigit() or int(text) < 1:
        raise EngineError(f'{THREADS_ENV}={text!r}: expected a whole number of threads >= 1')
    return int(text)


def check_card_target(path: Path, card) -> None:
    """A model card belongs to a foreign ONNX model; our own checkpoints refuse one."""
    if card and not is_onnx(path):
        raise EngineError(f'a model card describes a foreign ONNX model; {path} is one of our '
                          'checkpoints and needs none (drop --model-card / model_card)')


def create_engine(model_path, backend: str = 'auto', precision: str = 'fp16', cache_dir=None,
                  device: str = 'auto', num_threads: int | None = None,
                  workspace_gb: float = 4.0, calibration_data=None,
                  card=None) -> DepthEngine:
    """Open ``model_path`` (a ``.pt`` checkpoint or an ``.onnx`` export) with a backend.

    ``card``: the model card of a foreign ONNX model (a preset name, a YAML path or a
    ``model.cards.ModelCard``); our own models need none.

    ``precision`` is what is asked for; ``engine.precision`` is what runs (CPU backends run
    fp32). ``num_threads`` caps ONNX Runtime's intra-op threads (None: ``default_threads``);
    ``workspace_gb`` and ``calibration_data`` ((N,3,H,W) float32 from ``preprocess``, INT8
    only) are TensorRT's.
    With ``backend='auto'``, a TensorRT build or load that fails (EngineError) falls back to
    the next backend in the auto order with a warning; ``backend='tensorrt'`` raises it.
    """
    path = check_model_path(model_path)
    check_precision(precision)
    num_threads = default_threads() if num_threads is None else num_threads
    if backend not in BACKENDS:
        raise EngineError(f'unknown backend {backend!r}, expected one of {BACKENDS}')
    check_card_target(path, card)
    if card and backend == 'torch':
        raise EngineError('the torch backend runs our checkpoints only; a model with a card '
                          'runs on backend onnxruntime or tensorrt')
    options = dict(precision=precision, cache_dir=cache_dir, device=device,
                   num_threads=num_threads, workspace_gb=workspace_gb,
                   calibration_data=calibration_data, card=card or None)
    reason = f'backend {backend!r} asked for'
    if backend != 'auto':
        engine = _open_backend(backend, path, **options)
    else:
        backend, reason = choose_backend(path, device)
        LOGGER.info('backend auto -> %s: %s', backend, reason)
        try:
            engine = _open_backend(backend, path, **options)
        except EngineError as error:
            if backend != 'tensorrt':
                raise
            # A robot should still start (slower) when its engine cannot be built: an
            # unsupported layer, too little GPU memory, no ModelOpt for int8...
            backend, reason = choose_backend(path, device, tensorrt_failed=str(error))
            LOGGER.warning('TensorRT cannot run %s (%s); falling back to %s', path, error,
                           backend)
            engine = _open_backend(backend, path, **options)
    engine.info['selection'] = reason
    if str(engine.info.get('model_file')) != str(path):
        engine.info['source_model'] = str(path)   # the checkpoint the ONNX was exported from
    LOGGER.info('inference engine: %s %s on %s', engine.name, engine.precision,
                engine.info.get('device'))
    return engine


def _open_backend(backend: str, path: Path, precision: str, cache_dir, device: str,
                  num_threads: int, workspace_gb: float, calibration_data,
                  card=None) -> DepthEngine:
    if backend == 'torch':
        if is_onnx(path):
            raise EngineError(f'the torch backend needs a .pt checkpoint, {path} is ONNX; use '
                              'backend onnxruntime or tensorrt')
        from monodepth_ros.engines.torch_engine import TorchEngine

        engine = TorchEngine(path, precision=precision, device=device)
    else:
        onnx_path = path if is_onnx(path) else ensure_onnx(path, cache_dir)
        if backend == 'onnxruntime':
            from monodepth_ros.engines.onnxruntime_engine import OnnxRuntimeEngine

            engine = OnnxRuntimeEngine(onnx_path, device=device, num_threads=num_threads,
                                       precision=precision, cache_dir=cache_dir, card=card)
        else:
            from monodepth_ros.engines.tensorrt_engine import TensorRTEngine

            engine = TensorRTEngine(onnx_path, precision=precision, cache_dir=cache_dir,
                                    device=device, workspace_gb=workspace_gb,
                                    calibration_data=calibration_data, card=card)
    return engine
