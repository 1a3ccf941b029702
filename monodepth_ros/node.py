"""The depth node (``ros2 run monodepth_ros depth_node``): a thin rclpy adapter over NodeCore.

Everything this node decides (parameters, which frame to process, camera_info matching,
diagnostics content) lives in :mod:`monodepth_ros.node_core`, which is tested without ROS.
This module only declares parameters, makes subscriptions/publishers, runs the worker thread
and publishes. rclpy is imported inside ``main`` so the package imports without ROS.
"""

from __future__ import annotations

import sys
import threading


def _make_node_class():
    from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    from monodepth_ros.errors import ConfigError
    from monodepth_ros.messages import MessageTypes
    from monodepth_ros.node_core import (
        DIAGNOSTICS_TOPIC,
        INPUT_CAMERA_INFO_TOPIC,
        INPUT_IMAGE_TOPIC,
        OUTPUT_TOPICS,
        PARAMETER_SPECS,
        PARAMETERS,
        NodeConfig,
        NodeCore,
        diagnostics_message,
    )

    class DepthNode(Node):
        def __init__(self):
            super().__init__('depth_node')
            for spec in PARAMETERS:
                self.declare_parameter(spec.name, spec.default, ParameterDescriptor(
                    description=spec.description, read_only=spec.read_only))
            values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
            try:
                config = NodeConfig.from_parameters(values)
            except ConfigError as error:
                self.get_logger().fatal(f'invalid parameters: {error}')
                raise
            self.types = MessageTypes.rclpy()
            self.core = NodeCore(self.types, config, logger=self.get_logger())
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
            image_type = (self.types.CompressedImage if config.use_compressed_input
                          else self.types.Image)
            self.create_subscription(image_type, INPUT_IMAGE_TOPIC, self._on_image,
                                     qos_profile_sensor_data)
            self.create_subscription(self.types.CameraInfo, INPUT_CAMERA_INFO_TOPIC,
                                     self.core.on_camera_info, qos_profile_sensor_data)
            self.create_timer(config.diagnostics_period, self._publish_diagnostics)
            self._running = True
            self._worker = threading.Thread(target=self._work, name='depth_worker',
                                            daemon=True)
            self._worker.start()

        def _now_ns(self) -> int:
            return self.get_clock().now().nanoseconds

        def _on_image(self, msg) -> None:
            self.core.on_image(msg, self._now_ns())

        def _on_set_parameters(self, parameters):
            # Parameters rclpy declares itself (use_sim_time...) are not the core's business.
            ours = {p.name: p.value for p in parameters if p.name in PARAMETER_SPECS}
            ok, reason = self.core.set_parameters(ours) if ours else (True, '')
            return SetParametersResult(successful=ok, reason=reason)

        def _work(self) -> None:
            while self._running:
                outputs = self.core.process_next(self._subscriber_counts, self._now_ns,
                                                 timeout=0.1)
                for key, msg in (outputs or {}).items():
                    self.output_publishers[key].publish(msg)

        def _subscriber_counts(self) -> dict[str, int]:
            return {key: publisher.get_subscription_count()
                    for key, publisher in self.output_publishers.items()}

        def _publish_diagnostics(self) -> None:
            report = self.core.diagnostics()
            self.diagnostics_publisher.publish(
                diagnostics_message(self.types, report, self._now_ns(),
                                    name=f'{self.get_name()}: depth'))

        def stop(self) -> None:
            self._running = False
            self.core.close()
            self._worker.join(timeout=2.0)

    return DepthNode


def main(args=None) -> int:
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException
    except ImportError as error:
        print(f'depth_node needs ROS 2 (rclpy): {error}', file=sys.stderr)
        return 1
    from monodepth_ros.errors import ConfigError

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
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
