"""Engines: preprocessing, backend choice, ONNX Runtime vs PyTorch, bad model files, the cache."""

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time

import numpy as np
import pytest
from conftest import CHECKPOINT_HEIGHT, CHECKPOINT_WIDTH, save_tiny_checkpoint

from monodepth_ros.engines import EngineOutput, choose_backend, create_engine, ensure_onnx
from monodepth_ros.engines.cache import EngineCache, EngineKey, atomic_write_bytes, file_lock
from monodepth_ros.errors import EngineError, ModelFileError
from monodepth_ros.model.metadata import ModelMetadata
from monodepth_ros.model.preprocess import preprocess

HEIGHT, WIDTH = CHECKPOINT_HEIGHT, CHECKPOINT_WIDTH   # small for CPU tests


# ------------------------------------------------------------------------------- model files

@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp('model') / 'tiny.pt')


@pytest.fixture(scope='module')
def onnx_path(checkpoint):
    from monodepth_ros.model.export import export_onnx

    return export_onnx(checkpoint, checkpoint.with_suffix('.onnx'), verify=False).path


@pytest.fixture(scope='module')
def kitti_rgb(kitti_drive_dir):
    import cv2

    bgr = cv2.imread(str(kitti_drive_dir / 'image_02' / 'data' / '0000000000.png'))
    return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (WIDTH, HEIGHT),
                      interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------------ preprocessing

def test_preprocess_normalises_each_channel_exactly():
    metadata = ModelMetadata(input_height=2, input_width=3)
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 51)
    rgb[1, 2] = (0, 255, 102)
    batch = preprocess(rgb, metadata)
    assert batch.shape == (1, 3, 2, 3) and batch.dtype == np.float32
    # (x / 255 - mean) / std with ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)
    assert batch[0, :, 0, 0] == pytest.approx([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224,
                                               (0.2 - 0.406) / 0.225], rel=1e-6)
    assert batch[0, :, 1, 2] == pytest.approx([-0.485 / 0.229, (1 - 0.456) / 0.224,
                                               (0.4 - 0.406) / 0.225], rel=1e-5, abs=1e-6)
    assert batch[0, 0, 0, 1] == pytest.approx(-0.485 / 0.229, rel=1e-6)


def test_preprocess_rejects_wrong_size_and_dtype():
    metadata = ModelMetadata(input_height=4, input_width=8)
    with pytest.raises(EngineError, match=r'shape \(4, 7, 3\), expected \(4, 8, 3\)'):
        preprocess(np.zeros((4, 7, 3), np.uint8), metadata)
    with pytest.raises(EngineError, match='dtype is float32, expected uint8'):
        preprocess(np.zeros((4, 8, 3), np.float32), metadata)


# ----------------------------------------------------------------------------- backend choice

def test_auto_picks_onnxruntime_cpu_here_and_says_why(onnx_path, caplog):
    pytest.importorskip('onnxruntime')
    try:
        import tensorrt  # noqa: F401
        pytest.skip('TensorRT is installed: auto would pick it')
    except ImportError:
        pass
    with caplog.at_level(logging.INFO, logger='monodepth_ros.engines'):
        engine = create_engine(onnx_path, backend='auto')
    assert engine.name == 'onnxruntime'
    assert engine.info['providers'] == ['CPUExecutionProvider']
    assert engine.precision == 'fp32'   # asked fp16; the CPU runs the fp32 graph
    assert 'no tensorrt' in engine.info['selection']
    assert 'onnxruntime on the CPU' in engine.info['selection']
    assert any('backend auto -> onnxruntime' in record.getMessage() for record in caplog.records)


def test_choose_backend_cpu_device_never_tries_gpu(onnx_path, checkpoint):
    backend, why = choose_backend(onnx_path, device='cpu')
    assert backend == 'onnxruntime' and 'device is cpu' in why
    assert choose_backend(checkpoint, device='cpu')[0] == 'onnxruntime'   # exportable


def test_auto_order_tensorrt_then_cuda_providers_then_torch_cuda(monkeypatch, onnx_path,
                                                                checkpoint):
    import monodepth_ros.engines as engines
    import monodepth_ros.engines.tensorrt_engine as trt_engine

    cpu = ['AzureExecutionProvider', 'CPUExecutionProvider']
    monkeypatch.setattr(trt_engine, 'tensorrt_status', lambda: (True, 'TensorRT 10.3 on Orin'))
    assert choose_backend(onnx_path) == ('tensorrt', 'TensorRT 10.3 on Orin is available')
    monkeypatch.setattr(trt_engine, 'tensorrt_status', lambda: (False, 'not installed'))
    monkeypatch.setattr(engines, '_onnxruntime_providers', lambda: ['CUDAExecutionProvider'] + cpu)
    backend, why = choose_backend(onnx_path)
    assert backend == 'onnxruntime' and 'CUDA provider' in why and 'not installed' in why
    monkeypatch.setattr(engines, '_onnxruntime_providers', lambda: cpu)
    monkeypatch.setattr(engines, '_torch_cuda', lambda: True)
    assert choose_backend(checkpoint)[0] == 'torch'   # a GPU beats ONNX Runtime on the CPU
    assert choose_backend(onnx_path)[0] == 'onnxruntime'   # torch cannot run an ONNX file
    monkeypatch.setattr(engines, '_onnxruntime_providers', lambda: None)
    monkeypatch.setattr(engines, '_torch_cuda', lambda: False)
    assert choose_backend(checkpoint)[0] == 'torch'
    with pytest.raises(EngineError, match='no backend can run .*onnxruntime is not installed'):
        choose_backend(onnx_path)


