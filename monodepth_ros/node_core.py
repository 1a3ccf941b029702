"""Everything the depth node does, without ROS: parameters, frame slot, camera_info, diagnostics.

``node.py`` is a thin rclpy adapter over :class:`NodeCore`: it declares the parameters listed
in :data:`PARAMETERS`, forwards messages to :meth:`NodeCore.on_image` and
:meth:`NodeCore.on_camera_info`, runs :meth:`NodeCore.process_next` on a worker thread and
publishes what it returns. Message classes are passed in (:class:`MessageTypes`), so this module
is tested with ``rosbags`` messages and runs unchanged with rclpy's.

Threading: callbacks (executor thread) and the worker thread share only the frame slot, the
camera_info cache and the counters, each behind a lock. The newest image always wins; an image
replaced before the worker took it is counted as dropped (never an unbounded queue).

Every received frame ends in exactly one counter: ``received = processed + dropped + errors +
skipped_no_model + skipped_no_subscribers`` (plus the frames waiting in the slot).
"""

from __future__ import annotations

import bisect
import logging
import math
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from monodepth_ros import topics
from monodepth_ros.engines import BACKENDS, PRECISIONS
from monodepth_ros.errors import ConfigError, MonodepthError

LOGGER = logging.getLogger('monodepth_ros.node')

# Output key -> topic name of the node (private, remapped in the launch file).
OUTPUT_TOPICS = {key: '~/output' + suffix for key, suffix in topics.OUTPUT_SUFFIXES.items()}
INPUT_IMAGE_TOPIC = '~/input/image'
INPUT_CAMERA_INFO_TOPIC = '~/input/camera_info'
DIAGNOSTICS_TOPIC = '/diagnostics'
DOUBLE_MAX = sys.float_info.max


# -- parameters -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: default (its type is the parameter type), description, checks."""

    name: str
    default: Any
    description: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    read_only: bool = False     # needs a restart (subscriptions/QoS are made once)
    reloads_model: bool = False


