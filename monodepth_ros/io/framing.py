"""Framing: how a camera image of any size is brought to the network input, and back.

One uniform scale (never a stretch: both axes scale alike, up to the rounding of the scaled
size), then a crop or a padding to the network size. Node, ``infer``, ``infer-bag``,
``eval-bag``, ``adapt`` and the training sets all frame images with :func:`plan_framing`, so the
network always sees what it was trained on and the published CameraInfo, the point cloud and
the evaluator's ground truth follow the same geometry.

Modes
-----
* ``canonical-fit`` (default): the scale of ``canonical-focal``, clamped between the scale at
  which the whole image fits the network input and that of ``fit-width``. A long lens is
  shrunk to the canonical focal length (DDAD's 1.59:1 front camera: 166x104, padded left and
  right, 8 rows cropped, so a car close ahead shows with the road under it), but no further
  than the whole image fitting (a telephoto of KITTI's shape keeps its pixels); a wide lens is
  not enlarged past fit-width (nothing cropped at the sides). KITTI's camera: fit-width. It is
  fit-width without a camera or for a model with no canonical focal length.
* ``fit-width``: the image width fills the network width; a taller image is
  cropped to a band of rows, a wider one padded. The focal length at the network input then
  varies with the camera (a camera-aware model rescales its depth by it).
* ``canonical-focal``: the scale makes the focal length at the network input the model's
  canonical one; both axes are then cropped or padded (a lens longer than the canonical
  camera's covers less than the network input and is padded, a wider one is cropped).

Model cards (model/cards.py) of foreign models add two size policies: ``plan_letterbox``
(the whole image scaled to fit a fixed network input, the rest padded) and ``plan_long_side``
(the network size follows the image: long side scaled to N, each side padded up to a multiple
of K, as patch-based models need).

Placement: the principal point lands at the horizontal centre of the network input and at
``anchor`` x its height (0 = top, 1 = bottom; the default 0.46 is where KITTI's principal point
sits, which keeps the band around the horizon of a level camera). The window never leaves the
image on an axis that is cropped, nor cuts it on an axis that is padded. Padded pixels are
black in the image and invalid (NaN depth) in every output.

Coordinates follow :class:`CameraModel` (pixel centres at integers, cv2.resize geometry):
``u_net = (u + 0.5) * sx - 0.5 - x0`` with ``sx = scaled width / width`` and ``x0`` the left
edge of the network window in the scaled image (negative when padded); the same for v.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from monodepth_ros.errors import CalibrationError, ConfigError
from monodepth_ros.io.camera import CameraModel

FRAMING_MODES = ('canonical-fit', 'fit-width', 'canonical-focal')
DEFAULT_FRAMING = 'canonical-fit'
DEFAULT_ANCHOR = 0.46   # KITTI's principal point row, (172.854 + 0.5) / 375


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv2.resize with INTER_AREA when shrinking both ways, INTER_LINEAR otherwise.

    A shrink by 2 or more on both axes first halves an even-sized image (exact means of 2x2
    blocks, OpenCV's fast path) while that holds and keeps a whole ratio whole; then the
    rest in one step. Pixel centres map alike. Where the last step's ratio is not whole,
    OpenCV's area filter places a pixel's box average a fraction of an input pixel off its
    centre (none on average), and after k halvings an input pixel is 2^k source pixels:
    1936x1216 to 320x201 (DDAD), up to a third of a source pixel, 0.06 network pixels. A
    1080p frame takes half the time, a 1936x1216 one a fifth.
    """
    if image.shape[1] == width and image.shape[0] == height:
        return image
    if width > image.shape[1] or height > image.shape[0]:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)

    def whole(from_width, from_height):   # a whole ratio on both axes
        return from_width % width == 0 and from_height % height == 0

    while (image.shape[1] >= 2 * width and image.shape[0] >= 2 * height
           and image.shape[1] % 2 == 0 and image.shape[0] % 2 == 0):
        half = (image.shape[1] // 2, image.shape[0] // 2)
        if whole(image.shape[1], image.shape[0]) and not whole(*half):
            break
        image = cv2.resize(image, half, interpolation=cv2.INTER_AREA)
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def halving_multiple(scale: float) -> int:
    """The multiple of side lengths that lets ``resize_image`` halve as often as it can.

    For a shrink by ``scale``: each halving needs an even size; 1 when enlarging.
    """
    return 2 ** max(0, math.floor(math.log2(1.0 / scale)))


def _window_offset(principal: float, target: float, scaled: int, network: int) -> int:
    """Left/top edge of the network window in the scaled image (negative: padding)."""
    offset = int(round(principal - target))
    low, high = min(0, scaled - network), max(0, scaled - network)
    return min(max(offset, low), high)


@dataclass(frozen=True)
class Framing:
    """Uniform scale of a ``source_size`` image to ``scaled_size``, then the network window.

    ``offset`` (x0, y0) is the window's top-left corner in the scaled image; a negative value
    pads that axis. Sizes are (width, height).
    """

    source_size: tuple[int, int]
    scaled_size: tuple[int, int]
    offset: tuple[int, int]
    network_size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): scaled size over source size (equal up to the rounding of the size)."""
        return (self.scaled_size[0] / self.source_size[0],
                self.scaled_size[1] / self.source_size[1])

    @property
    def padded(self) -> bool:
        """True when the scaled image is smaller than the network input on an axis."""
        return (self.scaled_size[0] < self.network_size[0]
                or self.scaled_size[1] < self.network_size[1])

    def _paste_bounds(self):
        """(scaled-image slice, network slice) per axis: the pixels the two share."""
        bounds = []
        for axis in (1, 0):   # rows first, numpy order
            offset, scaled, network = (self.offset[axis], self.scaled_size[axis],
                                       self.network_size[axis])
            start, stop = max(offset, 0), min(offset + network, scaled)
            bounds.append((slice(start, stop), slice(start - offset, stop - offset)))
        return ((bounds[0][0], bounds[1][0]), (bounds[0][1], bounds[1][1]))

    def _window_source(self) -> tuple[tuple[slice, slice], Framing] | None:
        """The source pixels under the window, and their framing, where that saves work.

        When the shrink is a whole ratio on both axes, each scaled pixel is the mean (or the
        pick) of an r x r block of source pixels of its own, and so is each halving's on the
        way (resize_image keeps whole ratios whole; a block starts at a multiple of r):
        resizing only the source pixels under the window, on the axes it crops, gives the
        very pixels that resizing the whole image and cropping would. A 1920x1080 frame
        through a 320x96 window resizes 576 of its rows.
        """
        if any(size % size_scaled for size, size_scaled in zip(self.source_size,
                                                                self.scaled_size)):
            return None
        spans, source, scaled, offset = [], [], [], []
        for axis in (0, 1):   # x, then y
            size, size_scaled = self.source_size[axis], self.scaled_size[axis]
            start, network = self.offset[axis], self.network_size[axis]
            ratio = size // size_scaled
            if ratio > 1 and start >= 0 and start + network < size_scaled:
                spans.append(slice(start * ratio, (start + network) * ratio))
                source.append(network * ratio), scaled.append(network), offset.append(0)
            else:
                spans.append(slice(None))
                source.append(size), scaled.append(size_scaled), offset.append(start)
        if spans == [slice(None), slice(None)]:
            return None
        return (spans[1], spans[0]), Framing(tuple(source), tuple(scaled), tuple(offset),
                                             self.network_size)

    def apply(self, image: np.ndarray, fill=0, nearest: bool = False) -> np.ndarray:
        """The network input of a source-size image (``fill`` in padded pixels).

        ``nearest`` resizes with nearest neighbour (depth, labels) instead of the image
        interpolation (area when shrinking, linear when enlarging).
        """
        window = self._window_source()
        if window is not None:
            rows_and_columns, framing = window
            return framing.apply(image[rows_and_columns], fill, nearest)
        width, height = self.scaled_size
        if nearest:
            scaled = (image if image.shape[1::-1] == (width, height) else
                      cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST_EXACT))
        else:
            scaled = resize_image(image, width, height)
        source, target = self._paste_bounds()
        if not self.padded:   # a crop: a view, no copy
            return scaled[source]
        out = np.full((self.network_size[1], self.network_size[0]) + scaled.shape[2:], fill,
                      dtype=scaled.dtype)
        out[target] = scaled[source]
        return out

    def valid_mask(self) -> np.ndarray:
        """Network-size bool image: True where the pixel comes from the image, not padding."""
        mask = np.zeros((self.network_size[1], self.network_size[0]), dtype=bool)
        mask[self._paste_bounds()[1]] = True
        return mask

    def unframe(self, array: np.ndarray, fill) -> np.ndarray:
        """A network-size output placed back on the scaled image (``fill`` outside the window).

        Resizing the result to the source size (nearest, or NaN-aware bilinear for depth)
        gives the output at camera resolution.
        """
        width, height = self.scaled_size
        out = np.full((height, width) + array.shape[2:], fill, dtype=array.dtype)
        source, target = self._paste_bounds()
        out[source] = array[target]
        return out

    def camera(self, camera: CameraModel) -> CameraModel:
        """Model of the network input: ``camera`` scaled then shifted by the window."""
        if camera.size != self.source_size:
            raise CalibrationError(
                f'camera is {camera.width}x{camera.height} but the framing was planned for '
                f'{self.source_size[0]}x{self.source_size[1]}')
        scaled = camera.scaled(*self.scaled_size)
        x0, y0 = self.offset
        shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
        return replace(scaled, width=self.network_size[0], height=self.network_size[1],
                       K=shift @ scaled.K, P=shift @ scaled.P)

    def to_network(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """Source pixel coordinates -> network input pixel coordinates."""
        sx, sy = self.scale
        return ((np.asarray(u, dtype=np.float64) + 0.5) * sx - 0.5 - self.offset[0],
                (np.asarray(v, dtype=np.float64) + 0.5) * sy - 0.5 - self.offset[1])

    def to_source(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """Network input pixel coordinates -> source pixel coordinates."""
        sx, sy = self.scale
        return ((np.asarray(u, dtype=np.float64) + 0.5 + self.offset[0]) / sx - 0.5,
                (np.asarray(v, dtype=np.float64) + 0.5 + self.offset[1]) / sy - 0.5)


def plan_framing(width: int, height: int, network_size: tuple[int, int],
                 camera: CameraModel | None = None, mode: str = 'fit-width',
                 anchor: float = DEFAULT_ANCHOR, canonical_focal: float = 0.0) -> Framing:
    """The framing of a width x height image (with ``camera``, its calibration, or None).

    Without a camera the principal point is taken at the image centre; ``canonical-focal``
    needs the camera and a model with a canonical focal length.
    """
    if mode not in FRAMING_MODES:
        raise ConfigError(f'framing mode {mode!r} is unknown, expected one of '
                          f'{list(FRAMING_MODES)}')
    width, height = _check_sizes(width, height, anchor)
    net_w, net_h = int(network_size[0]), int(network_size[1])
    if mode == 'canonical-focal':
        if camera is None or canonical_focal <= 0:
            raise ConfigError("framing mode 'canonical-focal' needs the camera calibration and "
                              'a camera-aware model (canonical_focal > 0)')
        scale = float(canonical_focal) / camera.fx
    elif mode == 'canonical-fit' and camera is not None and canonical_focal > 0:
        # The canonical focal length, but never smaller than the whole image fitting the
        # input (more padding only loses pixels) nor larger than fit-width (no side cropped).
        whole_image = min(net_w / width, net_h / height)
        scale = min(net_w / width, max(whole_image, float(canonical_focal) / camera.fx))
    else:   # fit-width, and canonical-fit without a camera or a canonical focal length
        scale = net_w / width
    return _placed(width, height, scale, (net_w, net_h), camera, anchor)


def principal_point(width: int, height: int, camera: CameraModel | None) -> tuple[float, float]:
    """The camera's principal point, or the image centre without a camera."""
    if camera is not None:
        return camera.cx, camera.cy
    return (width - 1) / 2.0, (height - 1) / 2.0