def test_providers_in_preference_order_filtered_by_availability():
    from monodepth_ros.engines.onnxruntime_engine import choose_providers

    available = ['AzureExecutionProvider', 'CPUExecutionProvider', 'CUDAExecutionProvider',
                 'TensorrtExecutionProvider']
    assert choose_providers('auto', available) == [
        'TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']
    assert choose_providers('cpu', available) == ['CPUExecutionProvider']
    assert choose_providers('auto', ['CPUExecutionProvider']) == ['CPUExecutionProvider']
    with pytest.raises(EngineError, match="device 'cuda' asked for, but onnxruntime offers "
                       "only"):
        choose_providers('cuda', ['CPUExecutionProvider'])


def test_onnxruntime_session_caps_threads_and_disables_spinning(onnx_path):
    engine = create_engine(onnx_path, backend='onnxruntime', device='cpu', num_threads=1)
    options = engine.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry('session.intra_op.allow_spinning') == '0'
    assert engine.session.get_providers() == ['CPUExecutionProvider']
    assert engine.info['intra_op_threads'] == 1


def test_cuda_device_without_gpu_provider_is_a_clear_error(onnx_path):
    import onnxruntime

    if 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has the CUDA provider')
    with pytest.raises(EngineError, match='onnxruntime offers only'):
        create_engine(onnx_path, backend='onnxruntime', device='cuda')


def test_tensorrt_backend_missing_is_a_clear_error(onnx_path):
    from monodepth_ros.engines.tensorrt_engine import tensorrt_status

    usable, reason = tensorrt_status()
    if usable:
        pytest.skip('TensorRT and CUDA are present')
    with pytest.raises(EngineError, match='tensorrt backend unavailable: .*(tensorrt|CUDA)'):
        create_engine(onnx_path, backend='tensorrt')


def test_build_engine_command_says_tensorrt_is_missing(onnx_path, capsys):
    from monodepth_ros.cli import main
    from monodepth_ros.engines.tensorrt_engine import tensorrt_status

    if tensorrt_status()[0]:
        pytest.skip('TensorRT and CUDA are present (see test_tensorrt.py)')
    assert main(['build-engine', str(onnx_path), '--precision', 'fp16']) == 2
    error = capsys.readouterr().err
    assert 'monodepth build-engine: error: cannot build a TensorRT engine' in error
    assert str(onnx_path) in error


def test_unknown_backend_and_precision_rejected(onnx_path):
    with pytest.raises(EngineError, match="unknown backend 'tflite'"):
        create_engine(onnx_path, backend='tflite')
    with pytest.raises(EngineError, match="unknown precision 'fp8'"):
        create_engine(onnx_path, backend='onnxruntime', precision='fp8')


def test_torch_backend_needs_a_checkpoint(onnx_path):
    with pytest.raises(EngineError, match='torch backend needs a .pt checkpoint'):
        create_engine(onnx_path, backend='torch')


# ------------------------------------------------------------------- outputs and parity

def test_outputs_have_the_contract_dtypes_and_shapes(onnx_path, checkpoint):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    for engine in (create_engine(onnx_path, backend='onnxruntime'),
                   create_engine(checkpoint, backend='torch', device='cpu')):
        out = engine.infer(preprocess(rgb, engine.metadata))
        assert isinstance(out, EngineOutput)
        assert out.depth.shape == out.semantics.shape == out.confidence.shape == (HEIGHT, WIDTH)
        assert out.depth.dtype == np.float32 and out.confidence.dtype == np.float32
        assert out.semantics.dtype == np.uint8
        assert out.semantics.max() < len(engine.metadata.class_names)
        # network.py clamps depth to [depth_min, depth_max] (1 m, 80 m here) and confidence
        # to [0, 1]; the float32 bounds are exact.
        assert (engine.metadata.depth_min, engine.metadata.depth_max) == (1.0, 80.0)
        assert out.depth.min() >= np.float32(1.0) and out.depth.max() <= np.float32(80.0)
        assert np.all((out.confidence >= 0) & (out.confidence <= 1))


