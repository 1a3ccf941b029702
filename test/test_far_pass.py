"""The far pass (runtime.far_pass): zoom, geometry of the window, blend, and where it runs."""

import argparse

import numpy as np
import pytest
from conftest import ConstantEngine

from monodepth_ros.errors import ConfigError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.framing import DEFAULT_ANCHOR, plan_framing
from monodepth_ros.model.metadata import ModelMetadata
from monodepth_ros.runtime.far_pass import (
    CROP_MARGIN,
    FAR_BLEND_FAR,
    FAR_BLEND_NEAR,
    FarPassFusion,
    blend_weight,
    far_pass_zoom,
    plan_far_window,
)
from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

NET = (128, 64)   # network width, height
CANONICAL = 100.0


def camera(fx: float, width: int = 256, height: int = 128, cx: float = 128.0,
           cy: float = 60.0) -> CameraModel:
    return CameraModel.from_intrinsics(fx, fx, cx, cy, width, height)


def constant_engine(depth: float, canonical_focal: float = CANONICAL) -> ConstantEngine:
    """A stand-in network of the test's input size: ``depth`` everywhere, calls counted."""
    return ConstantEngine(ModelMetadata(input_height=NET[1], input_width=NET[0],
                                        canonical_focal=canonical_focal), depth)


def test_zoom_follows_the_first_pass_focal_length():
    # First pass at the canonical focal length: the far pass zooms 2x.
    assert far_pass_zoom(2.0, CANONICAL, camera(CANONICAL)) == pytest.approx(2.0)
    # A wide camera (0.72x at the network input) is zoomed to the same far-pass focal length.
    assert far_pass_zoom(2.0, CANONICAL, camera(72.0)) == pytest.approx(2.0 / 0.72)
    # Without calibration the depth is the canonical camera's: so is the zoom.
    assert far_pass_zoom(2.0, CANONICAL, None) == pytest.approx(2.0)
    # A long lens (DDAD's front camera: 1.93x) is already there: no far pass.
    assert far_pass_zoom(2.0, CANONICAL, camera(193.0)) == 0.0
    assert far_pass_zoom(0.0, CANONICAL, camera(CANONICAL)) == 0.0   # turned off
    assert far_pass_zoom(2.0, 0.0, camera(CANONICAL)) == 0.0          # not camera-aware


def test_far_window_keeps_the_principal_point_and_multiplies_the_focal_length():
    cam = camera(200.0)
    first = plan_framing(256, 128, NET, cam)
    far = plan_far_window(first, 2.0, cam, DEFAULT_ANCHOR)
    # Only the part of the image the window shows is framed: at scale 1 its 128x64 source
    # pixels, plus the margin (and a pixel of rounding) on each side, not the 256x128 image.
    (x0, y0), (width, height) = far.origin, far.framing.source_size
    assert 128 < width <= 128 + 2 * (CROP_MARGIN + 1)
    assert 64 < height <= 64 + 2 * (CROP_MARGIN + 1)
    first_cam = first.camera(cam)
    far_cam = far.framing.camera(cam.cropped(x0, y0, width, height))
    assert far_cam.fx == pytest.approx(2.0 * first_cam.fx)
    # Both windows are placed at whole pixels: within a pixel of each other.
    assert (far_cam.cx, far_cam.cy) == pytest.approx((first_cam.cx, first_cam.cy), abs=1.0)
    with pytest.raises(ConfigError, match='zoom must be > 0'):
        plan_far_window(first, 0.0, cam, DEFAULT_ANCHOR)


