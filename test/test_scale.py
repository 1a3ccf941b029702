"""Metric scale (runtime.scale): fits on made-up data, smoothing, synthetic drives, pipeline."""

import math

import numpy as np
import pytest

from monodepth_ros.errors import ConfigError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.runtime.scale import (
    MetricScaler,
    ScaleFit,
    ScaleReference,
    ScaleSettings,
    ScaleSmoother,
    fit_to_ground,
    fit_to_lidar,
    ground_normal_from_mounting,
    resolve_mode,
    robust_line_fit,
    to_metres,
)

KINDS = {'metric': (0.7, 0.0), 'affine_depth': (0.5, 2.0), 'affine_inverse_depth': (0.02, 0.01)}


def raw_from_metres(depth: np.ndarray, kind: str) -> np.ndarray:
    """What a model of ``kind`` with the scale and shift of KINDS outputs for ``depth``."""
    scale, shift = KINDS[kind]
    target = 1.0 / depth if kind == 'affine_inverse_depth' else depth
    return ((target - shift) / scale).astype(np.float32)


@pytest.mark.parametrize('with_shift', [True, False])
def test_line_fit_is_exact_on_noiseless_data_with_a_fifth_of_outliers(with_shift):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 5.0, 5000)
    shift = 0.7 if with_shift else 0.0
    y = 2.5 * x + shift
    outliers = rng.random(x.size) < 0.2
    y[outliers] = rng.uniform(0.0, 30.0, outliers.sum())
    for consensus in (None, 0.03):
        scale, fitted_shift, keep = robust_line_fit(x, y, with_shift, consensus=consensus)
        assert scale == pytest.approx(2.5, abs=1e-6)
        assert fitted_shift == pytest.approx(shift, abs=1e-6)
        # Every clean point kept, every outlier off the line dropped.
        assert keep[~outliers].all()
        assert not keep[outliers & (np.abs(y - 2.5 * x - shift) > 1e-3)].any()


def test_line_fit_with_noise_and_outliers_stays_close():
    rng = np.random.default_rng(2)
    x = rng.uniform(0.1, 5.0, 5000)
    y = (2.5 * x + 0.7) * (1 + 0.02 * rng.standard_normal(x.size))
    outliers = rng.random(x.size) < 0.2
    y[outliers] = rng.uniform(0.0, 30.0, outliers.sum())
    scale, shift, _ = robust_line_fit(x, y)
    assert scale == pytest.approx(2.5, rel=0.01)
    assert shift == pytest.approx(0.7, abs=0.05)


def test_to_metres_of_each_kind_and_invalid_values():
    raw = np.array([[1.0, 2.0, -100.0, np.nan]], np.float32)
    np.testing.assert_allclose(to_metres(raw, 'affine_depth', 2.0, 1.0)[0, :2], [3.0, 5.0])
    np.testing.assert_allclose(to_metres(raw, 'affine_inverse_depth', 0.5, 0.0)[0, :2],
                               [2.0, 1.0])
    for kind in ('affine_depth', 'affine_inverse_depth'):
        assert np.isnan(to_metres(raw, kind, 2.0, 1.0)[0, 2:]).all()


def _flat_world(kind: str):
    """A level camera 1.5 m above a flat ground with a wall 12 m ahead: raw output, truth."""
    camera = CameraModel.from_intrinsics(120.0, 120.0, 79.5, 29.5, 160, 60)
    ray_x, ray_y = camera.pixel_rays()
    with np.errstate(divide='ignore'):
        ground = np.where(ray_y[:, None] > 0, 1.5 / ray_y[:, None], np.inf)
    depth = np.minimum(np.broadcast_to(ground, (60, 160)), 12.0).astype(np.float64)
    return camera, depth, raw_from_metres(depth, kind)


