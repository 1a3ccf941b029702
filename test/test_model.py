"""Tests of the network and checkpoints: shapes, fusion masks, ONNX export, load errors."""

import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from monodepth_ros.errors import ConfigError, ModelFileError
from monodepth_ros.model.checkpoint import load_model, save_checkpoint
from monodepth_ros.model.metadata import ModelMetadata
from monodepth_ros.model.network import (
    InferenceWrapper,
    NetworkConfig,
    build_network,
    hierarchical_masks,
)

SMALL = dict(encoder='tiny', num_bins=16, tiny_channels=(8, 8, 16, 16, 16),
             decoder_channels=(16, 16, 8, 8, 8), aspp_channels=16, aspp_dilations=(1, 2))


def small_net(**changes):
    torch.manual_seed(0)
    return build_network(NetworkConfig(**{**SMALL, **changes}))


@pytest.mark.parametrize('size', [(64, 96), (96, 320)])
def test_forward_shapes_and_ranges(size):
    net = small_net().eval()
    assert net.stride == 32
    with torch.no_grad():
        out = net(torch.randn(2, 3, *size))
    height, width = size
    assert out['depth'].shape == (2, 1, height, width)
    assert out['semantic_logits'].shape == (2, 19, height, width)
    assert out['confidence'].shape == (2, 1, height, width)
    assert [tuple(t.shape[-2:]) for t in out['bin_logits']] == [
        (height // s, width // s) for s in (8, 4, 2, 1)]
    assert all(t.shape[1] == 16 for t in out['bin_logits'])
    assert float(out['depth'].min()) >= 1.0 and float(out['depth'].max()) <= 80.0
    assert float(out['confidence'].min()) >= 0.0 and float(out['confidence'].max()) <= 1.0


def test_fusion_masks_sum_to_one():
    net = small_net().eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 128))
    total = sum(out['masks'])
    assert len(out['masks']) == 4
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-6, rtol=0)


def test_hierarchical_masks_hand_computed():
    a8, a4, a2 = (torch.tensor([v]) for v in (0.5, 0.2, 0.25))
    masks = hierarchical_masks([a8, a4, a2])
    # M8 = .5, M4 = .2 * .5, M2 = .25 * .5 * .8, M1 = .5 * .8 * .75
    expected = [0.5, 0.1, 0.1, 0.3]
    assert [round(float(m), 6) for m in masks] == expected


def test_regression_starts_at_the_classification_expectation():
    net = small_net().eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    assert float(out['log_depth_residual'].abs().max()) == 0.0
    expected = torch.exp(out['log_depth_classification']).clamp(1.0, 80.0)
    torch.testing.assert_close(out['depth'], expected)


def test_uniform_bins_give_zero_confidence_and_geometric_mean_depth():
    net = small_net().eval()
    for head in net.depth_heads:   # zero logits: uniform distribution over the bins
        torch.nn.init.zeros_(head.bins.weight)
        torch.nn.init.zeros_(head.bins.bias)
    with torch.no_grad():
        out = net(torch.randn(1, 3, 32, 64))
    # Uniform over K log-spaced centres: mean log depth = (log 1 + log 80) / 2.
    torch.testing.assert_close(out['depth'], torch.full_like(out['depth'], math.sqrt(80.0)),
                               rtol=1e-5, atol=1e-4)
    assert float(out['confidence'].abs().max()) < 1e-5


def test_unknown_encoder_rejected():
    with pytest.raises(ConfigError, match='unknown encoder'):
        NetworkConfig(encoder='vgg99')
    with pytest.raises(ConfigError, match='depth_min'):
        NetworkConfig(depth_min=10.0, depth_max=5.0)


def test_torchvision_encoder_resnet18_without_weights():
    net = build_network(NetworkConfig(encoder='resnet18', num_bins=8, pretrained=False))
    with torch.no_grad():
        out = net.eval()(torch.randn(1, 3, 64, 64))
    assert out['depth'].shape == (1, 1, 64, 64)