@pytest.mark.parametrize('size, fx', [((256, 128), 200.0), ((1000, 500), 781.25)])
def test_far_depth_is_resampled_onto_the_first_pass_grid_exactly(size, fx):
    # A depth field linear in the source pixel coordinates, seen by both passes through
    # Framing.apply (cv2.resize and crop): brought back by the fusion's grid, the far pass's
    # view must equal the first pass's wherever both see the image. 256 px: the far pass is a
    # plain crop; 1000 px: both passes shrink the image (area filter, non-integer ratios).
    width, height = size
    cam = camera(fx, width, height, cx=width / 2 - 8, cy=height * 0.47)
    first = plan_framing(width, height, NET, cam)
    far = plan_far_window(first, 2.0, cam, DEFAULT_ANCHOR)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    source = 5.0 + 0.1 * u + 0.05 * v
    first_view = first.apply(source)
    resampled = FarPassFusion().resample(far.apply(source), first, far)
    seen = np.isfinite(resampled)
    # The window is the middle quarter of the first pass's input (a 1-pixel rim aside).
    rows, cols = np.nonzero(seen)
    assert 31 <= cols.max() - cols.min() + 1 <= 64
    assert 15 <= rows.max() - rows.min() + 1 <= 32
    # Within a quarter of a source pixel along u (0.025): the area filter's box after a
    # halving (io.framing.resize_image). Half a far-pass pixel off would be 0.08 at 1000 px.
    np.testing.assert_allclose(resampled[seen], first_view[seen], rtol=1e-4, atol=0.025)


def test_blend_takes_the_first_pass_near_and_the_far_pass_far():
    first_depth = np.array([[5.0, FAR_BLEND_NEAR, 22.5, FAR_BLEND_FAR, 60.0, np.nan]],
                           np.float32)
    np.testing.assert_allclose(blend_weight(first_depth), [[0, 0, 0.5, 1, 1, 0]])
    cam = camera(200.0)
    first = plan_framing(256, 128, NET, cam)
    far = plan_far_window(first, 2.0, cam, DEFAULT_ANCHOR)
    fusion = FarPassFusion()
    taper = fusion.window_weight(first, far)
    core, outside = taper == 1.0, taper == 0.0
    edge = ~core & ~outside
    # The window covers the middle half of the first pass's input both ways; its weight fades
    # over the outer tenth of the window (6.4 far-pass pixels wide, 3.2 first-pass pixels).
    rows, cols = np.nonzero(~outside)
    assert 62 <= cols.max() - cols.min() + 1 <= 64 and 30 <= rows.max() - rows.min() + 1 <= 32
    assert 0.0 < taper[edge].min() and taper[edge].max() < 1.0
    assert core.sum() > 0.6 * (~outside).sum()
    for near_value, expected in ((10.0, 10.0), (22.5, np.sqrt(22.5 * 45.0)), (40.0, 45.0)):
        first_depth = np.full(NET[::-1], near_value, np.float32)
        fused = fusion.fuse(first_depth, np.full(NET[::-1], 45.0, np.float32), first, far)
        np.testing.assert_allclose(fused[core], expected, rtol=1e-6)
        assert np.all(fused[outside] == near_value)   # outside the window: the first pass
        # At the window's edge: between the two, in log depth by the tapered weight.
        weight = blend_weight(first_depth[edge]) * taper[edge]
        np.testing.assert_allclose(
            fused[edge], np.exp((1 - weight) * np.log(near_value) + weight * np.log(45.0)),
            rtol=1e-5)
    # Near pixels keep the first pass's value bit for bit.
    near = np.full(NET[::-1], 12.345, np.float32)
    assert np.array_equal(fusion.fuse(near, near * 3, first, far), near)


