"""DepthPipeline: the one path from an image (+ CameraInfo) to depth, semantics, confidence, cloud.

The ROS node, ``monodepth infer``/``infer-bag`` and the evaluator all run this object, so what
is measured offline is what runs on the robot. ROS-free: numpy in and out, and message classes
passed in (:class:`monodepth_ros.io.messages.MessageTypes`).

Stages (timed per frame, milliseconds, in ``last_timings``):

* ``decode``: message -> HxWx3 uint8 RGB (raw or compressed);
* ``preprocess``: frame the image to the network size (:mod:`monodepth_ros.io.framing`: one
  uniform scale, then a crop or padding placed by the principal point; never a stretch) and
  normalise; the intrinsics follow with :meth:`Framing.camera`. The far pass's window is
  framed on a worker thread while the first pass's image is (OpenCV and numpy release the
  GIL);
* ``inference``: the engine (for our camera-aware models also the far pass on a zoomed window
  around the principal point, :mod:`monodepth_ros.runtime.far_pass`: one batch of two where
  the backend allows it);
* ``scale``: the model's depth in metres (:mod:`monodepth_ros.runtime.scale`: a canonical-focal
  model's factor, the far pass blended in, then the scale mode: none, fixed, LiDAR or ground
  fit, smoothed over frames);
* ``postprocess``: outputs at the output resolution ('network': the framed camera, padding
  NaN; 'camera': the image's own camera, pixels outside the crop NaN), semantic colours,
  output images;
* ``cloud``: back-projection with the calibrated principal point and the PointCloud2.

Only the outputs asked for are computed (the node asks for those someone subscribes to).
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from monodepth_ros.errors import CalibrationError, ConfigError, MessageError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.framing import DEFAULT_ANCHOR, DEFAULT_FRAMING, FRAMING_MODES, Framing
from monodepth_ros.model.cards import ModelCard, plan_card_framing
from monodepth_ros.runtime.far_pass import (
    DEFAULT_FAR_PASS_FOCAL,
    FarPassFusion,
    FarWindow,
    far_pass_zoom,
    plan_far_window,
)
from monodepth_ros.runtime.ground_contact import apply_ground_contact
from monodepth_ros.runtime.scale import MetricScaler, ScaleEstimate, ScaleReference, ScaleSettings

OUTPUTS = ('depth', 'camera_info', 'points', 'semantics', 'semantics_color', 'confidence')
ALL_OUTPUTS = frozenset(OUTPUTS)
STAGES = ('decode', 'preprocess', 'inference', 'scale', 'postprocess', 'cloud')


_FAR_FRAMING_WORKER: ThreadPoolExecutor | None = None
_FAR_FRAMING_LOCK = threading.Lock()


def _far_framing_worker() -> ThreadPoolExecutor:
    """The one thread that frames far windows for every pipeline of the process."""
    global _FAR_FRAMING_WORKER
    with _FAR_FRAMING_LOCK:
        if _FAR_FRAMING_WORKER is None:
            _FAR_FRAMING_WORKER = ThreadPoolExecutor(1, thread_name_prefix='far-framing')
        return _FAR_FRAMING_WORKER


def _forget_far_framing_worker() -> None:
    """In a forked child: the parent's worker has no thread there; a new one is made on use."""
    global _FAR_FRAMING_WORKER, _FAR_FRAMING_LOCK
    _FAR_FRAMING_WORKER = None
    _FAR_FRAMING_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_far_framing_worker)


def _side_by_side(main_work, side_work):
    """(main_work(), side_work()), the side work on the far-framing thread meanwhile.

    OpenCV and numpy release the GIL, so two framings take little more than one. Both run
    here when that thread takes no more work (the interpreter is shutting down).
    """
    try:
        pending = _far_framing_worker().submit(side_work)
    except RuntimeError:
        return main_work(), side_work()
    return main_work(), pending.result()


def _size_mismatch(camera: CameraModel | None, width: int, height: int) -> str | None:
    """Why ``camera`` cannot describe a width x height image, or None when it can."""
    if camera is None or (camera.width, camera.height) == (width, height):
        return None
    return (f'CameraInfo is {camera.width}x{camera.height} but the image is {width}x{height}; '
            'expected calibration of the image as published')


