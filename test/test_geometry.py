"""Back-projection, rotations and the transform buffer: hand-computed exact values."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monodepth_ros.errors import CalibrationError, MessageError, TransformError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.geometry import (
    MIN_QUATERNION_NORM,
    backproject_depth,
    invert_transform,
    make_transform,
    matrix_to_quaternion,
    quaternion_to_matrix,
    transform_points,
)
from monodepth_ros.io.messages import MessageTypes, make_header, make_tf_message
from monodepth_ros.io.transforms import TransformBuffer, transform_stamped_to_matrix

# 4x3 image, principal point well off the centre (1.5, 1.0 would be the centre).
CAMERA = CameraModel.from_intrinsics(fx=100.0, fy=200.0, cx=0.5, cy=2.0, width=4, height=3)


def rot_z(degrees):
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0, 0, 1]])


def test_backproject_uses_calibrated_principal_point():
    depth = np.full((3, 4), np.nan, dtype=np.float32)
    depth[0, 3] = 2.0     # u=3, v=0
    depth[2, 0] = 4.0     # u=0, v=2
    points = backproject_depth(depth, CAMERA)
    assert points.shape == (3, 4, 3) and points.dtype == np.float32
    # x = (u - cx) / fx * z, y = (v - cy) / fy * z
    np.testing.assert_allclose(points[0, 3], [(3 - 0.5) / 100 * 2, (0 - 2.0) / 200 * 2, 2.0],
                               rtol=1e-7)
    np.testing.assert_allclose(points[0, 3], [0.05, -0.02, 2.0], rtol=1e-6)
    np.testing.assert_allclose(points[2, 0], [-0.02, 0.0, 4.0], rtol=1e-6)
    assert np.isnan(points[1, 1]).all()
    assert np.isnan(points).all(axis=2).sum() == 10


def test_backproject_range_limits_invalid_values_and_unorganized_order():
    depth = np.array([[1.0, 5.0, 0.0, -2.0],
                      [np.inf, 2.0, 3.0, 30.0],
                      [np.nan, 0.5, 10.0, 4.0]], dtype=np.float32)
    points = backproject_depth(depth, CAMERA, min_range=1.0, max_range=10.0, organized=False)
    # Valid pixels row by row: (0,0)=1, (0,1)=5, (1,1)=2, (1,2)=3, (2,2)=10, (2,3)=4
    np.testing.assert_array_equal(points[:, 2], [1.0, 5.0, 2.0, 3.0, 10.0, 4.0])
    np.testing.assert_allclose(points[4], [(2 - 0.5) / 100 * 10, 0.0, 10.0], rtol=1e-6)
    organized = backproject_depth(depth, CAMERA, min_range=1.0, max_range=10.0)
    assert np.isnan(organized[1, 3]).all() and np.isnan(organized[2, 1]).all()
    assert np.isnan(organized[0, 2]).all() and np.isnan(organized[1, 0]).all()


def test_backproject_stride_samples_every_nth_pixel():
    depth = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    points = backproject_depth(depth, CAMERA, stride=2)
    assert points.shape == (2, 2, 3)
    # Sample (row 1, col 1) is pixel u=2, v=2 with depth 11.
    np.testing.assert_allclose(points[1, 1], [(2 - 0.5) / 100 * 11, 0.0, 11.0], rtol=1e-6)
    np.testing.assert_allclose(points[0, 1], [(2 - 0.5) / 100 * 3, (0 - 2) / 200 * 3, 3.0],
                               rtol=1e-6)


def test_backproject_rejects_size_mismatch_and_bad_stride():
    with pytest.raises(CalibrationError, match='depth image is 5x3 but the camera model is 4x3'):
        backproject_depth(np.ones((3, 5), np.float32), CAMERA)
    with pytest.raises(ValueError, match='stride'):
        backproject_depth(np.ones((3, 4), np.float32), CAMERA, stride=0)


@pytest.mark.parametrize('rotation', [
    np.eye(3), rot_z(30), rot_z(180), np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]),
    np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
])
def test_quaternion_round_trip_every_branch(rotation):
    q = matrix_to_quaternion(rotation)
    assert q[3] >= 0 and np.isclose(np.linalg.norm(q), 1.0)
    np.testing.assert_allclose(quaternion_to_matrix(q), rotation, atol=1e-12)


def test_quaternion_of_known_rotation():
    np.testing.assert_allclose(matrix_to_quaternion(rot_z(90)),
                               [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-15)
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, 2, 0]), rot_z(180), atol=1e-15)


def test_transform_points_and_inverse():
    T = make_transform(rot_z(90), [1.0, 2.0, 3.0])
    points = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    moved = transform_points(T, points)
    assert moved.dtype == np.float32
    np.testing.assert_allclose(moved, [[1.0, 3.0, 3.0], [1.0, 2.0, 4.0]], atol=1e-6)
    np.testing.assert_allclose(transform_points(invert_transform(T), moved), points, atol=1e-6)


# Optical camera frame: x right, y down, z forward; base_link: x forward, y left, z up.
BASE_FROM_CAMERA = make_transform(
    np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), [1.0, 0.0, 1.5])
BASE_FROM_VELO = make_transform(None, [0.0, 0.0, 2.0])
WORLD_FROM_BASE = make_transform(None, [10.0, 0.0, 0.0])


def kitti_like_buffer():
    buffer = TransformBuffer()
    buffer.add('base_link', 'camera', BASE_FROM_CAMERA)
    buffer.add('base_link', 'velo_link', BASE_FROM_VELO)
    buffer.add('world', 'base_link', WORLD_FROM_BASE)
    return buffer


def apply(T, point):
    return (T @ np.append(point, 1.0))[:3]


def test_lookup_through_a_common_parent_and_back():
    buffer = kitti_like_buffer()
    # velo (5, 1, -1) -> base (5, 1, 1) -> relative to camera origin (4, 1, -0.5)
    # -> optical: x = -y_base = -1, y = -z_base = 0.5, z = x_base = 4.
    camera_from_velo = buffer.lookup('camera', 'velo_link')
    np.testing.assert_allclose(apply(camera_from_velo, [5.0, 1.0, -1.0]), [-1.0, 0.5, 4.0],
                               atol=1e-12)
    velo_from_camera = buffer.lookup('velo_link', 'camera')
    np.testing.assert_allclose(apply(velo_from_camera, [-1.0, 0.5, 4.0]), [5.0, 1.0, -1.0],
                               atol=1e-12)
    np.testing.assert_allclose(apply(buffer.lookup('world', 'camera'), [-1.0, 0.5, 4.0]),
                               [15.0, 1.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(buffer.lookup('camera', 'camera'), np.eye(4))


def test_lookup_from_tf_messages_after_cdr_round_trip():
    types = MessageTypes.rosbags('jazzy')
    msg = make_tf_message(types, [('base_link', 'camera', BASE_FROM_CAMERA, 0),
                                  ('base_link', 'velo_link', BASE_FROM_VELO, 0)])
    raw = types.typestore.serialize_cdr(msg, types.msgtype(msg))
    buffer = TransformBuffer()
    buffer.add_message(types.typestore.deserialize_cdr(raw, types.msgtype(msg)), static=True)
    np.testing.assert_allclose(apply(buffer.lookup('camera', 'velo_link'), [5.0, 1.0, -1.0]),
                               [-1.0, 0.5, 4.0], atol=1e-12)


def test_missing_and_unconnected_frames_are_named():
    buffer = kitti_like_buffer()
    with pytest.raises(TransformError, match=r"unknown frame\(s\) \['imu_link'\].*known "
                                             r"frames: \['base_link', 'camera'"):
        buffer.lookup('imu_link', 'camera')
    buffer.add('map', 'odom', np.eye(4))
    with pytest.raises(TransformError, match="from 'odom' to 'camera'.*unconnected"):
        buffer.lookup('camera', 'odom')


def test_dynamic_transforms_interpolate_and_clamp():
    buffer = TransformBuffer(tolerance_ns=1_000)
    buffer.add('world', 'base_link', make_transform(rot_z(0), [0.0, 0.0, 0.0]),
               stamp_ns=1_000, static=False)
    buffer.add('world', 'base_link', make_transform(rot_z(90), [10.0, 0.0, 0.0]),
               stamp_ns=2_000, static=False)
    buffer.add('base_link', 'velo_link', BASE_FROM_VELO)
    halfway = buffer.lookup('world', 'base_link', stamp_ns=1_500)
    np.testing.assert_allclose(halfway, make_transform(rot_z(45), [5.0, 0.0, 0.0]), atol=1e-12)
    # Exact stamps, latest (None), and clamping within the tolerance.
    np.testing.assert_allclose(buffer.lookup('world', 'base_link', 2_000)[:3, 3], [10, 0, 0])
    np.testing.assert_allclose(buffer.lookup('world', 'base_link')[:3, 3], [10, 0, 0])
    np.testing.assert_allclose(buffer.lookup('world', 'base_link', 2_900)[:3, 3], [10, 0, 0])
    np.testing.assert_allclose(buffer.lookup('world', 'base_link', 500)[:3, 3], [0, 0, 0])
    # Chain: velo origin (0, 0, 0) -> base (0, 0, 2) -> world at 1500: (5, 0, 2).
    np.testing.assert_allclose(apply(buffer.lookup('world', 'velo_link', 1_500), [0, 0, 0]),
                               [5.0, 0.0, 2.0], atol=1e-12)
    with pytest.raises(TransformError, match='within 1000 ns'):
        buffer.lookup('world', 'base_link', stamp_ns=3_500)
    with pytest.raises(TransformError, match='needs a stamp'):
        buffer.add('world', 'base_link', np.eye(4), static=False)
    with pytest.raises(TransformError, match='finite 4x4'):
        buffer.add('world', 'x', np.full((4, 4), np.nan))


# -- TF decoding: random, malformed and degenerate transforms --------------------------------
TYPES = MessageTypes.rosbags('humble')
# Mostly plausible components, plus zero, tiny, huge, NaN and Inf.
COMPONENT = st.one_of(st.floats(-2.0, 2.0), st.just(0.0), st.floats())
QUATERNION = st.tuples(COMPONENT, COMPONENT, COMPONENT, COMPONENT)
TRANSLATION = st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3), st.floats())


def transform_msg(parent, child, q, t, stamp_ns=0):
    """A TransformStamped with raw quaternion/translation fields, as a driver may send."""
    return TYPES.TransformStamped(
        header=make_header(TYPES, stamp_ns, parent), child_frame_id=child,
        transform=TYPES.Transform(
            translation=TYPES.Vector3(x=t[0], y=t[1], z=t[2]),
            rotation=TYPES.Quaternion(x=q[0], y=q[1], z=q[2], w=q[3])))


def is_valid(q, t):
    finite = all(math.isfinite(value) for value in (*q, *t))
    return finite and math.hypot(*q) >= MIN_QUATERNION_NORM   # hypot: inf when huge, fine


def assert_rotates_like(R, q):
    """R turns each axis as the unit quaternion q does: v' = v + 2w (u x v) + 2u x (u x v)."""
    largest = max(abs(value) for value in q)       # divide first: no overflow near 1e308
    scaled = [value / largest for value in q]
    x, y, z, w = (value / math.hypot(*scaled) for value in scaled)
    u = np.array([x, y, z])
    for axis in np.eye(3):
        rotated = axis + 2 * w * np.cross(u, axis) + 2 * np.cross(u, np.cross(u, axis))
        np.testing.assert_allclose(R @ axis, rotated, atol=1e-9)


