"""Message layer: real CDR round trips (Humble and Jazzy), exact values, malformed input."""

import array
import struct
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monodepth_ros.errors import CalibrationError, MessageError
from monodepth_ros.io.camera import CameraModel, RegionOfInterest
from monodepth_ros.io.geometry import make_transform
from monodepth_ros.io.messages import (
    MESSAGE_NAMES,
    MessageTypes,
    array_to_image,
    camera_info_to_model,
    compressed_image_to_rgb,
    depth_image_to_metres,
    depth_to_image,
    image_to_array,
    image_to_rgb,
    make_diagnostic_array,
    make_header,
    make_pointcloud2,
    make_tf_message,
    model_to_camera_info,
    pack_rgb,
    pointcloud2_to_xyz,
    read_pointcloud2,
    stamp_to_ns,
    unpack_rgb,
)
from monodepth_ros.io.transforms import transform_stamped_to_matrix

STAMP_NS = 1_317_000_000_123_456_789
ENCODINGS = {
    'rgb8': (np.uint8, 3), 'bgr8': (np.uint8, 3), 'rgba8': (np.uint8, 4),
    'bgra8': (np.uint8, 4), 'mono8': (np.uint8, 1), 'mono16': (np.uint16, 1),
    '8UC3': (np.uint8, 3), '16UC1': (np.uint16, 1), '32FC1': (np.float32, 1),
    'bayer_rggb8': (np.uint8, 1), 'bayer_bggr8': (np.uint8, 1),
    'bayer_gbrg8': (np.uint8, 1), 'bayer_grbg8': (np.uint8, 1),
}


@pytest.fixture(params=['humble', 'jazzy'])
def types(request):
    return MessageTypes.rosbags(request.param)


def cdr_round_trip(types, msg):
    """Serialize to CDR with the typestore and read back a fresh message."""
    msgtype = types.msgtype(msg)
    raw = bytes(types.typestore.serialize_cdr(msg, msgtype))
    return types.typestore.deserialize_cdr(raw, msgtype)


HUMBLE = MessageTypes.rosbags('humble')   # for tests that are not about the distro


def ros_image(height=2, width=3, encoding='rgb8', is_bigendian=0, step=9, data=bytes(18),
              types=HUMBLE):
    """A real sensor_msgs/Image (rosbags class) carrying the given, possibly bad, fields.

    It goes through CDR and back, so every value in it is one a bag or a subscription can
    really deliver.
    """
    msg = types.Image(header=make_header(types, 0, 'cam'), height=height, width=width,
                      encoding=encoding, is_bigendian=is_bigendian, step=step,
                      data=types.uint8_array(bytes(data)))
    return cdr_round_trip(types, msg)


def ros_cloud(fields, height=1, width=2, is_bigendian=False, point_step=12, row_step=24,
              data=bytes(24), types=HUMBLE):
    """A real sensor_msgs/PointCloud2; ``fields`` are (name, offset, datatype, count)."""
    msg = types.PointCloud2(
        header=make_header(types, 0, 'velo'), height=height, width=width,
        fields=[types.PointField(name=n, offset=o, datatype=d, count=c)
                for n, o, d, c in fields],
        is_bigendian=is_bigendian, point_step=point_step, row_step=row_step,
        data=types.uint8_array(bytes(data)), is_dense=False)
    return cdr_round_trip(types, msg)


def random_pixels(rng, dtype, channels, height=5, width=7):
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype == np.float32:
        return rng.uniform(-100, 100, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


# -- headers -------------------------------------------------------------------------------
def test_header_stamp_round_trip(types):
    header = cdr_round_trip(types, make_header(types, STAMP_NS, 'camera'))
    assert header.frame_id == 'camera'
    assert (header.stamp.sec, header.stamp.nanosec) == (1_317_000_000, 123_456_789)
    assert stamp_to_ns(header.stamp) == STAMP_NS
    # ROS 1 names its stamp fields secs/nsecs; no ROS 2 class has them.
    assert stamp_to_ns(SimpleNamespace(secs=2, nsecs=5)) == 2_000_000_005


# -- images --------------------------------------------------------------------------------
@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_image_round_trip_every_encoding(types, encoding):
    dtype, channels = ENCODINGS[encoding]
    pixels = random_pixels(np.random.default_rng(0), dtype, channels)
    msg = array_to_image(types, pixels, encoding, make_header(types, STAMP_NS, 'cam'))
    assert msg.step == 7 * channels * np.dtype(dtype).itemsize
    assert msg.is_bigendian == 0
    back = cdr_round_trip(types, msg)
    assert back.encoding == encoding and (back.height, back.width) == (5, 7)
    decoded = image_to_array(back)
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, pixels)


def test_image_to_array_honours_padded_step():
    # 2x3 rgb8, rows padded to 12 bytes with 0xEE bytes that must not leak in.
    rows = [bytes(range(9)) + b'\xee' * 3, bytes(range(10, 19)) + b'\xee' * 3]
    msg = ros_image(height=2, width=3, encoding='rgb8', step=12, data=b''.join(rows))
    pixels = image_to_array(msg)
    assert pixels.shape == (2, 3, 3)
    np.testing.assert_array_equal(pixels[0, 2], [6, 7, 8])
    np.testing.assert_array_equal(pixels[1, 0], [10, 11, 12])
    assert not pixels.flags.writeable  # a view of the message, not to be modified


def test_image_to_array_big_endian_16_bit_and_float():
    mono16 = ros_image(height=1, width=2, encoding='16UC1', is_bigendian=1, step=4,
                       data=struct.pack('>HH', 1500, 65535))
    np.testing.assert_array_equal(image_to_array(mono16), [[1500, 65535]])
    np.testing.assert_allclose(depth_image_to_metres(mono16), [[1.5, 65.535]], rtol=1e-6)
    float_be = ros_image(height=1, width=2, encoding='32FC1', is_bigendian=1, step=8,
                         data=struct.pack('>ff', 2.5, -1.0))
    np.testing.assert_array_equal(image_to_array(float_be), [[2.5, -1.0]])
    # Padding of an odd number of bytes between 16-bit rows.
    padded = ros_image(height=2, width=1, encoding='mono16', step=3,
                       data=struct.pack('<Hx', 7) + struct.pack('<Hx', 300))
    np.testing.assert_array_equal(image_to_array(padded), [[7], [300]])


