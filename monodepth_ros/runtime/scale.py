"""Metric scale for models whose depth is relative or mis-scaled (numpy only).

A model's raw output is of one of three kinds (``EngineOutput.depth_kind``):

* ``metric``: metres (perhaps off by a factor on a camera it never saw);
* ``affine_depth``: metres = s * d + t;
* ``affine_inverse_depth``: 1 / metres = s * d + t.

The scale stage of :class:`~monodepth_ros.runtime.pipeline.DepthPipeline` turns any of them into
metres with one of the modes of :data:`SCALE_MODES`:

* ``none``: the output as it is (metric models only);
* ``fixed``: a given s, t in the model's space (depth, or inverse depth);
* ``lidar``: s, t fitted per frame against the LiDAR points projected into the network image
  (the one projection of :mod:`monodepth_ros.runtime.projection`): a robust line fit in the
  model's space, a scale only for metric models (:func:`fit_to_lidar`);
* ``ground``: metres from the camera's mounting height (:func:`fit_to_ground`). The ground in
  the camera's optical frame is the plane ``n . X = h`` (n its unit normal pointing down, h the
  height). Along the ray ``r`` of pixel (u, v) it lies at depth ``z = h / (n . r)``: every
  ground pixel gets a reference depth, and the same robust line fit as for LiDAR gives s, t.
  The ground pixels are the lower part of the image (below ``GROUND_TOP`` of its height, the
  sky mask excluded); cars and kerbs there are rejected as outliers by the fit. The normal n
  comes from the camera's mounting (``/tf``: the ground frame's z axis seen from the camera)
  when known. Without it, a metric model's normal is fitted to its own back-projected
  prediction (RANSAC: a plane's orientation does not depend on the scale), and an affine
  model's is that of a level camera, n = (0, 1, 0): an affine model's geometry is only known
  up to s and t, and its ground plane then fixes one relation between s and t, not both, so
  one assumption about the orientation is unavoidable (a camera pitched by a degrees from
  level moves the fitted shift of inverse depth by about sin(a) / h);
* ``auto``: none for metric models; for affine ones lidar where a LiDAR is wired in, else
  ground where a height is known, else an error saying what to pass.

:class:`ScaleSmoother` smooths the fitted scale over frames in log space (an exponential
average that rejects outliers and resets when the scale jumps for several frames in a row, as
after a change of camera); :class:`MetricScaler` holds the mode and the smoother for one
pipeline and reports per frame the scale, shift, residual and points used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from monodepth_ros.engines.base import DEPTH_KINDS
from monodepth_ros.errors import ConfigError
from monodepth_ros.io.camera import CameraModel

SCALE_MODES = ('auto', 'none', 'fixed', 'lidar', 'ground')
MIN_FIT_POINTS = 20          # fewer usable points: no fit this frame, the scale holds
MAX_FIT_POINTS = 4_000       # larger sets are subsampled evenly (the fit cost stays flat)
MAX_SCAN_POINTS = 30_000     # a larger scan is thinned evenly before its projection
MAX_PLANE_POINTS = 1_500     # points the ground plane's RANSAC scores its hypotheses on
GROUND_TOP = 0.6             # ground candidates: rows below this fraction of the height
GROUND_MAX_DEPTH = 80.0      # ground reference beyond this (metres) is too grazing to use
LEVEL_NORMAL = (0.0, 1.0, 0.0)   # ground normal of a level camera, optical frame (y down)
GROUND_CONSENSUS = 0.03      # relative tolerance of the ground's RANSAC line (see the fit)
TRIM_SIGMAS = 3.0            # the fit keeps residuals within this many robust sigmas


@dataclass
class ScaleFit:
    """One frame's fit: metres = s * d + t in the model's space (see the module doc).

    residual: median |metres - reference| / reference over the points kept (relative);
    points: how many points the fit kept.
    """

    scale: float
    shift: float
    residual: float
    points: int


@dataclass
class ScaleReference:
    """What one frame offers to fit against (any of it may be missing).

    lidar_points: Nx3 (extra columns ignored) in the LiDAR frame, moved into the camera's
    optical frame by ``T_camera_from_lidar``. T_ground_from_camera: the camera's mounting (the
    ground frame has z up and its origin on the ground), from /tf.
    """

    lidar_points: np.ndarray | None = None
    T_camera_from_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))
    T_ground_from_camera: np.ndarray | None = None


def _weighted_line(x, y, weights, with_shift: bool) -> tuple[float, float]:
    """Weighted least squares y = s x (+ t); closed form (two parameters at most)."""
    sw = weights.sum()
    if not with_shift:
        denominator = float((weights * x * x).sum())
        return (float((weights * x * y).sum()) / denominator if denominator > 0 else math.nan,
                0.0)
    mean_x = float((weights * x).sum() / sw)
    mean_y = float((weights * y).sum() / sw)
    dx = x - mean_x
    variance = float((weights * dx * dx).sum())
    if variance <= 0:
        return math.nan, math.nan
    scale = float((weights * dx * (y - mean_y)).sum()) / variance
    return scale, mean_y - scale * mean_x


def _consensus_line(x, y, with_shift: bool, tolerance: float,
                    hypotheses: int = 64) -> tuple[float, float]:
    """RANSAC start of :func:`robust_line_fit`, refitted to the points it agrees with.

    The line through one point (scale only) or two that most points lie within
    ``tolerance`` x |y| of.
    """
    rng = np.random.default_rng(0)     # same data, same answer
    picks = rng.integers(0, x.size, size=(hypotheses, 2))
    x0, y0, x1, y1 = x[picks[:, 0]], y[picks[:, 0]], x[picks[:, 1]], y[picks[:, 1]]
    with np.errstate(divide='ignore', invalid='ignore'):
        if with_shift:
            scales = (y1 - y0) / (x1 - x0)
            shifts = y0 - scales * x0
        else:
            scales, shifts = y0 / x0, np.zeros(hypotheses)
    usable = np.isfinite(scales) & np.isfinite(shifts) & (scales > 0)
    if not usable.any():
        return math.nan, math.nan
    scales, shifts = scales[usable], shifts[usable]
    close = (np.abs(y[:, None] - x[:, None] * scales - shifts)
             <= tolerance * np.abs(y)[:, None])
    best = close[:, int(np.argmax(close.sum(axis=0)))]
    return _weighted_line(x[best], y[best], 1.0 / np.maximum(y[best] ** 2, 1e-24), with_shift)


def _robust_ratio(x, y, consensus: float | None) -> tuple[float, float, np.ndarray]:
    """The scale-only fit: a trimmed mean of log(y / x) around its median (or RANSAC) start.

    In log space a relative error weighs the same both ways, so noise in x does not bias the
    scale (a least-squares ratio shrinks by the noise's variance).
    """
    with np.errstate(divide='ignore', invalid='ignore'):
        log_ratio = np.log(y / x)
    usable = np.isfinite(log_ratio)
    if usable.sum() < 2:
        return math.nan, 0.0, usable
    if consensus is not None:
        centre = math.log(_consensus_line(x[usable], y[usable], False, consensus)[0])
    else:
        centre = float(np.median(log_ratio[usable]))
    keep = usable
    for _ in range(2):
        spread = np.where(usable, np.abs(log_ratio - centre), np.inf)
        sigma = 1.4826 * float(np.median(spread[usable]))
        keep = spread <= max(TRIM_SIGMAS * sigma, 1e-9)
        if not keep.any():
            return math.nan, 0.0, keep
        centre = float(log_ratio[keep].mean())
    return math.exp(centre), 0.0, keep


def robust_line_fit(x: np.ndarray, y: np.ndarray, with_shift: bool = True,
                    iterations: int = 8,
                    consensus: float | None = None) -> tuple[float, float, np.ndarray]:
    """Fit y = s x (+ t) robustly: (s, t, mask of the points kept).

    A scale alone is fitted in log space (:func:`_robust_ratio`). With a shift, residuals
    are relative (divided by |y|): a start, then least squares on the points
    within ``TRIM_SIGMAS`` robust sigmas (1.4826 x the median absolute residual) of the line,
    twice. The start: a few iteratively
    reweighted steps towards the least absolute deviation (an outlier pulls it far less than
    least squares); or, with ``consensus`` (a relative tolerance), the RANSAC line most points
    agree with, which finds the largest of several groups (the road among raised pavements).
    Noiseless data is recovered exactly even with a fifth of it made of outliers.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not with_shift:
        return _robust_ratio(x, y, consensus)
    # Residuals count relative to y: depth errors grow with depth, and far points must not
    # outweigh near ones. Bounded below, so that an outlier near y = 0 cannot take over.
    inverse = 1.0 / np.maximum(np.abs(y), 0.2 * max(float(np.median(np.abs(y))), 1e-12))
    weights = inverse * inverse
    floor = 1e-9
    if consensus is not None:
        scale, shift = _consensus_line(x, y, with_shift, consensus)
    else:
        scale, shift = _weighted_line(x, y, weights, with_shift)
        for _ in range(iterations):
            if not math.isfinite(scale):
                break
            relative = np.abs(y - scale * x - shift) * inverse
            scale, shift = _weighted_line(x, y, weights / np.maximum(relative, floor),
                                          with_shift)
    keep = np.ones(x.shape, dtype=bool)
    for _ in range(2):
        if not math.isfinite(scale):
            break
        relative = np.abs(y - scale * x - shift) * inverse
        sigma = 1.4826 * float(np.median(relative))
        keep = relative <= max(TRIM_SIGMAS * sigma, floor)
        if keep.sum() < 2:
            break
        scale, shift = _weighted_line(x[keep], y[keep], weights[keep], with_shift)
    return scale, shift, keep


def to_metres(raw: np.ndarray, kind: str, scale: float, shift: float) -> np.ndarray:
    """Metres from the raw output (float32; NaN where the result is not a positive depth)."""
    value = raw.astype(np.float32) * np.float32(scale) + np.float32(shift)
    if kind == 'affine_inverse_depth':
        with np.errstate(divide='ignore', invalid='ignore'):
            value = np.float32(1.0) / value
    return np.where(np.isfinite(value) & (value > 0), value, np.float32(np.nan))


def _fit(raw_values: np.ndarray, reference: np.ndarray, kind: str,
         consensus: float | None = None) -> ScaleFit | None:
    """The robust fit of raw values against reference depths (metres), or None if too few."""
    usable = np.isfinite(raw_values) & np.isfinite(reference) & (reference > 0)
    raw_values, reference = raw_values[usable], reference[usable]
    if raw_values.size < MIN_FIT_POINTS:
        return None
    if raw_values.size > MAX_FIT_POINTS:
        step = int(math.ceil(raw_values.size / MAX_FIT_POINTS))
        raw_values, reference = raw_values[::step], reference[::step]
    target = 1.0 / reference if kind == 'affine_inverse_depth' else reference
    scale, shift, keep = robust_line_fit(raw_values, target, kind != 'metric',
                                         consensus=consensus)
    if not (math.isfinite(scale) and math.isfinite(shift)) or scale <= 0:
        return None
    metres = to_metres(raw_values[keep], kind, scale, shift)
    with np.errstate(invalid='ignore'):
        relative = np.abs(metres - reference[keep]) / reference[keep]
    residual = float(np.nanmedian(relative)) if np.isfinite(relative).any() else math.nan
    return ScaleFit(scale, shift, residual, int(keep.sum()))


def fit_to_lidar(raw: np.ndarray, kind: str, camera: CameraModel, points: np.ndarray,
                 T_camera_from_lidar: np.ndarray | None = None,
                 valid: np.ndarray | None = None) -> ScaleFit | None:
    """Fit s, t of ``raw`` (HxW, the network camera's) against LiDAR points; None if too few.

    The points are projected into ``camera`` (nearest point per pixel); ``valid`` (HxW bool)
    excludes pixels such as padding or sky.
    """
    from monodepth_ros.runtime.projection import lidar_depth_image

    T = np.eye(4) if T_camera_from_lidar is None else T_camera_from_lidar
    points = np.asarray(points)
    if len(points) > MAX_SCAN_POINTS:
        # A 120k-point scan puts several points on most pixels of a network-sized image, and
        # the fit keeps MAX_FIT_POINTS: an even subset costs a fraction of the projection.
        points = points[::int(math.ceil(len(points) / MAX_SCAN_POINTS))]
    sparse = lidar_depth_image(points, T, camera)
    hit = sparse > 0
    if valid is not None:
        hit &= valid
    index = np.flatnonzero(hit)
    return _fit(raw.ravel()[index].astype(np.float64), sparse.ravel()[index], kind)


def ground_normal_from_mounting(T_ground_from_camera: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit normal pointing down in the optical frame, camera height) of a camera mounting."""
    T = np.asarray(T_ground_from_camera, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ConfigError(f'camera mounting must be a finite 4x4 transform, got shape {T.shape}')
    # Ground points satisfy z_ground = R[2] . X + T[2, 3] = 0, so -R[2] . X = height.
    return -T[2, :3], float(T[2, 3])


_GROUND_RAYS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}   # by camera value and top
_GROUND_RAYS_KEPT = 8


def _ground_rays(camera: CameraModel, top: float) -> tuple[np.ndarray, np.ndarray]:
    """(flat pixel indices, Nx3 rays (x/z, y/z, 1)) of the rows below ``top`` x height.

    Kept by the camera's value: a stream's frames share one camera, so the grid is built
    once instead of every frame.
    """
    key = (camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy, top)
    if key not in _GROUND_RAYS:
        ray_x, ray_y = camera.pixel_rays()
        first = int(math.floor(top * camera.height))
        rows = np.arange(first, camera.height)
        index = (rows[:, None] * camera.width + np.arange(camera.width)[None, :]).ravel()
        rays = np.empty((index.size, 3))
        rays[:, 0] = np.tile(ray_x, rows.size)
        rays[:, 1] = np.repeat(ray_y[first:], camera.width)
        rays[:, 2] = 1.0
        index.setflags(write=False)
        rays.setflags(write=False)
        if len(_GROUND_RAYS) >= _GROUND_RAYS_KEPT:
            _GROUND_RAYS.pop(next(iter(_GROUND_RAYS)))   # the oldest camera
        _GROUND_RAYS[key] = index, rays
    return _GROUND_RAYS[key]


def depth_on_plane(rays: np.ndarray, normal: np.ndarray, distance: float) -> np.ndarray:
    """Depth (z) where rays (..., 3; z = 1) meet the plane ``normal . X = distance``.

    inf where they do not (above the plane's horizon).
    """
    along = rays @ normal
    with np.errstate(divide='ignore'):
        return np.where(along > 1e-6, distance / along, np.inf)


def fit_plane_normal(points: np.ndarray, hypotheses: int = 64,
                     tolerance: float = 0.03) -> np.ndarray | None:
    """Unit normal (pointing down, +y) of the dominant near-horizontal plane, or None.

    RANSAC over planes through three points, scored by MSAC (truncated squared distances); a
    point is an inlier within ``tolerance`` x the plane's distance from the camera (so the test
    does not depend on the scale); the best plane's inliers are refined by least squares
    (smallest singular vector). Planes tilted
    more than 30 degrees from a level camera's ground are not ground.
    """
    if len(points) < 3:
        return None
    rng = np.random.default_rng(0)     # same points, same plane: runs are reproducible
    sample = points[rng.integers(0, len(points), size=(hypotheses, 3))]
    normals = np.cross(sample[:, 1] - sample[:, 0], sample[:, 2] - sample[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    usable = lengths > 0
    normals = normals[usable] / lengths[usable, None]
    normals *= np.where(normals[:, 1:2] < 0, -1.0, 1.0)
    distances = np.einsum('ij,ij->i', normals, sample[usable, 0])
    upright = (normals[:, 1] > math.cos(math.radians(30))) & (distances > 0)
    if not upright.any():
        return None
    normals, distances = normals[upright], distances[upright]
    # MSAC: each point costs its squared distance, at most the tolerance's; exact planes win
    # over tilted ones that gather a band of another surface within the tolerance.
    relative = (points @ normals.T - distances) / (tolerance * distances)
    best = int(np.argmin(np.minimum(relative * relative, 1.0).sum(axis=0)))
    chosen = np.abs(relative[:, best]) <= 1.0
    # Refined twice by least squares, the second time on the points closest to the first
    # refinement (objects standing on the plane touch it along a line and tilt it otherwise).
    for share in (1.0, 0.25):
        if chosen.sum() < 3:
            return None
        centroid = points[chosen].mean(axis=0)
        normal = np.linalg.svd(points[chosen] - centroid, full_matrices=False)[2][-1]
        normal = normal if normal[1] > 0 else -normal
        distance = float(normal @ centroid)
        chosen = np.abs(points @ normal - distance) <= share * tolerance * distance
    return normal


def fit_to_ground(raw: np.ndarray, kind: str, camera: CameraModel, height: float,
                  normal: np.ndarray | None = None,
                  valid: np.ndarray | None = None) -> ScaleFit | None:
    """Fit s, t of ``raw`` from the camera height and the ground plane; None if no ground.

    ``normal``: the ground's unit normal in the optical frame, pointing down (None: fitted
    for metric models, a level camera's for affine ones; see the module doc).
    """
    if not (math.isfinite(height) and height > 0):
        raise ConfigError(f'camera height must be a finite positive number of metres, got '
                          f'{height}')
    index, rays = _ground_rays(camera, GROUND_TOP)
    values = raw.ravel()[index].astype(np.float64)
    usable = np.isfinite(values)
    if valid is not None:
        usable &= valid.ravel()[index]
    index, rays, values = index[usable], rays[usable], values[usable]
    if normal is None and kind == 'metric':
        positive = values > 0
        step = max(1, int(positive.sum()) // MAX_PLANE_POINTS)
        normal = fit_plane_normal((rays[positive] * values[positive, None])[::step])
        if normal is None:
            return None
    elif normal is None:
        normal = np.asarray(LEVEL_NORMAL)
    normal = np.asarray(normal, dtype=np.float64)
    normal = normal / np.linalg.norm(normal)
    reference = depth_on_plane(rays, normal, height)
    reference[reference > GROUND_MAX_DEPTH] = np.nan   # inf included: rays above the horizon
    return _fit(values, reference, kind, consensus=GROUND_CONSENSUS)


def resolve_mode(mode: str, kind: str, lidar: bool, height: bool) -> str:
    """The mode that runs for ``mode`` on a model of ``kind`` (ConfigError when it cannot).

    lidar: a LiDAR is wired to the pipeline; height: the camera height is known (a parameter
    or /tf).
    """
    if mode not in SCALE_MODES:
        raise ConfigError(f'scale mode must be one of {list(SCALE_MODES)}, got {mode!r}')
    if kind not in DEPTH_KINDS:
        raise ConfigError(f'depth kind must be one of {list(DEPTH_KINDS)}, got {kind!r}')
    if mode == 'auto':
        if kind == 'metric':
            return 'none'
        if lidar:
            return 'lidar'
        if height:
            return 'ground'
        raise ConfigError(f'the model gives {kind.replace("_", " ")} (no metres): choose how '
                          'to scale it, a LiDAR (--scale lidar with a LiDAR topic), the camera '
                          'height (--scale ground --camera-height M) or --scale fixed '
                          '--scale-value S')
    if mode == 'none' and kind != 'metric':
        raise ConfigError(f"scale mode 'none' needs a metric model; this one gives "
                          f"{kind.replace('_', ' ')}: use lidar, ground or fixed")
    if mode == 'lidar' and not lidar:
        raise ConfigError("scale mode 'lidar' needs LiDAR points: give a LiDAR topic")
    if mode == 'ground' and not height:
        raise ConfigError("scale mode 'ground' needs the camera's mounting height: give "
                          '--camera-height M (node: camera_height, or /tf to the ground frame)')
    return mode


class ScaleSmoother:
    """Robust temporal smoothing of the scale in log space (and of the shift alongside).

    A fit within ``jump`` (log) of the smoothed scale moves it by ``alpha`` of the way; one
    further away is rejected as an outlier (the scale holds), unless ``reset_frames``
    consecutive fits agree with each other away from it: then the scale resets to their
    median (a new camera, a scene cut).
    """

    def __init__(self, alpha: float = 0.3, jump: float = math.log(1.25), reset_frames: int = 3):
        if not 0 < alpha <= 1:
            raise ConfigError(f'scale smoothing alpha must lie in (0, 1], got {alpha}')
        self.alpha = alpha
        self.jump = jump
        self.reset_frames = reset_frames
        self.log_scale: float | None = None
        self.shift = 0.0
        self._pending: list[ScaleFit] = []

    def update(self, fit: ScaleFit | None) -> tuple[bool, bool]:
        """Take one frame's fit (None: no fit); returns (accepted, reset)."""
        if fit is None:
            return False, False
        log_fit = math.log(fit.scale)
        if self.log_scale is None:
            self.log_scale, self.shift = log_fit, fit.shift
            return True, False
        if abs(log_fit - self.log_scale) <= self.jump:
            self._pending.clear()
            self.log_scale += self.alpha * (log_fit - self.log_scale)
            self.shift += self.alpha * (fit.shift - self.shift)
            return True, False
        self._pending.append(fit)
        logs = [math.log(item.scale) for item in self._pending]
        if max(logs) - min(logs) > self.jump:
            self._pending = [fit]     # the candidates disagree: start counting again
            return False, False
        if len(self._pending) < self.reset_frames:
            return False, False
        middle = sorted(self._pending, key=lambda item: item.scale)[len(self._pending) // 2]
        self.log_scale, self.shift = math.log(middle.scale), middle.shift
        self._pending.clear()
        return True, True

    @property
    def scale(self) -> float | None:
        return None if self.log_scale is None else math.exp(self.log_scale)


@dataclass
class ScaleEstimate:
    """The scale stage of one frame, as reported (diagnostics, the evaluator).

    scale/shift: what was applied (None when an affine model has no scale yet); fit: this
    frame's own fit (None when there was none); held: the frame kept an earlier scale (too
    few points, or its fit was rejected as an outlier); reset: the smoother restarted.
    """

    mode: str
    scale: float | None
    shift: float
    fit: ScaleFit | None = None
    held: bool = False
    reset: bool = False

    @property
    def residual(self) -> float:
        return self.fit.residual if self.fit is not None else math.nan

    @property
    def points(self) -> int:
        return self.fit.points if self.fit is not None else 0


@dataclass(frozen=True)
class ScaleSettings:
    """How a pipeline scales (the node's scale parameters, the commands' --scale options).

    mode: one of :data:`SCALE_MODES`; camera_height: metres, for 'ground' (None: from each
    frame's mounting, /tf_static); value, shift: s and t of 'fixed'; smoothing: over frames;
    lidar: a LiDAR feeds the pipeline (what 'auto' picks, and what 'lidar' needs).
    """

    mode: str = 'auto'
    camera_height: float | None = None
    value: float = 1.0
    shift: float = 0.0
    smoothing: bool = True
    lidar: bool = False

    def __post_init__(self):
        if self.mode not in SCALE_MODES:
            raise ConfigError(f'scale mode must be one of {list(SCALE_MODES)}, got '
                              f'{self.mode!r}')
        height = self.camera_height
        if height is not None and not (math.isfinite(height) and 0 < height <= 100):
            raise ConfigError(f'camera height must be > 0 and <= 100 m, got {height}')
        if not (math.isfinite(self.value) and self.value > 0 and math.isfinite(self.shift)):
            raise ConfigError(f'fixed scale must be finite and > 0 and its shift finite, got '
                              f'{self.value}, {self.shift}')


class MetricScaler:
    """The scale stage of one pipeline: its settings and the smoother's state."""

    def __init__(self, settings: ScaleSettings | None = None):
        self.settings = settings or ScaleSettings()
        self.smoother = ScaleSmoother()
        self.frames_held = 0
        self.resets = 0

    def check(self, kind: str, height_from_tf: bool = False) -> str:
        """The mode that runs for a model of ``kind`` (ConfigError when it cannot)."""
        settings = self.settings
        return resolve_mode(settings.mode, kind, settings.lidar,
                            settings.camera_height is not None or height_from_tf)

    def apply(self, raw: np.ndarray, kind: str, camera: CameraModel | None,
              reference: ScaleReference | None = None,
              valid: np.ndarray | None = None) -> tuple[np.ndarray, ScaleEstimate]:
        """Metres (HxW float32, NaN invalid) from ``raw`` and what was done to it.

        ``camera`` is the network camera (None without calibration: no fit, the scale holds).
        """
        reference = reference or ScaleReference()
        mounting = reference.T_ground_from_camera
        mode = self.check(kind, mounting is not None)
        if mode == 'none':
            return raw, ScaleEstimate(mode, 1.0, 0.0)
        settings = self.settings
        if mode == 'fixed':
            return (to_metres(raw, kind, settings.value, settings.shift),
                    ScaleEstimate(mode, settings.value, settings.shift))
        fit = None
        if camera is not None and mode == 'lidar' and reference.lidar_points is not None:
            fit = fit_to_lidar(raw, kind, camera, reference.lidar_points,
                               reference.T_camera_from_lidar, valid)
        elif camera is not None and mode == 'ground':
            normal, height = None, settings.camera_height
            if mounting is not None:
                normal, tf_height = ground_normal_from_mounting(mounting)
                height = tf_height if height is None else height
            fit = fit_to_ground(raw, kind, camera, height, normal, valid)
        if settings.smoothing:
            accepted, reset = self.smoother.update(fit)
            scale, shift = self.smoother.scale, self.smoother.shift
        else:
            accepted, reset = fit is not None, False
            if fit is not None:
                self.smoother.log_scale, self.smoother.shift = math.log(fit.scale), fit.shift
            scale, shift = self.smoother.scale, self.smoother.shift
        held = not accepted
        self.frames_held += int(held)
        self.resets += int(reset)
        estimate = ScaleEstimate(mode, scale, shift if scale is not None else 0.0, fit, held,
                                 reset)
        if scale is None:
            if kind == 'metric':     # no fit yet: the model's own metres
                return raw, estimate
            return np.full(raw.shape, np.nan, np.float32), estimate
        return to_metres(raw, kind, scale, shift), estimate