@settings(max_examples=400, deadline=None)
@given(q=QUATERNION, t=TRANSLATION)
def test_random_transform_stamped_is_a_rigid_transform_or_a_message_error(q, t):
    msg = transform_msg('base_link', 'velo_link', q, t)
    try:
        T = transform_stamped_to_matrix(msg)
    except MessageError as err:
        assert not is_valid(q, t), f'valid transform refused: {err}'
        assert str(err).startswith("transform 'base_link' <- 'velo_link'")
        return
    assert is_valid(q, t)
    R = T[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-9)
    assert T[:3, 3].tolist() == list(t) and T[3].tolist() == [0, 0, 0, 1]
    assert_rotates_like(R, q)


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.tuples(QUATERNION, TRANSLATION, st.integers(0, 2**62)),
                        min_size=1, max_size=4),
       static=st.booleans(), data=st.data())
def test_random_tf_messages_are_added_whole_or_not_at_all(entries, static, data):
    # Frame f<i> hangs below 'world' or an earlier f<j>: always a tree.
    parents = [data.draw(st.sampled_from(['world'] + [f'f{j}' for j in range(i)]))
               for i in range(len(entries))]
    msg = TYPES.TFMessage(transforms=[
        transform_msg(parent, f'f{i}', q, t, stamp)
        for i, (parent, (q, t, stamp)) in enumerate(zip(parents, entries))])
    buffer = TransformBuffer()
    buffer.add('world', 'base_link', WORLD_FROM_BASE)
    try:
        buffer.add_message(msg, static=static)
    except MessageError:
        assert not all(is_valid(q, t) for q, t, _ in entries)
        assert buffer.frames == ['base_link', 'world'], 'a refused message left transforms'
        return
    assert all(is_valid(q, t) for q, t, _ in entries)
    for i, (parent, (q, t, stamp)) in enumerate(zip(parents, entries)):
        T = buffer.lookup(parent, f'f{i}', None if static else stamp)
        assert T[:3, 3].tolist() == list(t)
        assert_rotates_like(T[:3, :3], q)