@pytest.mark.parametrize('kind', list(KINDS))
def test_ground_and_lidar_recover_the_scale_of_a_flat_world_exactly(kind):
    camera, depth, raw = _flat_world(kind)
    scale, shift = KINDS[kind]
    ground = fit_to_ground(raw, kind, camera, 1.5)   # a level camera: the normal is known
    assert ground.scale == pytest.approx(scale, rel=1e-6)
    assert ground.shift == pytest.approx(shift, abs=1e-6)
    assert ground.residual == pytest.approx(0.0, abs=1e-5)
    # LiDAR points: the truth back-projected at every 3rd pixel, in the camera frame.
    ray_x, ray_y = camera.pixel_rays()
    z = depth[::3, ::3]
    points = np.stack([ray_x[None, ::3] * z, ray_y[::3, None] * z, z], -1).reshape(-1, 3)
    lidar = fit_to_lidar(raw, kind, camera, points)
    assert lidar.scale == pytest.approx(scale, rel=1e-5)
    assert lidar.shift == pytest.approx(shift, abs=1e-5)
    assert lidar.points > 500


def test_ground_needs_a_height_and_few_points_give_no_fit():
    camera, _, raw = _flat_world('metric')
    with pytest.raises(ConfigError, match='camera height'):
        fit_to_ground(raw, 'metric', camera, math.nan)
    assert fit_to_lidar(raw, 'metric', camera, np.array([[0.0, 0.0, 5.0]])) is None


def test_smoother_reduces_jitter_and_resets_on_a_jump():
    rng = np.random.default_rng(3)
    fits = [ScaleFit(float(np.exp(0.05 * rng.standard_normal())), 0.0, 0.1, 100)
            for _ in range(200)]
    smoother = ScaleSmoother()
    smoothed = []
    for fit in fits:
        smoother.update(fit)
        smoothed.append(math.log(smoother.scale))
    raw_jitter = np.std(np.diff([math.log(fit.scale) for fit in fits]))
    assert np.std(np.diff(smoothed)) < 0.5 * raw_jitter
    # One outlier is rejected: the scale holds.
    before = smoother.scale
    assert smoother.update(ScaleFit(3.0, 0.0, 0.1, 100)) == (False, False)
    assert smoother.scale == before
    # A lasting jump (a new camera) resets it after reset_frames frames.
    assert smoother.update(ScaleFit(3.1, 0.0, 0.1, 100)) == (False, False)
    assert smoother.update(ScaleFit(2.9, 0.0, 0.1, 100)) == (True, True)
    assert smoother.scale == pytest.approx(3.0)


def test_modes_resolve_or_fail_with_one_line():
    assert resolve_mode('auto', 'metric', lidar=False, height=False) == 'none'
    assert resolve_mode('auto', 'affine_depth', lidar=True, height=True) == 'lidar'
    assert resolve_mode('auto', 'affine_inverse_depth', lidar=False, height=True) == 'ground'
    for mode, kind, match in (('auto', 'affine_depth', '--scale ground --camera-height'),
                              ('lidar', 'metric', 'needs LiDAR points'),
                              ('ground', 'metric', 'mounting height'),
                              ('none', 'affine_depth', 'needs a metric model'),
                              ('bogus', 'metric', 'scale mode must be one of')):
        with pytest.raises(ConfigError, match=match) as error:
            resolve_mode(mode, kind, lidar=False, height=False)
        assert '\n' not in str(error.value)


def test_scaler_holds_its_scale_when_a_frame_has_too_few_points():
    camera, depth, raw = _flat_world('affine_depth')
    scaler = MetricScaler(ScaleSettings('lidar', lidar=True))
    # No scale yet: an affine model has no metres, all NaN (never a made-up scale).
    out, estimate = scaler.apply(raw, 'affine_depth', camera, ScaleReference())
    assert np.isnan(out).all() and estimate.scale is None and estimate.held
    ray_x, ray_y = camera.pixel_rays()
    z = depth[::2, ::2]
    points = np.stack([ray_x[None, ::2] * z, ray_y[::2, None] * z, z], -1).reshape(-1, 3)
    out, estimate = scaler.apply(raw, 'affine_depth', camera, ScaleReference(points))
    np.testing.assert_allclose(out, depth, rtol=1e-5)
    out_held, held = scaler.apply(raw, 'affine_depth', camera,
                                  ScaleReference(points[:3]))
    assert held.held and held.points == 0 and held.scale == estimate.scale
    np.testing.assert_array_equal(out_held, out)
    assert scaler.frames_held == 2


