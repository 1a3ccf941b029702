"""Ground contact: a vehicle or a person stands on the road, at the depth where it touches it.

Our models read the road well on cameras they were never trained on (its depth follows from
the row and the focal length), and their semantic head finds vehicles in real images, but
their depth of a real vehicle close ahead can be far off: DDAD's car stopped 6.7 m ahead is
read at about twice its distance (the synthetic world never shows a real car that close).
The road where such an object touches it says how far it is. So, for our models (on by
default, ``ground_contact``), on the first pass's grid, last in the pipeline's scale stage
(after the far pass and the metric scale, which fits to the network's own depth):

1. the road plane is fitted (``runtime.scale.fit_plane_normal``, RANSAC) to the predicted
   depth of the road pixels below the principal point; a plane from too few pixels, or whose
   distance from the camera is not a plausible mounting height, is not used;
2. scanning each column upwards, a run of standing-class pixels (person, rider, vehicles)
   that starts right above a road pixel touches the road there: the run takes the plane's
   depth at that road pixel, for at most :data:`MAX_HEIGHT` metres of height (taller runs are
   an object behind, e.g. a building mislabelled above a car);
3. runs that start at the image's bottom edge or above another class (sidewalk, terrain: not
   on the fitted plane) keep the network's depth, as do those whose contact lies beyond
   :data:`MAX_CONTACT_DEPTH`: farther away a row of the label map spans metres of road, and
   on KITTI, where the network reads cars well, farther contacts cost more (README, Any
   camera).

The object's visible face is taken as upright at its contact depth: a car's rear, a person.
At the network's size a run of a parked car seen obliquely can reach up into the car behind
it; that costs KITTI's frames a little (abs_rel 0.196 -> 0.198), against DDAD's 0.432 ->
0.264.
"""

from __future__ import annotations

import numpy as np

from monodepth_ros.io.camera import CameraModel
from monodepth_ros.model.semantics import TRAIN_ID
from monodepth_ros.runtime.scale import MAX_PLANE_POINTS, depth_on_plane, fit_plane_normal

STANDING_CLASSES = tuple(TRAIN_ID[name] for name in (
    'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle'))
ROAD = TRAIN_ID['road']   # the plane is fitted to the road, and objects touch it there
MIN_PLANE_PIXELS = 200        # fewer road pixels: no plane, nothing changes
HEIGHT_RANGE = (0.5, 4.0)     # metres: a plane farther or nearer than this is not the ground
MAX_CONTACT_DEPTH = 10.0      # metres: farther contacts keep the network's depth
MAX_HEIGHT = 4.0              # metres of a standing object above its contact (a bus, a truck)


def ground_plane(depth: np.ndarray, labels: np.ndarray,
                 camera: CameraModel) -> tuple[np.ndarray, float] | None:
    """(unit normal pointing down, distance from the camera) of the road, or None."""
    ray_x, ray_y = camera.pixel_rays()
    rows = np.arange(camera.height)[:, None]
    road = (labels == ROAD) & (rows > camera.cy) & np.isfinite(depth) & (depth > 0)
    if int(road.sum()) < MIN_PLANE_PIXELS:
        return None
    vs, us = np.nonzero(road)
    z = depth[vs, us].astype(np.float64)
    points = np.stack([ray_x[us] * z, ray_y[vs] * z, z], axis=1)
    normal = fit_plane_normal(points[::max(1, len(points) // MAX_PLANE_POINTS)])
    if normal is None:
        return None
    distance = float(np.median(points @ normal))
    if not HEIGHT_RANGE[0] <= distance <= HEIGHT_RANGE[1]:
        return None
    return normal, distance


def plane_depth(camera: CameraModel, normal: np.ndarray, distance: float,
                row_offset: float = 0.0) -> np.ndarray:
    """HxW depth (z) where each pixel's ray meets the plane; inf above its horizon.

    ``row_offset``: the rays of the points that many rows below each pixel centre (-0.5: the
    top edge of each pixel).
    """
    ray_x, ray_y = camera.pixel_rays()
    rays = np.empty((camera.height, camera.width, 3))
    rays[..., 0] = ray_x[None, :]
    rays[..., 1] = (ray_y + row_offset / camera.fy)[:, None]
    rays[..., 2] = 1.0
    return depth_on_plane(rays, normal, distance)


def apply_ground_contact(depth: np.ndarray, labels: np.ndarray,
                         camera: CameraModel) -> tuple[np.ndarray, int]:
    """``depth`` (HxW metres) with standing objects put at their ground contact.

    ``labels``: HxW Cityscapes trainIds of the same grid, ``camera`` its camera. Returns the
    new depth and the number of pixels it changed (0 and ``depth`` itself when no ground
    plane was found).
    """
    standing = np.isin(labels, STANDING_CLASSES)
    ground = labels == ROAD
    if not (standing[:-1] & ground[1:]).any():   # nothing stands on the road: no plane needed
        return depth, 0
    plane = ground_plane(depth, labels, camera)
    if plane is None:
        return depth, 0
    # An object touches the road on the top edge of the first road pixel below it.
    ground_depth = plane_depth(camera, *plane, row_offset=-0.5)
    height, width = depth.shape
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    # Each pixel's first row at or below it that is not standing: for a standing pixel, where
    # its run ends (height: the run reaches the image's bottom edge).
    run_end = np.minimum.accumulate(np.where(standing, height, rows)[::-1], axis=0)[::-1]
    below = np.minimum(run_end, height - 1)
    contact = ground_depth[below, cols]
    with np.errstate(divide='ignore', invalid='ignore'):
        within_height = rows >= below - MAX_HEIGHT * camera.fy / contact
    touching = (standing & (run_end < height) & ground[below, cols]
                & (contact <= MAX_CONTACT_DEPTH) & within_height
                & np.isfinite(depth))   # an invalid pixel stays invalid
    out = np.where(touching, contact, depth).astype(depth.dtype, copy=False)
    return out, int(np.count_nonzero(touching & (out != depth)))