def test_onnx_export_passes_checker():
    onnx = pytest.importorskip('onnx')
    net = small_net().eval()
    buffer = io.BytesIO()
    # The wrapper must be in eval mode too: export restores the wrapper's own mode afterwards.
    torch.onnx.export(InferenceWrapper(net).eval(), torch.randn(1, 3, 64, 96), buffer,
                      opset_version=17, dynamo=False, input_names=['image'],
                      output_names=['depth', 'semantic_logits', 'confidence'])
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert 'ArgMax' not in ops
    ort = pytest.importorskip('onnxruntime')
    session = ort.InferenceSession(buffer.getvalue(), providers=['CPUExecutionProvider'])
    image = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    depth = session.run(['depth'], {'image': image})[0]
    with torch.no_grad():
        expected = net(torch.from_numpy(image))['depth'].numpy()
    np.testing.assert_allclose(depth, expected, rtol=1e-3, atol=1e-3)


def _metadata():
    return ModelMetadata(input_height=64, input_width=96, num_bins=16)


def test_checkpoint_round_trip(tmp_path):
    net = small_net()
    config = NetworkConfig(**SMALL)
    path = save_checkpoint(tmp_path / 'model.pt', net, config, _metadata())
    assert not list(tmp_path.glob('*.tmp'))
    loaded, metadata = load_model(path)
    assert not loaded.training
    assert metadata.input_width == 96 and metadata.network['num_bins'] == 16
    original, restored = net.state_dict(), loaded.state_dict()
    assert list(original) == list(restored)
    for name in original:
        assert torch.equal(original[name], restored[name]), name


def test_checkpoint_missing_and_corrupt(tmp_path):
    with pytest.raises(ModelFileError, match='not found'):
        load_model(tmp_path / 'nothing.pt')
    net = small_net()
    path = save_checkpoint(tmp_path / 'model.pt', net, NetworkConfig(**SMALL), _metadata())
    data = path.read_bytes()
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFileError, match='unreadable or corrupt'):
        load_model(truncated)
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'not a checkpoint at all')
    with pytest.raises(ModelFileError, match='unreadable or corrupt'):
        load_model(garbage)


def test_checkpoint_from_another_configuration(tmp_path):
    net = small_net()
    path = save_checkpoint(tmp_path / 'model.pt', net, NetworkConfig(**SMALL), _metadata())
    with pytest.raises(ModelFileError, match=r'num_bins: checkpoint 16 vs requested 32'):
        load_model(path, network_config=NetworkConfig(**{**SMALL, 'num_bins': 32}))
    # A checkpoint whose stored config does not match its weights names the tensors.
    other = small_net(num_bins=32)
    bad = save_checkpoint(tmp_path / 'bad.pt', other, NetworkConfig(**SMALL), _metadata())
    with pytest.raises(ModelFileError, match=r'shape mismatch .*bins\.weight'):
        load_model(bad)


def test_checkpoint_rejects_pickled_code(tmp_path):
    path = tmp_path / 'evil.pt'
    torch.save({'format': 'monodepth_ros.checkpoint/1', 'network': {}, 'metadata': {},
                'model': {}, 'payload': ModelMetadata(input_height=1, input_width=1)}, path)
    with pytest.raises(ModelFileError, match='holds Python objects other than tensors'):
        load_model(path)


def test_forward_heads_subset_matches_full_forward():
    net = small_net().eval()
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        full = net(image)
        depth_only = net(image, heads=('depth',))
        semantic_only = net(image, heads=('semantic',))
    assert 'semantic_logits' not in depth_only and set(semantic_only) == {'semantic_logits'}
    for key in ('depth', 'confidence', 'log_depth_classification', 'log_depth_residual'):
        assert torch.equal(depth_only[key], full[key]), key
    assert torch.equal(semantic_only['semantic_logits'], full['semantic_logits'])
    with pytest.raises(ValueError, match='heads must name'):
        net(image, heads=('normals',))


DEFAULT_MODEL = Path(__file__).resolve().parents[1] / 'monodepth_ros' / 'models' / 'default.pt'


