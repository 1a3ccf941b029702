"""PyTorch backend: a checkpoint on CPU or CUDA (for development and as the parity reference)."""

from __future__ import annotations

import logging

import numpy as np

from monodepth_ros.engines.base import (
    DepthEngine,
    EngineOutput,
    check_precision,
    outputs_from_tensors,
)
from monodepth_ros.errors import EngineError
from monodepth_ros.model.files import check_model_path

LOGGER = logging.getLogger(__name__)


def resolve_torch_device(device: str = 'auto') -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; an explicit CUDA device must exist."""
    import torch

    if device in (None, 'auto'):
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if str(device).startswith('cuda') and not torch.cuda.is_available():
        raise EngineError(f'device {device!r} asked for, but torch sees no CUDA GPU '
                          f'(torch {torch.__version__}); use device "cpu"')
    return str(device)


class TorchEngine(DepthEngine):
    """Eager PyTorch inference of a ``.pt`` checkpoint, FP16 autocast on CUDA when asked."""

    def __init__(self, checkpoint, precision: str = 'fp32', device: str = 'auto', model=None,
                 metadata=None):
        import torch

        check_precision(precision)
        device = resolve_torch_device(device)
        if model is None:
            from monodepth_ros.model.checkpoint import load_model

            path = check_model_path(checkpoint)
            model, metadata = load_model(str(path), device=device)
        model = model.to(device).eval()
        if precision == 'int8':
            raise EngineError('the torch backend runs fp32 (CPU/CUDA) or fp16 autocast (CUDA); '
                              'int8 needs the tensorrt backend')
        if precision == 'fp16' and not device.startswith('cuda'):
            LOGGER.info('torch backend on %s: running fp32 (fp16 autocast is CUDA only)', device)
            precision = 'fp32'
        self.model = model
        self.device = torch.device(device)
        info = {'device': str(self.device), 'torch_version': torch.__version__,
                'model_file': str(checkpoint)}
        if self.device.type == 'cuda':
            info['gpu'] = torch.cuda.get_device_name(self.device)
        else:
            info['threads'] = torch.get_num_threads()
        super().__init__('torch', precision, metadata, info)

    def infer(self, batch) -> EngineOutput:
        import torch

        self.check_batch(batch)
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        outputs = self._forward(batch)
        return outputs_from_tensors(outputs['depth'], outputs['semantic_logits'],
                                    outputs['confidence'])

    def infer_pair(self, batch, far_batch) -> tuple[EngineOutput, np.ndarray]:
        """Both passes as one batch of two (see DepthEngine)."""
        import torch

        self.check_batch(batch)
        self.check_batch(far_batch)
        pair = torch.from_numpy(np.ascontiguousarray(np.concatenate([batch, far_batch]),
                                                     dtype=np.float32))
        outputs = self._forward(pair)
        first = outputs_from_tensors(outputs['depth'], outputs['semantic_logits'],
                                     outputs['confidence'])   # reads batch item 0
        return first, outputs['depth'][1, 0].float().cpu().numpy()

    def _forward(self, batch):
        """The network's outputs for a (N,3,H,W) torch batch, on our device and precision."""
        import torch

        batch = batch.to(self.device, non_blocking=True)
        with torch.inference_mode(), torch.autocast(
                device_type=self.device.type, dtype=torch.float16,
                enabled=self.precision == 'fp16'):
            return self.model(batch)

    def _release(self) -> None:
        self.model = None