PARAMETERS = (
    ParameterSpec('model_path', '', 'Model file: .onnx, or a .pt checkpoint (exported to ONNX '
                  'once and cached). Empty: the packaged default model.', reloads_model=True),
    ParameterSpec('backend', 'auto', 'Inference backend: auto picks the fastest available '
                  '(tensorrt > onnxruntime > torch).', choices=BACKENDS, reloads_model=True),
    ParameterSpec('precision', 'fp16', 'Engine precision (TensorRT; other backends run fp32 '
                  'on CPU).', choices=PRECISIONS, reloads_model=True),
    ParameterSpec('engine_cache_dir', '', 'Folder for cached TensorRT engines (ONNX exports of '
                  '.pt checkpoints go to <folder>/onnx). Empty: $MONODEPTH_ENGINE_CACHE, else '
                  '$XDG_CACHE_HOME/monodepth_ros/engines (~/.cache/...).', reloads_model=True),
    ParameterSpec('output_resolution', 'network', "Resolution of every output: 'network' "
                  "(model input size, intrinsics scaled) or 'camera' (input image size).",
                  choices=('network', 'camera')),
    ParameterSpec('depth_upsampling', 'nearest', "How depth is resized to camera resolution: "
                  "'nearest' or 'bilinear' (never blends with invalid pixels).",
                  choices=('nearest', 'bilinear')),
    ParameterSpec('cloud_stride', 1, 'Keep every n-th pixel (rows and columns) in the point '
                  'cloud.', minimum=1, maximum=64),
    ParameterSpec('cloud_min_range', 0.0, 'Points with depth (z, metres) below this are NaN.',
                  minimum=0.0),
    ParameterSpec('cloud_max_range', 80.0, 'Points with depth (z, metres) above this are NaN.',
                  minimum=0.0),
    ParameterSpec('confidence_threshold', 0.0, 'Pixels with confidence below this are NaN in '
                  'the point cloud (0 keeps all).', minimum=0.0, maximum=1.0),
    ParameterSpec('cloud_rgb', True, 'Add the packed rgb field to the point cloud.'),
    ParameterSpec('cloud_confidence', False, 'Add a float32 confidence field to the cloud.'),
    ParameterSpec('cloud_label', False, 'Add a float32 label (trainId) field to the cloud.'),
    ParameterSpec('output_qos_reliability', 'reliable', 'Reliability of the outputs: reliable '
                  '(RViz default) or best_effort.', choices=('reliable', 'best_effort'),
                  read_only=True),
    ParameterSpec('output_qos_depth', 2, 'History depth of the output publishers.', minimum=1,
                  maximum=100, read_only=True),
    ParameterSpec('use_compressed_input', False, 'Subscribe to sensor_msgs/CompressedImage '
                  'on <~/input/image>/compressed (the image_transport convention: a remap of '
                  '~/input/image applies) instead of Image on ~/input/image.', read_only=True),
    ParameterSpec('camera_info_cache', True, 'When no CameraInfo stamp is within '
                  'camera_info_stamp_tolerance of the image stamp, use the newest one stamped '
                  'at or before the image (drivers that publish it rarely).'),
    ParameterSpec('camera_info_stamp_tolerance', 0.001, 'Largest |image - camera_info| stamp '
                  'difference (seconds) counted as a match.', minimum=0.0),
    ParameterSpec('camera_info_wait', 0.1, 'Seconds to wait for the CameraInfo of an image '
                  'that arrived before it (drivers publish the image first); 0: do not wait.',
                  minimum=0.0, maximum=1.0),
    ParameterSpec('queue_size', 1, 'Images waiting for the worker; when full the oldest is '
                  'dropped and counted (1 = always process the latest frame).', minimum=1,
                  maximum=10),
    ParameterSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.',
                  minimum=0.05, read_only=True),
    ParameterSpec('model_retry_period', 10.0, 'Seconds between attempts to load a model that '
                  'failed to load (0 = only on parameter change).', minimum=0.0),
)
PARAMETER_SPECS = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeConfig:
    """Validated node parameters (one field per entry of :data:`PARAMETERS`)."""

    model_path: str = ''
    backend: str = 'auto'
    precision: str = 'fp16'
    engine_cache_dir: str = ''
    output_resolution: str = 'network'
    depth_upsampling: str = 'nearest'
    cloud_stride: int = 1
    cloud_min_range: float = 0.0
    cloud_max_range: float = 80.0
    confidence_threshold: float = 0.0
    cloud_rgb: bool = True
    cloud_confidence: bool = False
    cloud_label: bool = False
    output_qos_reliability: str = 'reliable'
    output_qos_depth: int = 2
    use_compressed_input: bool = False
    camera_info_cache: bool = True
    camera_info_stamp_tolerance: float = 0.001
    camera_info_wait: float = 0.1
    queue_size: int = 1
    diagnostics_period: float = 1.0
    model_retry_period: float = 10.0

    @classmethod
    def from_parameters(cls, values: dict[str, Any]) -> NodeConfig:
        """Build from a name -> value mapping (missing names keep defaults); ConfigError."""
        unknown = sorted(set(values) - set(PARAMETER_SPECS))
        if unknown:
            raise ConfigError(f'unknown node parameter(s) {unknown}; known: '
                              f'{sorted(PARAMETER_SPECS)}')
        checked = {name: check_parameter(name, value) for name, value in values.items()}
        config = replace(cls(), **checked)
        config.check_consistency()
        return config

    def check_consistency(self) -> None:
        if self.cloud_max_range <= self.cloud_min_range:
            raise ConfigError(
                f'cloud_max_range ({self.cloud_max_range}) must be greater than '
                f'cloud_min_range ({self.cloud_min_range})')

    def updated(self, changes: dict[str, Any], allow_read_only: bool = False) -> NodeConfig:
        """This config with ``changes`` applied and validated (ConfigError with the reason)."""
        for name, value in changes.items():
            spec = PARAMETER_SPECS.get(name)
            if spec is None:
                raise ConfigError(f'unknown node parameter {name!r}')
            if spec.read_only and not allow_read_only and value != getattr(self, name):
                raise ConfigError(f'{name} cannot change while the node runs; restart it')
        checked = {name: check_parameter(name, value) for name, value in changes.items()}
        config = replace(self, **checked)
        config.check_consistency()
        return config

    def pipeline_config(self):
        from monodepth_ros.pipeline import PipelineConfig
        return PipelineConfig(
            output_resolution=self.output_resolution, depth_upsampling=self.depth_upsampling,
            cloud_stride=self.cloud_stride, cloud_min_range=self.cloud_min_range,
            cloud_max_range=self.cloud_max_range,
            confidence_threshold=self.confidence_threshold, cloud_rgb=self.cloud_rgb,
            cloud_confidence=self.cloud_confidence, cloud_label=self.cloud_label)


