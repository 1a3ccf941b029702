"""ONNX export: graph contract, metadata round trip, self-check on a KITTI frame, bad inputs."""

import hashlib

import numpy as np
import pytest
from conftest import CHECKPOINT_HEIGHT as HEIGHT
from conftest import CHECKPOINT_WIDTH as WIDTH
from conftest import save_tiny_checkpoint

from monodepth_ros.errors import ConfigError, ModelFileError
from monodepth_ros.model.export import (
    DEPTH_REL_TOL,
    OPSET,
    compare_outputs,
    export_onnx,
    load_check_image,
)
from monodepth_ros.model.metadata import METADATA_KEY, OUTPUT_NAMES, ModelMetadata


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    """The narrow network: for tests about files, sizes and the CLI, not about the graph."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp('export') / 'tiny.pt')


@pytest.fixture(scope='module')
def full_width_checkpoint(tmp_path_factory):
    """The 'tiny' network at its default width (80 bins, 64 ASPP channels)."""
    from monodepth_ros.model.network import NetworkConfig

    return save_tiny_checkpoint(tmp_path_factory.mktemp('export_full') / 'tiny.pt',
                                config=NetworkConfig(encoder='tiny'))


@pytest.fixture(scope='module')
def exported(full_width_checkpoint, kitti_drive_dir):
    # The one export at a realistic size: default width, 96x320 (KITTI's aspect ratio),
    # self-checked on a real frame.
    frame = kitti_drive_dir / 'image_02' / 'data' / '0000000000.png'
    return export_onnx(full_width_checkpoint, full_width_checkpoint.with_suffix('.onnx'), 96,
                       320, check_image=frame)


def test_graph_is_opset_17_static_size_free_batch_with_named_io_and_passes_the_checker(exported):
    import onnx

    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model, full_check=True)
    assert {op.domain: op.version for op in model.opset_import}[''] == OPSET == 17
    def dims(value):   # the batch size is free (named 'batch'), the image size fixed
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    (image,) = model.graph.input
    assert image.name == 'image' and dims(image) == ['batch', 3, 96, 320]
    assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    shapes = {o.name: dims(o) for o in model.graph.output}
    assert shapes == {'depth': ['batch', 1, 96, 320], 'semantic_logits': ['batch', 19, 96, 320],
                      'confidence': ['batch', 1, 96, 320]}
    ops = {node.op_type for node in model.graph.node}
    assert 'ArgMax' not in ops   # the argmax stays outside the graph
    assert 'LogSoftmax' not in ops   # decomposed for ONNX Runtime's CPU (see export.py)


def test_metadata_round_trips_through_the_onnx_file(exported, full_width_checkpoint):
    import onnx

    from monodepth_ros.model.checkpoint import load_model

    props = {p.key: p.value for p in onnx.load(str(exported.path)).metadata_props}
    stored = ModelMetadata.from_json(props[METADATA_KEY])
    _, trained = load_model(full_width_checkpoint)
    assert (trained.input_height, trained.input_width) == (HEIGHT, WIDTH)
    assert (stored.input_height, stored.input_width) == (96, 320)   # the export size
    assert stored.source_checkpoint_sha256 == hashlib.sha256(
        full_width_checkpoint.read_bytes()).hexdigest()
    assert stored.network == trained.network and stored.network['encoder'] == 'tiny'
    assert stored.num_bins == 80 and stored.network['aspp_channels'] == 64
    for name in ('depth_min', 'depth_max', 'num_bins', 'mean', 'std', 'class_names',
                 'class_colors'):
        assert getattr(stored, name) == getattr(trained, name)
    assert stored == exported.metadata


def test_self_check_compares_on_the_kitti_frame_within_tolerance(exported):
    parity = exported.parity
    assert parity.image_source.endswith('image_02/data/0000000000.png')
    print(parity.summary())
    # The stated tolerance is 1e-3 relative; fp32 CPU on both sides is far inside it.
    assert DEPTH_REL_TOL == 1e-3 and parity.depth_max_rel_diff <= 1e-4
    assert parity.confidence_max_abs_diff <= 1e-5 and parity.label_agreement >= 0.999
    assert parity.passed()


def test_log_softmax_decomposition_is_exact_and_stable(tmp_path):
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    from monodepth_ros.model.export import decompose_channel_log_softmax

    graph = helper.make_graph(
        [helper.make_node('LogSoftmax', ['x'], ['y'], axis=1)], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4, 2, 3])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4, 2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    assert decompose_channel_log_softmax(model) == 1
    onnx.checker.check_model(model)
    assert 'LogSoftmax' not in {node.op_type for node in model.graph.node}
    x = np.random.default_rng(0).normal(scale=5, size=(1, 4, 2, 3)).astype(np.float32)
    x[0, :, 0, 0] = (1000, 999, 0, -1000)   # exp would overflow without the max shift
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=['CPUExecutionProvider'])
    (y,) = session.run(None, {'x': x})
    x64 = x.astype(np.float64)
    expected = x64 - x64.max(axis=1, keepdims=True)
    expected -= np.log(np.exp(expected).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert y[0, 0, 0, 0] == pytest.approx(-np.log1p(np.exp(-1.0)), abs=1e-6)


def test_compare_outputs_detects_a_one_percent_depth_error():
    rng = np.random.default_rng(0)
    reference = {'depth': rng.uniform(1, 80, (1, 1, 4, 5)).astype(np.float32),
                 'semantic_logits': rng.normal(size=(1, 19, 4, 5)).astype(np.float32),
                 'confidence': rng.uniform(0, 1, (1, 1, 4, 5)).astype(np.float32)}
    same = compare_outputs(reference, reference, 'test')
    assert same.depth_max_abs_diff == 0 and same.label_agreement == 1 and same.passed()
    scaled = dict(reference, depth=reference['depth'] * 1.01)
    report = compare_outputs(reference, scaled, 'test')
    assert report.depth_max_abs_diff == pytest.approx(0.01 * reference['depth'].max(), rel=1e-5)
    assert not report.passed()
    flipped = dict(reference, semantic_logits=-reference['semantic_logits'])
    assert not compare_outputs(reference, flipped, 'test').passed()


def test_size_not_divisible_by_the_stride_is_rejected(tiny_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match=r'375x100 .* multiples of the network stride 32'):
        export_onnx(tiny_checkpoint, tmp_path / 'bad.onnx', height=100, width=375)
    assert not (tmp_path / 'bad.onnx').exists()


def test_missing_and_truncated_checkpoints_name_the_file(tiny_checkpoint, tmp_path):
    with pytest.raises(ModelFileError, match=f'not found: {tmp_path / "gone.pt"}'):
        export_onnx(tmp_path / 'gone.pt', tmp_path / 'out.onnx')
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match=f'{truncated} is unreadable or corrupt'):
        export_onnx(truncated, tmp_path / 'out.onnx')
    assert not (tmp_path / 'out.onnx').exists()


def test_synthetic_check_image_when_no_frame_is_given(monkeypatch):
    monkeypatch.setattr('monodepth_ros.model.export.default_check_image_path', lambda: None)
    rgb, source = load_check_image(64, 96)
    assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8 and 'synthetic' in source
    assert rgb.std() > 20   # a textured image, not a constant


def test_export_command_writes_and_reports(tiny_checkpoint, tmp_path, capsys):
    from monodepth_ros.cli import main

    out = tmp_path / 'cli.onnx'
    assert main(['export', str(tiny_checkpoint), '--out', str(out), '--check-image',
                 str(_first_frame())]) == 0
    printed = capsys.readouterr().out
    assert f'wrote {out} (input {WIDTH}x{HEIGHT}, opset 17' in printed
    assert 'ONNX Runtime vs PyTorch on' in printed and 'tolerance 0.001' in printed
    assert out.is_file()


def _first_frame():
    from conftest import KITTI_DRIVE_DIR

    frame = KITTI_DRIVE_DIR / 'image_02' / 'data' / '0000000000.png'
    if not frame.is_file():
        pytest.skip(f'KITTI frame not found at {frame}')
    return frame


def test_failed_self_check_raises_and_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    import monodepth_ros.model.export as export
    from monodepth_ros.errors import EngineError

    original = export.compare_outputs

    def off_by_two_percent(reference, candidate, source):
        return original(reference, dict(candidate, depth=candidate['depth'] * 1.02), source)

    monkeypatch.setattr(export, 'compare_outputs', off_by_two_percent)
    out = tmp_path / 'bad.onnx'
    with pytest.raises(EngineError, match=f'export self-check failed for {out}: .*tolerance'):
        export.export_onnx(tiny_checkpoint, out)
    assert list(tmp_path.iterdir()) == []
