"""DepthPipeline on a real tiny network exported to ONNX and run by ONNX Runtime."""

import math

import cv2
import numpy as np
import pytest
from conftest import TINY_NET_HEIGHT, TINY_NET_WIDTH

from monodepth_ros.errors import CalibrationError, ConfigError, MessageError
from monodepth_ros.io import messages
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.runtime.pipeline import (
    STAGES,
    DepthPipeline,
    PipelineConfig,
    resize_depth_bilinear,
    resize_nearest,
)

NET_W, NET_H = TINY_NET_WIDTH, TINY_NET_HEIGHT
STAMP_NS = 1_317_000_123_456_789
FRAME = 'camera_color_left'


def load_engine(path):
    from monodepth_ros.engines import create_engine
    return create_engine(str(path), backend='onnxruntime', precision='fp32')


@pytest.fixture(scope='module')
def engine(tiny_onnx):
    return load_engine(tiny_onnx)


@pytest.fixture(scope='module')
def types():
    return messages.MessageTypes.rosbags('humble')


def gradient_image(width=256, height=128):
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    return np.stack([u % 256, v * 2 % 256, (u + v) % 256], axis=-1).astype(np.uint8)


# 256x128 camera whose principal point is off-centre (the pipeline must use it, not W/2).
CAMERA = CameraModel.from_intrinsics(fx=200.0, fy=200.0, cx=120.0, cy=60.0, width=256,
                                     height=128)


def image_msg(types, rgb, stamp_ns=STAMP_NS):
    return messages.array_to_image(types, rgb, 'rgb8', messages.make_header(types, stamp_ns,
                                                                            FRAME))


def info_msg(types, camera=CAMERA, stamp_ns=STAMP_NS):
    return messages.model_to_camera_info(types, camera,
                                         messages.make_header(types, stamp_ns, FRAME))


def cdr_round_trip(types, msg):
    msgtype = types.msgtype(msg)
    return types.typestore.deserialize_cdr(types.typestore.serialize_cdr(msg, msgtype), msgtype)


def direct_output(engine, rgb):
    """The engine run by hand on ``rgb`` shrunk to the network size (what the pipeline wraps)."""
    from monodepth_ros.model.preprocess import preprocess

    small = rgb if rgb.shape[:2] == (NET_H, NET_W) else cv2.resize(
        rgb, (NET_W, NET_H), interpolation=cv2.INTER_AREA)
    return engine.infer(preprocess(small, engine.metadata))


def test_messages_network_resolution(engine, types):
    pipeline = DepthPipeline(engine, PipelineConfig())
    out = pipeline.process_messages(types, image_msg(types, gradient_image()), info_msg(types))
    assert set(out) == {'depth', 'camera_info', 'points', 'semantics', 'semantics_color',
                        'confidence'}
    out = {key: cdr_round_trip(types, msg) for key, msg in out.items()}
    for msg in out.values():
        assert messages.stamp_to_ns(msg.header.stamp) == STAMP_NS
        assert msg.header.frame_id == FRAME

    info = out['camera_info']
    assert (info.width, info.height) == (NET_W, NET_H)
    # sx = sy = 0.5: fx' = 100, cx' = (120 + 0.5) * 0.5 - 0.5 = 59.75, cy' = 29.75
    np.testing.assert_allclose(info.k, [100, 0, 59.75, 0, 100, 29.75, 0, 0, 1])
    np.testing.assert_allclose(info.p, [100, 0, 59.75, 0, 0, 100, 29.75, 0, 0, 0, 1, 0])

    depth = messages.depth_image_to_metres(out['depth'])
    assert out['depth'].encoding == '32FC1' and depth.shape == (NET_H, NET_W)
    assert out['semantics'].encoding == 'mono8'
    assert out['semantics_color'].encoding == 'rgb8'
    assert out['confidence'].encoding == '32FC1'
    # Exactly what the engine gives on the RGB (not BGR) image shrunk with INTER_AREA.
    expected = direct_output(engine, gradient_image())
    assert np.isfinite(expected.depth).all() and (expected.depth > 0).all()
    np.testing.assert_array_equal(depth, expected.depth)
    labels = messages.image_to_array(out['semantics'])
    np.testing.assert_array_equal(labels, expected.semantics)
    np.testing.assert_array_equal(messages.image_to_array(out['confidence']),
                                  expected.confidence)
    colors = messages.image_to_array(out['semantics_color'])
    from monodepth_ros.model.semantics import colorize_labels
    np.testing.assert_array_equal(colors, colorize_labels(labels))

    cloud = out['points']
    assert (cloud.height, cloud.width, cloud.is_dense) == (NET_H, NET_W, False)
    fields = messages.read_pointcloud2(cloud, ('x', 'y', 'z', 'rgb'))
    x = fields['x'].reshape(NET_H, NET_W)
    y = fields['y'].reshape(NET_H, NET_W)
    z = fields['z'].reshape(NET_H, NET_W)
    u, v = np.meshgrid(np.arange(NET_W), np.arange(NET_H))
    np.testing.assert_allclose(z, depth)
    np.testing.assert_allclose(x, (u - 59.75) / 100.0 * depth, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, (v - 29.75) / 100.0 * depth, rtol=1e-5, atol=1e-6)
    # Colours are those of the image resized to the network size (INTER_AREA).
    expected_rgb = cv2.resize(gradient_image(), (NET_W, NET_H), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(messages.unpack_rgb(fields['rgb']).reshape(NET_H, NET_W, 3),
                                  expected_rgb)


def upsample2(image):
    """Exact 2x nearest upsampling: output pixels 2u and 2u+1 both take input pixel u."""
    return np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)