@dataclass
class PipelineConfig:
    """What the pipeline produces and how (the node's parameters of the same names)."""

    output_resolution: str = 'network'   # 'network' | 'camera'
    depth_upsampling: str = 'nearest'    # 'nearest' | 'bilinear' (camera resolution only)
    cloud_stride: int = 1
    cloud_min_range: float = 0.0
    cloud_max_range: float = math.inf
    confidence_threshold: float = 0.0
    cloud_rgb: bool = True
    cloud_confidence: bool = False
    cloud_label: bool = False
    framing: str = DEFAULT_FRAMING       # io.framing.FRAMING_MODES
    framing_anchor: float = DEFAULT_ANCHOR   # principal point row, fraction of network height
    far_pass_focal: float = DEFAULT_FAR_PASS_FOCAL   # x canonical focal; 0: no far pass
    ground_contact: bool = True          # standing objects at their ground contact (ours)
    scale: ScaleSettings = field(default_factory=ScaleSettings)   # metric scale (runtime.scale)

    def __post_init__(self):
        if self.framing not in FRAMING_MODES:
            raise ConfigError(f'framing must be one of {list(FRAMING_MODES)}, got '
                              f'{self.framing!r}')
        if not 0.0 <= self.framing_anchor <= 1.0:
            raise ConfigError(f'framing_anchor must lie in [0, 1] (0 = top, 1 = bottom of the '
                              f'network input), got {self.framing_anchor}')
        if not (math.isfinite(self.far_pass_focal) and self.far_pass_focal >= 0):
            raise ConfigError(f'far_pass_focal must be >= 0 (0: no far pass), got '
                              f'{self.far_pass_focal}')
        if self.output_resolution not in ('network', 'camera'):
            raise ConfigError(f"output_resolution must be 'network' or 'camera', got "
                              f'{self.output_resolution!r}')
        if self.depth_upsampling not in ('nearest', 'bilinear'):
            raise ConfigError(f"depth_upsampling must be 'nearest' or 'bilinear', got "
                              f'{self.depth_upsampling!r}')
        if int(self.cloud_stride) < 1:
            raise ConfigError(f'cloud_stride must be >= 1, got {self.cloud_stride}')
        if not 0 <= self.cloud_min_range < self.cloud_max_range:
            raise ConfigError(f'cloud range must satisfy 0 <= min < max, got '
                              f'[{self.cloud_min_range}, {self.cloud_max_range}]')
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ConfigError(f'confidence_threshold must lie in [0, 1], got '
                              f'{self.confidence_threshold}')


@dataclass
class PipelineResult:
    """One frame of outputs at the output resolution (None where not asked for).

    ``camera`` matches the output images (None when no calibration was given); ``points``
    holds the organized cloud: 'xyz' (h x w x 3 float32, NaN invalid) plus 'rgb' (uint8) and
    'confidence'/'label' (float32) when enabled.
    """

    depth: np.ndarray | None = None
    camera: CameraModel | None = None
    semantics: np.ndarray | None = None
    semantics_color: np.ndarray | None = None
    confidence: np.ndarray | None = None
    points: dict[str, np.ndarray] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    depth_scale: float = 1.0   # canonical-focal factor applied to the network depth
    scale: ScaleEstimate | None = None   # the scale stage (None when depth was not asked for)
    framing: Framing | None = None   # how the image was brought to the network input
    far_framing: FarWindow | None = None   # the far pass's input (None: no far pass ran)