# -- a synthetic drive with exact ground truth and a known camera mounting ---------------
@pytest.fixture(scope='module')
def drive_frames():
    from monodepth_ros.synthetic.world import DriveConfig, SyntheticDrive

    drive = SyntheticDrive(3, DriveConfig(width=416, height=128, camera_height=1.6))
    return drive, [drive.render(index) for index in range(0, 40, 4)]


@pytest.mark.parametrize('kind', ['affine_depth', 'affine_inverse_depth'])
def test_synthetic_drive_ground_within_5_and_lidar_within_2_percent(drive_frames, kind):
    drive, frames = drive_frames
    scale = KINDS[kind][0]
    normal, height = ground_normal_from_mounting(drive.T_base_from_camera)
    assert height == pytest.approx(1.6)
    ground_errors, lidar_errors = [], []
    for frame in frames:
        raw = raw_from_metres(frame.depth, kind)    # sky: NaN, as a model's invalid output
        ground = fit_to_ground(raw, kind, frame.camera, height, normal)
        ground_errors.append(abs(ground.scale / scale - 1))
        points = np.stack([frame.lidar[axis] for axis in 'xyz'], -1)
        lidar = fit_to_lidar(raw, kind, frame.camera, points, drive.T_camera_from_lidar)
        lidar_errors.append(abs(lidar.scale / scale - 1))
    assert np.median(ground_errors) < 0.05
    assert np.median(lidar_errors) < 0.02


def test_synthetic_drive_ground_for_a_misscaled_metric_model_fits_its_own_normal(drive_frames):
    drive, frames = drive_frames
    errors = [abs(fit_to_ground(raw_from_metres(frame.depth, 'metric'), 'metric', frame.camera,
                                drive.camera_height).scale / 0.7 - 1) for frame in frames]
    assert np.median(errors) < 0.05


# -- the scale stage of the pipeline (a real tiny ONNX model) ----------------------------
CAMERA = CameraModel.from_intrinsics(fx=200.0, fy=200.0, cx=120.0, cy=60.0, width=256,
                                     height=128)


def _image(width=256, height=128):
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    return np.stack([u % 256, v * 2 % 256, (u + v) % 256], axis=-1).astype(np.uint8)


@pytest.fixture(scope='module')
def engine(tiny_onnx):
    from monodepth_ros.engines import create_engine

    return create_engine(str(tiny_onnx), backend='onnxruntime', precision='fp32')


class InverseDepthEngine:
    """The tiny model turned into an affine-invariant one: it outputs 1 / depth."""

    def __init__(self, engine):
        from dataclasses import replace

        from monodepth_ros.model.cards import ModelCard

        self.engine, self.metadata = engine, engine.metadata
        self.card = replace(ModelCard.from_metadata(engine.metadata),
                            output_kind='affine_inverse_depth')

    def infer(self, batch):
        from dataclasses import replace

        out = self.engine.infer(batch)
        return replace(out, depth=(1.0 / out.depth).astype(np.float32),
                       depth_kind='affine_inverse_depth')


def test_metric_model_with_scale_none_is_bit_identical_and_fixed_scales_it(engine):
    from monodepth_ros.model.preprocess import preprocess
    from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

    results = {mode: DepthPipeline(engine, PipelineConfig(
        scale=ScaleSettings(mode, value=2.0))).process_arrays(_image(), CAMERA)
        for mode in ('auto', 'none', 'fixed')}
    # The tiny model is not camera-aware: its depth is the network's output as it is.
    raw = engine.infer(preprocess(results['none'].framing.apply(_image()),
                                  engine.metadata)).depth
    np.testing.assert_array_equal(results['none'].depth, raw)
    np.testing.assert_array_equal(results['auto'].depth, raw)
    np.testing.assert_array_equal(results['fixed'].depth, 2.0 * raw)
    assert results['none'].scale.mode == 'none' and results['fixed'].scale.scale == 2.0
    assert 'scale' in results['none'].timings


