"""The depth node (``ros2 run monodepth_ros depth_node``): a thin rclpy adapter over NodeCore.

Everything this node decides (parameters, which frame to process, camera_info matching,
diagnostics content) lives in :mod:`monodepth_ros.ros.core`, which is tested without ROS.
This module only declares parameters, makes subscriptions/publishers, runs the worker thread
and publishes. rclpy is imported inside ``main`` so the package imports without ROS.

Shutdown (Ctrl-C): the worker is told to stop and finishes its current frame without
publishing it; the node is destroyed only after that (or after ``STOP_TIMEOUT_S`` when a frame
hangs, in which case a late publish on the destroyed node is ignored). Further SIGINTs during
that cleanup are ignored.
"""

from __future__ import annotations

import signal
import sys
import threading

# Longest wait for the worker to finish its frame at shutdown (a frame takes milliseconds; a
# first TensorRT engine build takes minutes and is abandoned: the thread is a daemon).
STOP_TIMEOUT_S = 10.0


def _parameter_error_classes() -> tuple[type[BaseException], ...]:
    """Parameter exception classes of rclpy (their base class is not in every distro)."""
    from rclpy import exceptions

    names = ('ParameterException', 'InvalidParameterTypeException',
             'InvalidParameterValueException', 'ParameterImmutableException')
    return tuple(getattr(exceptions, name) for name in names if hasattr(exceptions, name))


def _parameter_error_text(error: BaseException) -> str:
    """The message of an rclpy parameter exception (its args are message, parameter name)."""
    if error.args and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


class _ContextLogger:
    """The node's logger while its context is valid, stderr after that.

    A frame or a model load that ends after Ctrl-C shut the context down still logs; through
    the node's logger that line would fail to reach /rosout and rcl would print an error.
    Each level calls the rclpy logger from a line of its own: rclpy refuses a second severity
    at one call site.
    """

    def __init__(self, node):
        self._node = node

    def _log(self, level: str, message: str, log) -> None:
        if self._node.context.ok():
            log(self._node.get_logger())
        else:
            print(f'[{level}] [{self._node.get_name()}]: {message}', file=sys.stderr)

    def info(self, message: str) -> None:
        self._log('INFO', message, lambda logger: logger.info(message))

    def warning(self, message: str) -> None:
        self._log('WARN', message, lambda logger: logger.warning(message))

    def error(self, message: str) -> None:
        self._log('ERROR', message, lambda logger: logger.error(message))


