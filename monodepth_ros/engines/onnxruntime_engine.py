"""ONNX Runtime backend: TensorRT EP, CUDA EP or CPU, whichever this installation has."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from monodepth_ros.engines.base import (
    DEFAULT_THREADS,
    DepthEngine,
    EngineOutput,
    depth_from_card,
    outputs_from_card,
)
from monodepth_ros.engines.cache import default_cache_dir
from monodepth_ros.errors import EngineError
from monodepth_ros.model.cards import card_for
from monodepth_ros.model.files import load_onnx_model

LOGGER = logging.getLogger(__name__)

# Preference order; filtered by what onnxruntime.get_available_providers() reports.
PROVIDER_ORDER = ('TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider')


def choose_providers(device: str = 'auto', available=None) -> list[str]:
    """Providers to ask for, best first: 'cpu' forces CPU, 'auto'/'cuda' take the GPU ones."""
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    wanted = PROVIDER_ORDER if device in (None, 'auto') or str(device).startswith('cuda') \
        else ('CPUExecutionProvider',)
    providers = [name for name in wanted if name in available]
    if str(device).startswith('cuda') and not any(p != 'CPUExecutionProvider'
                                                   for p in providers):
        raise EngineError(f'device {device!r} asked for, but onnxruntime offers only '
                          f'{list(available)} (install onnxruntime-gpu or use device "cpu")')
    if not providers:
        raise EngineError(f'onnxruntime offers none of {list(wanted)} (available: '
                          f'{list(available)})')
    return providers


class OnnxRuntimeEngine(DepthEngine):
    """An ``onnxruntime.InferenceSession`` on an ONNX file, ours or a foreign one.

    Ours is written by ``monodepth export``; a foreign one runs with its model card (``card``:
    a preset, a YAML path or a ModelCard; model.cards).
    """

    def __init__(self, onnx_path, device: str = 'auto', num_threads: int = DEFAULT_THREADS,
                 precision: str = 'fp32', cache_dir=None, card=None):
        import onnxruntime

        model = load_onnx_model(onnx_path)
        card, metadata = card_for(model, str(onnx_path), card)
        del model

        options = onnxruntime.SessionOptions()
        # Cap threads and stop idle workers spinning: the robot's other processes need the CPU.
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL

        providers = choose_providers(device)
        provider_options = []
        for name in providers:
            if name == 'TensorrtExecutionProvider':
                # fp16 only when asked; the EP's engine cache keeps it from rebuilding at
                # every start (it checks TensorRT version and GPU itself).
                ep_cache = Path(cache_dir or default_cache_dir()) / 'onnxruntime_tensorrt'
                ep_cache.mkdir(parents=True, exist_ok=True)
                provider_options.append({'trt_fp16_enable': precision == 'fp16',
                                         'trt_engine_cache_enable': True,
                                         'trt_engine_cache_path': str(ep_cache),
                                         'trt_timing_cache_enable': True,
                                         'trt_timing_cache_path': str(ep_cache)})
            else:
                provider_options.append({})
        try:
            self.session = onnxruntime.InferenceSession(
                str(onnx_path), sess_options=options, providers=providers,
                provider_options=provider_options)
        except Exception as error:  # noqa: B902 - onnxruntime raises its own exception types
            raise EngineError(f'onnxruntime cannot load {onnx_path}: {error}') from error
        used = self.session.get_providers()
        # ONNX Runtime silently falls back to the CPU when a GPU provider fails to start.
        if used != providers:
            LOGGER.warning('onnxruntime asked for %s, runs on %s', providers, used)
        else:
            LOGGER.info('onnxruntime providers: %s', used)
        actual_precision = 'fp16' if (precision == 'fp16' and used[0]
                                      == 'TensorrtExecutionProvider') else 'fp32'
        if actual_precision != precision:
            LOGGER.info('onnxruntime runs the exported graph in %s (asked: %s)',
                        actual_precision, precision)
        self.num_threads = int(num_threads)
        self._output_names = [name for name in (card.output_name, card.semantics_output,
                                                card.confidence_output, card.sky_output) if name]
        # Our exports leave the batch size free (model.export); an older one is fixed at 1.
        image_input = next(value for value in self.session.get_inputs()
                           if value.name == card.input_name)
        self.batches_pairs = not isinstance(image_input.shape[0], int)
        info = {'providers': used, 'requested_providers': providers,
                'onnxruntime_version': onnxruntime.__version__, 'intra_op_threads': num_threads,
                'device': 'cpu' if used[0] == 'CPUExecutionProvider' else 'cuda',
                'model_file': str(onnx_path)}
        if not card.ours:
            info['model_card'] = card.source
        super().__init__('onnxruntime', actual_precision, metadata, info, card)

    def infer(self, batch: np.ndarray, intrinsics: np.ndarray | None = None) -> EngineOutput:
        self.check_batch(batch)
        card = self.card
        feed = {card.input_name: np.ascontiguousarray(
            batch, dtype=np.float16 if card.input_dtype == 'float16' else np.float32)}
        if card.intrinsics_input:
            if intrinsics is None:
                raise EngineError(f'model card {card.name} feeds the camera intrinsics to '
                                  f'{card.intrinsics_input!r}; none were given (the camera '
                                  'calibration is needed)')
            feed[card.intrinsics_input] = np.asarray(intrinsics, np.float32).reshape(1, 3, 3)
        arrays = dict(zip(self._output_names, self.session.run(self._output_names, feed)))
        height, width = batch.shape[2:] if card.layout == 'NCHW' else batch.shape[1:3]
        return outputs_from_card(card, arrays, (width, height))

    def infer_pair(self, batch: np.ndarray, far_batch: np.ndarray
                   ) -> tuple[EngineOutput, np.ndarray]:
        """Both passes as one batch of two when the graph allows it (see DepthEngine)."""
        if not self.batches_pairs:
            return super().infer_pair(batch, far_batch)
        self.check_batch(batch)
        self.check_batch(far_batch)
        feed = {self.card.input_name: np.ascontiguousarray(
            np.concatenate([batch, far_batch]), dtype=np.float32)}
        arrays = dict(zip(self._output_names, self.session.run(self._output_names, feed)))
        size = batch.shape[:1:-1]   # (W, H) of an NCHW batch: our network's layout
        first = outputs_from_card(self.card, {name: array[:1] for name, array in arrays.items()},
                                  size)
        return first, depth_from_card(self.card, arrays[self.card.output_name][1:], size)

    def _release(self) -> None:
        self.session = None