def test_pipeline_scales_an_inverse_depth_model_to_the_lidar(engine):
    from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

    truth = DepthPipeline(engine).process_arrays(_image(), CAMERA)
    points = truth.points['xyz'].reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)][::3]
    affine = DepthPipeline(InverseDepthEngine(engine), PipelineConfig(
        scale=ScaleSettings('auto', lidar=True)))
    result = affine.process_arrays(_image(), CAMERA, reference=ScaleReference(points))
    assert result.scale.mode == 'lidar'
    assert result.scale.scale == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(result.depth, truth.depth, rtol=1e-3)
    assert affine.last_scale is result.scale
    # Without LiDAR wired in, an affine model asks for a way to get metres, in one line.
    with pytest.raises(ConfigError, match='--scale ground --camera-height'):
        DepthPipeline(InverseDepthEngine(engine)).process_arrays(_image(), CAMERA)


# -- the node: LiDAR subscription, /tf_static, diagnostics -------------------------------
def test_node_scales_an_affine_model_to_its_lidar_and_holds_without_points(engine):
    from monodepth_ros.io import messages
    from monodepth_ros.io.geometry import make_transform
    from monodepth_ros.ros.core import NodeCore
    from monodepth_ros.ros.parameters import NodeConfig
    from monodepth_ros.runtime.pipeline import DepthPipeline

    types = messages.MessageTypes.rosbags('humble')
    truth = DepthPipeline(engine).process_arrays(_image(), CAMERA)
    points = truth.points['xyz'].reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)][::3]
    # The LiDAR frame: the camera's points seen from 1 m to its right and 0.5 m above it.
    T_camera_from_lidar = make_transform(t=(1.0, -0.5, 0.0))
    lidar_points = points - T_camera_from_lidar[:3, 3]
    config = NodeConfig.from_parameters({'lidar_topic': '/lidar', 'scale_smoothing': False})
    core = NodeCore(types, config, engine_factory=lambda _config: InverseDepthEngine(engine))
    stamp = 1_700_000_000_000_000_000
    core.on_tf_static(messages.make_tf_message(
        types, [('camera', 'lidar', T_camera_from_lidar, stamp)]))

    def frame(scan_points, stamp_ns):
        header = messages.make_header(types, stamp_ns, 'camera')
        core.on_camera_info(messages.model_to_camera_info(types, CAMERA, header))
        if scan_points is not None:
            core.on_lidar(messages.make_pointcloud2(
                types, messages.make_header(types, stamp_ns, 'lidar'),
                scan_points.astype(np.float32)))
        core.on_image(messages.array_to_image(types, _image(), 'rgb8', header), stamp_ns)
        return core.process_next({'depth': 1}, lambda: stamp_ns)

    out = frame(lidar_points, stamp)
    depth = messages.image_to_array(out['depth'])
    np.testing.assert_allclose(depth, truth.depth, rtol=1e-3)
    values = core.diagnostics().values
    assert values['scale_mode'] == 'lidar' and int(values['scale_points']) > 100
    assert float(values['scale']) == pytest.approx(1.0, rel=1e-4)
    # Three points only: no fit, the scale holds and the frame is counted.
    out = frame(lidar_points[:3], stamp + 100_000_000)
    np.testing.assert_array_equal(messages.image_to_array(out['depth']), depth)
    # No scan at all: the same, and counted as a frame without LiDAR.
    out = frame(None, stamp + 200_000_000)
    np.testing.assert_array_equal(messages.image_to_array(out['depth']), depth)
    values = core.diagnostics().values
    assert values['scale_frames_held'] == '2' and values['frames_without_lidar'] == '1'
    assert 'no LiDAR scan on /lidar' in values['last_lidar_problem']
    assert core.processed == 3 and core.errors == 0