def _make_node_class():
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
        SetParametersResult,
    )
    from rclpy.node import Node
    from rclpy.qos import (
        DurabilityPolicy,
        HistoryPolicy,
        QoSProfile,
        ReliabilityPolicy,
        qos_profile_sensor_data,
    )

    from monodepth_ros.errors import ConfigError
    from monodepth_ros.io.messages import MessageTypes
    from monodepth_ros.ros.core import (
        DIAGNOSTICS_TOPIC,
        INPUT_CAMERA_INFO_TOPIC,
        INPUT_IMAGE_TOPIC,
        OUTPUT_TOPICS,
        NodeCore,
    )
    from monodepth_ros.ros.diagnostics import diagnostics_message
    from monodepth_ros.ros.parameters import (
        PARAMETER_SPECS,
        PARAMETERS,
        NodeConfig,
        parameter_descriptor,
    )

    parameter_errors = _parameter_error_classes()

    class DepthNode(Node):
        def __init__(self):
            super().__init__('depth_node')
            self._running = False
            self._worker = None
            try:
                config = self._declare_parameters()
            except ConfigError as error:
                self.get_logger().fatal(f'invalid parameters: {error}')
                raise
            self.types = MessageTypes.rclpy()
            self.safe_logger = _ContextLogger(self)
            self.core = NodeCore(self.types, config, logger=self.safe_logger)
            self.add_on_set_parameters_callback(self._on_set_parameters)

            reliability = (ReliabilityPolicy.BEST_EFFORT
                           if config.output_qos_reliability == 'best_effort'
                           else ReliabilityPolicy.RELIABLE)
            output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST,
                                    depth=config.output_qos_depth, reliability=reliability)
            self.output_publishers = {
                key: self.create_publisher(
                    self.types.CameraInfo if key == 'camera_info'
                    else self.types.PointCloud2 if key == 'points' else self.types.Image,
                    topic, output_qos)
                for key, topic in OUTPUT_TOPICS.items()}
            self.diagnostics_publisher = self.create_publisher(
                self.types.DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
            if config.use_compressed_input:
                # image_transport's name for the compressed stream of the (remapped) base topic.
                image_type = self.types.CompressedImage
                image_topic = self.resolve_topic_name(INPUT_IMAGE_TOPIC) + '/compressed'
            else:
                image_type, image_topic = self.types.Image, INPUT_IMAGE_TOPIC
            self.create_subscription(image_type, image_topic, self._on_image,
                                     qos_profile_sensor_data)
            self.create_subscription(self.types.CameraInfo, INPUT_CAMERA_INFO_TOPIC,
                                     self.core.on_camera_info, qos_profile_sensor_data)
            if config.lidar_topic:   # the scale stage fits to it (scale_mode lidar or auto)
                self.create_subscription(self.types.PointCloud2, config.lidar_topic,
                                         self.core.on_lidar, qos_profile_sensor_data)
            if config.lidar_topic or config.camera_height == 0:
                # LiDAR -> camera and ground_frame -> camera: latched, as tf2 publishes them.
                self.create_subscription(
                    self.types.TFMessage, '/tf_static', self.core.on_tf_static,
                    QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                               reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL))
            self.create_timer(config.diagnostics_period, self._publish_diagnostics)
            self._running = True
            self._worker = threading.Thread(target=self._work, name='depth_worker',
                                            daemon=True)
            self._worker.start()

        def _declare_parameters(self) -> NodeConfig:
            """Declare every parameter; a value rclpy or the core refuses is a ConfigError."""
            for spec in PARAMETERS:
                descriptor = parameter_descriptor(spec, ParameterDescriptor, IntegerRange,
                                                  FloatingPointRange)
                try:
                    self.declare_parameter(spec.name, spec.default, descriptor)
                except parameter_errors as error:
                    raise ConfigError(f'parameter {spec.name}: {_parameter_error_text(error)}'
                                      ) from None
            values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
            return NodeConfig.from_parameters(values)

        def _now_ns(self) -> int:
            return self.get_clock().now().nanoseconds

        def _on_image(self, msg) -> None:
            self.core.on_image(msg, self._now_ns())

        def _on_set_parameters(self, parameters):
            # Parameters rclpy declares itself (use_sim_time...) are not the core's business.
            ours = {p.name: p.value for p in parameters if p.name in PARAMETER_SPECS}
            ok, reason = self.core.set_parameters(ours) if ours else (True, '')
            return SetParametersResult(successful=ok, reason=reason)

        def _can_publish(self) -> bool:
            return self._running and self.context.ok()

        def _work(self) -> None:
            while self._running:
                try:
                    outputs = self.core.process_next(self._subscriber_counts, self._now_ns,
                                                     timeout=0.1)
                    for key, msg in (outputs or {}).items():
                        if not self._can_publish():
                            return      # shutting down: the frame is not published
                        self.output_publishers[key].publish(msg)
                except Exception as error:     # noqa: BLE001 - the worker must keep running
                    if not self._can_publish():
                        return          # the node or the context went away meanwhile
                    self.core.record_error(error, 'worker')

        def _subscriber_counts(self) -> dict[str, int]:
            if not self._can_publish():
                return {}       # shutting down: nothing to compute (rcl would raise)
            return {key: publisher.get_subscription_count()
                    for key, publisher in self.output_publishers.items()}

        def _publish_diagnostics(self) -> None:
            if not self._can_publish():
                return
            report = self.core.diagnostics(worker_alive=self._worker.is_alive())
            self.diagnostics_publisher.publish(
                diagnostics_message(self.types, report, self._now_ns(),
                                    name=f'{self.get_name()}: depth'))

        def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
            """Stop the worker (it finishes its current frame); True when it ended in time."""
            self._running = False
            if self._worker is None:
                return True
            self.core.close()
            self._worker.join(timeout=timeout)
            if self._worker.is_alive():
                self.safe_logger.warning(
                    f'the worker did not stop within {timeout:.0f} s; shutting down anyway')
                return False
            self.core.release_model()
            return True

    return DepthNode


def _interrupt_once() -> None:
    """The first SIGINT raises KeyboardInterrupt, later ones are ignored.

    Ctrl-C on `ros2 launch` signals the node twice (the terminal signals the whole process
    group, then launch forwards its own SIGINT): the second must not cut the cleanup short.
    Installed before ``rclpy.init``, whose handler shuts the context down and then calls it.
    SIGTERM and SIGKILL still end a node whose cleanup hangs.
    """
    if threading.current_thread() is not threading.main_thread():
        return      # signal handlers belong to the main thread

    interrupted = []

    def on_sigint(signum, frame):
        if not interrupted:
            interrupted.append(signum)
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def main(args=None) -> int:
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException
    except ImportError as error:
        from monodepth_ros.errors import reraise_interruption

        reraise_interruption(error)
        print(f'depth_node needs ROS 2 (rclpy): {error}', file=sys.stderr)
        return 1
    from monodepth_ros.errors import ConfigError

    _interrupt_once()
    rclpy.init(args=args)
    node = None
    try:
        node = _make_node_class()()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ConfigError:
        return 2
    finally:
        if node is not None:
            node.stop()
            try:
                node.destroy_node()
            except Exception:   # noqa: BLE001 - handles already gone with the context: fine
                pass
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
