"""TensorRT backend on a real GPU: build, cache, parity with ONNX Runtime, rebuild on corruption.

These tests need the tensorrt package and a CUDA GPU; elsewhere they are skipped with the
reason (the cache logic itself is tested everywhere in test_engines.py).
"""

import numpy as np
import pytest
from conftest import CHECKPOINT_HEIGHT as HEIGHT
from conftest import CHECKPOINT_WIDTH as WIDTH
from conftest import save_tiny_checkpoint

from monodepth_ros.engines import create_engine
from monodepth_ros.engines.tensorrt_engine import tensorrt_status
from monodepth_ros.model.preprocess import preprocess

pytest.importorskip('tensorrt', reason='TensorRT is not installed on this machine')
_USABLE, _REASON = tensorrt_status()
pytestmark = pytest.mark.skipif(not _USABLE, reason=f'TensorRT backend unusable: {_REASON}')


@pytest.fixture(scope='module')
def onnx_path(tmp_path_factory):
    from monodepth_ros.model.export import export_onnx

    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp('trt') / 'tiny.pt')
    return export_onnx(checkpoint, checkpoint.with_suffix('.onnx'), verify=False).path


@pytest.fixture(scope='module')
def batch():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    from monodepth_ros.model.metadata import ModelMetadata

    return preprocess(rgb, ModelMetadata(input_height=HEIGHT, input_width=WIDTH))


@pytest.mark.parametrize('precision, depth_rtol, agreement', [('fp32', 1e-3, 0.999),
                                                              ('fp16', 2e-2, 0.95)])
def test_tensorrt_matches_onnxruntime(onnx_path, batch, tmp_path, precision, depth_rtol,
                                      agreement):
    reference = create_engine(onnx_path, backend='onnxruntime', device='cpu').infer(batch)
    engine = create_engine(onnx_path, backend='tensorrt', precision=precision,
                           cache_dir=tmp_path)
    assert engine.name == 'tensorrt' and engine.precision == precision
    out = engine.infer(batch)
    assert out.depth.dtype == np.float32 and out.semantics.dtype == np.uint8
    np.testing.assert_allclose(out.depth, reference.depth, rtol=depth_rtol, atol=1e-3)
    np.testing.assert_allclose(out.confidence, reference.confidence, atol=depth_rtol)
    assert np.mean(out.semantics == reference.semantics) >= agreement


def test_engine_is_cached_and_rebuilt_when_corrupt(onnx_path, batch, tmp_path):
    first = create_engine(onnx_path, backend='tensorrt', precision='fp16', cache_dir=tmp_path)
    assert first.info['engine_cache'] == 'built'
    second = create_engine(onnx_path, backend='tensorrt', precision='fp16', cache_dir=tmp_path)
    assert second.info['engine_cache'] == 'hit'
    assert second.info['engine_file'] == first.info['engine_file']
    np.testing.assert_array_equal(second.infer(batch).depth, first.infer(batch).depth)
    with open(first.info['engine_file'], 'r+b') as stream:   # flip bytes in the middle
        stream.seek(stream.seek(0, 2) // 2)
        stream.write(b'\x00' * 64)
    third = create_engine(onnx_path, backend='tensorrt', precision='fp16', cache_dir=tmp_path)
    assert third.info['engine_cache'] == 'built'
    assert 'sidecar hash' in third.info['engine_cache_reason']


def test_build_engine_command_prints_the_engine_path(onnx_path, tmp_path, capsys):
    from monodepth_ros.cli import main

    assert main(['build-engine', str(onnx_path), '--precision', 'fp32', '--cache-dir',
                 str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path) in printed and '.engine' in printed and 'TensorRT' in printed


def test_torch_cuda_input_stays_on_the_gpu(onnx_path, batch, tmp_path):
    import torch

    engine = create_engine(onnx_path, backend='tensorrt', precision='fp32', cache_dir=tmp_path)
    from_numpy = engine.infer(batch)
    from_cuda = engine.infer(torch.from_numpy(batch).cuda())
    np.testing.assert_array_equal(from_cuda.depth, from_numpy.depth)
