"""Vectorised ray casting shared by the synthetic camera and the synthetic LiDAR.

A sensor is a :class:`RayGrid`: a 2-D grid of rays (image rows x columns for the camera,
beams x azimuth steps for the LiDAR) leaving one origin. Both sensors use the same
intersection code (:func:`cast`), so they see exactly the same geometry. The only
sensor-specific part is :meth:`RayGrid.windows`: given the eight corners of an object's
bounding box in the sensor frame, it returns the (row, column) slices that can contain rays
hitting the object. Ray/object tests then run only on those slices, which is what makes a
full 1242x375 frame plus a 115k-ray scan cheap in numpy.

World frame: x forward along the road, y left, z up, ground plane z = 0.
"""

from __future__ import annotations

import numpy as np

BOX = 0
SPHERE = 1

# Corner offsets of a box as fractions of (bmin, bmax).
_CORNER_SELECT = np.array(
    [[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=np.float64)
# The 12 edges of a box as pairs of corner indices (corners differ in exactly one bit).
_EDGES = np.array([(a, a | bit) for a in range(8) for bit in (1, 2, 4) if not a & bit])


def box_corners(bmin: np.ndarray, bmax: np.ndarray) -> np.ndarray:
    """(N, 8, 3) corners of N axis-aligned boxes."""
    bmin = np.asarray(bmin, dtype=np.float64)[:, None, :]
    bmax = np.asarray(bmax, dtype=np.float64)[:, None, :]
    return bmin + (bmax - bmin) * _CORNER_SELECT[None]


class RayGrid:
    """Rays on a rows x cols grid from one origin; directions fixed in the sensor frame.

    ``local_dirs`` (rows, cols, 3) are directions in the sensor frame. For the camera they
    have z = 1 in the optical frame, so the ray parameter t of a hit is the depth along the
    optical axis; for the LiDAR they are unit vectors, so t is the range.
    """

    def __init__(self, local_dirs: np.ndarray, R_world_from_sensor: np.ndarray):
        self.local_dirs = np.asarray(local_dirs, dtype=np.float64)
        self.rows, self.cols = self.local_dirs.shape[:2]
        self.max_ray_length = float(np.sqrt((self.local_dirs ** 2).sum(axis=-1)).max())
        self.R_world_from_sensor = np.asarray(R_world_from_sensor, dtype=np.float64)
        world = self.local_dirs @ self.R_world_from_sensor.T
        self.dirs = [np.ascontiguousarray(world[..., axis], dtype=np.float32)
                     for axis in range(3)]
        # Inverse directions for the slab test; exact zeros get a tiny stand-in so that the
        # products below stay finite (a ray parallel to a slab then misses it, as it should).
        self.inv = []
        for component in self.dirs:
            safe = np.where(np.abs(component) < 1e-12, np.float32(1e-12), component)
            self.inv.append((1.0 / safe).astype(np.float32))
        self._ground_cache: dict[float, np.ndarray] = {}

    def ground_t(self, origin_z: float) -> np.ndarray:
        """Ray parameter of the hit with the plane z = 0 (inf for rays that never reach it)."""
        key = float(origin_z)
        if key not in self._ground_cache:
            dz = self.dirs[2]
            with np.errstate(divide='ignore', invalid='ignore'):
                t = np.where(dz < 0, np.float32(-key) * self.inv[2], np.float32(np.inf))
            self._ground_cache = {key: t.astype(np.float32)}
        return self._ground_cache[key]

    def windows(self, corners: np.ndarray) -> list[list[tuple[slice, slice]]]:
        """For each object's (8, 3) sensor-frame corners, the grid slices it may cover."""
        raise NotImplementedError


class CameraGrid(RayGrid):
    """One ray through each pixel centre of a pinhole camera (optical frame, z forward)."""

    near = 0.05

    def __init__(self, fx, fy, cx, cy, width, height, R_world_from_camera):
        self.fx, self.fy, self.cx, self.cy = float(fx), float(fy), float(cx), float(cy)
        u = (np.arange(width, dtype=np.float64) - self.cx) / self.fx
        v = (np.arange(height, dtype=np.float64) - self.cy) / self.fy
        local = np.empty((height, width, 3))
        local[..., 0] = u[None, :]
        local[..., 1] = v[:, None]
        local[..., 2] = 1.0
        super().__init__(local, R_world_from_camera)

    def _rectangle(self, u, v) -> list[tuple[slice, slice]]:
        u0 = max(int(np.floor(u.min())), 0)
        u1 = min(int(np.ceil(u.max())) + 1, self.cols)
        v0 = max(int(np.floor(v.min())), 0)
        v1 = min(int(np.ceil(v.max())) + 1, self.rows)
        if u0 >= u1 or v0 >= v1:
            return []
        return [(slice(v0, v1), slice(u0, u1))]

    def windows(self, corners):
        z = corners[..., 2]
        in_front = z >= self.near
        all_front = in_front.all(axis=1)
        # Boxes wholly in front: the bounding rectangle of the projected corners.
        with np.errstate(divide='ignore', invalid='ignore'):
            u = self.fx * corners[..., 0] / z + self.cx
            v = self.fy * corners[..., 1] / z + self.cy
        u_low = np.floor(np.where(all_front, u.min(axis=1), 0.0))
        u_high = np.ceil(np.where(all_front, u.max(axis=1), 0.0)) + 1
        v_low = np.floor(np.where(all_front, v.min(axis=1), 0.0))
        v_high = np.ceil(np.where(all_front, v.max(axis=1), 0.0)) + 1
        u_low, v_low = np.maximum(u_low, 0).astype(int), np.maximum(v_low, 0).astype(int)
        u_high = np.minimum(u_high, self.cols).astype(int)
        v_high = np.minimum(v_high, self.rows).astype(int)
        result = []
        for index in range(len(corners)):
            if all_front[index]:
                if u_low[index] < u_high[index] and v_low[index] < v_high[index]:
                    result.append([(slice(v_low[index], v_high[index]),
                                    slice(u_low[index], u_high[index]))])
                else:
                    result.append([])
            elif not in_front[index].any():
                result.append([])
            else:
                # Clip the box by the near plane: the visible part is the convex hull of the
                # corners in front plus the points where edges cross the plane.
                box = corners[index]
                a, b = box[_EDGES[:, 0]], box[_EDGES[:, 1]]
                crossing = (a[:, 2] >= self.near) != (b[:, 2] >= self.near)
                a, b = a[crossing], b[crossing]
                s = (self.near - a[:, 2]) / (b[:, 2] - a[:, 2])
                points = np.vstack([box[in_front[index]], a + (b - a) * s[:, None]])
                result.append(self._rectangle(self.fx * points[:, 0] / points[:, 2] + self.cx,
                                              self.fy * points[:, 1] / points[:, 2] + self.cy))
        return result


class LidarGrid(RayGrid):
    """A spinning multi-beam LiDAR: rows = beams (ascending elevation), cols = azimuth steps."""

    def __init__(self, elevations_deg, azimuth_steps, R_world_from_lidar):
        self.elevations = np.deg2rad(np.sort(np.asarray(elevations_deg, dtype=np.float64)))
        self.azimuth_steps = int(azimuth_steps)
        self.azimuth_step = 2.0 * np.pi / self.azimuth_steps
        self.azimuths = np.arange(self.azimuth_steps) * self.azimuth_step
        el = self.elevations[:, None]
        az = self.azimuths[None, :]
        local = np.stack(np.broadcast_arrays(
            np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), axis=-1)
        super().__init__(local, R_world_from_lidar)

    def windows(self, corners):
        result = []
        x, y, z = corners[..., 0], corners[..., 1], corners[..., 2]
        rho = np.hypot(x, y)
        # Lower bound on the horizontal distance of any point of the box: distance from the
        # sensor axis to the xy bounding rectangle of the corners (which contains the box).
        gap_x = np.maximum(np.maximum(x.min(1), -x.max(1)), 0.0)
        gap_y = np.maximum(np.maximum(y.min(1), -y.max(1)), 0.0)
        rho_low = np.hypot(gap_x, gap_y)
        rho_high = rho.max(1)
        z_low, z_high = z.min(1), z.max(1)
        el_high = np.where(z_high >= 0, np.arctan2(z_high, np.maximum(rho_low, 1e-9)),
                           np.arctan2(z_high, rho_high))
        el_low = np.where(z_low < 0, np.arctan2(z_low, np.maximum(rho_low, 1e-9)),
                          np.arctan2(z_low, rho_high))
        row0 = np.searchsorted(self.elevations, el_low, side='left') - 1
        row1 = np.searchsorted(self.elevations, el_high, side='right') + 1
        azimuth = np.arctan2(y, x)
        center = np.arctan2(y.mean(1), x.mean(1))
        relative = (azimuth - center[:, None] + np.pi) % (2 * np.pi) - np.pi
        rel_low, rel_high = relative.min(1), relative.max(1)
        for index in range(len(corners)):
            rows = slice(max(int(row0[index]), 0), min(int(row1[index]), self.rows))
            if rows.start >= rows.stop:
                result.append([])
                continue
            if rho_low[index] < 1e-6 or rel_high[index] - rel_low[index] > np.pi * 0.95:
                # The box surrounds the sensor axis: every azimuth may hit it.
                result.append([(rows, slice(0, self.cols))])
                continue
            start = int(np.floor((center[index] + rel_low[index]) / self.azimuth_step)) - 1
            start %= self.cols
            span = int(np.ceil((rel_high[index] - rel_low[index]) / self.azimuth_step)) + 3
            stop = start + span
            if stop <= self.cols:
                result.append([(rows, slice(start, stop))])
            else:
                result.append([(rows, slice(start, self.cols)),
                               (rows, slice(0, stop - self.cols))])
        return result


def cast(grid: RayGrid, origin, kinds, bmin, bmax, windows, max_distance: float):
    """Nearest hit of every ray of ``grid`` with the ground plane and the objects.

    Returns ``(t, hit)``: t (rows, cols) float32 ray parameter of the nearest hit (inf for
    none) and hit (rows, cols) int32: -1 nothing, 0 ground plane, k + 1 object k.
    """
    origin = np.asarray(origin, dtype=np.float64)
    t_best = grid.ground_t(origin[2]).copy()
    hit = np.where(np.isfinite(t_best), 0, -1).astype(np.int32)
    dx, dy, dz = grid.dirs
    ix, iy, iz = grid.inv
    for index, object_windows in enumerate(windows):
        if not object_windows:
            continue
        lo = (bmin[index] - origin).astype(np.float32)
        hi = (bmax[index] - origin).astype(np.float32)
        for rows, cols in object_windows:
            if kinds[index] == BOX:
                t = _box_t(lo, hi, ix[rows, cols], iy[rows, cols], iz[rows, cols])
            else:
                t = _sphere_t((lo + hi) * 0.5, float(hi[0] - lo[0]) * 0.5,
                              dx[rows, cols], dy[rows, cols], dz[rows, cols])
            best = t_best[rows, cols]
            closer = t < best
            best[closer] = t[closer]
            hit[rows, cols][closer] = index + 1
    far = t_best > max_distance
    t_best[far] = np.inf
    hit[far] = -1
    return t_best, hit


def _box_t(lo, hi, ix, iy, iz):
    """Slab test; lo/hi are the box corners relative to the ray origin."""
    ax, bx = lo[0] * ix, hi[0] * ix
    ay, by = lo[1] * iy, hi[1] * iy
    az, bz = lo[2] * iz, hi[2] * iz
    t_near = np.maximum(np.maximum(np.minimum(ax, bx), np.minimum(ay, by)), np.minimum(az, bz))
    t_far = np.minimum(np.minimum(np.maximum(ax, bx), np.maximum(ay, by)), np.maximum(az, bz))
    # Origins are never inside an object, so only entries in front of the sensor count.
    return np.where((t_near <= t_far) & (t_near > 0), t_near, np.float32(np.inf))


def _sphere_t(center, radius, dx, dy, dz):
    """Ray/sphere entry point; center is relative to the ray origin."""
    b = dx * center[0] + dy * center[1] + dz * center[2]
    a = dx * dx + dy * dy + dz * dz
    c = float(center @ center) - radius * radius
    disc = b * b - a * c
    with np.errstate(invalid='ignore'):
        t = (b - np.sqrt(disc)) / a
    return np.where((disc >= 0) & (t > 0), t, np.float32(np.inf)).astype(np.float32)