@pytest.mark.parametrize('fx, with_camera', [(200.0, True), (144.0, True), (200.0, False)])
def test_pipeline_scales_the_far_pass_by_its_zoom(fx, with_camera):
    # A network that says 50 m everywhere (far: the far pass takes over in its window). Its
    # metres scale with the focal length at the input: x fx_net / canonical for the first
    # pass, and x the zoom on top for the far pass, whose focal length is 2x the canonical
    # one. fx 200 -> 100 px at the input (zoom 2); fx 144 -> 72 px, a wide lens (depth x0.72,
    # zoom 2.78); no camera: the canonical camera (zoom 2).
    rgb = np.zeros((128, 256, 3), np.uint8)
    cam = camera(fx)
    engine = constant_engine(50.0)
    pipeline = DepthPipeline(engine)
    result = pipeline.process_arrays(rgb, cam if with_camera else None, outputs={'depth'})
    assert engine.calls == 2
    first_scale = fx / 2.0 / CANONICAL if with_camera else 1.0
    zoom = 2.0 / first_scale
    assert pipeline.last_far_zoom == pytest.approx(zoom, rel=0.01)
    taper = pipeline.far_fusion.window_weight(result.framing, result.far_framing)
    # The far pass's metres: 50 x (its focal length / canonical) = 50 x 2 whatever the lens
    # (up to the rounding of its scaled size, which the zoom actually applied follows).
    np.testing.assert_allclose(result.depth[taper == 1.0],
                               50.0 * first_scale * pipeline.last_far_zoom, rtol=1e-5)
    np.testing.assert_allclose(result.depth[taper == 1.0], 100.0, rtol=0.005)
    np.testing.assert_allclose(result.depth[taper == 0.0], 50.0 * first_scale, rtol=1e-5)
    # Its window is centred on the principal point of the first pass's input.
    principal = (result.framing.camera(cam) if with_camera else None)
    rows, cols = np.nonzero(taper > 0)
    centre_u = (cols.min() + cols.max()) / 2
    expected_u = principal.cx if principal else (NET[0] - 1) / 2
    expected_v = principal.cy if principal else None
    assert centre_u == pytest.approx(expected_u, abs=1.5)
    if expected_v is not None:
        # Vertically the principal point lands at the anchor of both windows.
        top, bottom = rows.min(), rows.max()
        assert top <= expected_v <= bottom
        assert (expected_v - top) / (bottom - top + 1) == pytest.approx(DEFAULT_ANCHOR,
                                                                        abs=0.1)


def test_pipeline_runs_the_far_pass_for_camera_aware_models_only():
    rgb = np.zeros((128, 256, 3), np.uint8)
    # Off, a long lens, a model that is not camera-aware, no depth asked for: one pass.
    for config, cam, canonical, outputs in (
            (PipelineConfig(far_pass_focal=0.0), camera(200.0), CANONICAL, {'depth'}),
            (PipelineConfig(), camera(400.0), CANONICAL, {'depth'}),
            (PipelineConfig(), camera(200.0), 0.0, {'depth'}),
            (PipelineConfig(), camera(200.0), CANONICAL, {'confidence'})):
        engine = constant_engine(40.0, canonical)
        pipeline = DepthPipeline(engine, config)
        result = pipeline.process_arrays(rgb, cam, outputs=outputs)
        assert engine.calls == 1
        assert result.far_framing is None and pipeline.last_far_zoom == 0.0
        if result.depth is not None:
            assert np.unique(result.depth).size == 1


def test_camera_resolution_cloud_is_the_back_projection_of_the_fused_depth():
    from monodepth_ros.io.geometry import backproject_depth

    rgb = np.zeros((128, 256, 3), np.uint8)
    cam = camera(200.0)
    pipeline = DepthPipeline(constant_engine(40.0),
                             PipelineConfig(output_resolution='camera'))
    result = pipeline.process_arrays(rgb, cam, outputs={'depth', 'points'})
    assert result.far_framing is not None
    assert result.depth.shape == (128, 256) and np.nanmax(result.depth) > 79.0
    expected = backproject_depth(result.depth, result.camera, organized=True)
    np.testing.assert_array_equal(result.points['xyz'], expected)