def check_parameter(name: str, value: Any) -> Any:
    """Return ``value`` converted to the parameter's type, or raise ConfigError with a reason."""
    spec = PARAMETER_SPECS.get(name)
    if spec is None:
        raise ConfigError(f'unknown node parameter {name!r}')
    expected = type(spec.default)
    if expected is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f'{name} must be true or false, got {value!r}')
        return bool(value)
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f'{name} must be an integer, got {value!r}')
        value = int(value)
    elif expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ConfigError(f'{name} must be a number, got {value!r}')
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f'{name} must be finite, got {value}')
    elif expected is str:
        if not isinstance(value, str):
            raise ConfigError(f'{name} must be a string, got {value!r}')
    if spec.choices and value not in spec.choices:
        raise ConfigError(f'{name} must be one of {list(spec.choices)}, got {value!r}')
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(f'{name} must be >= {spec.minimum}, got {value}')
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(f'{name} must be <= {spec.maximum}, got {value}')
    return value


def parameter_constraints(spec: ParameterSpec) -> str:
    """The limits of a parameter in words (``ros2 param describe`` shows them)."""
    parts = []
    if spec.choices:
        parts.append('one of: ' + ', '.join(str(choice) for choice in spec.choices))
    if spec.minimum is not None:
        parts.append(f'>= {spec.minimum}')
    if spec.maximum is not None:
        parts.append(f'<= {spec.maximum}')
    if type(spec.default) is float:
        parts.append('an integer is accepted')
    return '; '.join(parts)


def parameter_descriptor(spec: ParameterSpec, descriptor_class, integer_range_class,
                         floating_point_range_class):
    """rcl_interfaces ParameterDescriptor of ``spec`` (message classes passed in).

    ``dynamic_typing`` is on so that rclpy accepts any type at start (``cloud_max_range:=50``
    is an integer) and :func:`check_parameter` converts it or refuses it with a reason; the
    ranges and choices are filled in so that ``ros2 param describe`` shows them.
    """
    descriptor = descriptor_class(
        name=spec.name, description=spec.description, read_only=spec.read_only,
        additional_constraints=parameter_constraints(spec), dynamic_typing=True)
    if spec.minimum is not None or spec.maximum is not None:
        if type(spec.default) is int:
            descriptor.integer_range = [integer_range_class(
                from_value=int(spec.minimum if spec.minimum is not None else -2**63),
                to_value=int(spec.maximum if spec.maximum is not None else 2**63 - 1),
                step=0)]
        elif type(spec.default) is float:
            # Open ends as the largest double: older message code refuses inf.
            descriptor.floating_point_range = [floating_point_range_class(
                from_value=float(spec.minimum if spec.minimum is not None else -DOUBLE_MAX),
                to_value=float(spec.maximum if spec.maximum is not None else DOUBLE_MAX),
                step=0.0)]
    return descriptor


def outputs_to_compute(subscriber_counts: dict[str, int]) -> set[str]:
    """Outputs someone listens to (``camera_info`` alone runs no network)."""
    return {key for key, count in subscriber_counts.items() if count > 0 and key in OUTPUT_TOPICS}


# -- frames and camera_info ---------------------------------------------------------------------
@dataclass
class Frame:
    """An image message waiting for the worker, with the time it arrived."""

    msg: Any
    stamp_ns: int
    received_ns: int


