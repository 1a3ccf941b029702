"""LiDAR projection: hand-made cases and the published Eigen-split ground truth, exactly."""

import numpy as np
import pytest
from conftest import EIGEN_REFERENCE, KITTI_DATE_DIR

from monodepth_ros.errors import ConfigError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.kitti import read_calibration, read_velodyne
from monodepth_ros.runtime.projection import (
    filter_occluded,
    kitti_eigen_depth_image,
    lidar_depth_image,
    pixel_indices,
    splat_nearest,
)

# fx = fy = 10, cx = 2, cy = 1 on a 5x3 image: a point (x, y, z) lands at
# u = 10 x / z + 2, v = 10 y / z + 1.
CAMERA = CameraModel.from_intrinsics(10.0, 10.0, 2.0, 1.0, width=5, height=3)
IDENTITY = np.eye(4)


def test_nearest_point_wins_whatever_the_order():
    points = np.array([
        [0.0, 0.0, 4.0],    # u = 2, v = 1
        [0.0, 0.0, 2.0],    # same pixel, nearer: wins
        [0.0, 0.0, 3.0],    # same pixel, in between
        [0.2, 0.1, 2.0],    # u = 10*0.2/2 + 2 = 3, v = 10*0.1/2 + 1 = 1.5 -> row floor(2.0) = 2
        [0.0, 0.0, -1.0],   # behind the camera: dropped
        [1.0, 0.0, 1.0],    # u = 12: outside the image
    ])
    expected = np.zeros((3, 5), np.float32)
    expected[1, 2] = 2.0
    expected[2, 3] = 2.0
    for order in ([0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [2, 0, 1, 5, 3, 4]):
        depth = lidar_depth_image(points[order], IDENTITY, CAMERA)
        assert depth.dtype == np.float32
        np.testing.assert_array_equal(depth, expected)


def test_transform_and_depth_conventions():
    # LiDAR frame: x forward, y left, z up. T maps it to the optical frame (z fwd, x right,
    # y down) and shifts by 0.5 m along the optical axis: a LiDAR point (3, 0, 0) is at camera
    # (0, 0, 3.5), pixel (2, 1).
    T = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0.5], [0, 0, 0, 1]], float)
    points = np.array([[3.0, 0.0, 0.0]])
    assert lidar_depth_image(points, T, CAMERA)[1, 2] == 3.5
    assert lidar_depth_image(points, T, CAMERA, depth='lidar_x')[1, 2] == 3.0
    # A point at camera (0.35, 0, 3.5): u = 10*0.1 + 2 = 3; range = sqrt(0.35^2 + 3.5^2).
    side = np.array([[3.0, -0.35, 0.0]])
    assert lidar_depth_image(side, T, CAMERA, depth='range')[1, 3] == pytest.approx(
        np.hypot(0.35, 3.5), rel=1e-6)
    with pytest.raises(ConfigError, match='depth convention'):
        lidar_depth_image(points, T, CAMERA, depth='disparity')


def test_pixel_rounding_conventions():
    u = np.array([0.49, 0.5, 1.5, 2.5])
    cols, _ = pixel_indices(u, u, 'nearest')   # pixel centres at integers: floor(u + 0.5)
    np.testing.assert_array_equal(cols, [0, 1, 2, 3])
    cols, _ = pixel_indices(u, u, 'kitti')     # round half to even, then - 1
    np.testing.assert_array_equal(cols, [-1, -1, 1, 1])


def test_splat_drops_outside_and_negative():
    cols = np.array([0, 1, 5, -1, 1])
    rows = np.array([0, 0, 0, 0, 0])
    depth = np.array([1.0, -2.0, 3.0, 4.0, np.nan])
    image = splat_nearest(cols, rows, depth, width=2, height=1)
    np.testing.assert_array_equal(image, [[1.0, 0.0]])


def test_bad_points_shape():
    with pytest.raises(ConfigError, match='Nx3'):
        lidar_depth_image(np.zeros((4, 2)), IDENTITY, CAMERA)


@pytest.fixture(scope='module')
def kitti_frame0(kitti_drive_dir):
    if not EIGEN_REFERENCE.is_file():
        pytest.skip(f'{EIGEN_REFERENCE} not found')
    calibration = read_calibration(KITTI_DATE_DIR)
    scan = read_velodyne(kitti_drive_dir / 'velodyne_points' / 'data' / '0000000000.bin')
    return calibration, scan, np.load(EIGEN_REFERENCE)


def test_eigen_ground_truth_equals_reference_on_every_pixel(kitti_frame0):
    calibration, scan, reference = kitti_frame0
    width, height = calibration.S_rect[2]
    matrix = calibration.velo_to_image_matrix(2)
    velx = kitti_eigen_depth_image(scan, matrix, width, height, depth='lidar_x')
    assert velx.shape == (375, 1242) and velx.dtype == np.float32
    assert np.array_equal(velx, reference['velx_0000000000'])
    camz = kitti_eigen_depth_image(scan, matrix, width, height, depth='camera_z')
    assert np.array_equal(camz, reference['camz_0000000000'])


def test_generic_projection_agrees_with_the_reference(kitti_frame0):
    # The generic path (camera model + 4x4 transform, float32) hits the same pixels; depths
    # agree to float32 rounding.
    calibration, scan, reference = kitti_frame0
    camz = lidar_depth_image(scan, calibration.T_cam2_from_velo, calibration.camera_model(2),
                             rounding='kitti', depth='camera_z')
    expected = reference['camz_0000000000']
    np.testing.assert_array_equal(camz > 0, expected > 0)
    np.testing.assert_allclose(camz, expected, rtol=1e-6, atol=1e-5)


def test_filter_occluded_drops_points_behind_a_nearer_neighbour():
    # One row: a 2 m object point at column 5 among wall pixels (10 m at columns 0 and 3,
    # 10.5 m at column 6). The 5x5 window reaches 2 columns either side, so the wall pixels at
    # columns 3 and 6 see the 2 m point and go (10 > 2 * 1.1, 10.5 > 2 * 1.1); column 0 is 5
    # columns away and stays. Second image: 10 m and 10.5 m side by side both stay, as
    # 10.5 <= 10 * 1.1.
    depth = np.zeros((1, 9), np.float32)
    depth[0, [0, 3, 5, 6]] = [10.0, 10.0, 2.0, 10.5]
    filtered = filter_occluded(depth, window=5, margin=0.1)
    np.testing.assert_array_equal(filtered[0, [0, 3, 5, 6]], [10.0, 0.0, 2.0, 0.0])
    depth = np.zeros((1, 9), np.float32)
    depth[0, [0, 1]] = [10.0, 10.5]
    np.testing.assert_array_equal(filter_occluded(depth, window=5)[0, :2], [10.0, 10.5])