def _placed(width: int, height: int, scale: float, network_size: tuple[int, int],
            camera: CameraModel | None, anchor: float) -> Framing:
    """The image scaled by ``scale``, the network window placed by the principal point."""
    return place_window(width, height, scale, network_size,
                        principal_point(width, height, camera), anchor)


def place_window(width: int, height: int, scale: float, network_size: tuple[int, int],
                 principal: tuple[float, float], anchor: float) -> Framing:
    """A width x height image scaled by ``scale``, the network window placed by ``principal``.

    ``principal`` (x, y, source pixels) lands at the horizontal centre and ``anchor`` x the
    height of the network input (as far as the image allows).
    """
    net_w, net_h = network_size
    scaled_w = max(1, int(round(width * scale)))
    scaled_h = max(1, int(round(height * scale)))
    cx, cy = principal
    principal_x = (cx + 0.5) * scaled_w / width - 0.5
    principal_y = (cy + 0.5) * scaled_h / height - 0.5
    offset = (_window_offset(principal_x, 0.5 * net_w - 0.5, scaled_w, net_w),
              _window_offset(principal_y, float(anchor) * net_h - 0.5, scaled_h, net_h))
    return Framing((width, height), (scaled_w, scaled_h), offset, (net_w, net_h))


def _check_sizes(width, height, anchor) -> tuple[int, int]:
    if not 0.0 <= float(anchor) <= 1.0:
        raise ConfigError(f'framing anchor {anchor} is outside [0, 1] (0 = top of the network '
                          'input, 1 = bottom)')
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ConfigError(f'image size {width}x{height} is invalid, expected positive sizes')
    return width, height