class LatestFrameSlot:
    """Bounded hand-over from the subscription to the worker; overflow drops the oldest."""

    def __init__(self, capacity: int = 1):
        self._capacity = max(int(capacity), 1)
        self._frames: deque[Frame] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.received = 0

    def set_capacity(self, capacity: int) -> None:
        with self._condition:
            self._capacity = max(int(capacity), 1)
            while len(self._frames) > self._capacity:
                self._frames.popleft()
                self.dropped += 1

    def put(self, frame: Frame) -> bool:
        """Offer a frame; returns True when an older frame was dropped to make room."""
        with self._condition:
            self.received += 1
            dropped = False
            while len(self._frames) >= self._capacity:
                self._frames.popleft()
                self.dropped += 1
                dropped = True
            self._frames.append(frame)
            self._condition.notify()
            return dropped

    def take(self, timeout: float | None = None) -> Frame | None:
        """Oldest waiting frame, waiting up to ``timeout`` seconds; None on timeout or close."""
        with self._condition:
            if not self._frames and not self._closed:
                self._condition.wait(timeout)
            if not self._frames:
                return None
            return self._frames.popleft()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def __len__(self) -> int:
        with self._condition:
            return len(self._frames)


def match_stamp(stamps, stamp_ns: int, tolerance_ns: int, use_latest: bool) -> int | None:
    """Index in sorted ``stamps`` of the CameraInfo to use for an image stamped ``stamp_ns``.

    The one matching rule of the node and ``monodepth infer-bag``:

    1. the CameraInfo with the stamp closest to the image's, when within ``tolerance_ns``
       (between two equally close ones, the earlier);
    2. otherwise, with ``use_latest``, the newest CameraInfo stamped at or before the image
       (a driver that publishes it rarely), or the oldest one when all are newer;
    3. otherwise None (no calibration for this frame).
    """
    if not len(stamps):
        return None
    after = bisect.bisect_right(stamps, stamp_ns)       # stamps[:after] <= stamp_ns
    candidates = [index for index in (after - 1, after) if 0 <= index < len(stamps)]
    nearest = min(candidates, key=lambda index: abs(stamps[index] - stamp_ns))
    if abs(stamps[nearest] - stamp_ns) <= tolerance_ns:
        return nearest
    if not use_latest:
        return None
    return max(after - 1, 0)


class CameraInfoCache:
    """CameraInfo messages by stamp, matched to images with :func:`match_stamp`.

    ``size`` bounds the number kept (the oldest received goes first; None keeps all, as
    infer-bag does for a whole bag). A CameraInfo re-sent with the same stamp replaces the old.
    """

    def __init__(self, size: int | None = 30):
        self._size = size
        self._messages: OrderedDict[int, Any] = OrderedDict()    # stamp -> msg, receive order
        self._arrivals = 0                          # CameraInfos added so far
        self._arrival: dict[int, int] = {}          # stamp -> its arrival number
        self._sorted: list[int] | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._added = threading.Condition(self._lock)

    def add(self, msg, stamp_ns: int) -> None:
        with self._lock:
            self._messages.pop(stamp_ns, None)
            self._messages[stamp_ns] = msg
            self._arrivals += 1
            self._arrival[stamp_ns] = self._arrivals
            if self._size is not None and len(self._messages) > self._size:
                oldest, _ = self._messages.popitem(last=False)
                del self._arrival[oldest]
            self._sorted = None
            self._added.notify_all()

    def _has(self, stamp_ns: int, tolerance_ns: int) -> bool:
        return any(abs(stamp - stamp_ns) <= tolerance_ns for stamp in self._messages)

    def has(self, stamp_ns: int, tolerance_ns: int) -> bool:
        """True when a CameraInfo within ``tolerance_ns`` of ``stamp_ns`` is here."""
        with self._lock:
            return self._has(stamp_ns, tolerance_ns)

    def wait_for(self, stamp_ns: int, tolerance_ns: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a CameraInfo within ``tolerance_ns`` of ``stamp_ns``.

        A camera driver publishes an image and its CameraInfo on two topics (image_transport:
        the image first), so the CameraInfo may land just after the image. Returns True when
        one is there; False after ``timeout``, after :meth:`close`, or as soon as a newer
        CameraInfo arrives during the wait (they come in stamp order: the image's own was
        lost). CameraInfos that came before the wait do not end it: after a bag loops or sim
        time jumps back, the cache still holds newer stamps from the previous pass.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            waiting_since = self._arrivals
            while True:
                if self._has(stamp_ns, tolerance_ns):
                    return True
                newer_arrived = any(stamp > stamp_ns and self._arrival[stamp] > waiting_since
                                    for stamp in self._messages)
                remaining = deadline - time.monotonic()
                if newer_arrived or self._closed or remaining <= 0:
                    return False
                self._added.wait(remaining)

    def close(self) -> None:
        """End a wait in progress and any later one at once (the node is stopping)."""
        with self._lock:
            self._closed = True
            self._added.notify_all()

    def match(self, stamp_ns: int, tolerance_ns: int, use_latest: bool):
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._messages)
            index = match_stamp(self._sorted, stamp_ns, tolerance_ns, use_latest)
            return None if index is None else self._messages[self._sorted[index]]

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)