def test_image_to_rgb_channel_orders(types):
    rgb = np.random.default_rng(1).integers(0, 256, (4, 6, 3)).astype(np.uint8)
    header = make_header(types, 0, 'cam')
    cases = {
        'rgb8': rgb, 'bgr8': rgb[:, :, ::-1], '8UC3': rgb[:, :, ::-1],
        'rgba8': np.dstack([rgb, np.full((4, 6), 9, np.uint8)]),
        'bgra8': np.dstack([rgb[:, :, ::-1], np.full((4, 6), 9, np.uint8)]),
    }
    for encoding, pixels in cases.items():
        msg = cdr_round_trip(types, array_to_image(types, pixels, encoding, header))
        np.testing.assert_array_equal(image_to_rgb(msg), rgb, err_msg=encoding)
    mono = cdr_round_trip(types, array_to_image(types, rgb[:, :, 0], 'mono8', header))
    np.testing.assert_array_equal(image_to_rgb(mono), np.repeat(rgb[:, :, :1], 3, axis=2))
    mono16 = array_to_image(types, rgb[:, :, 0].astype(np.uint16) * 256 + 255, 'mono16', header)
    np.testing.assert_array_equal(image_to_rgb(mono16)[:, :, 1], rgb[:, :, 0])


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer_demosaic_recovers_a_uniform_colour(types, pattern):
    colour = {'r': 200, 'g': 100, 'b': 40}
    # 2x2 tile laid out as the pattern name reads: row 0 = letters 0,1; row 1 = letters 2,3.
    tile = np.array([[colour[pattern[0]], colour[pattern[1]]],
                     [colour[pattern[2]], colour[pattern[3]]]], dtype=np.uint8)
    mosaic = np.tile(tile, (4, 4))
    msg = array_to_image(types, mosaic, f'bayer_{pattern}8', make_header(types, 0, 'cam'))
    rgb = image_to_rgb(cdr_round_trip(types, msg))
    assert rgb.shape == (8, 8, 3)
    np.testing.assert_array_equal(rgb[2:6, 2:6], np.broadcast_to([200, 100, 40], (4, 4, 3)))


def test_depth_image_to_metres_invalid_values_become_nan(types):
    header = make_header(types, 0, 'cam')
    metres = np.array([[np.nan, np.inf, -np.inf, -1.0, 0.0, 2.5]], dtype=np.float32)
    decoded = depth_image_to_metres(cdr_round_trip(
        types, array_to_image(types, metres, '32FC1', header)))
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(decoded), [[1, 1, 1, 1, 1, 0]])
    assert decoded[0, 5] == np.float32(2.5)
    millimetres = np.array([[0, 1, 1500, 65535]], dtype=np.uint16)
    decoded = depth_image_to_metres(array_to_image(types, millimetres, '16UC1', header))
    assert np.isnan(decoded[0, 0])
    np.testing.assert_allclose(decoded[0, 1:], [0.001, 1.5, 65.535], rtol=1e-6)


def test_depth_to_image_encodes_invalid_per_rep_118(types):
    header = make_header(types, 0, 'cam')
    depth = np.array([[1.2344, np.nan, -3.0, 70.0]], dtype=np.float32)
    as_mm = cdr_round_trip(types, depth_to_image(types, depth, header, '16UC1'))
    np.testing.assert_array_equal(image_to_array(as_mm), [[1234, 0, 0, 65535]])
    as_float = cdr_round_trip(types, depth_to_image(types, depth, header, '32FC1'))
    np.testing.assert_array_equal(image_to_array(as_float),
                                  np.float32([[1.2344, np.nan, np.nan, 70.0]]))
    with pytest.raises(MessageError, match='expected 32FC1 or 16UC1'):
        depth_to_image(types, depth, header, '8UC1')


def test_compressed_image_png_exact_and_jpeg_close(types):
    rgb = np.random.default_rng(2).integers(0, 256, (6, 10, 3)).astype(np.uint8)
    header = make_header(types, STAMP_NS, 'cam')
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = types.CompressedImage(header=header, format='rgb8; png compressed bgr8',
                                data=types.uint8_array(png.tobytes()))
    np.testing.assert_array_equal(compressed_image_to_rgb(cdr_round_trip(types, msg)), rgb)
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (30, 160, 220)
    ok, jpeg = cv2.imencode('.jpg', cv2.cvtColor(flat, cv2.COLOR_RGB2BGR))
    msg = types.CompressedImage(header=header, format='jpeg',
                                data=types.uint8_array(jpeg.tobytes()))
    decoded = compressed_image_to_rgb(cdr_round_trip(types, msg)).astype(int)
    assert np.abs(decoded - flat).max() <= 3
    gray_ok, gray_png = cv2.imencode('.png', rgb[:, :, 0])
    gray = compressed('png', gray_png.tobytes(), types)
    np.testing.assert_array_equal(compressed_image_to_rgb(gray)[:, :, 2], rgb[:, :, 0])