def test_onnxruntime_matches_torch_on_a_kitti_frame(onnx_path, checkpoint, kitti_rgb):
    torch_engine = create_engine(checkpoint, backend='torch', device='cpu')
    ort_engine = create_engine(onnx_path, backend='onnxruntime')
    assert ort_engine.metadata == dataclasses.replace(
        torch_engine.metadata, source_checkpoint_sha256=hashlib.sha256(
            checkpoint.read_bytes()).hexdigest())
    batch = preprocess(kitti_rgb, torch_engine.metadata)
    reference, candidate = torch_engine.infer(batch), ort_engine.infer(batch)
    # fp32 on both sides: depth within 1e-4 relative, confidence within 1e-5.
    np.testing.assert_allclose(candidate.depth, reference.depth, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(candidate.confidence, reference.confidence, atol=1e-5)
    assert np.mean(candidate.semantics == reference.semantics) >= 0.999


def test_engine_outputs_are_the_raw_network_outputs_decoded(onnx_path, checkpoint, kitti_rgb):
    # Decoding checked against the raw graph and the raw module, not against another engine
    # (which shares the decoding code): depth and confidence are channel 0 of the batch item,
    # semantics the argmax over the class axis.
    import onnxruntime
    import torch

    from monodepth_ros.model.checkpoint import load_model

    ort_engine = create_engine(onnx_path, backend='onnxruntime', device='cpu', num_threads=1)
    batch = preprocess(kitti_rgb, ort_engine.metadata)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1   # the engine's setting: same summation order
    session = onnxruntime.InferenceSession(str(onnx_path), sess_options=options,
                                           providers=['CPUExecutionProvider'])
    names = [output.name for output in session.get_outputs()]
    raw = dict(zip(names, session.run(names, {'image': batch})))
    out = ort_engine.infer(batch)
    np.testing.assert_array_equal(out.semantics, np.argmax(raw['semantic_logits'][0], 0))
    np.testing.assert_array_equal(out.depth, raw['depth'][0, 0])
    np.testing.assert_array_equal(out.confidence, raw['confidence'][0, 0])
    assert len(np.unique(out.semantics)) > 1   # a constant label map would hide a wrong axis

    model, _ = load_model(str(checkpoint), device='cpu')
    with torch.inference_mode():
        outputs = model(torch.from_numpy(batch))
        module = {name: outputs[name].numpy() for name in ('depth', 'semantic_logits',
                                                            'confidence')}
    out = create_engine(checkpoint, backend='torch', device='cpu').infer(batch)
    np.testing.assert_array_equal(out.semantics, np.argmax(module['semantic_logits'][0], 0))
    np.testing.assert_array_equal(out.depth, module['depth'][0, 0])
    np.testing.assert_array_equal(out.confidence, module['confidence'][0, 0])


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    from monodepth_ros.engines.cache import default_cache_dir

    monkeypatch.setenv('MONODEPTH_ENGINE_CACHE', str(tmp_path / 'engines'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert default_cache_dir() == tmp_path / 'engines'
    monkeypatch.setenv('MONODEPTH_ENGINE_CACHE', '~/trt')   # '~' is expanded
    assert default_cache_dir() == tmp_path / 'home' / 'trt'
    monkeypatch.setenv('MONODEPTH_ENGINE_CACHE', '')   # empty means unset
    assert default_cache_dir() == tmp_path / 'xdg' / 'monodepth_ros' / 'engines'
    monkeypatch.delenv('MONODEPTH_ENGINE_CACHE')
    monkeypatch.setenv('XDG_CACHE_HOME', '')
    assert default_cache_dir() == tmp_path / 'home' / '.cache' / 'monodepth_ros' / 'engines'
    monkeypatch.delenv('XDG_CACHE_HOME')
    assert default_cache_dir() == tmp_path / 'home' / '.cache' / 'monodepth_ros' / 'engines'
    assert EngineCache().cache_dir == default_cache_dir()


def test_torch_cuda_device_without_a_gpu_is_a_clear_error(monkeypatch, checkpoint):
    import torch

    from monodepth_ros.engines.torch_engine import resolve_torch_device

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for device in ('cuda', 'cuda:1'):
        with pytest.raises(EngineError, match=f"device '{device}' asked for, but torch sees "
                           'no CUDA GPU .*use device "cpu"'):
            resolve_torch_device(device)
    assert resolve_torch_device('auto') == resolve_torch_device(None) == 'cpu'
    assert resolve_torch_device('cpu') == 'cpu'
    with pytest.raises(EngineError, match="device 'cuda' asked for"):
        create_engine(checkpoint, backend='torch', device='cuda')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert resolve_torch_device('auto') == 'cuda' and resolve_torch_device('cuda:1') == 'cuda:1'


class CountingSession:
    """An ONNX Runtime session whose run calls are counted."""

    def __init__(self, session):
        self.session, self.runs = session, 0

    def run(self, names, feed):
        self.runs += 1
        return self.session.run(names, feed)


def assert_same_outputs(pair, first, far):
    """``infer_pair``'s outputs against the two single runs.

    A batch of two may sum in another order: float32 round-off only.
    """
    pair_first, pair_far_depth = pair
    np.testing.assert_allclose(pair_first.depth, first.depth, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pair_first.confidence, first.confidence, atol=1e-5)
    assert np.mean(pair_first.semantics == first.semantics) >= 0.999
    np.testing.assert_allclose(pair_far_depth, far.depth, rtol=1e-5, atol=1e-5)
    assert pair_far_depth.shape == (HEIGHT, WIDTH) and pair_far_depth.dtype == np.float32
    assert not np.allclose(first.depth, far.depth)   # two different images: order matters


def test_a_pair_runs_as_one_batch_of_two_on_onnxruntime_and_torch(onnx_path, checkpoint,
                                                                   kitti_rgb):
    ort_engine = create_engine(onnx_path, backend='onnxruntime', num_threads=1)
    batch = preprocess(kitti_rgb, ort_engine.metadata)
    far_batch = preprocess(np.ascontiguousarray(kitti_rgb[::-1, ::-1]), ort_engine.metadata)
    singles = ort_engine.infer(batch), ort_engine.infer(far_batch)
    assert ort_engine.batches_pairs   # our export leaves the batch size free
    ort_engine.session = counting = CountingSession(ort_engine.session)
    assert_same_outputs(ort_engine.infer_pair(batch, far_batch), *singles)
    assert counting.runs == 1

    torch_engine = create_engine(checkpoint, backend='torch', device='cpu')
    singles = torch_engine.infer(batch), torch_engine.infer(far_batch)
    assert_same_outputs(torch_engine.infer_pair(batch, far_batch), *singles)
    with pytest.raises(EngineError, match=r'shape \(1, 3, 32, 160\), expected'):
        ort_engine.infer_pair(batch, np.zeros((1, 3, 32, 160), np.float32))


def test_a_graph_fixed_at_batch_one_runs_a_pair_one_after_the_other(onnx_path, kitti_rgb,
                                                                     tmp_path):
    import onnx

    from monodepth_ros.engines.tensorrt_engine import _batch_of_one

    # The copy TensorRT builds from (its engine runs one image at a time), as an older
    # export with a fixed batch of 1 would be.
    static_path = _batch_of_one(onnx_path, tmp_path)
    assert static_path == tmp_path / 'model_batch1.onnx'
    dims = onnx.load(str(static_path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, HEIGHT, WIDTH] and not dims[0].dim_param
    assert _batch_of_one(static_path, tmp_path / 'unused') == static_path   # already fixed
    # Weights in an external file: left as it is (a copy elsewhere would lose them).
    external = tmp_path / 'external' / 'model.onnx'
    external.parent.mkdir()
    onnx.save_model(onnx.load(str(onnx_path)), str(external), save_as_external_data=True,
                    location='model.weights', size_threshold=0)
    assert (external.parent / 'model.weights').is_file()
    assert _batch_of_one(external, tmp_path / 'unused') == external

    free = create_engine(onnx_path, backend='onnxruntime', num_threads=1)
    static = create_engine(static_path, backend='onnxruntime', num_threads=1)
    assert not static.batches_pairs
    batch = preprocess(kitti_rgb, static.metadata)
    far_batch = preprocess(np.ascontiguousarray(kitti_rgb[::-1]), static.metadata)
    singles = free.infer(batch), free.infer(far_batch)
    static.session = counting = CountingSession(static.session)
    pair = static.infer_pair(batch, far_batch)
    assert counting.runs == 2
    assert_same_outputs(pair, *singles)   # the same weights, the batch size fixed


def test_wrong_batch_shape_is_rejected(onnx_path):
    engine = create_engine(onnx_path, backend='onnxruntime')
    with pytest.raises(EngineError, match=r'shape \(1, 3, 32, 160\), expected \(1, 3, 64, 160\)'):
        engine.infer(np.zeros((1, 3, 32, 160), np.float32))


def test_checkpoint_is_exported_once_into_the_cache(checkpoint, tmp_path):
    first = ensure_onnx(checkpoint, tmp_path)
    assert first.parent == tmp_path / 'onnx' and first.suffix == '.onnx'
    stamp = first.stat().st_mtime_ns
    engine = create_engine(checkpoint, backend='onnxruntime', cache_dir=tmp_path)
    assert engine.info['model_file'] == str(first)
    assert first.stat().st_mtime_ns == stamp   # reused, not re-exported


# ---------------------------------------------------------------------------- bad model files

def test_missing_model_file_names_the_file(tmp_path):
    missing = tmp_path / 'nothing.onnx'
    with pytest.raises(ModelFileError, match=f'model file not found: {missing}.*expected'):
        create_engine(missing)


def test_truncated_onnx_names_the_file(onnx_path, tmp_path):
    truncated = tmp_path / 'truncated.onnx'
    truncated.write_bytes(onnx_path.read_bytes()[: onnx_path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=f'{truncated}.*(truncated or corrupt|checker)'):
        create_engine(truncated, backend='onnxruntime')


def test_empty_and_unknown_model_files(tmp_path):
    empty = tmp_path / 'empty.onnx'
    empty.write_bytes(b'')
    with pytest.raises(ModelFileError, match='is empty'):
        create_engine(empty)
    weights = tmp_path / 'model.tflite'
    weights.write_bytes(b'x')
    with pytest.raises(ModelFileError, match="unknown suffix '.tflite'"):
        create_engine(weights)


def test_onnx_without_metadata_is_rejected(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node('Identity', ['image'], ['depth'])
    graph = helper.make_graph([node], 'bare', [helper.make_tensor_value_info(
        'image', TensorProto.FLOAT, [1, 3, 2, 2])], [helper.make_tensor_value_info(
            'depth', TensorProto.FLOAT, [1, 3, 2, 2])])
    path = tmp_path / 'bare.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), str(path))
    with pytest.raises(ModelFileError, match=f'{path} carries no .*metadata'):
        create_engine(path, backend='onnxruntime')


# ------------------------------------------------------------------------------- engine cache
# TensorRT cannot be installed on this machine, so these tests drive the cache with a stand-in
# builder and deserializer; test_tensorrt.py runs the real ones where TensorRT exists.

KEY = EngineKey(onnx_sha256='ab' * 32, tensorrt_version='10.3.0', gpu_name='Orin',
                compute_capability='8.7', sm_count=16, precision='fp16',
                input_shape=(1, 3, 64, 160))


class FakeTensorRT:
    """Builds b'ENGINE|<n>' and deserializes only bytes with that prefix."""

    def __init__(self, build_seconds: float = 0.0):
        self.builds = 0
        self.fail_deserialize = False
        self.build_seconds = build_seconds
        self.lock = threading.Lock()

    def build(self) -> bytes:
        with self.lock:
            self.builds += 1
            count = self.builds
        time.sleep(self.build_seconds)
        return f'ENGINE|{count}'.encode()

    def deserialize(self, data: bytes):
        if self.fail_deserialize:
            self.fail_deserialize = False
            raise RuntimeError('Serialization assertion: version tag mismatch')
        return ('engine', data) if data.startswith(b'ENGINE|') else None


def test_cache_builds_once_then_hits_even_after_a_restart(tmp_path):
    fake = FakeTensorRT()
    first = EngineCache(tmp_path).get_or_build(KEY, fake.build, fake.deserialize)
    assert first.built and first.engine == ('engine', b'ENGINE|1')
    assert first.path == tmp_path / f'{KEY.digest()}.engine'
    sidecar = json.loads((tmp_path / f'{KEY.digest()}.json').read_text())
    assert EngineKey.from_dict(sidecar['key']) == KEY
    assert sidecar['engine_sha256'] == hashlib.sha256(b'ENGINE|1').hexdigest()
    again = EngineCache(tmp_path).get_or_build(KEY, fake.build, fake.deserialize)
    assert not again.built and again.engine == ('engine', b'ENGINE|1') and fake.builds == 1


@pytest.mark.parametrize('field, value', [
    ('onnx_sha256', 'cd' * 32), ('tensorrt_version', '10.7.0'), ('gpu_name', 'RTX 4090'),
    ('compute_capability', '8.9'), ('sm_count', 128), ('precision', 'fp32'),
    ('input_shape', (1, 3, 96, 320)), ('build_recipe', 2)])
def test_cache_miss_when_any_key_field_changes(tmp_path, caplog, field, value):
    fake = FakeTensorRT()
    cache = EngineCache(tmp_path)
    cache.get_or_build(KEY, fake.build, fake.deserialize)
    changed = dataclasses.replace(KEY, **{field: value})
    with caplog.at_level(logging.WARNING, logger='monodepth_ros.engines.cache'):
        result = cache.get_or_build(changed, fake.build, fake.deserialize)
    assert result.built and fake.builds == 2 and result.path != cache.engine_path(KEY)
    if field in ('tensorrt_version', 'gpu_name', 'compute_capability', 'sm_count'):
        # The log says the engine for this model exists but for another TensorRT/GPU.
        assert f'{field} {getattr(KEY, field)} != {value}' in caplog.text
    assert 'building TensorRT engine' in caplog.text


def test_cache_rebuilds_an_engine_that_fails_to_deserialize(tmp_path, caplog):
    fake = FakeTensorRT()
    cache = EngineCache(tmp_path)
    cache.get_or_build(KEY, fake.build, fake.deserialize)
    fake.fail_deserialize = True   # e.g. the TensorRT runtime was patched underneath
    with caplog.at_level(logging.WARNING, logger='monodepth_ros.engines.cache'):
        result = cache.get_or_build(KEY, fake.build, fake.deserialize)
    assert result.built and result.engine == ('engine', b'ENGINE|2')
    assert 'failed to deserialize (RuntimeError: Serialization assertion' in caplog.text


def test_cache_rebuilds_a_corrupt_engine_file(tmp_path):
    fake = FakeTensorRT()
    cache = EngineCache(tmp_path)
    cache.get_or_build(KEY, fake.build, fake.deserialize)
    cache.engine_path(KEY).write_bytes(b'ENGINE|garbage after a power cut')
    result = cache.get_or_build(KEY, fake.build, fake.deserialize)
    assert result.built and 'does not match its sidecar hash' in result.reason
    assert cache.engine_path(KEY).read_bytes() == b'ENGINE|2'


def test_cache_rebuilds_when_the_sidecar_is_missing_or_different(tmp_path):
    fake = FakeTensorRT()
    cache = EngineCache(tmp_path)
    cache.get_or_build(KEY, fake.build, fake.deserialize)
    sidecar = json.loads(cache.sidecar_path(KEY).read_text())
    sidecar['key']['gpu_name'] = 'Xavier'
    cache.sidecar_path(KEY).write_text(json.dumps(sidecar))
    result = cache.get_or_build(KEY, fake.build, fake.deserialize)
    assert result.built and 'gpu_name Xavier != Orin' in result.reason
    cache.sidecar_path(KEY).unlink()
    result = cache.get_or_build(KEY, fake.build, fake.deserialize)
    assert result.built and 'no readable sidecar' in result.reason and fake.builds == 3


def test_cache_raises_when_a_fresh_build_does_not_deserialize(tmp_path):
    with pytest.raises(EngineError, match='just built .* does not deserialize'):
        EngineCache(tmp_path).get_or_build(KEY, lambda: b'not an engine', FakeTensorRT().
                                           deserialize)


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / 'model.engine'
    atomic_write_bytes(target, b'old engine')

    def crash(src, dst):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(OSError, match='disk full'):
        atomic_write_bytes(target, b'new engine')
    assert target.read_bytes() == b'old engine'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.engine']   # no temp left


def test_lock_makes_a_second_starter_wait_then_reuse(tmp_path):
    fake = FakeTensorRT()
    cache = EngineCache(tmp_path)
    results = []
    with file_lock(cache.lock_path(KEY)):   # another process is building this engine
        waiter = threading.Thread(target=lambda: results.append(
            cache.get_or_build(KEY, fake.build, fake.deserialize)))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive() and fake.builds == 0   # blocked on the lock
        atomic_write_bytes(cache.engine_path(KEY), b'ENGINE|other')
        atomic_write_bytes(cache.sidecar_path(KEY), json.dumps(
            {'key': KEY.to_dict(),
             'engine_sha256': hashlib.sha256(b'ENGINE|other').hexdigest()}).encode())
    waiter.join(timeout=10)
    assert fake.builds == 0 and not results[0].built
    assert results[0].engine == ('engine', b'ENGINE|other')


def test_two_concurrent_starts_build_once(tmp_path):
    fake = FakeTensorRT(build_seconds=0.2)
    results = []
    threads = [threading.Thread(target=lambda: results.append(EngineCache(tmp_path).get_or_build(
        KEY, fake.build, fake.deserialize))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert fake.builds == 1 and sorted(r.built for r in results) == [False, True]


def test_timing_cache_is_per_gpu_and_tensorrt_version(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.load_timing_cache(KEY) == b''
    cache.save_timing_cache(KEY, b'timings')
    other_model = dataclasses.replace(KEY, onnx_sha256='ef' * 32, precision='fp32')
    assert cache.load_timing_cache(other_model) == b'timings'   # shared across models
    assert cache.load_timing_cache(dataclasses.replace(KEY, tensorrt_version='10.7.0')) == b''
    assert cache.load_timing_cache(dataclasses.replace(KEY, gpu_name='RTX 4090')) == b''


def _set_age(cache, key, seconds_ago: float) -> None:
    """Date an engine file back, as if built or last used ``seconds_ago``."""
    stamp = time.time_ns() - int(seconds_ago * 1e9)
    os.utime(cache.engine_path(key), ns=(stamp, stamp))


def test_cache_keeps_the_newest_engines_of_each_model(tmp_path):
    fake = FakeTensorRT()
    cache = EngineCache(tmp_path, keep_per_model=2)
    versions = [dataclasses.replace(KEY, onnx_sha256=f'{i:02x}' * 32) for i in range(4)]
    other = dataclasses.replace(KEY, onnx_sha256='ff' * 32)
    cache.get_or_build(other, fake.build, fake.deserialize, model_name='other')
    _set_age(cache, other, 900)
    for age, key in zip((300, 200), versions[:2]):
        cache.get_or_build(key, fake.build, fake.deserialize, model_name='tiny')
        _set_age(cache, key, age)
    # A third 'tiny' engine: the oldest 'tiny' one goes, 'other' is another model.
    cache.get_or_build(versions[2], fake.build, fake.deserialize, model_name='tiny')
    assert not cache.engine_path(versions[0]).exists()
    assert not cache.sidecar_path(versions[0]).exists()
    assert all(cache.engine_path(key).exists() for key in (versions[1], versions[2], other))
    assert json.loads(cache.sidecar_path(versions[2]).read_text())['model_name'] == 'tiny'
    # Loading counts as use: version 1 is hit now, so version 2 is the oldest when 3 arrives.
    _set_age(cache, versions[2], 100)
    assert not cache.get_or_build(versions[1], fake.build, fake.deserialize, 'tiny').built
    cache.get_or_build(versions[3], fake.build, fake.deserialize, model_name='tiny')
    assert sorted(p.name for p in tmp_path.glob('*.engine')) == sorted(
        cache.engine_path(key).name for key in (versions[1], versions[3], other))
    assert fake.builds == 5


def test_prune_skips_an_engine_in_use_and_rejects_keep_zero(tmp_path):
    fake = FakeTensorRT()
    cache = EngineCache(tmp_path, keep_per_model=None)   # never prunes by itself
    old, new = KEY, dataclasses.replace(KEY, onnx_sha256='cd' * 32)
    for age, key in ((60, old), (0, new)):
        cache.get_or_build(key, fake.build, fake.deserialize, model_name='tiny')
        _set_age(cache, key, age)
    assert cache.engine_path(old).exists()
    with file_lock(cache.lock_path(old)):   # another process is loading it right now
        assert cache.prune(keep=1) == []
    assert cache.prune(keep=1) == [cache.engine_path(old)]
    assert [p.name for p in tmp_path.glob('*.engine')] == [cache.engine_path(new).name]
    with pytest.raises(EngineError, match='keeps at least 1 engine per model, got keep=0'):
        cache.prune(keep=0)
    with pytest.raises(EngineError, match='keep_per_model must be at least 1'):
        EngineCache(tmp_path, keep_per_model=0)


def test_prune_groups_a_sidecar_without_model_name_by_its_onnx(tmp_path):
    # An engine cached before names were recorded (and before build recipe 2) is an old
    # build of the same ONNX: the rebuild replaces it.
    fake = FakeTensorRT()
    cache = EngineCache(tmp_path, keep_per_model=1)
    cache.get_or_build(KEY, fake.build, fake.deserialize, model_name='tiny')
    sidecar = json.loads(cache.sidecar_path(KEY).read_text())
    del sidecar['model_name'], sidecar['key']['build_recipe']
    cache.sidecar_path(KEY).write_text(json.dumps(sidecar))
    assert EngineKey.from_dict(sidecar['key']).build_recipe == 1
    _set_age(cache, KEY, 60)
    rebuilt = dataclasses.replace(KEY, build_recipe=2)
    cache.get_or_build(rebuilt, fake.build, fake.deserialize, model_name='tiny')
    assert [p.name for p in tmp_path.glob('*.engine')] == [cache.engine_path(rebuilt).name]


def test_engines_close_once_and_work_as_context_managers(onnx_path):
    batch = np.zeros((1, 3, HEIGHT, WIDTH), dtype=np.float32)
    with create_engine(onnx_path, backend='onnxruntime', device='cpu') as engine:
        assert not engine.closed
        assert engine.infer(batch).depth.shape == (HEIGHT, WIDTH)
    assert engine.closed and engine.session is None
    engine.close()   # a second close is harmless
    with pytest.raises(EngineError, match='onnxruntime engine is closed'):
        engine.infer(batch)


# ----------------------------------------------------------- TensorRT build flags by version
# A stand-in tensorrt module (the real one cannot be installed here) that records what the
# builder is asked for, shaped like the 8.x, 10.x and 11.x Python APIs.

def fake_tensorrt(version: str, creation_flags: dict, builder_flags: dict,
                  build_fails: bool = False):
    import types

    calls = {'network_flags': None, 'builder_flags': [], 'cleared_flags': [], 'parsed': None,
             'workspace': None}

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls['workspace'] = size

        def set_flag(self, flag):
            calls['builder_flags'].append(flag)

        def clear_flag(self, flag):
            calls['cleared_flags'].append(flag)

        def create_timing_cache(self, data):
            calls['timing_in'] = data
            return types.SimpleNamespace(serialize=lambda: b'timing-out')

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls['network_flags'] = flags
            return 'network'

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            return None if build_fails else b'serialized-engine'   # None: TensorRT failed

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            import onnx

            calls['parsed'] = path
            inputs = onnx.load(path).graph.input   # none in the stand-in quantizer's graph
            calls['parsed_input_dims'] = [d.dim_param or d.dim_value for d in
                                          inputs[0].type.tensor_type.shape.dim] if inputs else None
            return True

    module = types.SimpleNamespace(
        __version__=version, Logger=type('Logger', (), {'WARNING': 2, '__init__':
                                                        lambda self, level: None}),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(**creation_flags),
        BuilderFlag=types.SimpleNamespace(**builder_flags),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE='workspace'),
        Builder=Builder, OnnxParser=OnnxParser,
        Runtime=lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: None))
    return module, calls


FLAGS_8 = {'FP16': 'FP16', 'INT8': 'INT8', 'TF32': 'TF32'}
FLAGS_11 = {'TF32': 'TF32'}   # the precision flags are gone; TF32 stays


@pytest.mark.parametrize('version, creation, builder, precision, bits, flags, cleared', [
    # 8.6: explicit batch must be asked for; fp16 through the builder flag.
    ('8.6.1', {'EXPLICIT_BATCH': 0}, FLAGS_8, 'fp16', 1, ['FP16'], []),
    # fp32 clears TF32, which the builder enables by default.
    ('8.6.1', {'EXPLICIT_BATCH': 0}, FLAGS_8, 'fp32', 1, [], ['TF32']),
    # 10.x: explicit batch still listed (deprecated), strongly typed for fp32, flag for fp16.
    ('10.3.0', {'EXPLICIT_BATCH': 0, 'STRONGLY_TYPED': 1}, FLAGS_8, 'fp16', 1, ['FP16'], []),
    ('10.3.0', {'EXPLICIT_BATCH': 0, 'STRONGLY_TYPED': 1}, FLAGS_8, 'fp32', 3, [], ['TF32']),
    # 11.x: no EXPLICIT_BATCH, no precision flags, strongly typed only.
    ('11.1.0', {'STRONGLY_TYPED': 1}, FLAGS_11, 'fp32', 2, [], ['TF32']),
    # A TensorRT without the TF32 flag at all: nothing to clear.
    ('11.1.0', {'STRONGLY_TYPED': 1}, {}, 'fp32', 2, [], []),
])
def test_tensorrt_build_flags_follow_the_installed_version(monkeypatch, onnx_path, version,
                                                           creation, builder, precision, bits,
                                                           flags, cleared):
    import sys

    from monodepth_ros.engines.tensorrt_engine import build_serialized_engine

    module, calls = fake_tensorrt(version, creation, builder)
    monkeypatch.setitem(sys.modules, 'tensorrt', module)
    engine, timing = build_serialized_engine(onnx_path, precision, workspace_gb=0.5,
                                             timing_cache=b'timing-in')
    assert (engine, timing) == (b'serialized-engine', b'timing-out')
    assert calls['network_flags'] == bits and calls['builder_flags'] == flags
    assert calls['cleared_flags'] == cleared
    # Our export's free batch size is fixed at 1 in a copy: the engine runs one image at a time.
    assert calls['parsed'].endswith('model_batch1.onnx') and calls['timing_in'] == b'timing-in'
    assert calls['parsed_input_dims'] == [1, 3, HEIGHT, WIDTH]
    assert calls['workspace'] == 1 << 29


def fake_modelopt(monkeypatch, converts_to_fp16: bool):
    """A stand-in ``modelopt.onnx.quantization.quantize``, current or older release.

    Current: takes ``high_precision_dtype`` and writes FP16 weights outside the Q/DQ nodes.
    Older: has no such option for int8 and keeps FP32 (the input graph is copied).
    """
    import shutil
    import sys
    import types

    import onnx
    from onnx import TensorProto, helper

    seen = {}

    def write(onnx_path, output_path, calibration_data):
        seen['calibration_shape'] = calibration_data['image'].shape
        seen['quantized'] = str(onnx_path)
        if not converts_to_fp16:
            shutil.copy(onnx_path, output_path)
            return
        weight = helper.make_tensor('w', TensorProto.FLOAT16, [1], [1.0])
        graph = helper.make_graph([helper.make_node('Identity', ['w'], ['y'])], 'q', [],
                                  [helper.make_tensor_value_info('y', TensorProto.FLOAT16, [1])],
                                  initializer=[weight])
        onnx.save(helper.make_model(graph), output_path)

    if converts_to_fp16:
        def quantize(onnx_path, quantize_mode, calibration_data, output_path,
                     high_precision_dtype='fp16'):
            seen['high_precision_dtype'] = high_precision_dtype
            write(onnx_path, output_path, calibration_data)
    else:
        def quantize(onnx_path, quantize_mode, calibration_data, output_path):
            write(onnx_path, output_path, calibration_data)

    for name in ('modelopt', 'modelopt.onnx'):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, 'modelopt.onnx.quantization',
                        types.SimpleNamespace(quantize=quantize))
    return seen


TRT_10 = ('10.3.0', {'EXPLICIT_BATCH': 0, 'STRONGLY_TYPED': 1}, FLAGS_8)


@pytest.mark.parametrize('trt_api, converts_to_fp16, bits, flags', [
    # NVIDIA's way: FP16 already in the Q/DQ graph, strongly typed, no precision flags.
    (TRT_10, True, 3, []),
    # Older ModelOpt left FP32 outside Q/DQ: weakly typed with FP16 + INT8 so TensorRT may
    # run those layers in FP16 instead of the FP32 a strongly typed build would give them.
    (TRT_10, False, 1, ['FP16', 'INT8']),
    # 8.6 has no strong typing: weakly typed with both flags either way.
    (('8.6.1', {'EXPLICIT_BATCH': 0}, FLAGS_8), True, 1, ['FP16', 'INT8']),
    # 11.x has only strong typing.
    (('11.1.0', {'STRONGLY_TYPED': 1}, FLAGS_11), True, 2, []),
    (('11.1.0', {'STRONGLY_TYPED': 1}, FLAGS_11), False, 2, []),
])
def test_int8_runs_the_unquantized_layers_in_fp16(monkeypatch, onnx_path, trt_api,
                                                   converts_to_fp16, bits, flags):
    import sys

    from monodepth_ros.engines.tensorrt_engine import build_serialized_engine

    module, calls = fake_tensorrt(*trt_api)
    monkeypatch.setitem(sys.modules, 'tensorrt', module)
    seen = fake_modelopt(monkeypatch, converts_to_fp16)
    calibration = np.zeros((2, 3, HEIGHT, WIDTH), dtype=np.float32)
    assert build_serialized_engine(onnx_path, 'int8', calibration_data=calibration)[0] == (
        b'serialized-engine')
    assert calls['parsed'].endswith('model_int8.onnx')
    assert seen['quantized'].endswith('model_batch1.onnx')   # quantized for one image
    assert calls['network_flags'] == bits and calls['builder_flags'] == flags
    assert calls['cleared_flags'] == []   # TF32 is only cleared for fp32
    assert seen['calibration_shape'] == (2, 3, HEIGHT, WIDTH)
    if converts_to_fp16:
        assert seen['high_precision_dtype'] == 'fp16'


def test_auto_falls_back_to_onnxruntime_when_the_tensorrt_build_fails(monkeypatch, onnx_path,
                                                                      tmp_path, caplog):
    import contextlib
    import sys

    import torch

    import monodepth_ros.engines.tensorrt_engine as trt_engine

    # TensorRT "present" on a GPU, but the builder fails (returns None) as on an
    # unsupported layer; no real GPU is touched before the build.
    module, calls = fake_tensorrt(*TRT_10, build_fails=True)
    monkeypatch.setitem(sys.modules, 'tensorrt', module)
    monkeypatch.setattr(trt_engine, 'tensorrt_status', lambda: (True, 'TensorRT 10.3.0 on Orin'))
    monkeypatch.setattr(trt_engine, 'cuda_device_index', lambda device='auto': 0)
    monkeypatch.setattr(trt_engine, 'make_engine_key', lambda *args: KEY)
    monkeypatch.setattr(torch.cuda, 'device', lambda device: contextlib.nullcontext())
    with caplog.at_level(logging.WARNING, logger='monodepth_ros.engines'):
        engine = create_engine(onnx_path, backend='auto', cache_dir=tmp_path)
    assert calls['parsed'].endswith('model_batch1.onnx')   # the build was really tried
    assert engine.name == 'onnxruntime'
    assert engine.info['selection'].startswith('tensorrt failed: TensorRT failed to build an '
                                               f'engine from {onnx_path}')
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith(f'TensorRT cannot run {onnx_path} (TensorRT failed to build')
               and m.endswith('falling back to onnxruntime') for m in warnings)
    assert not list(tmp_path.glob('*.engine'))
    # Asked for by name, TensorRT's failure is the caller's to see.
    with pytest.raises(EngineError, match=f'TensorRT failed to build an engine from '
                       f'{onnx_path} \\(fp16\\)'):
        create_engine(onnx_path, backend='tensorrt', cache_dir=tmp_path)


def test_model_name_drops_the_export_hash():
    from monodepth_ros.engines.tensorrt_engine import model_name_of

    assert model_name_of('/cache/onnx/tiny-0123456789abcdef.onnx') == 'tiny'
    assert model_name_of('road-model.onnx') == 'road-model'   # no hash: the stem as is
    assert model_name_of('tiny-0123456789ABCDEF.onnx') == 'tiny-0123456789ABCDEF'


def test_tensorrt_11_fp16_and_int8_need_modelopt(monkeypatch, onnx_path):
    import sys

    from monodepth_ros.engines.tensorrt_engine import build_serialized_engine

    module, _ = fake_tensorrt('11.1.0', {'STRONGLY_TYPED': 1}, {})
    monkeypatch.setitem(sys.modules, 'tensorrt', module)
    monkeypatch.setitem(sys.modules, 'modelopt', None)   # not installed
    with pytest.raises(EngineError, match='FP16 engines only from a mixed-precision ONNX.*'
                       'ModelOpt'):
        build_serialized_engine(onnx_path, 'fp16')
    with pytest.raises(EngineError, match='INT8 engines .* explicit Q/DQ .* ModelOpt'):
        build_serialized_engine(onnx_path, 'int8')


def test_int8_calibration_batch_from_a_folder_of_frames(kitti_drive_dir, tmp_path):
    from monodepth_ros.engines.build import load_calibration_batch
    from monodepth_ros.errors import DatasetError

    metadata = ModelMetadata(input_height=HEIGHT, input_width=WIDTH)
    frames = kitti_drive_dir / 'image_02' / 'data'
    count = len(list(frames.glob('*.png')))
    batch = load_calibration_batch(frames, metadata, limit=3)
    assert batch.shape == (min(3, count), 3, HEIGHT, WIDTH) and batch.dtype == np.float32
    # Each sample is exactly what the runtime feeds the network for that frame.
    import cv2

    first = cv2.cvtColor(cv2.imread(str(sorted(frames.glob('*.png'))[0])), cv2.COLOR_BGR2RGB)
    first = cv2.resize(first, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(batch[0], preprocess(first, metadata)[0])
    with pytest.raises(DatasetError, match=f'no calibration images .* in {tmp_path}'):
        load_calibration_batch(tmp_path, metadata)
