"""Back-projection, rigid transforms and a small TF buffer (numpy only, ROS-free).

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

import bisect
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from monodepth_ros.camera import CameraModel
from monodepth_ros.errors import CalibrationError, MessageError, TransformError


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


def transform_stamped_to_matrix(transform_stamped) -> np.ndarray:
    """4x4 ``T_parent_child`` of a geometry_msgs/TransformStamped (or Transform).

    MessageError, naming the frames, for a missing or non-numeric field, a NaN/Inf
    translation or a quaternion that is no rotation (see :func:`quaternion_to_matrix`).
    """
    header = getattr(transform_stamped, 'header', None)
    where = 'transform'
    if header is not None:
        where = (f'transform {getattr(header, "frame_id", "?")!r} <- '
                 f'{getattr(transform_stamped, "child_frame_id", "?")!r}')
    transform = getattr(transform_stamped, 'transform', transform_stamped)
    try:
        t, q = transform.translation, transform.rotation
        translation = [float(t.x), float(t.y), float(t.z)]
        rotation = [float(q.x), float(q.y), float(q.z), float(q.w)]
    except (AttributeError, TypeError, ValueError, OverflowError) as err:
        raise MessageError(f'{where} is malformed ({err}); expected a geometry_msgs/Transform '
                           'with numeric translation x, y, z and rotation x, y, z, w') from err
    if not np.all(np.isfinite(translation)):
        raise MessageError(f'{where} has translation {translation}, expected finite values')
    try:
        R = quaternion_to_matrix(rotation)
    except MessageError as err:
        raise MessageError(f'{where}: {err}') from None
    return make_transform(R, translation)


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


# -- transform buffer ---------------------------------------------------------------------
@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)      # sorted, dynamic only
    transforms: list[np.ndarray] = field(default_factory=list)


def _slerp(q0: np.ndarray, q1: np.ndarray, fraction: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0:         # take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:    # nearly equal: linear is exact enough and avoids 0/0
        q = q0 + fraction * (q1 - q0)
    else:
        angle = np.arccos(dot)
        q = (np.sin((1 - fraction) * angle) * q0 + np.sin(fraction * angle) * q1) / np.sin(angle)
    return q / np.linalg.norm(q)


class TransformBuffer:
    """Static and dynamic transforms of a frame tree, looked up through intermediate frames.

    Each child frame has one parent (as in tf2); adding a transform for a child with another
    parent replaces the old edge. Dynamic transforms are interpolated between the two samples
    bracketing the requested stamp (linear translation, slerp rotation); outside the stored
    span the nearest sample is used, unless ``tolerance_ns`` is exceeded.
    """

    def __init__(self, tolerance_ns: int | None = None):
        self._edges: dict[str, _Edge] = {}
        self.tolerance_ns = tolerance_ns

    @property
    def frames(self) -> list[str]:
        names = set(self._edges)
        names.update(edge.parent for edge in self._edges.values())
        return sorted(names)

    def add(self, parent: str, child: str, T: np.ndarray, stamp_ns: int | None = None,
            static: bool = True) -> None:
        """Add ``T_parent_child`` (4x4); dynamic transforms need ``stamp_ns``."""
        T = np.asarray(T, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise TransformError(f'transform {parent} <- {child} must be a finite 4x4 matrix')
        if parent == child:
            raise TransformError(f'transform from frame {child!r} to itself')
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            edge = self._edges[child] = _Edge(parent=parent, static=static)
        if static:
            edge.stamps, edge.transforms = [0], [T]
            return
        if stamp_ns is None:
            raise TransformError(f'dynamic transform {parent} <- {child} needs a stamp')
        index = bisect.bisect_left(edge.stamps, int(stamp_ns))
        if index < len(edge.stamps) and edge.stamps[index] == int(stamp_ns):
            edge.transforms[index] = T
        else:
            edge.stamps.insert(index, int(stamp_ns))
            edge.transforms.insert(index, T)

    def add_message(self, tf_msg, static: bool) -> None:
        """Add every transform of a tf2_msgs/TFMessage (from /tf_static or /tf).

        All transforms are decoded before any is added, so a malformed message (MessageError)
        or an invalid frame pair (TransformError) leaves the buffer unchanged.
        """
        from monodepth_ros.messages import stamp_to_ns

        decoded = []
        for transform in tf_msg.transforms:
            try:
                parent, child = str(transform.header.frame_id), str(transform.child_frame_id)
                stamp_ns = stamp_to_ns(transform.header.stamp)
            except (AttributeError, TypeError, ValueError, OverflowError) as err:
                raise MessageError(f'TFMessage entry has no usable header/child_frame_id '
                                   f'({err}); expected a geometry_msgs/TransformStamped') \
                    from err
            if not parent or not child or parent == child:
                raise TransformError(
                    f'transform {parent!r} <- {child!r} needs two distinct, non-empty frame ids')
            decoded.append((parent, child, transform_stamped_to_matrix(transform), stamp_ns))
        for parent, child, T, stamp_ns in decoded:
            self.add(parent, child, T, stamp_ns=stamp_ns, static=static)

    def root_of(self, frame: str) -> tuple[str, bool]:
        """(the root frame above ``frame``, whether a dynamic transform lies on the way)."""
        moving, seen = False, {frame}
        while frame in self._edges:
            edge = self._edges[frame]
            moving = moving or not edge.static
            frame = edge.parent
            if frame in seen:   # a loop cannot come from add(), but never spin forever
                break
            seen.add(frame)
        return frame, moving

    def _edge_transform(self, child: str, stamp_ns: int | None) -> np.ndarray:
        edge = self._edges[child]
        if edge.static or stamp_ns is None:
            return edge.transforms[-1]
        index = bisect.bisect_left(edge.stamps, stamp_ns)
        if index < len(edge.stamps) and edge.stamps[index] == stamp_ns:
            return edge.transforms[index]
        if index == 0 or index == len(edge.stamps):
            return self._nearest(edge, child, stamp_ns, min(index, len(edge.stamps) - 1))
        t0, t1 = edge.stamps[index - 1], edge.stamps[index]
        fraction = (stamp_ns - t0) / (t1 - t0)
        T0, T1 = edge.transforms[index - 1], edge.transforms[index]
        rotation = quaternion_to_matrix(_slerp(matrix_to_quaternion(T0[:3, :3]),
                                               matrix_to_quaternion(T1[:3, :3]), fraction))
        return make_transform(rotation, (1 - fraction) * T0[:3, 3] + fraction * T1[:3, 3])

    def _nearest(self, edge: _Edge, child: str, stamp_ns: int, index: int) -> np.ndarray:
        gap = abs(edge.stamps[index] - stamp_ns)
        if self.tolerance_ns is not None and gap > self.tolerance_ns:
            raise TransformError(
                f'no transform {edge.parent} <- {child} within {self.tolerance_ns} ns of '
                f'{stamp_ns}; known stamps span {edge.stamps[0]}..{edge.stamps[-1]}')
        return edge.transforms[index]

    def _path(self, target: str, source: str) -> list[tuple[str, str, bool]]:
        """Edges (child, parent, upward) walked from source to target (breadth first)."""
        neighbours: dict[str, list[tuple[str, str, bool]]] = {}
        for child, edge in self._edges.items():
            neighbours.setdefault(child, []).append((edge.parent, child, True))
            neighbours.setdefault(edge.parent, []).append((child, child, False))
        previous: dict[str, tuple[str, str, bool] | None] = {source: None}
        queue = deque([source])
        while queue:
            frame = queue.popleft()
            if frame == target:
                break
            for other, child, upward in neighbours.get(frame, []):
                if other not in previous:
                    previous[other] = (frame, child, upward)
                    queue.append(other)
        if target not in previous:
            missing = [name for name in (target, source) if name not in neighbours]
            reason = (f'unknown frame(s) {missing}' if missing
                      else 'they are in unconnected trees')
            raise TransformError(
                f'cannot transform from {source!r} to {target!r}: {reason}; known frames: '
                f'{self.frames}')
        steps = []
        frame = target
        while previous[frame] is not None:
            before, child, upward = previous[frame]
            steps.append((child, before, upward))
            frame = before
        return steps[::-1]

    def lookup(self, target_frame: str, source_frame: str,
               stamp_ns: int | None = None) -> np.ndarray:
        """4x4 ``T_target_source`` mapping points in ``source_frame`` to ``target_frame``.

        ``stamp_ns=None`` takes the latest dynamic transforms.
        """
        T = np.eye(4)
        if target_frame == source_frame:
            return T
        for child, _, upward in self._path(target_frame, source_frame):
            step = self._edge_transform(child, stamp_ns)
            # Walking child -> parent applies T_parent_child; parent -> child its inverse.
            T = (step if upward else invert_transform(step)) @ T
        return T