# -- camera info ---------------------------------------------------------------------------
def test_camera_info_round_trip_all_fields(types):
    K = np.array([[721.5, 0.0, 609.25], [0.0, 720.5, 172.75], [0.0, 0.0, 1.0]])
    P = np.array([[700.0, 0.0, 600.0, -386.1], [0.0, 705.0, 170.0, 0.5], [0.0, 0.0, 1.0, 0.0]])
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    camera = CameraModel(width=1242, height=375, K=K, P=P, D=[-0.37, 0.2, 0.001, -0.002, 0.0],
                         R=R, distortion_model='plumb_bob', binning_x=2, binning_y=1,
                         roi=RegionOfInterest(x_offset=100, y_offset=20, height=300,
                                              width=800, do_rectify=True))
    msg = cdr_round_trip(types, model_to_camera_info(types, camera, make_header(types, 7, 'c')))
    assert (msg.width, msg.height, msg.distortion_model) == (1242, 375, 'plumb_bob')
    np.testing.assert_array_equal(msg.k, K.ravel())
    np.testing.assert_array_equal(msg.p, P.ravel())
    np.testing.assert_array_equal(msg.r, R.ravel())
    np.testing.assert_array_equal(msg.d, [-0.37, 0.2, 0.001, -0.002, 0.0])
    assert (msg.binning_x, msg.binning_y) == (2, 1)
    assert (msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height) == \
        (100, 20, 800, 300)
    assert msg.roi.do_rectify
    # The model of the published image: ROI crop, then 2x horizontal binning (P is used).
    model = camera_info_to_model(msg)
    assert (model.width, model.height) == (400, 300)
    assert model.fx == 350.0 and model.fy == 705.0
    assert model.cx == (600.0 - 100.0) / 2 and model.cy == 170.0 - 20.0


def test_camera_info_plain_round_trip_keeps_model(types):
    camera = CameraModel.from_intrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)
    msg = cdr_round_trip(types, model_to_camera_info(types, camera, make_header(types, 0, 'c')))
    model = camera_info_to_model(msg)
    assert (model.fx, model.fy, model.cx, model.cy) == (721.5377, 721.5377, 609.5593, 172.854)
    assert (model.width, model.height) == (1242, 375)


def test_camera_info_without_calibration_is_rejected(types):
    # An uncalibrated driver publishes all-zero K and P: a message CDR carries as is.
    msg = cdr_round_trip(types, types.CameraInfo(
        header=make_header(types, 0, 'cam'), height=10, width=10, distortion_model='',
        d=types.float64_array([]), k=types.float64_array(np.zeros(9), 9),
        r=types.float64_array(np.zeros(9), 9), p=types.float64_array(np.zeros(12), 12),
        binning_x=0, binning_y=0,
        roi=types.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                   do_rectify=False)))
    with pytest.raises(CalibrationError, match='focal'):
        camera_info_to_model(msg)


# -- point clouds --------------------------------------------------------------------------
def test_organized_pointcloud2_round_trip_with_rgb_and_extra_fields(types):
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(3, 4, 3)).astype(np.float32)
    xyz[1, 2] = np.nan
    rgb = rng.integers(0, 256, (3, 4, 3)).astype(np.uint8)
    confidence = rng.uniform(size=(3, 4)).astype(np.float32)
    label = rng.integers(0, 19, (3, 4)).astype(np.float32)
    msg = make_pointcloud2(types, make_header(types, STAMP_NS, 'cam'), xyz, rgb=rgb,
                           fields={'confidence': confidence, 'label': label})
    back = cdr_round_trip(types, msg)
    assert (back.height, back.width, back.point_step, back.row_step) == (3, 4, 24, 96)
    assert not back.is_dense and not back.is_bigendian
    assert [(f.name, f.offset, f.datatype, f.count) for f in back.fields] == [
        ('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('rgb', 12, 7, 1),
        ('confidence', 16, 7, 1), ('label', 20, 7, 1)]
    arrays = read_pointcloud2(back, ('x', 'y', 'z', 'rgb', 'confidence', 'label'))
    np.testing.assert_array_equal(
        np.stack([arrays['x'], arrays['y'], arrays['z']], axis=1), xyz.reshape(-1, 3))
    np.testing.assert_array_equal(unpack_rgb(arrays['rgb']), rgb.reshape(-1, 3))
    np.testing.assert_array_equal(arrays['confidence'], confidence.ravel())
    np.testing.assert_array_equal(arrays['label'], label.ravel())
    assert pointcloud2_to_xyz(back).shape == (11, 3)


def test_rgb_packing_is_0x00rrggbb(types):
    rgb = np.array([[0x12, 0x34, 0x56]], dtype=np.uint8)
    assert pack_rgb(rgb).view(np.uint32)[0] == 0x123456
    msg = make_pointcloud2(types, make_header(types, 0, 'c'), np.zeros((1, 3), np.float32),
                           rgb=rgb)
    assert (msg.height, msg.width) == (1, 1)
    assert struct.unpack_from('<I', bytes(msg.data), 12)[0] == 0x123456


def cloud_from_structured(types, points, bigendian=False):
    """PointCloud2 holding a numpy structured array (a driver's layout) as its data."""
    kinds = {'i1': 1, 'u1': 2, 'i2': 3, 'u2': 4, 'i4': 5, 'u4': 6, 'f4': 7, 'f8': 8}
    fields = [types.PointField(name=name, offset=offset, datatype=kinds[dtype.str[1:]],
                               count=1)
              for name, (dtype, offset) in points.dtype.fields.items()
              if not name.startswith('pad')]
    return types.PointCloud2(
        header=make_header(types, STAMP_NS, 'velo_link'), height=1, width=len(points),
        fields=fields, is_bigendian=bigendian, point_step=points.dtype.itemsize,
        row_step=points.dtype.itemsize * len(points),
        data=types.uint8_array(points.tobytes()), is_dense=True)


@pytest.mark.parametrize('bigendian', [False, True])
def test_read_velodyne_layout_either_endianness(types, bigendian):
    order = '>' if bigendian else '<'
    layout = np.dtype({'names': ['x', 'y', 'z', 'intensity', 'ring', 'time'],
                       'formats': [order + 'f4'] * 4 + [order + 'u2', order + 'f4'],
                       'offsets': [0, 4, 8, 16, 20, 24], 'itemsize': 32})
    points = np.zeros(5, dtype=layout)
    points['x'] = [1.5, -2.0, 3.25, 0.0, 9.0]
    points['y'] = np.arange(5)
    points['z'] = -1.0
    points['intensity'] = [0.0, 10.0, 20.0, 30.0, 255.0]
    points['ring'] = [0, 1, 31, 63, 2]
    points['time'] = [0.0, 1e-5, 2e-5, 3e-5, 4e-5]
    msg = cdr_round_trip(types, cloud_from_structured(types, points, bigendian))
    arrays = read_pointcloud2(msg, ('x', 'y', 'z', 'intensity', 'ring', 'time'))
    assert arrays['ring'].dtype == np.uint16 and arrays['x'].dtype == np.float32
    for name in layout.names:
        np.testing.assert_array_equal(arrays[name], points[name])


def test_read_ouster_layout_with_padding(types):
    # Ouster-like: 4 bytes of padding after z, mixed integer fields, 48-byte points.
    layout = np.dtype({
        'names': ['x', 'y', 'z', 'intensity', 't', 'reflectivity', 'ring', 'ambient',
                  'range'],
        'formats': ['<f4'] * 4 + ['<u4', '<u2', 'u1', '<u2', '<u4'],
        'offsets': [0, 4, 8, 16, 20, 24, 26, 28, 32], 'itemsize': 48})
    points = np.zeros(3, dtype=layout)
    points['x'], points['y'], points['z'] = [1, 2, 3], [4, 5, 6], [7, 8, 9]
    points['ring'] = [0, 64, 127]
    points['range'] = [1000, 2000, 123456]
    msg = cdr_round_trip(types, cloud_from_structured(types, points))
    arrays = read_pointcloud2(msg, ('x', 'y', 'z', 'ring', 'range'))
    np.testing.assert_array_equal(arrays['z'], [7, 8, 9])
    np.testing.assert_array_equal(arrays['ring'], [0, 64, 127])
    assert arrays['ring'].dtype == np.uint8
    np.testing.assert_array_equal(arrays['range'], [1000, 2000, 123456])


def test_pointcloud2_row_padding_is_skipped():
    # Organized 2x2 cloud, 4-byte points (x only), rows padded to 12 bytes.
    data = struct.pack('<ff4x', 1, 2) + struct.pack('<ff4x', 3, 4)
    msg = ros_cloud([('x', 0, 7, 1)], height=2, width=2, point_step=4, row_step=12, data=data)
    np.testing.assert_array_equal(read_pointcloud2(msg, ('x',))['x'], [1, 2, 3, 4])


# -- transforms and diagnostics ------------------------------------------------------------
def test_tf_message_round_trip(types):
    angle = np.deg2rad(30.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1]])
    T = make_transform(rotation, [1.0, -2.0, 0.5])
    msg = cdr_round_trip(types, make_tf_message(
        types, [('base_link', 'velo_link', T, STAMP_NS), ('world', 'base_link', np.eye(4), 5)]))
    first, second = msg.transforms
    assert (first.header.frame_id, first.child_frame_id) == ('base_link', 'velo_link')
    assert stamp_to_ns(first.header.stamp) == STAMP_NS
    q = first.transform.rotation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w],
                               [0, 0, np.sin(angle / 2), np.cos(angle / 2)], atol=1e-15)
    np.testing.assert_allclose(transform_stamped_to_matrix(first), T, atol=1e-15)
    assert second.child_frame_id == 'base_link'
    np.testing.assert_array_equal(transform_stamped_to_matrix(second), np.eye(4))


