"""LiDAR ground truth for the evaluator: a small window of scans, time matching, projection.

Two protocols:

* ``default``: the scan is moved into the depth image's optical frame (``/tf_static`` or a
  KITTI calibration) and projected with that image's own camera model (its CameraInfo), so
  depth at any resolution is graded at its own pixels. Depth = camera z; pixel centres at
  integer coordinates; the nearest point wins. With ``occlusion_filter`` (on by default)
  points the camera cannot see (LiDAR/camera parallax at object edges) are dropped, see
  ``projection.filter_occluded``.
* ``kitti-eigen``: the published Eigen-split ground truth (velodyne x as depth, round - 1
  indexing, ``P_rect_02 @ R_rect_00 @ [R|T]``) at the full KITTI image size; predictions of
  another size are resized to it (bilinear), as the protocol does. The full-size camera comes
  from a KITTI calibration folder (``--calib``, bit-exact) or else from the camera_info of the
  bag's camera topic (never from the depth image's own, possibly scaled, camera_info) with the
  transform from ``/tf_static``: equal up to float rounding.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from monodepth_ros.errors import ConfigError, TransformError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.kitti import KittiCalibration
from monodepth_ros.runtime.projection import (
    filter_occluded,
    kitti_eigen_depth_image,
    lidar_depth_image,
)

PROTOCOLS = ('default', 'kitti-eigen')


@dataclass
class LidarScan:
    stamp_ns: int
    frame_id: str
    points: np.ndarray   # Nx3 float32 in frame_id; NaN points are dropped by the projection


def _xyz_view(msg) -> np.ndarray | None:
    """Nx3 float32 view (no copy) of a PointCloud2's x, y, z, or None for unusual layouts.

    The fast path needs little-endian float32 x, y, z at offsets 0, 4, 8 and no row padding
    (the common layout, whatever the point_step).
    """
    from monodepth_ros.io.messages import pointcloud2_fields

    layout = pointcloud2_fields(msg)
    little = np.dtype('<f4')
    expected = {'x': 0, 'y': 4, 'z': 8}
    if any(name not in layout or layout[name][0] != offset or layout[name][1] != little
           for name, offset in expected.items()):
        return None
    count = int(msg.height) * int(msg.width)
    step = int(msg.point_step)
    if step % 4 or int(msg.row_step) != int(msg.width) * step or count == 0:
        return None
    data = msg.data
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.size < count * step:
        return None
    return np.ndarray((count, 3), dtype=little, buffer=data, strides=(step, 4))


def scan_from_message(msg) -> LidarScan:
    """A LidarScan from a PointCloud2 (offsets read from its fields)."""
    from monodepth_ros.io.messages import pointcloud2_to_xyz, stamp_to_ns

    points = _xyz_view(msg)
    if points is None:
        points = pointcloud2_to_xyz(msg, drop_invalid=True)
    return LidarScan(stamp_to_ns(msg.header.stamp), str(msg.header.frame_id), points)


def lidar_scale_reference(msg, camera_frame: str, lookup):
    """The scale stage's reference for one image: a PointCloud2 ``msg`` in the camera's frame.

    ``lookup(target, source)`` gives T_target_from_source (a TransformBuffer's lookup). Raises
    MessageError for a scan that cannot be read and TransformError when the LiDAR is not
    connected to ``camera_frame``. One rule for the node and infer-bag.
    """
    from monodepth_ros.runtime.scale import ScaleReference

    scan = scan_from_message(msg)
    return ScaleReference(lidar_points=scan.points,
                          T_camera_from_lidar=lookup(camera_frame, scan.frame_id))


class StampedWindow:
    """Recent stamped items, looked up by the stamp nearest to a query stamp.

    Items older than ``span_ns`` before the newest one are dropped, and at most ``max_items``
    are kept, so memory stays bounded whatever the bag length.
    """

    def __init__(self, max_items: int, span_ns: int | None = None):
        self.items: deque[tuple[int, object]] = deque(maxlen=max_items)
        self.span_ns = span_ns

    def add(self, stamp_ns: int, item) -> None:
        self.items.append((stamp_ns, item))
        if self.span_ns is not None:
            newest = max(stamp for stamp, _ in self.items)
            while self.items and self.items[0][0] < newest - self.span_ns:
                self.items.popleft()

    def __len__(self) -> int:
        return len(self.items)

    def nearest(self, stamp_ns: int) -> tuple[object | None, int | None]:
        """(item, |dt| ns) of the item nearest to stamp_ns, (None, None) when empty."""
        if not self.items:
            return None, None
        stamp, item = min(self.items, key=lambda entry: abs(entry[0] - stamp_ns))
        return item, abs(stamp - stamp_ns)


class ScanWindow(StampedWindow):
    """LiDAR scans of the last ``span_ns`` (at most ``max_scans``), found by camera stamp.

    A time span, not a count: recorded depth is stamped with its image's stamp but written
    later (the node's latency), so its scan must still be here when it arrives.
    """

    def __init__(self, span_ns: int = 2_000_000_000, max_scans: int = 100):
        super().__init__(max_scans, span_ns)

    def add(self, scan: LidarScan) -> None:
        super().add(scan.stamp_ns, scan)


class GroundTruthBuilder:
    """Project matched scans into ground-truth depth images for one protocol.

    transforms: a geometry.TransformBuffer filled from /tf_static (used when no calibration
    is given). calibration: a KittiCalibration (LiDAR = velodyne, camera = ``kitti_camera``).
    """

    def __init__(self, protocol: str = 'default', calibration: KittiCalibration | None = None,
                 transforms=None, kitti_camera: int = 2, occlusion_filter: bool = True):
        if protocol not in PROTOCOLS:
            raise ConfigError(f'unknown protocol {protocol!r}, expected one of {PROTOCOLS}')
        self.protocol = protocol
        self.calibration = calibration
        self.transforms = transforms
        self.kitti_camera = kitti_camera
        self.occlusion_filter = occlusion_filter
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def T_camera_from_lidar(self, camera_frame: str, lidar_frame: str) -> np.ndarray:
        if self.calibration is not None:
            return self.calibration.T_cam_from_velo(self.kitti_camera)
        key = (camera_frame, lidar_frame)
        if key not in self._cache:
            if self.transforms is None:
                raise TransformError(
                    f'no transform from LiDAR frame {lidar_frame!r} to camera frame '
                    f'{camera_frame!r}: the bag has no /tf_static and no --calib was given')
            try:
                self._cache[key] = self.transforms.lookup(camera_frame, lidar_frame)
            except TransformError as error:
                raise TransformError(
                    f'cannot connect LiDAR frame {lidar_frame!r} to camera frame '
                    f'{camera_frame!r} through /tf_static ({error}); give a KITTI '
                    'calibration with --calib or record /tf_static') from None
        return self._cache[key]

    def build(self, scan: LidarScan, camera: CameraModel, camera_frame: str) -> np.ndarray:
        """HxW float32 ground truth (0 = no point) for ``camera``.

        kitti-eigen without a calibration: ``camera`` must be the full-size camera (the
        camera_info of the original images); its P replaces P_rect_02 @ R_rect_00.
        """
        if self.protocol == 'kitti-eigen':
            if self.calibration is not None:
                width, height = self.calibration.S_rect[self.kitti_camera]
                matrix = self.calibration.velo_to_image_matrix(self.kitti_camera)
            else:
                width, height = camera.width, camera.height
                matrix = camera.P @ self.T_camera_from_lidar(camera_frame, scan.frame_id)
            return kitti_eigen_depth_image(scan.points, matrix, width, height, depth='lidar_x')
        T = self.T_camera_from_lidar(camera_frame, scan.frame_id)
        depth = lidar_depth_image(scan.points, T, camera, rounding='nearest', depth='camera_z')
        return filter_occluded(depth) if self.occlusion_filter else depth


def split_scan(scan: LidarScan) -> tuple[LidarScan, LidarScan]:
    """(even-numbered points, odd-numbered points) of a scan: fit to one half, grade the other.

    Neighbouring points of a scan line alternate between the halves, so both cover the same
    surfaces and neither sees the exact points of the other.
    """
    return (LidarScan(scan.stamp_ns, scan.frame_id, scan.points[0::2]),
            LidarScan(scan.stamp_ns, scan.frame_id, scan.points[1::2]))