def test_far_window_is_framed_beside_the_first_and_inline_when_no_thread_takes_it(
        monkeypatch):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import monodepth_ros.runtime.pipeline as pipeline_module

    rgb = np.random.default_rng(5).integers(0, 256, (128, 256, 3), dtype=np.uint8)
    expected = DepthPipeline(constant_engine(40.0)).process_arrays(rgb, camera(200.0),
                                                                   outputs={'depth'}).depth
    threads = []
    worker = pipeline_module._far_framing_worker()
    submit = worker.submit
    monkeypatch.setattr(worker, 'submit', lambda work: submit(
        lambda: threads.append(threading.current_thread().name) or work()))
    result = DepthPipeline(constant_engine(40.0)).process_arrays(rgb, camera(200.0),
                                                                 outputs={'depth'})
    assert threads and threads[0].startswith('far-framing')
    np.testing.assert_array_equal(result.depth, expected)
    # A worker that takes no more work (the interpreter shutting down): framed here.
    stopped = ThreadPoolExecutor(1)
    stopped.shutdown()
    monkeypatch.setattr(pipeline_module, '_FAR_FRAMING_WORKER', stopped)
    result = DepthPipeline(constant_engine(40.0)).process_arrays(rgb, camera(200.0),
                                                                 outputs={'depth'})
    np.testing.assert_array_equal(result.depth, expected)


def test_a_forked_child_frames_its_far_windows_on_a_thread_of_its_own():
    import multiprocessing

    rgb = np.zeros((128, 256, 3), np.uint8)
    pipeline = DepthPipeline(constant_engine(40.0))
    pipeline.process_arrays(rgb, camera(200.0), outputs={'depth'})   # the parent's worker

    def child():
        result = pipeline.process_arrays(rgb, camera(200.0), outputs={'depth'})
        raise SystemExit(0 if result.far_framing is not None else 3)

    process = multiprocessing.get_context('fork').Process(target=child)
    process.start()
    process.join(timeout=60)
    if process.is_alive():   # the parent's worker thread does not exist in the child
        process.kill()
    assert process.exitcode == 0


@pytest.mark.parametrize('value', [-1.0, float('nan'), float('inf')])
def test_bad_far_pass_focal_is_refused(value):
    with pytest.raises(ConfigError, match='far_pass_focal must be >= 0'):
        PipelineConfig(far_pass_focal=value)


def test_far_pass_focal_option_and_node_parameter():
    from monodepth_ros.ros.parameters import NodeConfig, check_parameter
    from monodepth_ros.runtime.infer import add_framing_arguments

    parser = argparse.ArgumentParser()
    add_framing_arguments(parser)
    assert parser.parse_args([]).far_pass_focal == 2.0
    assert parser.parse_args(['--far-pass-focal', '0']).far_pass_focal == 0.0
    with pytest.raises(SystemExit):
        parser.parse_args(['--far-pass-focal', '-1'])
    with pytest.raises(ConfigError):
        check_parameter('far_pass_focal', -0.5)
    config = NodeConfig.from_parameters({'far_pass_focal': 1.5})
    assert config.pipeline_config().far_pass_focal == 1.5


def test_far_pass_reads_the_far_kitti_road_farther(kitti_bag):
    """The packaged model on the real KITTI frames reads the far field less near with it.

    Without the far pass the 40-80 m bands are read far too near; with it their mean error
    moves towards 0.
    """
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig
    from monodepth_ros.model.files import default_model_path

    bands = {}
    for focal in (0.0, 2.0):
        config = EvaluationConfig(model=str(default_model_path()), backend='onnxruntime',
                                  protocol='kitti-eigen', qualitative_frames=0, progress=False,
                                  caps=(80.0,), far_pass_focal=focal)
        result = BagEvaluator(config).evaluate(kitti_bag[0])
        assert result.error is None
        rows = {row['group']: row for row in result.summary()['by_distance']}
        bands[focal] = rows
    for band in ('40-50', '50-60', '60-70'):
        one, far = bands[0.0][band], bands[2.0][band]
        assert far['mean_error'] > one['mean_error'] + 2.0, band
        assert far['abs_rel'] < one['abs_rel'], band
    # Near the camera the far pass does not count: the 0-10 m band is unchanged.
    assert bands[2.0]['0-10']['abs_rel'] == pytest.approx(bands[0.0]['0-10']['abs_rel'],
                                                          abs=0.01)