def test_diagnostic_array_round_trip(types):
    msg = cdr_round_trip(types, make_diagnostic_array(types, STAMP_NS, [
        ('WARN', 'monodepth: engine', 'slow', 'gpu0', {'latency_ms': 12.5, 'backend': 'trt'}),
        (0, 'monodepth: input', 'ok', '', {}),
    ]))
    assert stamp_to_ns(msg.header.stamp) == STAMP_NS
    first, second = msg.status
    assert (first.level, first.name, first.message, first.hardware_id) == \
        (1, 'monodepth: engine', 'slow', 'gpu0')
    assert [(kv.key, kv.value) for kv in first.values] == [('latency_ms', '12.5'),
                                                           ('backend', 'trt')]
    assert second.level == 0 and list(second.values) == []
    with pytest.raises(MessageError, match='diagnostic level'):
        make_diagnostic_array(types, 0, [(7, 'x', '', '', {})])


# -- malformed input -----------------------------------------------------------------------
def image(**overrides):
    """A real Image message with some fields made inconsistent (see ``ros_image``)."""
    return ros_image(**overrides)


def duck_image(**overrides):
    """An Image-like object whose ``data`` has a type no sensor_msgs/Image class holds.

    The rosbags classes keep uint8[] as a uint8 ndarray (CDR refuses anything else) and
    rclpy's as array.array('B'); a float array, a list of ints or floats can only come from
    code that builds message-like objects itself, so these stay plain namespaces.
    """
    fields = dict(height=2, width=3, encoding='rgb8', is_bigendian=0, step=9, data=bytes(18))
    fields.update(overrides)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize('overrides, message', [
    ({'data': bytes(17)}, r'17 bytes, expected height\*step = 2\*9 = 18'),
    ({'step': 8, 'data': bytes(16)}, r'step 8 is smaller than width\*pixel size'),
    ({'encoding': 'yuv9000'}, "unsupported image encoding 'yuv9000'"),
    ({'height': 0, 'data': b''}, 'expected a non-empty image'),
    ({'width': 0}, 'expected a non-empty image'),
])
def test_malformed_images_raise_message_error(overrides, message):
    with pytest.raises(MessageError, match=message):
        image_to_array(image(**overrides))


def test_depth_and_colour_decoders_reject_the_wrong_kind():
    with pytest.raises(MessageError, match='depth image encoding'):
        depth_image_to_metres(image())
    with pytest.raises(MessageError, match='not a colour/mono'):
        image_to_rgb(image(encoding='32FC1', width=1, step=4, data=bytes(8)))
    with pytest.raises(MessageError, match='could not be decoded'):
        compressed_image_to_rgb(compressed('jpeg', b'not a jpeg'))
    with pytest.raises(MessageError, match='compressed depth'):
        compressed_image_to_rgb(compressed('16UC1; compressedDepth', b'x'))
    with pytest.raises(MessageError, match='no data'):
        compressed_image_to_rgb(compressed('png', b''))