def resize_nearest(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize with pixel-centre alignment (same geometry as CameraModel)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def resize_depth_bilinear(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a NaN-invalid depth map that never blends with invalid pixels.

    An output pixel whose bilinear footprint touches an invalid input pixel is NaN, so edges
    of the sky or of holes never get invented intermediate depths.
    """
    if depth.shape[1] == width and depth.shape[0] == height:
        return depth
    valid = np.isfinite(depth)
    filled = np.where(valid, depth, 0.0).astype(np.float32)
    weight = cv2.resize(valid.astype(np.float32), (width, height),
                        interpolation=cv2.INTER_LINEAR)
    value = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
    out = np.full((height, width), np.nan, dtype=np.float32)
    complete = weight > 1.0 - 1e-4
    out[complete] = value[complete] / weight[complete]
    return out


def decode_image(image_msg) -> np.ndarray:
    """Image or CompressedImage message -> HxWx3 uint8 RGB (MessageError when unusable)."""
    from monodepth_ros.io import messages

    if hasattr(image_msg, 'format') and not hasattr(image_msg, 'encoding'):
        return messages.compressed_image_to_rgb(image_msg)
    if int(image_msg.width) == 0 or int(image_msg.height) == 0 or len(image_msg.data) == 0:
        raise MessageError(f'image is empty ({image_msg.width}x{image_msg.height}, '
                           f'{len(image_msg.data)} bytes); expected a non-empty image')
    return messages.image_to_rgb(image_msg)


def _now_ms() -> float:
    return time.perf_counter() * 1e3


class DepthPipeline:
    """Image (+ camera) in, depth/semantics/confidence/cloud out; see the module docstring."""

    def __init__(self, engine, config: PipelineConfig | None = None):
        self.engine = engine
        self.config = config or PipelineConfig()
        self.metadata = engine.metadata
        # How the network is fed and read (model.cards): ours follows from the metadata.
        self.card = getattr(engine, 'card', None) or ModelCard.from_metadata(self.metadata)
        # The nominal size; a long-side card's network size follows each camera (framing).
        self.network_size = (int(self.metadata.input_width), int(self.metadata.input_height))
        # A model without semantics or confidence outputs produces none of those outputs.
        self.available_outputs = ALL_OUTPUTS - {
            key for key, tensor in (('semantics', self.card.semantics_output),
                                    ('semantics_color', self.card.semantics_output),
                                    ('confidence', self.card.confidence_output)) if not tensor}
        if self.config.framing == 'canonical-focal' and not self.metadata.canonical_focal:
            # Refused at start, not on every frame.
            raise ConfigError("framing 'canonical-focal' needs a camera-aware model (one with a "
                              "canonical focal length); this model has none, use 'canonical-fit' "
                              "or 'fit-width'")
        self.last_timings: dict[str, float] = {}
        self.last_camera_info_problem: str | None = None   # set by process_messages
        self.last_scale: ScaleEstimate | None = None   # the scale stage of the last frame
        self.last_far_zoom = 0.0   # the far pass's zoom on the last frame (0: it did not run)
        self.last_ground_contact: int | None = None   # pixels it moved last frame (None: off)
        self.scaler = MetricScaler(self.config.scale)
        self.far_fusion = FarPassFusion()
        # trainId -> RGB lookup table; unknown/ignored labels stay black.
        self._color_lut = np.zeros((256, 1, 3), dtype=np.uint8)
        colors = np.asarray(self.metadata.class_colors, dtype=np.uint8).reshape(-1, 3)
        self._color_lut[:len(colors), 0] = colors[:256]

    def _scaler_for(self, config: PipelineConfig) -> MetricScaler:
        """The scaler of ``config``: kept (with its smoothing state) while its settings hold."""
        if config.scale != self.scaler.settings:
            self.scaler = MetricScaler(config.scale)
        return self.scaler

    def resolved_scale_mode(self, height_from_tf: bool = False) -> str:
        """The scale mode that runs for this model (ConfigError, one line, when none can).

        height_from_tf: the camera height will come with each frame (its mounting, /tf).
        """
        return self._scaler_for(self.config).check(self.card.depth_kind, height_from_tf)

    # -- arrays -----------------------------------------------------------------------------
    def process_arrays(self, rgb: np.ndarray, camera: CameraModel | None = None,
                       outputs=ALL_OUTPUTS,
                       reference: ScaleReference | None = None) -> PipelineResult:
        """Run on an HxWx3 uint8 RGB image with the camera model of that image (or None).

        ``outputs`` is a subset of :data:`OUTPUTS`; 'points' and 'camera_info' need a camera.
        ``reference``: what the scale stage may fit against this frame (LiDAR points, the
        camera's mounting); None when there is nothing.
        """
        from monodepth_ros.model.preprocess import preprocess_for_card

        outputs = set(outputs)
        unknown = outputs - ALL_OUTPUTS
        if unknown:
            raise ConfigError(f'unknown pipeline outputs {sorted(unknown)}, expected a subset '
                              f'of {list(OUTPUTS)}')
        outputs &= self.available_outputs   # the model has no such output: left out
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
            raise MessageError(f'image has shape {rgb.shape}, expected a non-empty HxWx3 RGB '
                               'image')
        if rgb.dtype != np.uint8:
            raise MessageError(f'image dtype is {rgb.dtype}, expected uint8 RGB')
        height, width = rgb.shape[:2]
        problem = _size_mismatch(camera, width, height)
        if problem:
            raise CalibrationError(problem)
        if camera is None and outputs & {'points', 'camera_info'}:
            raise CalibrationError('points and camera_info need the camera calibration '
                                   '(CameraInfo or intrinsics), none was given')
        config = self.config     # one snapshot per frame: the node may swap it meanwhile
        timings = {'decode': 0.0}

        at_camera = config.output_resolution == 'camera'
        need_depth = bool(outputs & {'depth', 'points'})
        # The cloud's label and confidence fields, and its confidence threshold, need those
        # outputs: left out (and the threshold off) for a model without them.
        need_labels = bool(outputs & {'semantics', 'semantics_color'}) or (
            'points' in outputs and config.cloud_label and bool(self.card.semantics_output))
        need_confidence = 'confidence' in outputs or (
            'points' in outputs and (config.cloud_confidence or config.confidence_threshold > 0)
            and bool(self.card.confidence_output))
        net_out = None
        start = _now_ms()
        framing = plan_card_framing(self.card, width, height, camera, config.framing,
                                    config.framing_anchor)
        net_w, net_h = framing.network_size
        out_w, out_h = (width, height) if at_camera else (net_w, net_h)
        network_camera = framing.camera(camera) if camera is not None else None
        far_framing = self._far_framing(framing, camera, network_camera, config) if (
            need_depth) else None
        self.last_far_zoom = far_framing.zoom if far_framing is not None else 0.0
        self.last_ground_contact = None   # set by the scale stage when it runs
        run_network = need_depth or need_labels or need_confidence
        if run_network:   # camera_info alone needs no network
            if self.card.intrinsics_input and network_camera is None:
                raise CalibrationError(f'model {self.card.name} takes the camera intrinsics as '
                                       'an input; expected the camera calibration (CameraInfo '
                                       'or intrinsics), none was given')

            def first_input():   # the framed image (the cloud's colours) and its tensor
                framed = framing.apply(rgb)
                return framed, preprocess_for_card(framed, self.card)

            if far_framing is None:
                net_rgb, batch = first_input()
            else:
                (net_rgb, batch), far_batch = _side_by_side(
                    first_input, lambda: preprocess_for_card(far_framing.apply(rgb), self.card))
        timings['preprocess'] = _now_ms() - start

        start = _now_ms()
        far_depth = None
        if far_framing is not None:   # our models only: no intrinsics input
            net_out, far_depth = self.engine.infer_pair(batch, far_batch)
        elif run_network and self.card.intrinsics_input:
            net_out = self.engine.infer(batch, network_camera.K)
        elif run_network:
            net_out = self.engine.infer(batch)
        timings['inference'] = _now_ms() - start

        start = _now_ms()
        result = PipelineResult(framing=framing, far_framing=far_framing)
        padded = ~framing.valid_mask() if framing.padded else None
        labels = None   # the network's labels, ignored where the padding is
        if net_out is not None and net_out.semantics is not None:
            labels = np.asarray(net_out.semantics, np.uint8)
            if padded is not None:
                labels = np.where(padded, np.uint8(255), labels)
        if need_depth:
            depth = self._metric_depth(net_out, network_camera, padded, labels, reference,
                                       config, result, far_depth)
        timings['scale'] = _now_ms() - start

        start = _now_ms()
        if camera is not None:
            result.camera = camera if at_camera else network_camera
        if need_depth:
            # Non-finite and non-positive depths are invalid (REP 118: NaN, never 0).
            depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
            if padded is not None:
                depth[padded] = np.nan
            if at_camera:
                # Back on the scaled image, NaN outside the network window, then resized.
                depth = framing.unframe(depth, np.nan)
                if config.depth_upsampling == 'bilinear':
                    depth = resize_depth_bilinear(depth, out_w, out_h)
                else:
                    depth = resize_nearest(depth, out_w, out_h)
            result.depth = depth
        if need_labels:
            if at_camera:
                labels = framing.unframe(labels, np.uint8(255))
            result.semantics = resize_nearest(labels, out_w, out_h)
            if 'semantics_color' in outputs:
                # Same mapping as semantics.colorize_labels, about 5x faster through cv2.LUT.
                result.semantics_color = cv2.LUT(
                    cv2.cvtColor(result.semantics, cv2.COLOR_GRAY2RGB), self._color_lut)
        if need_confidence:
            confidence = np.asarray(net_out.confidence, dtype=np.float32)
            if padded is not None:
                confidence = np.where(padded, np.float32(0.0), confidence)
            if at_camera:
                confidence = framing.unframe(confidence, np.float32(0.0))
            if at_camera and confidence.shape != (out_h, out_w):
                confidence = cv2.resize(confidence, (out_w, out_h),
                                        interpolation=cv2.INTER_LINEAR)
            result.confidence = confidence
        timings['postprocess'] = _now_ms() - start

        start = _now_ms()
        if 'points' in outputs:
            result.points = self._cloud(result, rgb if at_camera else net_rgb, config)
        timings['cloud'] = _now_ms() - start
        result.timings = timings
        self.last_timings = dict(timings)
        return result

    def _far_framing(self, framing: Framing, camera: CameraModel | None,
                     network_camera: CameraModel | None,
                     config: PipelineConfig) -> FarWindow | None:
        """The far pass's framing (runtime.far_pass), or None: our camera-aware models only."""
        if not (self.card.ours and self.metadata.canonical_focal > 0):
            return None
        zoom = far_pass_zoom(config.far_pass_focal, self.metadata.canonical_focal,
                             network_camera)
        return plan_far_window(framing, zoom, camera, config.framing_anchor) if zoom else None

    def _metric_depth(self, net_out, network_camera: CameraModel | None, padded, labels,
                      reference: ScaleReference | None, config: PipelineConfig,
                      result: PipelineResult, far_depth=None) -> np.ndarray:
        """The scale stage: the network's depth in metres at the network size (see scale).

        ``labels``: the network's labels, 255 in the padding (None: the model has none).
        ``far_depth``: the far pass's raw depth, fused in before the scale.
        """
        depth = np.asarray(net_out.depth, dtype=np.float32)
        kind = net_out.depth_kind
        if kind == 'metric':
            # Camera-aware models predict depth for a canonical focal length: metres for this
            # camera scale with its focal length at the network input (ModelMetadata).
            result.depth_scale = self.metadata.depth_scale(network_camera)
            if result.depth_scale != 1.0:
                depth = depth * np.float32(result.depth_scale)
        if far_depth is not None:
            # The far pass's focal length is its zoom x the first pass's: so is its depth.
            far_depth = np.asarray(far_depth, dtype=np.float32) * np.float32(
                result.depth_scale * result.far_framing.zoom)
            depth = self.far_fusion.fuse(depth, far_depth, result.framing, result.far_framing)
        valid = None
        sky = net_out.sky
        if padded is not None or sky is not None:
            valid = np.ones(depth.shape, dtype=bool)
            if padded is not None:
                valid &= ~padded
            if sky is not None:
                valid &= ~np.asarray(sky, dtype=bool)
        depth, result.scale = self._scaler_for(config).apply(depth, kind, network_camera,
                                                             reference, valid)
        # In metres after the scale stage, which fits to the network's own depth.
        if (config.ground_contact and self.card.ours and network_camera is not None
                and labels is not None):
            depth, self.last_ground_contact = apply_ground_contact(depth, labels,
                                                                   network_camera)
        if sky is not None and kind != 'metric':
            depth = np.where(sky, np.float32(np.nan), depth)
        self.last_scale = result.scale
        return depth

    def _cloud(self, result: PipelineResult, rgb: np.ndarray,
               config: PipelineConfig) -> dict[str, np.ndarray]:
        from monodepth_ros.io.geometry import backproject_depth

        stride = int(config.cloud_stride)
        depth = result.depth
        if config.confidence_threshold > 0 and result.confidence is not None:
            depth = np.where(result.confidence >= config.confidence_threshold, depth, np.nan)
        xyz = backproject_depth(depth, result.camera, stride=stride,
                                min_range=config.cloud_min_range,
                                max_range=config.cloud_max_range, organized=True)
        points = {'xyz': xyz}
        if config.cloud_rgb:
            points['rgb'] = rgb[::stride, ::stride]
        if config.cloud_confidence and result.confidence is not None:
            points['confidence'] = result.confidence[::stride, ::stride]
        if config.cloud_label and result.semantics is not None:
            points['label'] = result.semantics[::stride, ::stride].astype(np.float32)
        return points

    def outputs_needing_camera(self, outputs) -> set[str]:
        """Those of ``outputs`` that use the calibration.

        Points and camera_info always; depth when the model is camera-aware (without a camera
        it is the canonical camera's depth) or its scale is fitted (LiDAR or ground: both are
        seen through the camera).
        """
        needing = {'points', 'camera_info'}
        mode = self.config.scale.mode
        fitted = mode in ('lidar', 'ground') or (mode == 'auto'
                                                 and self.card.depth_kind != 'metric')
        if self.metadata.canonical_focal > 0 or fitted:
            needing.add('depth')
        if self.card.intrinsics_input:   # the network itself takes the intrinsics
            needing |= ALL_OUTPUTS
        return set(outputs) & needing

    # -- messages ---------------------------------------------------------------------------
    @staticmethod
    def _usable_camera(camera_info_msg, rgb: np.ndarray) -> tuple[CameraModel | None, str | None]:
        """(camera, None) when the CameraInfo describes ``rgb``, else (None, the reason)."""
        from monodepth_ros.io import messages

        try:
            camera = messages.camera_info_to_model(camera_info_msg)
        except (CalibrationError, MessageError) as error:
            return None, str(error)
        problem = _size_mismatch(camera, rgb.shape[1], rgb.shape[0])
        return (None, problem) if problem else (camera, None)

    def decode(self, image_msg) -> np.ndarray:
        """Image or CompressedImage -> HxWx3 uint8 RGB (MessageError when unusable)."""
        return decode_image(image_msg)

    def process_messages(self, types, image_msg, camera_info_msg=None,
                         outputs=ALL_OUTPUTS,
                         reference: ScaleReference | None = None) -> dict:
        """Run on a message pair; returns output key -> message, headers copied from the input.

        Without a usable ``camera_info_msg`` only the image outputs are produced ('points' and
        'camera_info' are left out; a camera-aware model's depth is then the one of its
        canonical camera, not rescaled): when it is missing, and when it cannot describe this image
        (another size, broken intrinsics). In the second case ``last_camera_info_problem`` says
        why (None otherwise); the node and infer-bag count it and warn. Unlike
        :meth:`process_arrays`, which raises CalibrationError for such a camera, a frame is
        never lost to its CameraInfo here. Raises MessageError for an unusable image; the
        pipeline stays usable for the next frame.
        """
        from monodepth_ros.io import messages

        self.last_camera_info_problem = None
        start = _now_ms()
        rgb = self.decode(image_msg)
        outputs = set(outputs) & self.available_outputs   # what this model can produce
        camera = None
        if camera_info_msg is not None and self.outputs_needing_camera(outputs):
            camera, self.last_camera_info_problem = self._usable_camera(camera_info_msg, rgb)
        decode_ms = _now_ms() - start
        if camera is None:
            outputs -= {'points', 'camera_info'}
        if not outputs:
            return {}
        result = self.process_arrays(rgb, camera, outputs, reference)

        start = _now_ms()
        stamp_ns = messages.stamp_to_ns(image_msg.header.stamp)
        header = messages.make_header(types, stamp_ns, image_msg.header.frame_id)
        out = {}
        if 'depth' in outputs:
            out['depth'] = messages.array_to_image(types, result.depth, '32FC1', header)
        if 'camera_info' in outputs:
            out['camera_info'] = messages.model_to_camera_info(types, result.camera, header)
        if 'semantics' in outputs:
            out['semantics'] = messages.array_to_image(types, result.semantics, 'mono8', header)
        if 'semantics_color' in outputs:
            out['semantics_color'] = messages.array_to_image(
                types, result.semantics_color, 'rgb8', header)
        if 'confidence' in outputs:
            out['confidence'] = messages.array_to_image(
                types, result.confidence, '32FC1', header)
        images_ms = _now_ms() - start

        start = _now_ms()
        if 'points' in outputs:
            points = result.points
            extra = {name: points[name] for name in ('confidence', 'label') if name in points}
            out['points'] = messages.make_pointcloud2(
                types, header, points['xyz'], rgb=points.get('rgb'), fields=extra or None)
        cloud_ms = _now_ms() - start

        timings = dict(result.timings)
        timings['decode'] = decode_ms
        timings['postprocess'] += images_ms
        timings['cloud'] += cloud_ms
        self.last_timings = timings
        return out
