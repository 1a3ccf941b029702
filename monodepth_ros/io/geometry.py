"""Back-projection and rigid transforms (numpy only; the tf buffer is in ``transforms``).

Conventions
-----------
* A 4x4 ``T_a_b`` maps points expressed in frame ``b`` to frame ``a``: ``p_a = T_a_b @ p_b``.
  A ``geometry_msgs/TransformStamped`` with ``header.frame_id = a`` and ``child_frame_id = b``
  carries ``T_a_b`` (tf2 convention).
* Quaternions are (x, y, z, w) like geometry_msgs.
* Depth is the z coordinate in the camera's optical frame (REP 103/118); ``min_range`` and
  ``max_range`` of :func:`backproject_depth` bound that z value.
"""

from __future__ import annotations

import numpy as np

from monodepth_ros.errors import CalibrationError, MessageError
from monodepth_ros.io.camera import CameraModel


# -- rotations ----------------------------------------------------------------------------
def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) with w >= 0 of a 3x3 rotation matrix."""
    R = np.asarray(R, dtype=np.float64)
    trace = R[0, 0] + R[1, 1] + R[2, 2]
    # Pick the largest of w, x, y, z to divide by, for numerical stability.
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, s / 4]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4, (R[1, 0] - R[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


# Quaternions shorter than this carry no usable direction (a zeroed or unset message).
MIN_QUATERNION_NORM = 1e-9


def quaternion_to_matrix(q) -> np.ndarray:
    """3x3 rotation matrix of a quaternion (x, y, z, w); it is normalized first.

    MessageError for a non-finite quaternion or one of norm below ``MIN_QUATERNION_NORM``
    (the all-zero quaternion of an unset message is not a rotation).
    """
    x, y, z, w = q = np.asarray(q, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite(q)):
        raise MessageError(f'quaternion ({x}, {y}, {z}, {w}) has a NaN or Inf component, '
                           'expected a finite unit quaternion')
    # Scale by the largest component first so that huge components do not overflow.
    scale = float(np.max(np.abs(q)))
    scaled_norm = float(np.linalg.norm(q / scale)) if scale > 0 else 0.0     # in [1, 2]
    norm = scale * scaled_norm      # Python floats: inf past 1.8e308, no warning
    if norm < MIN_QUATERNION_NORM:
        raise MessageError(f'quaternion ({x}, {y}, {z}, {w}) has norm {norm:.3g}, which is no '
                           'rotation; expected a unit quaternion (w=1 for identity)')
    x, y, z, w = q / scale / scaled_norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def make_transform(R=None, t=None) -> np.ndarray:
    """4x4 rigid transform from a 3x3 rotation and a translation."""
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    if t is not None:
        T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (R^T, -R^T t)."""
    T = np.asarray(T, dtype=np.float64)
    inverse = np.eye(4)
    inverse[:3, :3] = T[:3, :3].T
    inverse[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inverse


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to Nx3 points (NaN rows stay NaN); keeps float32 input float32."""
    points = np.asarray(points)
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f'transform has shape {T.shape}, expected 4x4')
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points have shape {points.shape}, expected Nx3')
    dtype = points.dtype if points.dtype in (np.float32, np.float64) else np.float64
    out = points @ T[:3, :3].T.astype(dtype) + T[:3, 3].astype(dtype)
    return out.astype(dtype, copy=False)


# -- back-projection ----------------------------------------------------------------------
def backproject_depth(depth: np.ndarray, camera: CameraModel, stride: int = 1,
                      min_range: float = 0.0, max_range: float = np.inf,
                      organized: bool = True) -> np.ndarray:
    """Points in the camera optical frame from a HxW depth image (z in metres).

    Uses the calibrated principal point: ``x = (u - cx) / fx * z``, ``y = (v - cy) / fy * z``
    for pixel centres ``(u, v)`` sampled every ``stride`` pixels. Depth that is NaN, Inf,
    <= 0, below ``min_range`` or above ``max_range`` is invalid. ``organized`` returns
    ``ceil(H/stride) x ceil(W/stride) x 3`` float32 with NaN for invalid pixels, otherwise the
    valid points only, Nx3 float32 row by row.

    Points come out in the camera's own optical frame: only the 3x3 block of ``P`` is used
    (see ``CameraModel.projection``), so a stereo baseline term ``Tx = P[0, 3]`` (non-zero for
    the second camera of a rectified pair) is not applied, whereas
    ``projection.lidar_depth_image`` applies the full ``P``.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise MessageError(f'depth has shape {depth.shape}, expected HxW')
    if depth.shape != (camera.height, camera.width):
        raise CalibrationError(
            f'depth image is {depth.shape[1]}x{depth.shape[0]} but the camera model is '
            f'{camera.width}x{camera.height}; scale the camera first (CameraModel.scaled)')
    if int(stride) < 1:
        raise ValueError(f'stride {stride} must be >= 1')
    stride = int(stride)
    z = depth[::stride, ::stride].astype(np.float32)
    ray_x, ray_y = camera.pixel_rays(stride)
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(z) & (z > 0) & (z >= min_range) & (z <= max_range)
    z[~valid] = np.nan
    points = np.empty(z.shape + (3,), dtype=np.float32)
    np.multiply(z, ray_x.astype(np.float32)[None, :], out=points[:, :, 0])
    np.multiply(z, ray_y.astype(np.float32)[:, None], out=points[:, :, 1])
    points[:, :, 2] = z
    if organized:
        return points
    return points[valid]