def test_packaged_default_model_loads_and_predicts():
    assert hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest() == (
        '85e760e459014776d429e6bb0c1a0f92831d6de03b2e08fa0e0f58c0462e6ff1')
    model, metadata = load_model(DEFAULT_MODEL)   # strict: every tensor name and shape fits
    stored = torch.load(DEFAULT_MODEL, map_location='cpu', weights_only=True)['model']
    assert list(model.state_dict()) == list(stored)
    assert (metadata.input_height, metadata.input_width, metadata.num_bins) == (96, 320, 64)
    assert metadata.network['encoder'] == 'efficientnet_lite2'
    # Camera-aware: KITTI's focal length at 1242 px scaled to the 320 px input.
    assert metadata.canonical_focal == pytest.approx(721.5377 * 320 / 1242)
    torch.manual_seed(0)
    image = torch.randn(1, 3, 96, 320)
    with torch.no_grad():
        out = model(image)
        runtime = InferenceWrapper(model)(image)
    assert torch.equal(runtime[0], out['depth']) and torch.equal(runtime[2], out['confidence'])
    assert out['semantic_logits'].shape == (1, 19, 96, 320)
    assert float(out['depth'].min()) >= 1.0 and float(out['depth'].max()) <= 80.0


def test_default_model_depth_on_a_synthetic_frame():
    """The packaged model still predicts metric depth on a drive it never saw (abs_rel 0.1)."""
    world = pytest.importorskip('monodepth_ros.synthetic.world')
    from monodepth_ros.training.datasets import normalize_image

    model, metadata = load_model(DEFAULT_MODEL)
    size = (metadata.input_width, metadata.input_height)
    frame = world.SyntheticDrive(seed=951).render(0, lidar=False, size=size)
    with torch.no_grad():
        depth = model(normalize_image(frame.rgb)[None])['depth'][0, 0].numpy()
    valid = np.isfinite(frame.depth) & (frame.depth > 1.0) & (frame.depth < 80.0)
    abs_rel = float(np.mean(np.abs(depth[valid] - frame.depth[valid]) / frame.depth[valid]))
    assert abs_rel < 0.3


@pytest.mark.parametrize('seed', [951, 952])
def test_default_model_gives_the_same_metric_depth_through_two_lenses(seed):
    """One synthetic scene seen through KITTI's lens and a 1.25x longer one, same image size.

    The longer lens shows every object 1.25x larger; the network alone would put it 1.25x
    closer. With the pipeline's rescaling by the CameraInfo focal length, both give the
    ground-truth depth (median ratio within 6 %), while the unscaled depth of the longer lens
    is more than 15 % short.
    """
    import cv2

    from monodepth_ros.engines import create_engine
    from monodepth_ros.runtime.pipeline import DepthPipeline
    from monodepth_ros.synthetic.world import DriveConfig, SyntheticDrive

    pipeline = DepthPipeline(create_engine(str(DEFAULT_MODEL), backend='torch'))
    width, height = pipeline.network_size
    ratios = {}
    for focal_scale in (1.0, 1.25):
        drive = SyntheticDrive(seed=seed, config=DriveConfig(width=2 * width, height=2 * height,
                                                             focal_scale=focal_scale))
        frame = drive.render(0, lidar=False)
        result = pipeline.process_arrays(frame.rgb, frame.camera, {'depth'})
        truth = cv2.resize(np.nan_to_num(frame.depth, nan=0.0), (width, height),
                           interpolation=cv2.INTER_NEAREST)
        valid = (truth > 1.0) & (truth < 80.0)
        ratio = float(np.median(result.depth[valid] / truth[valid]))
        ratios[focal_scale] = (ratio, ratio / result.depth_scale)
    for focal_scale, (scaled, _) in ratios.items():
        assert abs(scaled - 1.0) < 0.06, (focal_scale, ratios)
    assert abs(ratios[1.25][0] / ratios[1.0][0] - 1.0) < 0.06
    assert ratios[1.25][1] < 0.85   # what the network alone gives for the longer lens