def compressed(fmt, data, types=HUMBLE):
    """A real sensor_msgs/CompressedImage after CDR."""
    return cdr_round_trip(types, types.CompressedImage(
        header=make_header(types, 0, 'cam'), format=fmt, data=types.uint8_array(data)))


def test_array_to_image_rejects_mismatched_arrays(types):
    header = make_header(types, 0, 'c')
    with pytest.raises(MessageError, match='expected HxWx3'):
        array_to_image(types, np.zeros((2, 2), np.uint8), 'rgb8', header)
    with pytest.raises(MessageError, match='expected float32'):
        array_to_image(types, np.zeros((2, 2), np.float64), '32FC1', header)


XYZ_FIELDS = [(name, 4 * index, 7, 1) for index, name in enumerate('xyz')]


def cloud(**overrides):
    """A real PointCloud2 message (x, y, z float32) with some fields made inconsistent."""
    return ros_cloud(**{'fields': XYZ_FIELDS, **overrides})


def duck_cloud(**overrides):
    """A PointCloud2-like object whose ``data`` no message class holds (see duck_image)."""
    fields = dict(height=1, width=2, is_bigendian=False, point_step=12, row_step=24,
                  data=bytes(24),
                  fields=[SimpleNamespace(name=n, offset=o, datatype=d, count=c)
                          for n, o, d, c in XYZ_FIELDS])
    fields.update(overrides)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize('overrides, message', [
    ({'fields': []}, r"lacks field\(s\) \['x', 'y', 'z'\]; it has \[\]"),
    ({'data': bytes(23)}, '23 bytes, expected height'),
    ({'point_step': 8, 'row_step': 16}, "field 'z' .* does not fit in point_step 8"),
    ({'row_step': 20}, r'row_step 20 is smaller than width\*point_step'),
    ({'point_step': 0, 'row_step': 0}, 'point_step is 0'),
    ({'fields': [(name, 0, 9, 1) for name in 'xyz']}, 'datatype 9'),
])
def test_malformed_clouds_raise_message_error(overrides, message):
    with pytest.raises(MessageError, match=message):
        read_pointcloud2(cloud(**overrides))


def test_make_pointcloud2_rejects_bad_shapes(types):
    header = make_header(types, 0, 'c')
    with pytest.raises(MessageError, match='expected HxWx3 or Nx3'):
        make_pointcloud2(types, header, np.zeros((4, 2)))
    with pytest.raises(MessageError, match='rgb has shape'):
        make_pointcloud2(types, header, np.zeros((4, 3)), rgb=np.zeros((3, 3), np.uint8))
    with pytest.raises(MessageError, match="field 'confidence' has shape"):
        make_pointcloud2(types, header, np.zeros((4, 3)), fields={'confidence': np.zeros(3)})


ENCODING_NAMES = st.sampled_from(sorted(ENCODINGS) + ['32FC3', '64FC1', '16SC2', 'bogus', ''])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(height=st.integers(0, 6), width=st.integers(0, 6), step=st.integers(0, 40),
       encoding=ENCODING_NAMES, bigendian=st.integers(0, 1), data=st.binary(max_size=200))
def test_random_images_only_raise_message_error(height, width, step, encoding, bigendian,
                                                data):
    msg = SimpleNamespace(height=height, width=width, step=step, encoding=encoding,
                          is_bigendian=bigendian, data=data)
    for decoder in (image_to_array, image_to_rgb, depth_image_to_metres):
        try:
            out = decoder(msg)
        except MessageError:
            continue
        assert out.shape[:2] == (height, width)
        if decoder is image_to_rgb:
            assert out.shape == (height, width, 3) and out.dtype == np.uint8
        if decoder is depth_image_to_metres:
            assert out.dtype == np.float32 and not np.any(out <= 0)


POINT_FIELDS = st.lists(st.builds(
    SimpleNamespace, name=st.sampled_from(['x', 'y', 'z', 'intensity', 'ring']),
    offset=st.integers(-4, 40), datatype=st.integers(0, 9), count=st.integers(0, 3)),
    max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(height=st.integers(0, 4), width=st.integers(0, 4), point_step=st.integers(0, 40),
       row_step=st.integers(0, 160), fields=POINT_FIELDS, bigendian=st.booleans(),
       data=st.binary(max_size=400))
def test_random_clouds_only_raise_message_error(height, width, point_step, row_step, fields,
                                                bigendian, data):
    msg = SimpleNamespace(height=height, width=width, point_step=point_step,
                          row_step=row_step, fields=fields, is_bigendian=bigendian, data=data)
    for decoder in (read_pointcloud2, pointcloud2_to_xyz):
        try:
            out = decoder(msg)
        except MessageError:
            continue
        if decoder is read_pointcloud2:
            assert all(values.shape == (height * width,) for values in out.values())
        else:
            assert out.ndim == 2 and out.shape[1] == 3


@settings(max_examples=150, deadline=None)
@given(fmt=st.sampled_from(['jpeg', 'png', 'rgb8; jpeg compressed bgr8', 'tiff', '']),
       data=st.one_of(st.binary(max_size=300),
                      st.binary(max_size=60).map(lambda tail: b'\x89PNG\r\n\x1a\n' + tail),
                      st.binary(max_size=60).map(lambda tail: b'\xff\xd8\xff\xe0' + tail)))
def test_random_compressed_images_only_raise_message_error(fmt, data):
    try:
        out = compressed_image_to_rgb(SimpleNamespace(format=fmt, data=data))
    except MessageError:
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8


# Valid by construction: the decoders must accept these and return exactly what was packed
# (the fuzz tests above would pass even if every input were refused).
@settings(max_examples=150, deadline=None)
@given(encoding=st.sampled_from(sorted(ENCODINGS)), height=st.integers(1, 6),
       width=st.integers(1, 6), padding=st.integers(0, 5), bigendian=st.integers(0, 1),
       seed=st.integers(0, 2**32 - 1), distro=st.sampled_from(['humble', 'jazzy']))
def test_valid_images_decode_to_their_exact_pixels(encoding, height, width, padding, bigendian,
                                                   seed, distro):
    dtype, channels = ENCODINGS[encoding]
    pixels = random_pixels(np.random.default_rng(seed), dtype, channels, height, width)
    order = '>' if bigendian else '<'
    rows = [row.astype(np.dtype(dtype).newbyteorder(order)).tobytes() + b'\xee' * padding
            for row in pixels]
    row_bytes = width * channels * np.dtype(dtype).itemsize
    msg = ros_image(height=height, width=width, encoding=encoding, is_bigendian=bigendian,
                    step=row_bytes + padding, data=b''.join(rows),
                    types=MessageTypes.rosbags(distro))
    decoded = image_to_array(msg)
    assert decoded.dtype == dtype and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, pixels)
    if encoding in ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8'):
        rgb = {'rgb8': pixels, 'bgr8': pixels[..., ::-1], 'rgba8': pixels[..., :3],
               'bgra8': pixels[..., 2::-1],
               'mono8': np.repeat(pixels[..., None], 3, axis=2)}[encoding]
        np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    if encoding == '16UC1':   # millimetres; 0 is "no depth"
        metres = np.where(pixels == 0, np.nan, pixels / 1000.0)
        np.testing.assert_allclose(depth_image_to_metres(msg), metres, rtol=1e-6)