def test_zero_norm_quaternion_is_refused_with_the_frames_named():
    ok = transform_msg('base_link', 'camera', (0.0, 0.0, 0.0, 1.0), (1.0, 0.0, 0.0))
    zero = transform_msg('base_link', 'velo_link', (0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 2.0))
    message = (r"transform 'base_link' <- 'velo_link': quaternion \(0.0, 0.0, 0.0, 0.0\) has "
               r'norm 0, which is no rotation; expected a unit quaternion')
    with pytest.raises(MessageError, match=message):
        transform_stamped_to_matrix(zero)
    buffer = TransformBuffer()
    with pytest.raises(MessageError, match=message):
        buffer.add_message(TYPES.TFMessage(transforms=[ok, zero]), static=True)
    assert buffer.frames == []       # the valid first transform was not kept either
    with pytest.raises(MessageError, match='NaN or Inf component'):
        quaternion_to_matrix([0.0, float('nan'), 0.0, 1.0])
    # Huge but finite components still give a direction: no overflow to Inf.
    for huge in (1e300, 1.5e308):
        np.testing.assert_allclose(quaternion_to_matrix([0.0, 0.0, huge, huge]), rot_z(90),
                                   atol=1e-12)


# Values no ROS 2 message class carries (None, a string, a missing field): CDR and rclpy's
# typed setters both refuse them, so these are plain namespaces, standing for message-like
# objects built by other code. The buffer must still answer with a MessageError.
@pytest.mark.parametrize('rotation, translation, message', [
    (SimpleNamespace(x=0.0, y=0.0, z=0.0, w=None), SimpleNamespace(x=0, y=0, z=0),
     'is malformed'),
    (SimpleNamespace(x=0.0, y=0.0, z='abc', w=1.0), SimpleNamespace(x=0, y=0, z=0),
     'is malformed'),
    (SimpleNamespace(x=0.0, y=0.0, z=0.0), SimpleNamespace(x=0, y=0, z=0), 'is malformed'),
])
def test_malformed_transform_fields_raise_message_error(rotation, translation, message):
    msg = SimpleNamespace(
        header=SimpleNamespace(frame_id='map', stamp=SimpleNamespace(sec=1, nanosec=0)),
        child_frame_id='odom',
        transform=SimpleNamespace(rotation=rotation, translation=translation))
    with pytest.raises(MessageError, match=f"transform 'map' <- 'odom' {message}"):
        TransformBuffer().add_message(SimpleNamespace(transforms=[msg]), static=False)


