"""Pinhole camera model built from ``sensor_msgs/CameraInfo`` fields (ROS-free).

Conventions
-----------
* Pixel centres sit at integer coordinates: pixel ``(u, v)`` covers ``[u - 0.5, u + 0.5]``
  (OpenCV / ROS). The optical frame is REP 103: z forward, x right, y down.
* Intrinsics come from the rectified projection ``P`` (``fx = P[0,0]``, ``cx = P[0,2]``, ...);
  when ``P`` is all zeros, ``K`` is used. Our images are rectified, so ``D`` is carried along
  but never applied. Only P's 3x3 block is used: points are in this camera's own optical
  frame, so a right stereo camera's baseline term (``P[0,3] = -fx * B``) is not applied here
  (``projection.lidar_depth_image`` applies the full P).
* ``scaled(w, h)`` matches ``cv2.resize`` (which aligns pixel *corners*):
  ``fx' = fx * sx`` and ``cx' = (cx + 0.5) * sx - 0.5`` with ``sx = w / width`` (same for y).
  A point keeps its physical ray through the resize, so back-projection stays exact.
* ``binning`` and ``roi`` from CameraInfo follow ``image_geometry``: ``cx' = (cx - x_offset) /
  binning_x``; ``effective()`` returns the model of the image actually published.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from monodepth_ros.errors import CalibrationError


def _matrix(values, shape, name) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size != shape[0] * shape[1]:
        raise CalibrationError(
            f'CameraInfo {name} has {array.size} values, expected {shape[0] * shape[1]}')
    return array.reshape(shape)


@dataclass(frozen=True)
class RegionOfInterest:
    x_offset: int = 0
    y_offset: int = 0
    height: int = 0
    width: int = 0
    do_rectify: bool = False

    def is_full(self, width: int, height: int) -> bool:
        return (self.width == 0 and self.height == 0) or (
            self.x_offset == 0 and self.y_offset == 0
            and self.width == width and self.height == height)


@dataclass(frozen=True, eq=False)
class CameraModel:
    """Calibration of one camera, mirroring CameraInfo (K 3x3, D, R 3x3, P 3x4)."""

    width: int
    height: int
    K: np.ndarray
    P: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    distortion_model: str = 'plumb_bob'
    binning_x: int = 0
    binning_y: int = 0
    roi: RegionOfInterest = field(default_factory=RegionOfInterest)

    def __post_init__(self):
        object.__setattr__(self, 'K', _matrix(self.K, (3, 3), 'K'))
        object.__setattr__(self, 'P', _matrix(self.P, (3, 4), 'P'))
        object.__setattr__(self, 'R', _matrix(self.R, (3, 3), 'R'))
        object.__setattr__(self, 'D', np.asarray(self.D, dtype=np.float64).ravel())
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CalibrationError(
                f'camera size {self.width}x{self.height} is invalid, expected positive '
                'width and height')
        object.__setattr__(self, 'width', int(self.width))
        object.__setattr__(self, 'height', int(self.height))
        if not np.all(np.isfinite(self.P)) or not np.all(np.isfinite(self.K)):
            raise CalibrationError('camera K/P contain NaN or Inf')
        if self.fx <= 0 or self.fy <= 0:
            raise CalibrationError(
                f'camera focal lengths fx={self.fx}, fy={self.fy} must be positive '
                '(is CameraInfo.P/K filled in?)')

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_intrinsics(cls, fx: float, fy: float, cx: float, cy: float,
                        width: int, height: int) -> CameraModel:
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        P = np.hstack([K, np.zeros((3, 1))])
        return cls(width=width, height=height, K=K, P=P)

    # -- intrinsics ---------------------------------------------------------------------
    @property
    def projection(self) -> np.ndarray:
        """The 3x3 intrinsic matrix used for (back-)projection: P's left block, else K."""
        if np.any(self.P[:, :3]):
            return self.P[:, :3]
        return self.K

    @property
    def fx(self) -> float:
        return float(self.projection[0, 0])

    @property
    def fy(self) -> float:
        return float(self.projection[1, 1])

    @property
    def cx(self) -> float:
        return float(self.projection[0, 2])

    @property
    def cy(self) -> float:
        return float(self.projection[1, 2])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    # -- derived models -----------------------------------------------------------------
    def effective(self) -> CameraModel:
        """Model of the image actually published: ROI crop then binning applied."""
        bx = max(self.binning_x, 1)
        by = max(self.binning_y, 1)
        if self.roi.is_full(self.width, self.height) and bx == 1 and by == 1:
            return self
        x0, y0 = self.roi.x_offset, self.roi.y_offset
        width = self.roi.width or self.width
        height = self.roi.height or self.height
        adjust = np.array([[1.0 / bx, 0.0, -x0 / bx], [0.0, 1.0 / by, -y0 / by], [0, 0, 1]])
        return replace(self, width=width // bx, height=height // by,
                       K=adjust @ self.K, P=adjust @ self.P,
                       binning_x=0, binning_y=0, roi=RegionOfInterest())

    def scaled(self, width: int, height: int) -> CameraModel:
        """Model of this image resized to width x height with cv2.resize (see module doc)."""
        sx = width / self.width
        sy = height / self.height
        adjust = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        return replace(self, width=int(width), height=int(height),
                       K=adjust @ self.K, P=adjust @ self.P)

    def cropped(self, x: int, y: int, width: int, height: int) -> CameraModel:
        """Model of the sub-image [y:y+height, x:x+width]."""
        if x < 0 or y < 0 or x + width > self.width or y + height > self.height:
            raise CalibrationError(
                f'crop ({x}, {y}, {width}x{height}) lies outside the '
                f'{self.width}x{self.height} image')
        adjust = np.array([[1.0, 0.0, -x], [0.0, 1.0, -y], [0, 0, 1]], dtype=np.float64)
        return replace(self, width=int(width), height=int(height),
                       K=adjust @ self.K, P=adjust @ self.P)

    # -- geometry -----------------------------------------------------------------------
    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project Nx3 optical-frame points to continuous pixel coordinates (u, v).

        Points with z <= 0 get NaN coordinates.
        """
        points = np.asarray(points, dtype=np.float64)
        z = points[:, 2]
        with np.errstate(divide='ignore', invalid='ignore'):
            inv_z = np.where(z > 0, 1.0 / z, np.nan)
        u = self.fx * points[:, 0] * inv_z + self.cx
        v = self.fy * points[:, 1] * inv_z + self.cy
        return u, v

    def pixel_rays(self, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel (x/z, y/z) for the pixel grid sampled every ``stride`` pixels."""
        u = np.arange(0, self.width, stride, dtype=np.float64)
        v = np.arange(0, self.height, stride, dtype=np.float64)
        return (u - self.cx) / self.fx, (v - self.cy) / self.fy