FIELD_KINDS = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}


@settings(max_examples=150, deadline=None)
@given(extra=st.lists(st.sampled_from(['intensity', 'ring', 't']), unique=True, max_size=3),
       datatypes=st.lists(st.integers(1, 8), min_size=6, max_size=6),
       gaps=st.lists(st.integers(0, 3), min_size=7, max_size=7),
       height=st.integers(1, 3), width=st.integers(1, 4), row_padding=st.integers(0, 7),
       bigendian=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_valid_clouds_decode_to_their_exact_values(extra, datatypes, gaps, height, width,
                                                   row_padding, bigendian, seed):
    # Fields of any PointField type, packed with arbitrary (unaligned) gaps, trailing point
    # padding and row padding, in either byte order.
    names = ['x', 'y', 'z'] + extra
    order = '>' if bigendian else '<'
    kinds = [order + FIELD_KINDS[datatype] for datatype in datatypes[:len(names)]]
    offsets, offset = [], 0
    for kind, gap in zip(kinds, gaps):
        offset += gap
        offsets.append(offset)
        offset += np.dtype(kind).itemsize
    point_step = offset + gaps[-1]
    layout = np.dtype({'names': names, 'formats': kinds, 'offsets': offsets,
                       'itemsize': point_step})
    rng = np.random.default_rng(seed)
    points = np.zeros((height, width), dtype=layout)
    for name, kind in zip(names, kinds):
        kind = np.dtype(kind)
        if kind.kind == 'f':
            points[name] = rng.uniform(-1e3, 1e3, (height, width))
        else:
            info = np.iinfo(kind)
            points[name] = rng.integers(info.min, info.max, (height, width), endpoint=True)
    row_step = width * point_step + row_padding
    data = b''.join(row.tobytes() + b'\x00' * row_padding for row in points)
    msg = ros_cloud([(name, off, dt, 1) for name, off, dt in zip(names, offsets, datatypes)],
                    height=height, width=width, is_bigendian=bigendian, point_step=point_step,
                    row_step=row_step, data=data)
    arrays = read_pointcloud2(msg, names)
    for name in names:
        assert arrays[name].dtype == np.dtype(layout[name]).newbyteorder('=')
        np.testing.assert_array_equal(arrays[name], points[name].reshape(-1))
    expected_xyz = np.stack([points[n].reshape(-1).astype(np.float32) for n in 'xyz'], 1)
    xyz = pointcloud2_to_xyz(msg)
    np.testing.assert_array_equal(xyz, expected_xyz[np.isfinite(expected_xyz).all(1)])


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 12), width=st.integers(1, 12), seed=st.integers(0, 2**32 - 1),
       fmt=st.sampled_from(['png', 'rgb8; png compressed bgr8', 'bgr8; png compressed bgr8']))
def test_valid_png_images_decode_to_their_exact_pixels(height, width, seed, fmt):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(compressed_image_to_rgb(compressed(fmt, png.tobytes())), rgb)


def test_unorganized_and_empty_clouds_and_field_dtypes(types):
    header = make_header(types, 0, 'c')
    xyz = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 1e9]])          # float64 in
    label = np.array([3, 18], dtype=np.uint8)                        # stored as float32
    msg = cdr_round_trip(types, make_pointcloud2(
        types, header, xyz, rgb=np.array([[255, 0, 1], [0, 0, 0]], np.uint8),
        fields={'label': label}))
    assert (msg.height, msg.width, msg.point_step) == (1, 2, 20)
    arrays = read_pointcloud2(msg, ('x', 'z', 'rgb', 'label'))
    np.testing.assert_array_equal(arrays['x'], np.float32([1.0, np.nan]))
    np.testing.assert_array_equal(arrays['z'], np.float32([3.0, 1e9]))
    assert arrays['rgb'].view(np.uint32).tolist() == [0xFF0001, 0]
    np.testing.assert_array_equal(arrays['label'], [3.0, 18.0])
    empty = cdr_round_trip(types, make_pointcloud2(types, header, np.zeros((0, 3)),
                                                   rgb=np.zeros((0, 3), np.uint8)))
    assert (empty.height, empty.width, len(empty.data)) == (1, 0, 0)
    assert read_pointcloud2(empty)['x'].shape == (0,)