@pytest.mark.parametrize('rotation, translation, message', [
    ((0.0, 0.0, 0.0, 1.0), (0.0, math.inf, 0.0),
     r'has translation \[0.0, inf, 0.0\], expected finite values'),
    ((0.0, 0.0, 0.0, 1.0), (math.nan, 0.0, 0.0), r'has translation \[nan, 0.0, 0.0\]'),
    ((0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0),
     r'quaternion \(0.0, 0.0, 0.0, 0.0\) has norm 0, which is no rotation'),
    ((0.0, math.nan, 0.0, 1.0), (0.0, 0.0, 0.0),
     r'quaternion \(0.0, nan, 0.0, 1.0\) has a NaN or Inf component'),
])
def test_non_finite_or_zero_transforms_in_real_messages_are_refused(rotation, translation,
                                                                    message):
    # Float fields a real TFMessage carries through CDR.
    transform = TYPES.TransformStamped(
        header=make_header(TYPES, 1_000_000_000, 'map'), child_frame_id='odom',
        transform=TYPES.Transform(translation=TYPES.Vector3(*translation),
                                  rotation=TYPES.Quaternion(*rotation)))
    tf_message = TYPES.TFMessage(transforms=[transform])
    msgtype = TYPES.msgtype(tf_message)
    tf_message = TYPES.typestore.deserialize_cdr(
        bytes(TYPES.typestore.serialize_cdr(tf_message, msgtype)), msgtype)
    with pytest.raises(MessageError, match=f"transform 'map' <- 'odom'.*{message}"):
        TransformBuffer().add_message(tf_message, static=False)


@pytest.mark.parametrize('parent, child', [('', 'velo_link'), ('base_link', ''),
                                           ('base_link', 'base_link')])
def test_tf_messages_need_two_distinct_frame_ids(parent, child):
    msg = make_tf_message(TYPES, [(parent, child, np.eye(4), 0)])
    with pytest.raises(TransformError, match='two distinct, non-empty frame ids'):
        TransformBuffer().add_message(msg, static=True)