def test_camera_resolution_nearest_repeats_network_depth(engine):
    rgb = gradient_image()
    expected = direct_output(engine, rgb)
    camera = DepthPipeline(engine, PipelineConfig(output_resolution='camera')).process_arrays(
        rgb, CAMERA)
    assert camera.depth.shape == (128, 256)
    assert camera.camera is CAMERA
    np.testing.assert_array_equal(camera.depth, upsample2(expected.depth))
    np.testing.assert_array_equal(camera.semantics, upsample2(expected.semantics))
    np.testing.assert_array_equal(
        camera.confidence, cv2.resize(expected.confidence, (256, 128),
                                      interpolation=cv2.INTER_LINEAR))
    assert camera.points['xyz'].shape == (128, 256, 3)
    np.testing.assert_allclose(camera.points['xyz'][10, 200, 0],
                               (200 - 120.0) / 200.0 * camera.depth[10, 200], rtol=1e-6)


def test_camera_resolution_bilinear_depth(engine):
    rgb = gradient_image()
    expected = direct_output(engine, rgb)
    config = PipelineConfig(output_resolution='camera', depth_upsampling='bilinear')
    result = DepthPipeline(engine, config).process_arrays(rgb, CAMERA, {'depth'})
    # Every network depth is valid, so this is plain bilinear (up to the division by the
    # bilinear weight of the valid mask, 1 within rounding).
    np.testing.assert_allclose(result.depth, cv2.resize(expected.depth, (256, 128),
                                                        interpolation=cv2.INTER_LINEAR),
                               rtol=1e-6)
    assert not np.array_equal(result.depth, upsample2(expected.depth))