def test_typed_point_fields_sit_in_4_byte_slots(types):
    # The Velodyne driver's fields: float32 x, y, z, intensity, uint16 ring at 16.
    header = make_header(types, 0, 'velo_link')
    xyz = np.array([[1.0, 2.0, 3.0], [-4.0, 5.5, 6.0]], np.float32)
    intensity = np.array([0.25, 1.0], np.float32)
    ring = np.array([7, 63], np.uint16)
    offset = np.array([-3, 100], np.int8)
    msg = cdr_round_trip(types, make_pointcloud2(
        types, header, xyz, fields={'intensity': intensity, 'ring': ring, 'offset': offset},
        field_dtypes={'ring': np.uint16, 'offset': np.int8}))
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ('x', 0, 7), ('y', 4, 7), ('z', 8, 7), ('intensity', 12, 7), ('ring', 16, 4),
        ('offset', 20, 1)]
    assert (msg.point_step, msg.row_step) == (24, 48)
    # Point 1, little-endian: ring 63 = 3f 00, two zero padding bytes; offset 100 = 0x64.
    assert bytes(msg.data[24 + 16:24 + 24]) == bytes([0x3F, 0, 0, 0, 0x64, 0, 0, 0])
    arrays = read_pointcloud2(msg, ('x', 'intensity', 'ring', 'offset'))
    assert arrays['ring'].dtype == np.uint16 and arrays['ring'].tolist() == [7, 63]
    assert arrays['offset'].dtype == np.int8 and arrays['offset'].tolist() == [-3, 100]
    np.testing.assert_array_equal(arrays['intensity'], intensity)
    np.testing.assert_array_equal(arrays['x'], xyz[:, 0])
    with pytest.raises(MessageError, match="field_dtypes names 'time', which is not among"):
        make_pointcloud2(types, header, xyz, fields={'ring': ring},
                         field_dtypes={'time': np.float32})
    with pytest.raises(MessageError, match="'ring' cannot be stored as float64"):
        make_pointcloud2(types, header, xyz, fields={'ring': ring},
                         field_dtypes={'ring': np.float64})


def test_rclpy_style_field_values():
    rosbags_types = MessageTypes.rosbags('humble')
    classes = {name: getattr(rosbags_types, name) for name in MESSAGE_NAMES}
    rclpy_like = MessageTypes(classes, 'rclpy')
    data = rclpy_like.uint8_array(np.arange(4, dtype=np.uint8).tobytes())
    assert isinstance(data, array.array) and data.typecode == 'B' and list(data) == [0, 1, 2, 3]
    d = rclpy_like.float64_array([0.5, -1.0])
    assert isinstance(d, array.array) and d.typecode == 'd' and list(d) == [0.5, -1.0]
    k = rclpy_like.float64_array(np.eye(3), 9)
    assert isinstance(k, np.ndarray) and k.dtype == np.float64 and k.shape == (9,)
    assert rclpy_like.byte(2) == b'\x02' and rosbags_types.byte(2) == 2
    # rclpy keeps uint8[] as array.array: the decoders read it without copying.
    msg = SimpleNamespace(height=1, width=2, encoding='mono8', is_bigendian=0, step=2,
                          data=array.array('B', [7, 9]))
    np.testing.assert_array_equal(image_to_array(msg), [[7, 9]])
    with pytest.raises(MessageError, match='float64\\[9\\] field given 4 values'):
        rclpy_like.float64_array(np.zeros(4), 9)
    with pytest.raises(MessageError, match="unknown ROS 2 distro 'rolling'"):
        MessageTypes.rosbags('rolling')


@settings(max_examples=200, deadline=None)
@given(width=st.integers(0, 50), height=st.integers(0, 50),
       k=st.lists(st.floats(-1e3, 1e3) | st.just(float('nan')), min_size=0, max_size=10),
       p=st.lists(st.floats(-1e3, 1e3), min_size=0, max_size=13),
       binning=st.tuples(st.integers(0, 64), st.integers(0, 64)),
       roi=st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60),
                     st.integers(0, 60)))
def test_random_camera_infos_only_raise_typed_errors(width, height, k, p, binning, roi):
    # K and P of any length: the message classes fix them at 9 and 12 values (CDR and rclpy
    # refuse others), so only a hand-built object can carry these; a namespace it is.
    msg = SimpleNamespace(width=width, height=height, k=k, p=p, d=[], r=list(np.eye(3).flat),
                          distortion_model='plumb_bob', binning_x=binning[0],
                          binning_y=binning[1],
                          roi=SimpleNamespace(x_offset=roi[0], y_offset=roi[1], width=roi[2],
                                              height=roi[3], do_rectify=False))
    try:
        model = camera_info_to_model(msg)
    except (CalibrationError, MessageError):
        return
    assert model.width > 0 and model.height > 0 and model.fx > 0 and model.fy > 0


@settings(max_examples=150, deadline=None)
@given(size=st.tuples(st.integers(8, 2000), st.integers(8, 2000)),
       focal=st.tuples(st.floats(1.0, 3000.0), st.floats(1.0, 3000.0)),
       centre=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
       baseline=st.floats(-500.0, 500.0),
       binning=st.tuples(st.sampled_from([0, 1, 2, 4]), st.sampled_from([0, 1, 2, 4])),
       roi=st.one_of(st.none(), st.tuples(st.floats(0, 0.5), st.floats(0, 0.5),
                                          st.floats(0.5, 1), st.floats(0.5, 1))),
       distro=st.sampled_from(['humble', 'jazzy']))
