"""Sparse ground-truth depth images from LiDAR points (numpy only).

``lidar_depth_image`` projects LiDAR points into a camera and keeps, for each pixel, the
nearest point (a pixel sees the surface in front). Two pixel conventions:

* ``rounding='nearest'``: pixel centres at integer coordinates (OpenCV/ROS), so a point at
  continuous ``(u, v)`` lands in pixel ``floor(u + 0.5), floor(v + 0.5)``.
* ``rounding='kitti'``: the Eigen-split protocol's ``round(u) - 1, round(v) - 1`` with
  round-half-to-even; the -1 carries over KITTI's 1-based MATLAB indexing.

``kitti_eigen_depth_image`` builds the published Eigen-split ground truth bit for bit: the
matrix ``P_rect_0x @ R_rect_00 @ [R|T]_velo_to_cam`` is applied to the raw scan, points with
velodyne x < 0 are dropped, the depth is the velodyne x (test ground truth) or the projective
depth (the rectified camera z including ``P_rect[2, 3]``).
"""

from __future__ import annotations

import numpy as np

from monodepth_ros.errors import ConfigError
from monodepth_ros.io.camera import CameraModel

ROUNDINGS = ('nearest', 'kitti')
DEPTHS = ('camera_z', 'range', 'lidar_x')


def _as_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ConfigError(f'LiDAR points must be an Nx3 (or Nx4) array, got shape {points.shape}')
    return points