def test_cloud_stride_range_confidence_and_fields(engine, types):
    base = DepthPipeline(engine, PipelineConfig()).process_arrays(gradient_image(), CAMERA)
    max_range = float(np.median(base.depth))
    threshold = float(np.median(base.confidence))
    config = PipelineConfig(cloud_stride=2, cloud_max_range=max_range,
                            confidence_threshold=threshold, cloud_confidence=True,
                            cloud_label=True)
    pipeline = DepthPipeline(engine, config)
    out = pipeline.process_messages(types, image_msg(types, gradient_image()), info_msg(types),
                                    outputs={'points'})
    assert set(out) == {'points'}
    cloud = cdr_round_trip(types, out['points'])
    assert (cloud.height, cloud.width) == (NET_H // 2, NET_W // 2)
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb', 'confidence', 'label']
    fields = messages.read_pointcloud2(cloud, ('z', 'confidence', 'label'))
    depth = base.depth[::2, ::2].ravel()
    confidence = base.confidence[::2, ::2].ravel()
    keep = (depth <= max_range) & (confidence >= threshold)
    assert 0 < keep.sum() < keep.size
    np.testing.assert_array_equal(np.isfinite(fields['z']), keep)
    np.testing.assert_allclose(fields['z'][keep], depth[keep])
    np.testing.assert_allclose(fields['confidence'], confidence)
    np.testing.assert_array_equal(fields['label'], base.semantics[::2, ::2].ravel())


def test_only_requested_outputs_are_computed(engine):
    result = DepthPipeline(engine).process_arrays(gradient_image(), None, outputs={'semantics'})
    assert result.semantics is not None
    assert result.depth is None and result.points is None and result.confidence is None
    assert set(result.timings) == set(STAGES)


def test_camera_info_alone_runs_no_network(engine, monkeypatch):
    calls = []
    real_infer = engine.infer
    monkeypatch.setattr(engine, 'infer', lambda batch: calls.append(1) or real_infer(batch))
    pipeline = DepthPipeline(engine)
    rgb = gradient_image()
    camera = CameraModel.from_intrinsics(200.0, 200.0, 120.0, 60.0, 256, 128)
    result = pipeline.process_arrays(rgb, camera, outputs={'camera_info'})
    assert calls == []
    assert result.depth is None
    assert result.camera.size == (TINY_NET_WIDTH, TINY_NET_HEIGHT)
    assert result.camera.cx == pytest.approx((120.0 + 0.5) * TINY_NET_WIDTH / 256 - 0.5)
    pipeline.process_arrays(rgb, camera, outputs={'depth'})
    assert calls == [1]


def test_missing_camera_info_gives_image_outputs_only(engine, types):
    out = DepthPipeline(engine).process_messages(types, image_msg(types, gradient_image()), None)
    assert set(out) == {'depth', 'semantics', 'semantics_color', 'confidence'}


def test_other_image_size_is_framed_with_intrinsics_scaled_and_shifted(engine, types):
    # 300x90 is wider than the network's aspect: scaled uniformly to the network width, then
    # padded top and bottom (never stretched); the padding is NaN depth.
    from monodepth_ros.io.framing import plan_framing

    camera = CameraModel.from_intrinsics(300.0, 310.0, 150.0, 44.0, 300, 90)
    out = DepthPipeline(engine).process_messages(
        types, image_msg(types, gradient_image(300, 90)), info_msg(types, camera))
    framing = plan_framing(300, 90, (NET_W, NET_H), camera)
    scaled_h = round(90 * NET_W / 300)
    assert framing.scaled_size == (NET_W, scaled_h) and scaled_h < NET_H
    y0 = framing.offset[1]
    assert y0 < 0
    depth = messages.depth_image_to_metres(out['depth'])
    expected = direct_output(engine, framing.apply(gradient_image(300, 90))).depth
    valid = framing.valid_mask()
    np.testing.assert_array_equal(depth[valid], expected[valid])
    assert np.isnan(depth[~valid]).all() and (~valid).sum() == (NET_H - scaled_h) * NET_W
    sx, sy = NET_W / 300, scaled_h / 90
    k = np.asarray(out['camera_info'].k).reshape(3, 3)
    np.testing.assert_allclose(k[0], [300 * sx, 0, 150.5 * sx - 0.5])
    np.testing.assert_allclose(k[1], [0, 310 * sy, 44.5 * sy - 0.5 - y0])


def test_compressed_input(engine, types):
    ok, jpeg = cv2.imencode('.jpg', cv2.cvtColor(gradient_image(), cv2.COLOR_RGB2BGR))
    assert ok
    msg = types.CompressedImage(header=messages.make_header(types, STAMP_NS, FRAME),
                                format='rgb8; jpeg compressed bgr8',
                                data=np.frombuffer(jpeg.tobytes(), np.uint8))
    out = DepthPipeline(engine).process_messages(types, msg, info_msg(types), {'depth'})
    assert messages.stamp_to_ns(out['depth'].header.stamp) == STAMP_NS
    assert (out['depth'].width, out['depth'].height) == (NET_W, NET_H)


def test_bad_frames_are_rejected_and_the_next_one_works(engine, types):
    pipeline = DepthPipeline(engine)
    wrong_size = CameraModel.from_intrinsics(200.0, 200.0, 100.0, 50.0, 200, 100)
    with pytest.raises(CalibrationError, match='CameraInfo is 200x100 but the image is 256x128'):
        pipeline.process_arrays(gradient_image(), wrong_size)
    empty = types.Image(header=messages.make_header(types, STAMP_NS, FRAME), height=0, width=0,
                        encoding='rgb8', is_bigendian=0, step=0,
                        data=np.zeros(0, np.uint8))
    with pytest.raises(MessageError, match='empty'):
        pipeline.process_messages(types, empty, None)
    odd = image_msg(types, gradient_image())
    odd.encoding = 'weird16'
    with pytest.raises(MessageError, match='weird16'):
        pipeline.process_messages(types, odd, None)
    nan_image = messages.array_to_image(types, np.full((128, 256), np.nan, np.float32),
                                        '32FC1', messages.make_header(types, STAMP_NS, FRAME))
    with pytest.raises(MessageError, match="'32FC1' is not a colour"):
        pipeline.process_messages(types, nan_image, None)
    with pytest.raises(MessageError, match='expected uint8'):
        pipeline.process_arrays(gradient_image().astype(np.float32), None, {'depth'})
    with pytest.raises(CalibrationError, match='need the camera calibration'):
        pipeline.process_arrays(gradient_image(), None, {'points'})
    out = pipeline.process_messages(types, image_msg(types, gradient_image()), info_msg(types))
    assert 'points' in out


def test_unusable_camera_info_degrades_to_image_outputs(engine, types):
    pipeline = DepthPipeline(engine)
    wrong_size = CameraModel.from_intrinsics(200.0, 200.0, 100.0, 50.0, 200, 100)
    out = pipeline.process_messages(types, image_msg(types, gradient_image()),
                                    info_msg(types, wrong_size))
    assert set(out) == {'depth', 'semantics', 'semantics_color', 'confidence'}
    assert pipeline.last_camera_info_problem == (
        'CameraInfo is 200x100 but the image is 256x128; expected calibration of the image as '
        'published')
    # Broken intrinsics (P and K all zero) are handled the same way.
    broken = info_msg(types)
    broken.k[:] = 0.0
    broken.p[:] = 0.0
    out = pipeline.process_messages(types, image_msg(types, gradient_image()), broken,
                                    {'depth', 'points'})
    assert set(out) == {'depth'}
    assert 'focal lengths' in pipeline.last_camera_info_problem
    # Only camera outputs asked for: nothing to publish, and the network is not run.
    pipeline.last_timings = {}
    assert pipeline.process_messages(types, image_msg(types, gradient_image()), broken,
                                     {'points'}) == {}
    assert pipeline.last_timings == {}
    # A good CameraInfo clears the problem; a wrong one is not looked at when not needed.
    out = pipeline.process_messages(types, image_msg(types, gradient_image()), info_msg(types))
    assert 'points' in out and pipeline.last_camera_info_problem is None
    pipeline.process_messages(types, image_msg(types, gradient_image()),
                              info_msg(types, wrong_size), {'depth'})
    assert pipeline.last_camera_info_problem is None


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match='output_resolution'):
        PipelineConfig(output_resolution='full')
    with pytest.raises(ConfigError, match='cloud_stride'):
        PipelineConfig(cloud_stride=0)
    with pytest.raises(ConfigError, match='confidence_threshold'):
        PipelineConfig(confidence_threshold=1.5)
    with pytest.raises(ConfigError, match='cloud range'):
        PipelineConfig(cloud_min_range=5.0, cloud_max_range=2.0)
    assert PipelineConfig().cloud_max_range == math.inf


def test_bilinear_depth_never_blends_with_invalid_pixels():
    depth = np.array([[1.0, 2.0], [np.nan, 4.0]], dtype=np.float32)
    up = resize_depth_bilinear(depth, 4, 4)
    # Output (0, 0) samples source (-0.25, -0.25) -> clamped to pixel (0, 0).
    assert up[0, 0] == pytest.approx(1.0)
    # Output (0, 1): x = 0.25 -> 0.75 * 1 + 0.25 * 2; y clamps to row 0.
    assert up[0, 1] == pytest.approx(1.25)
    assert up[0, 3] == pytest.approx(2.0)
    # Rows 1.. touch the NaN in column 0; column 3 only sees 2 and 4.
    assert np.isnan(up[1, 0]) and np.isnan(up[3, 1])
    assert up[3, 3] == pytest.approx(4.0)
    assert up[2, 3] == pytest.approx(0.25 * 2.0 + 0.75 * 4.0)


def test_nearest_resize_is_centre_aligned():
    small = np.arange(6, dtype=np.float32).reshape(2, 3)
    big = resize_nearest(small, 6, 4)
    np.testing.assert_array_equal(big, np.repeat(np.repeat(small, 2, axis=0), 2, axis=1))
