"""Ground contact: a vehicle or a person stands on the ground, at the depth where it touches it.

Our models read the road well on cameras they were never trained on (its depth follows from
the row and the focal length), and their semantic head finds vehicles in real images, but
their depth of a real vehicle close ahead can be far off: DDAD's car stopped 6.7 m ahead is
read at about 14 m with ``canonical-focal`` framing (the synthetic world never shows a real car
that close). The road where such an object touches it says how far it is. So, when
``ground_contact`` is on (off by default), for our models, on the first pass's grid after the
far pass and before the scale stage:

1. the ground plane is fitted (``runtime.scale.fit_plane_normal``, RANSAC) to the predicted
   depth of the road pixels below the principal point; a plane from too few pixels, or whose
   distance from the camera is not a plausible mounting height, is not used;
2. scanning each column upwards, a run of standing-class pixels (person, rider, vehicles)
   that starts right above a ground pixel (road, sidewalk, terrain) touches the ground there:
   the run takes the plane's depth at that ground pixel, for at most :data:`MAX_HEIGHT` metres
   of height (taller runs are an object behind, e.g. a building mislabelled above a car);
3. runs that start at the image's bottom edge or above another class keep the network's
   depth, as do those whose contact lies beyond :data:`MAX_CONTACT_DEPTH`: farther away a row
   of the label map spans metres of road, and on KITTI, where the network reads cars well,
   contacts up to 30 m cost more (abs_rel 0.204 against 0.200 at 10 m; README, Any camera).

The object's visible face is taken as upright at its contact depth: a car's rear, a person.
Label bleed at the network's size (a shadow labelled car) puts contacts a little near: on
KITTI's lens this costs abs_rel 0.196 -> 0.200, hence off by default.
"""

from __future__ import annotations

import numpy as np

from monodepth_ros.io.camera import CameraModel
from monodepth_ros.model.semantics import TRAIN_ID
from monodepth_ros.runtime.scale import fit_plane_normal

STANDING_CLASSES = tuple(TRAIN_ID[name] for name in (
    'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle'))
GROUND_CLASSES = tuple(TRAIN_ID[name] for name in ('road', 'sidewalk', 'terrain'))
PLANE_CLASS = TRAIN_ID['road']
MIN_PLANE_PIXELS = 200        # fewer road pixels: no plane, nothing changes
MAX_PLANE_POINTS = 1_500      # the RANSAC scores its hypotheses on this many points at most
HEIGHT_RANGE = (0.5, 4.0)     # metres: a plane farther or nearer than this is not the ground
MAX_CONTACT_DEPTH = 10.0      # metres: farther contacts keep the network's depth
MAX_HEIGHT = 4.0              # metres of a standing object above its contact (a bus, a truck)


def ground_plane(depth: np.ndarray, labels: np.ndarray,
                 camera: CameraModel) -> tuple[np.ndarray, float] | None:
    """(unit normal pointing down, distance from the camera) of the road, or None."""
    ray_x, ray_y = camera.pixel_rays()
    rows = np.arange(camera.height)[:, None]
    road = (labels == PLANE_CLASS) & (rows > camera.cy) & np.isfinite(depth) & (depth > 0)
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


def plane_depth(camera: CameraModel, normal: np.ndarray, distance: float) -> np.ndarray:
    """HxW depth (z) where each pixel's ray meets the plane; inf above its horizon."""
    ray_x, ray_y = camera.pixel_rays()
    facing = normal[0] * ray_x[None, :] + normal[1] * ray_y[:, None] + normal[2]
    with np.errstate(divide='ignore'):
        return np.where(facing > 1e-6, distance / facing, np.inf)


def apply_ground_contact(depth: np.ndarray, labels: np.ndarray,
                         camera: CameraModel) -> tuple[np.ndarray, int]:
    """``depth`` (HxW metres) with standing objects put at their ground contact.

    ``labels``: HxW Cityscapes trainIds of the same grid, ``camera`` its camera. Returns the
    new depth and the number of pixels it changed (0 and ``depth`` itself when no ground
    plane was found).
    """
    plane = ground_plane(depth, labels, camera)
    if plane is None:
        return depth, 0
    ground_depth = plane_depth(camera, *plane)
    standing = np.isin(labels, STANDING_CLASSES)
    ground = np.isin(labels, GROUND_CLASSES)
    height_px = MAX_HEIGHT * camera.fy   # the run's height in pixels is this / contact depth
    out = depth.copy()
    width = depth.shape[1]
    contact = np.full(width, np.nan)   # the current run's contact depth (NaN: none)
    top = np.zeros(width)              # the highest row the current run may take
    changed = 0
    for row in range(depth.shape[0] - 2, -1, -1):
        below = ground_depth[row + 1]
        starts = standing[row] & ground[row + 1] & (below <= MAX_CONTACT_DEPTH)
        contact = np.where(starts, below, contact)
        top = np.where(starts, row + 1 - height_px / np.where(starts, below, 1.0), top)
        contact = np.where(standing[row] & (row >= top), contact, np.nan)
        touching = np.isfinite(contact)
        out[row, touching] = contact[touching]
        changed += int(np.count_nonzero(touching))
    return out, changed
