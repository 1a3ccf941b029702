"""tf: transforms read from geometry_msgs messages, and a buffer that chains them."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from monodepth_ros.errors import MessageError, TransformError
from monodepth_ros.io.geometry import (
    invert_transform,
    make_transform,
    matrix_to_quaternion,
    quaternion_to_matrix,
)
from monodepth_ros.io.messages import stamp_to_ns


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