# -- statistics and diagnostics -----------------------------------------------------------------
class LatencyStats:
    """Rolling window of durations (ms) per name, summarised as median and p99."""

    def __init__(self, window: int = 200):
        self._values: dict[str, deque[float]] = {}
        self._window = window
        self._lock = threading.Lock()

    def add(self, name: str, milliseconds: float) -> None:
        with self._lock:
            self._values.setdefault(name, deque(maxlen=self._window)).append(float(milliseconds))

    def summary(self) -> dict[str, tuple[float, float]]:
        """Name -> (median, p99) in ms over the window."""
        with self._lock:
            items = {name: np.asarray(values) for name, values in self._values.items() if values}
        return {name: (float(np.median(v)), float(np.percentile(v, 99)))
                for name, v in items.items()}


@dataclass
class DiagnosticsReport:
    """Content of one DiagnosticStatus: level 0 OK, 1 WARN, 2 ERROR; values as strings."""

    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)

    OK = 0
    WARN = 1
    ERROR = 2


def diagnostics_message(types, report: DiagnosticsReport, stamp_ns: int,
                        name: str = 'monodepth_ros: depth_node', hardware_id: str = ''):
    """DiagnosticArray holding ``report`` (rclpy or rosbags classes)."""
    from monodepth_ros.messages import make_diagnostic_array
    return make_diagnostic_array(
        types, stamp_ns, [(report.level, name, report.message, hardware_id, report.values)])


