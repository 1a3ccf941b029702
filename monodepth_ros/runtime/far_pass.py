"""The far pass: a second, zoomed look at the middle of the image for the far field.

At the network's input size a car 60 m ahead is a few pixels tall, and the network reads the
far field too near (real KITTI frames, 40-80 m: median prediction / LiDAR 0.69). The same
points seen through a window around the principal point, enlarged so that the focal length at
the network input is twice the model's canonical one (a telephoto within the cameras the
model is checked on), come out at 0.95. So for our camera-aware models the pipeline runs the
network on two inputs: the first pass as framed and the far pass on that window, as one batch
of two where the backend allows it (``DepthEngine.infer_pair``: ONNX Runtime and PyTorch;
TensorRT runs them one after the other); where the first pass says the scene is far, the far
pass's depth takes over.

* Zoom: the far pass's focal length at the network input is ``far_pass_focal`` x the model's
  canonical focal length; the first pass's own focal length sets the zoom over it. A camera
  whose first pass is already within :data:`MIN_FAR_ZOOM` of that (a long lens) gets no far
  pass: nothing would be gained.
* Geometry: :func:`plan_far_window` places the far window like the first (the principal
  point at the same spot) and frames only the part of the image it needs (cropped first, so
  a large image costs little more than for the first pass); :meth:`FarPassFusion.fuse`
  resamples the far depth onto the first pass's grid through the source image's pixel
  coordinates, exactly.
* Blend, in log depth: weight 0 where the first pass says <= :data:`FAR_BLEND_NEAR` m, 1 at
  >= :data:`FAR_BLEND_FAR` m, linear in between (the far pass over-reads near things, which
  fill its window as they never do in training), times a taper that fades the far pass out
  over the outer :data:`EDGE_TAPER` of its window on each side, so that far scenery running
  across the window's edge shows no seam. Outside the far window the first pass stays.

The blend reads the network's metres (after the canonical-focal factor), before the scale
stage: a fixed, LiDAR or ground scale then applies to the fused depth. Semantics and
confidence come from the first pass alone (so does ``confidence_threshold``), and the fused
depth lives on the first pass's grid at every output resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from monodepth_ros.errors import ConfigError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.framing import Framing, halving_multiple, place_window, principal_point

DEFAULT_FAR_PASS_FOCAL = 2.0   # x the canonical focal length at the network input
MIN_FAR_ZOOM = 1.25            # no far pass for a zoom below this over the first pass
FAR_BLEND_NEAR = 15.0          # metres (first pass): the first pass alone up to here
FAR_BLEND_FAR = 30.0           # metres (first pass): the far pass alone from here
EDGE_TAPER = 0.1               # share of the far window's width/height its weight fades over


def far_pass_zoom(far_pass_focal: float, canonical_focal: float,
                  network_camera: CameraModel | None) -> float:
    """The far pass's zoom over the first pass, or 0.0 when there is no far pass.

    ``network_camera``: the first pass's camera at the network input (None: no calibration,
    the model's canonical camera is assumed, as for its depth).
    """
    if far_pass_focal <= 0 or canonical_focal <= 0:
        return 0.0
    focal = float(network_camera.fx) if network_camera is not None else float(canonical_focal)
    zoom = float(far_pass_focal) * float(canonical_focal) / focal
    return zoom if zoom >= MIN_FAR_ZOOM else 0.0


# Source pixels kept around the far window beyond what it shows: the resize filter's reach.
CROP_MARGIN = 2


@dataclass(frozen=True)
class FarWindow:
    """The far pass's input: the crop of the image at ``origin`` (x, y), then ``framing``.

    ``zoom``: its scale over the first pass's, as planned (so also its focal length and its
    depth over the first pass's).
    """

    origin: tuple[int, int]
    framing: Framing
    zoom: float

    @property
    def scale(self) -> tuple[float, float]:
        return self.framing.scale

    @property
    def network_size(self) -> tuple[int, int]:
        return self.framing.network_size

    @property
    def padded(self) -> bool:
        return self.framing.padded

    def valid_mask(self) -> np.ndarray:
        return self.framing.valid_mask()

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The far pass's network input of a full image."""
        (x, y), (width, height) = self.origin, self.framing.source_size
        return self.framing.apply(image[y:y + height, x:x + width])

    def to_network(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """Full-image pixel coordinates -> far pass network input coordinates."""
        return self.framing.to_network(np.asarray(u, dtype=np.float64) - self.origin[0],
                                       np.asarray(v, dtype=np.float64) - self.origin[1])


def plan_far_window(first: Framing, zoom: float, camera: CameraModel | None,
                    anchor: float) -> FarWindow:
    """The far pass of ``first``: its scale x ``zoom``, the principal point placed alike.

    Only the source pixels the window shows (plus :data:`CROP_MARGIN`) are framed.
    """
    if not (math.isfinite(zoom) and zoom > 0):
        raise ConfigError(f'zoom must be > 0, got {zoom}')
    width, height = first.source_size
    scale = first.scale[0] * float(zoom)
    principal = principal_point(width, height, camera)
    whole = place_window(width, height, scale, first.network_size, principal, anchor)
    # The window's edges in source pixels, widened by the margin, within the image.
    net_w, net_h = first.network_size
    left, top = whole.to_source(-0.5, -0.5)
    right, bottom = whole.to_source(net_w - 0.5, net_h - 0.5)
    x0 = max(0, int(math.floor(left)) - CROP_MARGIN)
    y0 = max(0, int(math.floor(top)) - CROP_MARGIN)
    x1 = min(width, int(math.ceil(right)) + CROP_MARGIN)
    y1 = min(height, int(math.ceil(bottom)) + CROP_MARGIN)
    # Sides that halve all the way down take the fast path before the last, slower step.
    multiple = halving_multiple(scale)
    x0, x1 = _grown_to_multiple(x0, x1, width, multiple)
    y0, y1 = _grown_to_multiple(y0, y1, height, multiple)
    framing = place_window(x1 - x0, y1 - y0, scale, first.network_size,
                           (principal[0] - x0, principal[1] - y0), anchor)
    return FarWindow((x0, y0), framing, framing.scale[0] / first.scale[0])


def _grown_to_multiple(start: int, stop: int, size: int, multiple: int) -> tuple[int, int]:
    """[start, stop) grown within [0, size) to a length that is a multiple of ``multiple``.

    Grown at the end first, then at the start; as far as the image allows.
    """
    missing = -(stop - start) % multiple
    grow_end = min(missing, size - stop)
    grow_start = min(missing - grow_end, start)
    return start - grow_start, stop + grow_end


def blend_weight(first_depth: np.ndarray) -> np.ndarray:
    """Weight of the far pass per pixel, from the first pass's depth (metres)."""
    ramp = (first_depth - FAR_BLEND_NEAR) / (FAR_BLEND_FAR - FAR_BLEND_NEAR)
    return np.clip(np.nan_to_num(ramp, nan=0.0), 0.0, 1.0).astype(np.float32)


class FarPassFusion:
    """Fuses the far pass into the first pass's depth.

    Keeps the resampling grid of the last pair of framings (the same for every frame of a
    camera).
    """

    def __init__(self):
        # ((first, far), (map_u, map_v, taper)): replaced in one assignment, read once.
        self._cache: tuple | None = None

    def _grid(self, first: Framing, far: FarWindow) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
        """Per first-pass network pixel: its far-pass input coordinates, and the edge taper.

        (map_u, map_v) locate it in the far pass's network input; the taper is 0 outside
        its window.
        """
        cache = self._cache
        if cache is not None and cache[0] == (first, far):
            return cache[1]
        width, height = first.network_size
        u, v = np.meshgrid(np.arange(width, dtype=np.float64),
                           np.arange(height, dtype=np.float64))
        u_far, v_far = far.to_network(*first.to_source(u, v))
        far_w, far_h = far.network_size
        taper = np.ones_like(u_far)
        for coordinate, size in ((u_far, far_w), (v_far, far_h)):
            # Distance to the nearer edge of the window (pixel edges at -0.5 and size - 0.5).
            inside = np.minimum(coordinate + 0.5, size - 0.5 - coordinate)
            taper *= np.clip(inside / (EDGE_TAPER * size), 0.0, 1.0)
        maps = (u_far.astype(np.float32), v_far.astype(np.float32), taper.astype(np.float32))
        self._cache = ((first, far), maps)
        return maps

    def window_weight(self, first: Framing, far: FarWindow) -> np.ndarray:
        """The far pass's edge taper on the first pass's grid.

        1 well inside its window, fading to 0 at its edge, 0 outside.
        """
        return self._grid(first, far)[2]

    def resample(self, far_depth: np.ndarray, first: Framing, far: FarWindow) -> np.ndarray:
        """The far pass's depth on the first pass's network grid (NaN outside its window)."""
        far_depth = np.asarray(far_depth, dtype=np.float32)
        if far.padded:
            far_depth = np.where(far.valid_mask(), far_depth, np.float32(np.nan))
        map_u, map_v, _ = self._grid(first, far)
        return cv2.remap(far_depth, map_u, map_v, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=float('nan'))

    def fuse(self, first_depth: np.ndarray, far_depth: np.ndarray, first: Framing,
             far: FarWindow) -> np.ndarray:
        """First-pass depth with the far pass blended in (both in metres, network size)."""
        first_depth = np.asarray(first_depth, dtype=np.float32)
        resampled = self.resample(far_depth, first, far)
        weight = blend_weight(first_depth) * self.window_weight(first, far)
        blended = (weight > 0) & np.isfinite(resampled) & (resampled > 0)
        with np.errstate(divide='ignore', invalid='ignore'):
            log_fused = ((1.0 - weight) * np.log(first_depth)
                         + weight * np.log(np.where(blended, resampled, np.float32(1.0))))
        # Where the first pass alone counts its depth stays exactly as it was.
        return np.where(blended, np.exp(log_fused), first_depth).astype(np.float32)