def plan_letterbox(width: int, height: int, network_size: tuple[int, int],
                   camera: CameraModel | None = None,
                   anchor: float = DEFAULT_ANCHOR) -> Framing:
    """The whole image inside a fixed network input: scaled to fit, the rest padded."""
    width, height = _check_sizes(width, height, anchor)
    net_w, net_h = int(network_size[0]), int(network_size[1])
    scale = min(net_w / width, net_h / height)
    return _placed(width, height, scale, (net_w, net_h), camera, anchor)


def plan_long_side(width: int, height: int, long_side: int, multiple: int = 1,
                   camera: CameraModel | None = None,
                   anchor: float = DEFAULT_ANCHOR) -> Framing:
    """A network input whose size follows the image.

    Its long side is scaled to ``long_side``, each side padded up to a multiple of ``multiple``
    (patch-based models need one).
    """
    width, height = _check_sizes(width, height, anchor)
    long_side, multiple = int(long_side), int(multiple)
    if long_side <= 0 or multiple <= 0 or long_side % multiple:
        raise ConfigError(f'long side {long_side} and multiple {multiple} are invalid, '
                          'expected positive sizes, the long side a multiple of the multiple')
    scale = long_side / max(width, height)
    scaled = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    network_size = tuple(-(-side // multiple) * multiple for side in scaled)
    return _placed(width, height, scale, network_size, camera, anchor)