class Throttle:
    """Allow one event per ``period`` seconds per key (for repeated warnings)."""

    def __init__(self, period: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.period = period
        self._clock = clock
        self._last: dict[str, float] = {}

    def __call__(self, key: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            return False
        self._last[key] = now
        return True


def default_model_path() -> Path:
    """The packaged default model (monodepth_ros/models/default.pt)."""
    return Path(__file__).resolve().parent / 'models' / 'default.pt'


def create_engine_from_config(config: NodeConfig):
    """Load the configured model with the configured backend (engines package, lazily)."""
    from monodepth_ros.engines import create_engine
    model_path = config.model_path or str(default_model_path())
    return create_engine(model_path, backend=config.backend, precision=config.precision,
                         cache_dir=config.engine_cache_dir or None)


def describe_error(error: BaseException) -> str:
    """One line for a log or diagnostics: typed errors speak for themselves, others get a type."""
    if isinstance(error, MonodepthError):
        return str(error)
    return f'{type(error).__name__}: {error}'


def close_engine(engine, logger=LOGGER) -> None:
    """Release an engine (GPU memory, TensorRT context); a failure only warns."""
    close = getattr(engine, 'close', None)
    if close is None:
        return
    try:
        close()
    except Exception as error:      # noqa: BLE001 - a failed release must not stop the node
        logger.warning(f'closing the previous engine failed: {describe_error(error)}')


# -- the core ---------------------------------------------------------------------------------
class NodeCore:
    """State and behaviour of the depth node, independent of the ROS client library.

    ``engine_factory(config) -> engine`` loads a model (default: :func:`create_engine_from_
    config`); ``logger`` is any object with ``info``/``warning``/``error`` methods (the rclpy
    node logger or a ``logging.Logger``).

    No exception escapes :meth:`process_next`: whatever a model load or a frame raises is
    counted, logged (throttled, with its type) and shown in the diagnostics, and the next
    frame is processed.
    """

    def __init__(self, types, config: NodeConfig | None = None,
                 engine_factory: Callable[[NodeConfig], Any] = create_engine_from_config,
                 logger=LOGGER, clock: Callable[[], float] = time.monotonic):
        self.types = types
        self.config = config or NodeConfig()
        self.engine_factory = engine_factory
        self.logger = logger
        self._clock = clock
        self.slot = LatestFrameSlot(self.config.queue_size)
        self.camera_infos = CameraInfoCache()
        # Wait for a frame's CameraInfo while they come with their images (see _process).
        self._wait_for_camera_info = True
        self._previous_stamp_ns: int | None = None
        self.stats = LatencyStats()
        self.throttle = Throttle(5.0, clock)
        self._lock = threading.Lock()        # guards pipeline/config swaps and counters
        self.pipeline = None
        self.engine_info: dict[str, str] = {}
        self.model_error: str | None = None
        self._model_wanted = True           # (re)load requested
        self._last_load_attempt: float | None = None
        self.processed = 0
        self.last_frame_ms = 0.0
        self.skipped_no_subscribers = 0
        self.skipped_no_model = 0
        self.errors = 0
        self.frames_without_camera_info = 0
        self.camera_info_rejected = 0
        self.last_error: str | None = None
        self.last_camera_info_problem: str | None = None
        self._last_error_time: float | None = None
        self._last_missing_info_time: float | None = None
        self._last_rejected_info_time: float | None = None

    # -- model ----------------------------------------------------------------------------
    def load_model_if_needed(self) -> bool:
        """Load (or reload) the engine when asked to or when a retry is due; True when ready.

        The previous engine is closed before the new one loads (GPU memory is not held twice).
        """
        with self._lock:
            config = self.config
            retry_due = (self.model_error is not None and config.model_retry_period > 0
                         and self._last_load_attempt is not None
                         and self._clock() - self._last_load_attempt
                         >= config.model_retry_period)
            if not (self._model_wanted or retry_due):
                return self.pipeline is not None
            self._model_wanted = False
            self._last_load_attempt = self._clock()
            old_pipeline, self.pipeline = self.pipeline, None
        if old_pipeline is not None:
            close_engine(old_pipeline.engine, self.logger)
        from monodepth_ros.pipeline import DepthPipeline
        engine = None
        try:
            engine = self.engine_factory(config)
            pipeline = DepthPipeline(engine, config.pipeline_config())
            engine_info = self._describe_engine(engine, config)
        except Exception as error:     # noqa: BLE001 - any failure: ERROR diagnostics, retry
            if engine is not None:
                close_engine(engine, self.logger)
            message = (f'cannot load model {config.model_path or "(default)"}: '
                       f'{describe_error(error)}')
            with self._lock:
                self.model_error = message
            self.logger.error(message)
            return False
        with self._lock:
            self.pipeline = pipeline
            self.model_error = None
            self.engine_info = engine_info
        self.logger.info(
            f'model {config.model_path or "(default)"} loaded: backend '
            f'{engine_info["backend"]}, precision {engine_info["precision"]}, input '
            f'{engine_info["model_input"]}, output resolution {config.output_resolution}')
        return True

    @staticmethod
    def _describe_engine(engine, config: NodeConfig) -> dict[str, str]:
        info = dict(getattr(engine, 'info', {}) or {})
        meta = engine.metadata
        return {
            'backend': str(getattr(engine, 'name', config.backend)),
            'precision': str(getattr(engine, 'precision', config.precision)),
            'tensorrt_version': str(info.get('tensorrt_version', 'n/a')),
            'model_input': f'{meta.input_width}x{meta.input_height}',
            **{f'engine_{key}': str(value) for key, value in info.items()
               if key not in ('tensorrt_version', 'backend', 'precision')},
        }

    def release_model(self) -> None:
        """Close the engine (at shutdown, once the worker stopped)."""
        with self._lock:
            pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            close_engine(pipeline.engine, self.logger)

    # -- parameters -------------------------------------------------------------------------
    def set_parameters(self, changes: dict[str, Any]) -> tuple[bool, str]:
        """Apply parameter changes atomically; returns (successful, reason)."""
        try:
            with self._lock:
                new_config = self.config.updated(changes)
        except ConfigError as error:
            return False, str(error)
        reload = any(PARAMETER_SPECS[name].reloads_model
                     and getattr(new_config, name) != getattr(self.config, name)
                     for name in changes)
        with self._lock:
            self.config = new_config
            if reload:
                self._model_wanted = True
            elif self.pipeline is not None:
                self.pipeline.config = new_config.pipeline_config()
        self.slot.set_capacity(new_config.queue_size)
        return True, ''

    # -- inputs -----------------------------------------------------------------------------
    def on_image(self, msg, received_ns: int) -> None:
        from monodepth_ros.messages import stamp_to_ns
        self.slot.put(Frame(msg, stamp_to_ns(msg.header.stamp), received_ns))

    def on_camera_info(self, msg) -> None:
        from monodepth_ros.messages import stamp_to_ns
        self.camera_infos.add(msg, stamp_to_ns(msg.header.stamp))

    # -- work -------------------------------------------------------------------------------
    def record_error(self, error: BaseException, where: str) -> None:
        """Count an error, keep it for the diagnostics and log it (throttled per type)."""
        message = describe_error(error)
        with self._lock:
            self.errors += 1
            self.last_error = message
            self._last_error_time = self._clock()
        if self.throttle('error:' + type(error).__name__):
            self.logger.error(f'{where}: {message}')

    def process_next(self, subscriber_counts, now_ns: Callable[[], int],
                     timeout: float = 0.1) -> dict[str, Any] | None:
        """Take the next frame and run the pipeline on it.

        ``subscriber_counts`` is output key -> subscriber count, or a callable returning it
        (asked after a frame arrived, so that a subscriber that just connected is served).

        Returns output key -> message for the outputs someone subscribes to, ``{}`` when a
        frame was consumed without output (no model, no subscriber, bad input), or None when
        no frame arrived within ``timeout``.
        """
        self.load_model_if_needed()
        frame = self.slot.take(timeout)
        if frame is None:
            return None
        try:
            return self._process(frame, subscriber_counts, now_ns)
        except Exception as error:     # noqa: BLE001 - one bad frame must not stop the node
            self.record_error(error, f'frame {frame.stamp_ns} ns skipped')
            return {}

    def _process(self, frame: Frame, subscriber_counts, now_ns) -> dict[str, Any]:
        started = time.perf_counter()
        with self._lock:
            pipeline = self.pipeline
            config = self.config
            if pipeline is None:
                self.skipped_no_model += 1
                return {}
        if callable(subscriber_counts):
            subscriber_counts = subscriber_counts()
        wanted = outputs_to_compute(subscriber_counts)
        if not wanted:
            with self._lock:
                self.skipped_no_subscribers += 1
            return {}
        needs_camera = bool(pipeline.outputs_needing_camera(wanted))
        tolerance_ns = int(config.camera_info_stamp_tolerance * 1e9)
        wait_ms = None
        if needs_camera:
            # Wait only while CameraInfos come with their images: a driver that publishes it
            # rarely would otherwise cost every frame the whole wait. After a frame that found
            # none, waiting resumes once a CameraInfo for that frame turns up late.
            if not self._wait_for_camera_info and self._previous_stamp_ns is not None:
                self._wait_for_camera_info = self.camera_infos.has(self._previous_stamp_ns,
                                                                   tolerance_ns)
            wait = config.camera_info_wait if self._wait_for_camera_info else 0.0
            wait_started = time.perf_counter()
            self._wait_for_camera_info = self.camera_infos.wait_for(frame.stamp_ns,
                                                                    tolerance_ns, wait)
            wait_ms = (time.perf_counter() - wait_started) * 1e3
            self._previous_stamp_ns = frame.stamp_ns
        info = self.camera_infos.match(frame.stamp_ns, tolerance_ns, config.camera_info_cache)
        if info is None and needs_camera:
            with self._lock:
                self.frames_without_camera_info += 1
                self._last_missing_info_time = self._clock()
            if self.throttle('camera_info'):
                self.logger.warning(
                    'no CameraInfo on ~/input/camera_info for image stamp '
                    f'{frame.stamp_ns} ns: publishing depth without points/camera_info')
        # The pipeline leaves out points/camera_info itself when the CameraInfo is missing or
        # unusable (another size than the image...), and says why.
        outputs = pipeline.process_messages(self.types, frame.msg, info, wanted)
        problem = pipeline.last_camera_info_problem
        if problem is not None:
            with self._lock:
                self.camera_info_rejected += 1
                self.last_camera_info_problem = problem
                self._last_rejected_info_time = self._clock()
            if self.throttle('camera_info_rejected'):
                self.logger.warning(f'CameraInfo for image stamp {frame.stamp_ns} ns not used: '
                                    f'{problem}; publishing depth without points/camera_info')
        # Whole frame in this method (pipeline, messages, matching, bookkeeping).
        self.last_frame_ms = (time.perf_counter() - started) * 1e3
        if outputs:
            for stage, milliseconds in pipeline.last_timings.items():
                self.stats.add(stage, milliseconds)
            self.stats.add('frame_total', self.last_frame_ms)
            if wait_ms is not None:
                self.stats.add('camera_info_wait', wait_ms)
            self.stats.add('input_to_output', (now_ns() - frame.stamp_ns) / 1e6)
            self.stats.add('receive_to_output', (now_ns() - frame.received_ns) / 1e6)
        with self._lock:
            self.processed += 1
        return outputs

    # -- diagnostics ------------------------------------------------------------------------
    def diagnostics(self, worker_alive: bool = True) -> DiagnosticsReport:
        """Report for /diagnostics; ``worker_alive`` False (the worker thread ended) is ERROR."""
        with self._lock:
            config = self.config
            values = {
                'processed': str(self.processed),
                'received': str(self.slot.received),
                'dropped': str(self.slot.dropped),
                'errors': str(self.errors),
                'skipped_no_model': str(self.skipped_no_model),
                'skipped_no_subscribers': str(self.skipped_no_subscribers),
                'frames_without_camera_info': str(self.frames_without_camera_info),
                'camera_info_rejected': str(self.camera_info_rejected),
                'model_path': config.model_path or str(default_model_path()),
                'output_resolution': config.output_resolution,
                **(self.engine_info or {'backend': config.backend,
                                        'precision': config.precision,
                                        'tensorrt_version': 'n/a'}),
            }
            model_error = self.model_error
            loading = self.pipeline is None and model_error is None
            last_error = self.last_error
            rejected_problem = self.last_camera_info_problem
            recent = self._clock() - 2 * max(config.diagnostics_period, 1.0)
            recent_error = self._last_error_time is not None and self._last_error_time >= recent
            recent_missing = (self._last_missing_info_time is not None
                              and self._last_missing_info_time >= recent)
            recent_rejected = (self._last_rejected_info_time is not None
                               and self._last_rejected_info_time >= recent)
        for name, (median, p99) in self.stats.summary().items():
            values[f'{name}_ms_median'] = f'{median:.2f}'
            values[f'{name}_ms_p99'] = f'{p99:.2f}'
        if last_error:
            values['last_error'] = last_error
        if rejected_problem:
            values['last_camera_info_problem'] = rejected_problem
        if not worker_alive:
            return DiagnosticsReport(DiagnosticsReport.ERROR,
                                     'worker thread stopped: no more outputs', values)
        if model_error:
            return DiagnosticsReport(DiagnosticsReport.ERROR, model_error, values)
        if loading:
            return DiagnosticsReport(DiagnosticsReport.WARN, 'loading model', values)
        if recent_error:
            return DiagnosticsReport(DiagnosticsReport.WARN, f'bad input: {last_error}', values)
        if recent_rejected:
            return DiagnosticsReport(
                DiagnosticsReport.WARN,
                f'CameraInfo not used ({rejected_problem}): publishing depth only', values)
        if recent_missing:
            return DiagnosticsReport(DiagnosticsReport.WARN,
                                     'no CameraInfo: publishing depth only', values)
        return DiagnosticsReport(DiagnosticsReport.OK, 'running', values)

    def close(self) -> None:
        """Wake and stop the worker (no more frames); the engine stays until release_model."""
        self.slot.close()
        self.camera_infos.close()


def parameter_defaults() -> dict[str, Any]:
    """Name -> default for every node parameter (matches config/kitti.yaml's keys)."""
    return {spec.name: spec.default for spec in PARAMETERS}