def test_valid_camera_infos_give_the_exact_intrinsics(size, focal, centre, baseline, binning,
                                                      roi, distro):
    # image_geometry: the ROI shifts the principal point, binning divides focal length,
    # principal point and size (0 and 1 both mean no binning). Binning by 1, 2 or 4 keeps
    # the expected values exact in floating point.
    types = MessageTypes.rosbags(distro)
    width, height = size
    fx, fy = focal
    cx, cy = centre[0] * width, centre[1] * height
    bx, by = max(binning[0], 1), max(binning[1], 1)
    if roi is None:
        x0 = y0 = roi_width = roi_height = 0
    else:   # offsets in the first half, sizes reaching at most the image edge
        x0, y0 = int(roi[0] * width), int(roi[1] * height)
        roi_width = max(bx, int(roi[2] * (width - x0)))
        roi_height = max(by, int(roi[3] * (height - y0)))
    K = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    P = [fx, 0.0, cx, baseline, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    msg = cdr_round_trip(types, types.CameraInfo(
        header=make_header(types, 0, 'cam'), height=height, width=width,
        distortion_model='plumb_bob', d=types.float64_array([0.1, -0.2, 0.0, 0.0, 0.0]),
        k=types.float64_array(K, 9), r=types.float64_array(np.eye(3), 9),
        p=types.float64_array(P, 12), binning_x=binning[0], binning_y=binning[1],
        roi=types.RegionOfInterest(x_offset=x0, y_offset=y0, height=roi_height,
                                   width=roi_width, do_rectify=roi is not None)))
    model = camera_info_to_model(msg)
    assert (model.width, model.height) == ((roi_width or width) // bx,
                                           (roi_height or height) // by)
    assert (model.fx, model.fy) == (fx / bx, fy / by)
    assert (model.cx, model.cy) == ((cx - x0) / bx, (cy - y0) / by)
    assert model.P[0, 3] == baseline / bx
    np.testing.assert_array_equal(model.D, [0.1, -0.2, 0.0, 0.0, 0.0])


# -- data buffers, driver layouts, rgb packing over whole images -----------------------------
@pytest.mark.parametrize('data, message', [
    (np.zeros(18, np.float32), 'image data is an array of float32, expected uint8'),
    (np.zeros(18, np.int16), 'image data is an array of int16, expected uint8'),
    (array.array('f', [0.0] * 18), "image data is an array.array of typecode 'f'"),
    ([0] * 17 + [256], r'holds int\d+ values, expected uint8 bytes \(integers 0..255\)'),
    ([0.5] * 18, 'holds float64 values, expected uint8'),
])
def test_non_uint8_data_is_refused_not_cast(data, message):
    with pytest.raises(MessageError, match=message):
        image_to_array(duck_image(data=data))


def test_non_uint8_cloud_data_is_refused_and_byte_lists_are_read():
    # 6 float32 zeros are 24 bytes; a cast to uint8 would make 6 bytes of something else.
    with pytest.raises(MessageError, match='PointCloud2 data is an array of float32'):
        read_pointcloud2(duck_cloud(data=np.zeros(6, np.float32)))
    # A plain list of byte values (as some message libraries give) is read as bytes.
    data = list(struct.pack('<6f', 1, 2, 3, 4, 5, 6))
    np.testing.assert_array_equal(read_pointcloud2(duck_cloud(data=data))['z'], [3, 6])


def test_read_hesai_layout_with_unaligned_float64_timestamp(types):
    # Hesai driver: x, y, z, intensity float32 at 0..12, ring uint16 at 16, timestamp
    # float64 at 18 (not 8-byte aligned), point_step 26 with no padding.
    layout = np.dtype({'names': ['x', 'y', 'z', 'intensity', 'ring', 'timestamp'],
                       'formats': ['<f4'] * 4 + ['<u2', '<f8'],
                       'offsets': [0, 4, 8, 12, 16, 18], 'itemsize': 26})
    points = np.zeros(4, dtype=layout)
    points['x'] = [1.25, -3.5, 0.0, 200.0]
    points['y'] = [0.5, 2.0, -7.75, 1.0]
    points['z'] = [-1.5, 0.25, 3.0, np.nan]
    points['intensity'] = [0.0, 17.0, 255.0, 3.5]
    points['ring'] = [0, 31, 127, 65535]
    # Seconds since the epoch with microsecond parts: float64 precision is needed.
    points['timestamp'] = [1_700_000_000.000001, 1_700_000_000.000002, 1_700_000_000.099999,
                           1_700_000_000.1]
    msg = cdr_round_trip(types, cloud_from_structured(types, points))
    assert (msg.point_step, [f.offset for f in msg.fields]) == (26, [0, 4, 8, 12, 16, 18])
    arrays = read_pointcloud2(msg, layout.names)
    assert arrays['timestamp'].dtype == np.float64 and arrays['ring'].dtype == np.uint16
    for name in layout.names:
        np.testing.assert_array_equal(arrays[name], points[name])
    # float64 resolves 2.4e-7 s at 1.7e9 s (float32 only 128 s): the 1 us step survives.
    assert arrays['timestamp'][1] - arrays['timestamp'][0] == pytest.approx(1e-6, abs=2.5e-7)
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg),
                                  np.stack([points['x'], points['y'], points['z']], 1)[:3])


@pytest.mark.parametrize('organized', [True, False])
def test_rgb_packing_of_every_pixel_of_a_random_image(types, organized):
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
    xyz = rng.normal(size=(13, 17, 3)).astype(np.float32)
    if not organized:
        rgb, xyz = rgb.reshape(-1, 3), xyz.reshape(-1, 3)
    # 0x00RRGGBB computed with Python integers, independently of both packers.
    expected = [(int(r) << 16) | (int(g) << 8) | int(b) for r, g, b in rgb.reshape(-1, 3)]
    assert pack_rgb(rgb).view(np.uint32).reshape(-1).tolist() == expected
    msg = cdr_round_trip(types, make_pointcloud2(types, make_header(types, 0, 'c'), xyz,
                                                 rgb=rgb))
    words = np.frombuffer(bytes(msg.data), dtype='<u4').reshape(-1, 4)
    assert words[:, 3].tolist() == expected        # rgb is the 4th float32 of each point
    packed = read_pointcloud2(msg, ('rgb',))['rgb']
    np.testing.assert_array_equal(packed.view(np.uint32), pack_rgb(rgb).reshape(-1).view(
        np.uint32))
    np.testing.assert_array_equal(unpack_rgb(packed), rgb.reshape(-1, 3))
