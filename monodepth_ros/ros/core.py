"""What the depth node does, without ROS client code: model loading, frames, outputs, counters.

``node.py`` is a thin rclpy adapter over :class:`NodeCore`: it declares the parameters of
:mod:`monodepth_ros.ros.parameters`, forwards messages to :meth:`NodeCore.on_image` and
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

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from monodepth_ros.errors import ConfigError, MessageError, MonodepthError, TransformError
from monodepth_ros.io import topics
from monodepth_ros.io.transforms import TransformBuffer
from monodepth_ros.model.files import default_model_path
from monodepth_ros.ros.diagnostics import (
    DiagnosticsReport,
    LatencyStats,
    ScaleCounters,
    Throttle,
)
from monodepth_ros.ros.frame_slot import Frame, LatestFrameSlot
from monodepth_ros.ros.log_lines import DEFAULT_MODEL_CAVEAT, MODEL_LOADED_LINE
from monodepth_ros.ros.parameters import PARAMETER_SPECS, NodeConfig
from monodepth_ros.runtime.sync import CameraInfoCache

LOGGER = logging.getLogger('monodepth_ros.ros.node')

# Output key -> topic name of the node (private, remapped in the launch file).
OUTPUT_TOPICS = {key: '~/output' + suffix for key, suffix in topics.OUTPUT_SUFFIXES.items()}
INPUT_IMAGE_TOPIC = '~/input/image'
INPUT_CAMERA_INFO_TOPIC = '~/input/camera_info'
LIDAR_SCANS_KEPT = 5     # recent LiDAR scans kept for matching to images (about 0.5 s at 10 Hz)
DIAGNOSTICS_TOPIC = '/diagnostics'


def outputs_to_compute(subscriber_counts: dict[str, int]) -> set[str]:
    """Outputs someone listens to (``camera_info`` alone runs no network)."""
    return {key for key, count in subscriber_counts.items() if count > 0 and key in OUTPUT_TOPICS}


def create_engine_from_config(config: NodeConfig):
    """Load the configured model with the configured backend (engines package, lazily)."""
    from monodepth_ros.engines import create_engine
    model_path = config.model_path or str(default_model_path())
    return create_engine(model_path, backend=config.backend, precision=config.precision,
                         cache_dir=config.engine_cache_dir or None,
                         card=config.model_card or None)


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
        # LiDAR scans are matched to images by the same stamp rule as CameraInfos; the LiDAR
        # and ground frames are connected to the camera through /tf_static.
        self.lidar_scans = CameraInfoCache(size=LIDAR_SCANS_KEPT)
        self.transforms = TransformBuffer()
        self.scale_counters = ScaleCounters()
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
        self.last_far_zoom = 0.0   # far pass zoom of the last frame (0: none ran)
        self.last_ground_contact: int | None = None   # pixels moved last frame (None: off)
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
        from monodepth_ros.runtime.pipeline import ALL_OUTPUTS, DepthPipeline
        engine = None
        try:
            engine = self.engine_factory(config)
            pipeline = DepthPipeline(engine, config.pipeline_config())
            # An affine model with no way to metres is refused here, with what to set.
            pipeline.resolved_scale_mode(height_from_tf=config.camera_height == 0)
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
        packaged = (not config.model_path
                    or Path(config.model_path).resolve() == default_model_path().resolve())
        caveat = f'; {DEFAULT_MODEL_CAVEAT}' if packaged else ''
        self.logger.info(
            f'{MODEL_LOADED_LINE} {config.model_path or "(default)"}, backend '
            f'{engine_info["backend"]}, precision {engine_info["precision"]}, input '
            f'{engine_info["model_input"]}, output resolution {config.output_resolution}'
            f'{caveat}')
        missing = sorted(ALL_OUTPUTS - pipeline.available_outputs)
        if missing:   # a foreign model without semantics or confidence
            self.logger.info(f'model {config.model_path} has no {", ".join(missing)} output: '
                             'those topics are not published')
        return True

    @staticmethod
    def _describe_engine(engine, config: NodeConfig) -> dict[str, str]:
        info = dict(getattr(engine, 'info', {}) or {})
        meta = engine.metadata
        card = getattr(engine, 'card', None)
        return {
            'backend': str(getattr(engine, 'name', config.backend)),
            'precision': str(getattr(engine, 'precision', config.precision)),
            'tensorrt_version': str(info.get('tensorrt_version', 'n/a')),
            'model_input': (card.size_text() if card is not None and card.dynamic_size
                            else f'{meta.input_width}x{meta.input_height}'),
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
        from monodepth_ros.io.messages import stamp_to_ns
        self.slot.put(Frame(msg, stamp_to_ns(msg.header.stamp), received_ns))

    def on_camera_info(self, msg) -> None:
        from monodepth_ros.io.messages import stamp_to_ns
        self.camera_infos.add(msg, stamp_to_ns(msg.header.stamp))

    def on_lidar(self, msg) -> None:
        from monodepth_ros.io.messages import stamp_to_ns
        self.lidar_scans.add(msg, stamp_to_ns(msg.header.stamp))

    def on_tf_static(self, msg) -> None:
        """Add a /tf_static message (a malformed one is counted as an error, nothing added)."""
        try:
            with self._lock:
                self.transforms.add_message(msg, static=True)
        except (MessageError, TransformError) as error:
            self.record_error(error, '/tf_static message ignored')

    def _lookup(self, target: str, source: str):
        with self._lock:
            return self.transforms.lookup(target, source)

    def _scale_reference(self, frame: Frame, config: NodeConfig, pipeline):
        """What the scale stage fits to for this frame: its LiDAR scan, or the mounting.

        Only what the mode that runs needs is gathered: a metric model under 'auto' (mode
        'none') costs no scan decoding and no transform lookup.
        """
        from monodepth_ros.evaluation.ground_truth import lidar_scale_reference
        from monodepth_ros.runtime.scale import ScaleReference

        reference = ScaleReference()
        try:
            mode = pipeline.resolved_scale_mode(height_from_tf=config.camera_height == 0)
        except ConfigError:
            return reference    # the scale stage reports it for this frame
        camera_frame = str(frame.msg.header.frame_id)
        if mode == 'lidar':
            msg = self.lidar_scans.match(frame.stamp_ns,
                                         int(config.lidar_stamp_tolerance * 1e9), False)
            problem = None
            if msg is None:
                problem = (f'no LiDAR scan on {config.lidar_topic} within '
                           f'{config.lidar_stamp_tolerance:g} s of the image')
            else:
                try:   # the scan is decoded outside the lock, the transform read inside
                    reference = lidar_scale_reference(msg, camera_frame, self._lookup)
                except (MessageError, TransformError) as error:
                    problem = f'LiDAR scan not usable: {describe_error(error)}'
            if problem is not None:
                self.scale_counters.no_lidar(problem)
        if mode == 'ground' and config.camera_height == 0:
            try:
                with self._lock:
                    reference.T_ground_from_camera = self.transforms.lookup(
                        config.ground_frame, camera_frame)
            except TransformError:
                pass    # the scale stage says that the height is missing
        return reference

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
        reference = self._scale_reference(frame, config, pipeline)
        outputs = pipeline.process_messages(self.types, frame.msg, info, wanted, reference)
        if pipeline.last_scale is not None and outputs:
            self.scale_counters.add(pipeline.last_scale)
        self.last_far_zoom = pipeline.last_far_zoom
        self.last_ground_contact = pipeline.last_ground_contact
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
                # runtime.far_pass: the zoom of the last frame's far pass (a second, zoomed view)
                'far_pass': (f'zoom {self.last_far_zoom:.2f}x' if self.last_far_zoom else
                             'off (one inference per frame)'),
                # runtime.ground_contact: how many depth pixels it moved on the last frame
                'ground_contact': ('off' if self.last_ground_contact is None else
                                   f'{self.last_ground_contact} px on the last frame'),
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
        values.update(self.scale_counters.values())
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