def pixel_indices(u: np.ndarray, v: np.ndarray, rounding: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer pixel column/row of continuous coordinates (see the module doc)."""
    if rounding == 'nearest':
        return np.floor(u + 0.5), np.floor(v + 0.5)
    if rounding == 'kitti':
        return np.round(u) - 1, np.round(v) - 1
    raise ConfigError(f'unknown rounding {rounding!r}, expected one of {ROUNDINGS}')


def splat_nearest(cols: np.ndarray, rows: np.ndarray, depth: np.ndarray, width: int,
                  height: int) -> np.ndarray:
    """HxW float32 image with, per pixel, the smallest depth among points landing on it.

    cols/rows are float or int pixel indices; points outside the image, and points with a
    negative or NaN depth, are dropped. 0 where no point lands.
    """
    inside = ((cols >= 0) & (rows >= 0) & (cols < width) & (rows < height)
              & (depth >= 0))
    flat = rows[inside].astype(np.int64) * width + cols[inside].astype(np.int64)
    # + 0.0 turns -0.0 into 0.0, whose bit pattern sorts first.
    values = depth[inside].astype(np.float32) + np.float32(0.0)
    image = np.zeros(height * width, dtype=np.float32)
    if flat.size == 0:
        return image.reshape(height, width)
    # For non-negative float32 the bit pattern orders like the value, so one int64 key
    # (pixel index in the high half, depth bits in the low half) sorts by pixel then depth in
    # a single fast integer sort; the first entry of each pixel's run is the nearest point.
    key = (flat << 32) | values.view(np.int32).astype(np.int64)
    key.sort()
    pixel = key >> 32
    first = np.empty(key.size, dtype=bool)
    first[0] = True
    np.not_equal(pixel[1:], pixel[:-1], out=first[1:])
    nearest = (key[first] & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    image[pixel[first]] = nearest
    return image.reshape(height, width)


def _apply_rows(matrix: np.ndarray, points: np.ndarray) -> list[np.ndarray]:
    """Matrix (k x 4) applied to the homogeneous points: k arrays of N values."""
    x, y, z = (points[:, i].astype(matrix.dtype) for i in range(3))
    return [matrix[i, 0] * x + matrix[i, 1] * y + matrix[i, 2] * z + matrix[i, 3]
            for i in range(matrix.shape[0])]


def lidar_depth_image(points_lidar: np.ndarray, T_camera_from_lidar: np.ndarray,
                      camera: CameraModel, rounding: str = 'nearest',
                      depth: str = 'camera_z', min_depth: float = 1e-3) -> np.ndarray:
    """Project LiDAR points into ``camera``: HxW float32, 0 where no point; nearest wins.

    points_lidar: Nx3 (extra columns ignored) in the LiDAR frame. T_camera_from_lidar maps
    LiDAR points into the camera's optical frame. The camera's full 3x4 ``P`` is applied (as
    image_geometry does), so a stereo ``Tx`` column is honoured. depth: 'camera_z' (along the
    optical axis, REP 118), 'range' (Euclidean distance from the camera centre) or 'lidar_x'
    (the LiDAR's forward coordinate). Points with camera z <= min_depth are dropped.
    """
    if depth not in DEPTHS:
        raise ConfigError(f'unknown depth convention {depth!r}, expected one of {DEPTHS}')
    points = _as_points(points_lidar)
    T = np.asarray(T_camera_from_lidar, dtype=np.float64)
    if T.shape != (4, 4):
        raise ConfigError(f'T_camera_from_lidar must be 4x4, got shape {T.shape}')
    # Rows of (P T) and the camera-z row of T applied in float32, element-wise: several times
    # faster than float64 here, pixel coordinates stay within ~1e-3 px (the exact
    # Eigen-protocol path below is float64), and it avoids BLAS, whose threads stall when
    # the CPU is shared (a 4-wide product gains nothing from them).
    rows_matrix = np.vstack([camera.P @ T, T[2]]).astype(np.float32)
    x, y, z = (points[:, i].astype(np.float32) for i in range(3))
    camera_z = (rows_matrix[3, 0] * x + rows_matrix[3, 1] * y + rows_matrix[3, 2] * z
                + rows_matrix[3, 3])
    # A spinning LiDAR has about half its points behind the camera: drop them before the
    # projection, which then runs on the rest only.
    front = np.flatnonzero(camera_z > min_depth)
    x, y, z, camera_z = x[front], y[front], z[front], camera_z[front]
    projected = [rows_matrix[i, 0] * x + rows_matrix[i, 1] * y + rows_matrix[i, 2] * z
                 + rows_matrix[i, 3] for i in range(3)]
    with np.errstate(divide='ignore', invalid='ignore'):
        u = projected[0] / projected[2]
        v = projected[1] / projected[2]
    cols, rows = pixel_indices(u, v, rounding)
    if depth == 'camera_z':
        values = camera_z
    elif depth == 'range':
        values = np.sqrt(sum(c * c for c in _apply_rows(T[:3].astype(np.float32),
                                                         points[front])))
    else:
        values = points[front, 0]
    return splat_nearest(cols, rows, values, camera.width, camera.height)


def kitti_eigen_depth_image(points_velo: np.ndarray, velo_to_image: np.ndarray,
                            width: int, height: int, depth: str = 'lidar_x') -> np.ndarray:
    """Ground truth of the Eigen-split protocol (see the module doc); HxW float32, 0 = none.

    velo_to_image: the 3x4 ``P_rect_0x @ R_rect_00 @ [R|T]_velo_to_cam``
    (``KittiCalibration.velo_to_image_matrix``). width, height: ``S_rect_0x``.
    depth: 'lidar_x' (velodyne x, the test ground truth) or 'camera_z' (projective depth).
    """
    if depth not in ('lidar_x', 'camera_z'):
        raise ConfigError(f"unknown depth convention {depth!r}, expected 'lidar_x' or 'camera_z'")
    points = _as_points(points_velo)
    # The protocol keeps the points with x >= 0 (in front of the car).
    points = points[points[:, 0] >= 0]
    M = np.asarray(velo_to_image, dtype=np.float64)
    if M.shape != (3, 4):
        raise ConfigError(f'velo_to_image must be 3x4, got shape {M.shape}')
    # float64 throughout: the published maps were made in float64, and a pixel index or a
    # camera-z value must not move by one rounding step.
    projected = _apply_rows(M, points)
    u = projected[0] / projected[2]
    v = projected[1] / projected[2]
    cols, rows = pixel_indices(u, v, 'kitti')
    values = points[:, 0] if depth == 'lidar_x' else projected[2]
    return splat_nearest(cols, rows, values, width, height)


def filter_occluded(depth: np.ndarray, window: int = 7, margin: float = 0.1) -> np.ndarray:
    """Drop LiDAR pixels hidden from the camera: a copy of ``depth`` with them set to 0.

    The LiDAR sits apart from the camera, so it sees surfaces behind the edges of nearer
    objects; projected, those points fall between the sparse points of the nearer object. A
    pixel is dropped when a point at least ``margin`` (relative) nearer lies within the
    ``window`` x ``window`` pixels around it. Not part of the Eigen-split protocol.
    """
    import cv2

    depth = np.asarray(depth, dtype=np.float32)
    # Work on the sparse points only: a few full-image passes are the whole cost.
    flat = np.flatnonzero(depth > 0)
    values = depth.ravel()[flat]
    if flat.size == 0:
        return depth.copy()
    # Only the rows the points span (plus the window's reach) need the min filter.
    width = depth.shape[1]
    reach = window // 2
    top = max(int(flat[0]) // width - reach, 0)
    bottom = min(int(flat[-1]) // width + reach + 1, depth.shape[0])
    sparse = np.full((bottom - top, width), np.inf, dtype=np.float32)
    local = flat - top * width
    sparse.ravel()[local] = values
    nearest = cv2.erode(sparse, np.ones((window, window), np.uint8)).ravel()[local]
    hidden = values > nearest * np.float32(1.0 + margin)
    filtered = depth.copy()
    filtered.ravel()[flat[hidden]] = 0.0
    return filtered
