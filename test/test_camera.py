"""CameraModel conventions: scaling (cv2.resize), cropping, ROI + binning, exact values."""

import cv2
import numpy as np
import pytest

from monodepth_ros.errors import CalibrationError
from monodepth_ros.io.camera import CameraModel, RegionOfInterest

KITTI = CameraModel.from_intrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)


def test_intrinsics_come_from_p_then_k():
    K = np.array([[500.0, 0, 320.0], [0, 510.0, 240.0], [0, 0, 1]])
    P = np.array([[400.0, 0, 300.0, -40.0], [0, 410.0, 200.0, 0], [0, 0, 1, 0]])
    with_p = CameraModel(width=640, height=480, K=K, P=P)
    assert (with_p.fx, with_p.fy, with_p.cx, with_p.cy) == (400.0, 410.0, 300.0, 200.0)
    without_p = CameraModel(width=640, height=480, K=K, P=np.zeros(12))
    assert (without_p.fx, without_p.fy, without_p.cx, without_p.cy) == (500, 510, 320, 240)


def test_scaled_follows_the_cv2_resize_pixel_centre_convention():
    camera = CameraModel.from_intrinsics(800.0, 600.0, 499.5, 149.5, 1000, 300)
    half = camera.scaled(500, 150)
    # cx' = (cx + 0.5) * s - 0.5: the image centre stays the image centre.
    assert (half.width, half.height) == (500, 150)
    assert (half.fx, half.fy, half.cx, half.cy) == (400.0, 300.0, 249.5, 74.5)
    double = KITTI.scaled(2484, 750)
    assert double.fx == 2 * 721.5377
    assert double.cx == pytest.approx((609.5593 + 0.5) * 2 - 0.5, abs=1e-12)
    assert double.cy == pytest.approx((172.854 + 0.5) * 2 - 0.5, abs=1e-12)
    # Non-uniform scale to a network input size.
    net = KITTI.scaled(640, 192)
    assert net.fx == pytest.approx(721.5377 * 640 / 1242, abs=1e-12)
    assert net.fy == pytest.approx(721.5377 * 192 / 375, abs=1e-12)
    assert net.cy == pytest.approx((172.854 + 0.5) * 192 / 375 - 0.5, abs=1e-12)


def test_scaled_matches_where_cv2_resize_moves_a_feature():
    # A bright 2x2 block in a 40x20 image; downscale by 2 with INTER_AREA puts it on one
    # pixel; the ray through its centre must be the same in both models.
    camera = CameraModel.from_intrinsics(30.0, 30.0, 19.5, 9.5, 40, 20)
    image = np.zeros((20, 40), np.float32)
    image[6:8, 26:28] = 1.0        # centre at u = 26.5, v = 6.5
    small = cv2.resize(image, (20, 10), interpolation=cv2.INTER_AREA)
    v, u = np.unravel_index(np.argmax(small), small.shape)
    assert (u, v) == (13, 3) and small[v, u] == 1.0
    scaled = camera.scaled(20, 10)
    np.testing.assert_allclose(((u - scaled.cx) / scaled.fx, (v - scaled.cy) / scaled.fy),
                               ((26.5 - camera.cx) / camera.fx, (6.5 - camera.cy) / camera.fy))


def test_cropped_shifts_the_principal_point():
    crop = KITTI.cropped(100, 50, 640, 192)
    assert (crop.width, crop.height) == (640, 192)
    assert crop.cx == pytest.approx(509.5593, abs=1e-12)
    assert crop.cy == pytest.approx(122.854, abs=1e-12)
    assert crop.fx == KITTI.fx
    with pytest.raises(CalibrationError, match='lies outside'):
        KITTI.cropped(1000, 0, 300, 100)


def test_effective_applies_roi_then_binning():
    K = np.array([[600.0, 0, 330.0], [0, 620.0, 250.0], [0, 0, 1]])
    camera = CameraModel(width=640, height=480, K=K, P=np.hstack([K, np.zeros((3, 1))]),
                         binning_x=2, binning_y=4,
                         roi=RegionOfInterest(x_offset=30, y_offset=50, height=400, width=600))
    published = camera.effective()
    assert (published.width, published.height) == (300, 100)
    assert (published.fx, published.fy) == (300.0, 155.0)
    assert (published.cx, published.cy) == ((330.0 - 30) / 2, (250.0 - 50) / 4)
    assert published.binning_x == 0 and published.roi.is_full(300, 100)
    # Full-image ROI and no binning leave the model alone.
    plain = CameraModel(width=640, height=480, K=K, P=np.zeros(12),
                        roi=RegionOfInterest(0, 0, 480, 640))
    assert plain.effective() is plain


def test_project_and_pixel_rays_are_consistent():
    points = np.array([[1.0, -0.5, 10.0], [0.0, 0.0, -1.0]])
    u, v = KITTI.project(points)
    assert u[0] == pytest.approx(721.5377 * 0.1 + 609.5593, abs=1e-9)
    assert v[0] == pytest.approx(-721.5377 * 0.05 + 172.854, abs=1e-9)
    assert np.isnan(u[1]) and np.isnan(v[1])
    ray_x, ray_y = KITTI.pixel_rays(stride=4)
    assert ray_x.shape == (311,) and ray_y.shape == (94,)
    assert ray_x[1] == pytest.approx((4 - 609.5593) / 721.5377, abs=1e-15)
    assert ray_y[0] == pytest.approx(-172.854 / 721.5377, abs=1e-15)


@pytest.mark.parametrize('kwargs, message', [
    ({'width': 0}, 'invalid'),
    ({'K': np.eye(2)}, 'K has 4 values, expected 9'),
    ({'P': np.zeros(12), 'K': np.zeros(9)}, 'focal lengths'),
    ({'K': [[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]], 'P': np.zeros(12)}, 'NaN or Inf'),
])
def test_invalid_calibrations_are_rejected(kwargs, message):
    fields = {'width': 10, 'height': 10, 'K': np.eye(3), 'P': np.hstack([np.eye(3),
                                                                         np.zeros((3, 1))])}
    fields.update(kwargs)
    with pytest.raises(CalibrationError, match=message):
        CameraModel(**fields)