def test_node_refuses_an_affine_model_it_cannot_scale_with_error_diagnostics(engine):
    from monodepth_ros.io import messages
    from monodepth_ros.ros.core import NodeCore
    from monodepth_ros.ros.parameters import NodeConfig

    core = NodeCore(messages.MessageTypes.rosbags('humble'),
                    NodeConfig.from_parameters({'scale_mode': 'lidar'}),
                    engine_factory=lambda _config: InverseDepthEngine(engine))
    assert not core.load_model_if_needed()
    report = core.diagnostics()
    assert report.level == report.ERROR
    assert "scale mode 'lidar' needs LiDAR points" in report.message


# -- infer-bag: a bag's LiDAR and /tf_static scale an affine model ------------------------
class RowInverseDepthEngine(InverseDepthEngine):
    """Inverse depth growing with the image row below the middle, as a road's does.

    Unlike the random tiny network's, it correlates with a street's depth, so that every
    frame's LiDAR fit succeeds.
    """

    def infer(self, batch):
        from dataclasses import replace

        out = self.engine.infer(batch)
        height = out.depth.shape[-2]
        rows = np.arange(height, dtype=np.float32)[:, None] / height
        inverse = np.maximum(rows - 0.45, 0.01) + np.zeros_like(out.depth)
        return replace(out, depth=inverse.astype(np.float32), depth_kind='affine_inverse_depth')


def test_infer_bag_scales_an_affine_model_to_the_scan_of_each_image(tmp_path, engine):
    from monodepth_ros.bagtools.infer_bag import format_summary, infer_bag
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag
    from monodepth_ros.errors import BagError
    from monodepth_ros.io import messages, topics
    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig
    from monodepth_ros.synthetic.world import DriveConfig, SyntheticDrive

    size = (256, 128)
    bag = write_synthetic_bag(tmp_path / 'in', frames=3, seed=6, size=size, progress=False)
    config = PipelineConfig(scale=ScaleSettings('auto', smoothing=False, lidar=True))
    summary = infer_bag(bag, tmp_path / 'out',
                        DepthPipeline(RowInverseDepthEngine(engine), config),
                        outputs={'depth'}, progress=False)
    assert (summary.frames, summary.errors, summary.frames_without_lidar) == (3, 0, 0)
    with BagReader(tmp_path / 'out') as reader:
        written = [messages.image_to_array(msg)
                   for _, _, msg in reader.messages(['/monodepth/depth'])]
    # Expected: each frame fitted to its own scan, moved into the camera with the drive's
    # own extrinsics (not the bag's /tf_static, which infer-bag reads).
    drive = SyntheticDrive(6, DriveConfig(width=size[0], height=size[1]))
    pipeline = DepthPipeline(RowInverseDepthEngine(engine), config)
    for index, depth in enumerate(written):
        frame = drive.render(index)
        points = np.stack([frame.lidar[axis] for axis in 'xyz'], -1)
        expected = pipeline.process_arrays(frame.rgb, frame.camera, ('depth',), ScaleReference(
            points, drive.T_camera_from_lidar))
        assert expected.scale.mode == 'lidar' and expected.scale.fit.points > 100
        np.testing.assert_allclose(depth, expected.depth, rtol=1e-5, equal_nan=True)
    unscaled = DepthPipeline(engine).process_arrays(drive.render(0).rgb, drive.render(0).camera)
    assert not np.allclose(written[0], unscaled.depth, equal_nan=True)
    # A bag without the LiDAR topic: one line naming what the bag has.
    with pytest.raises(BagError, match='has no topic /velodyne.*its topics are: .*'
                       + topics.LIDAR_TOPIC):
        infer_bag(bag, tmp_path / 'out2', DepthPipeline(RowInverseDepthEngine(engine), config),
                  lidar_topic='/velodyne', progress=False)
    assert not (tmp_path / 'out2').exists()
    assert 'LiDAR' not in format_summary(summary, engine)
