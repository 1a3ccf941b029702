"""depth_node on a real ROS 2, fed by an rclpy replay of a synthetic and a KITTI bag.

Each frame's outputs are checked against what they must be (types, headers, encodings,
CameraInfo scaled to the output, organized cloud = back-projected depth) and against the
offline pipeline run here on the same messages: the node and offline processing share one
pipeline, so the bytes must be equal. Also: /diagnostics, parameter validation through the
parameter services, a CameraInfo of another size or arriving after its image, a broken image,
a model that cannot load, compressed input, sim time, frames faster than inference, and
SIGINT (twice) while frames flow. The input-to-output latency is printed (``-s``).

Needs a sourced ROS 2 (rclpy, rosidl_runtime_py, sensor_msgs, diagnostic_msgs,
rcl_interfaces); skipped with the reason otherwise.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
except ImportError as error:
    pytest.skip(f'needs ROS 2 (rclpy, sensor_msgs, diagnostic_msgs, rcl_interfaces): {error}',
                allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rosbag_replay import BagReplayer, read_serialized  # noqa: E402

from monodepth_ros.io import (
    messages,
    topics,  # noqa: E402
)
from monodepth_ros.io.framing import plan_framing  # noqa: E402
from monodepth_ros.io.messages import MessageTypes  # noqa: E402
from monodepth_ros.ros.core import create_engine_from_config
from monodepth_ros.ros.parameters import NodeConfig  # noqa: E402
from monodepth_ros.runtime.pipeline import DepthPipeline  # noqa: E402

pytestmark = pytest.mark.ros

OUTPUT_TYPES = {'depth': Image, 'camera_info': CameraInfo, 'points': PointCloud2,
                'semantics': Image, 'semantics_color': Image, 'confidence': Image}
OUTPUT_ENCODINGS = {'depth': '32FC1', 'semantics': 'mono8', 'semantics_color': 'rgb8',
                    'confidence': '32FC1'}
INPUT_TOPICS = [topics.CAMERA_INFO_TOPIC, topics.CAMERA_IMAGE_TOPIC]
START_TIMEOUT_S = 120.0     # model load (an export of the packaged checkpoint on 2 CPU cores)
FRAME_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
CAMERA_INFO_DELAY_S = 0.02      # a CameraInfo that arrives this long after its image is used


# -- the node process and the probe ------------------------------------------------------------
class DepthNodeProcess:
    """``python -m monodepth_ros.ros.node`` with a name and parameters; its log goes to a file."""

    def __init__(self, name: str, parameters: dict, log_path: Path,
                 remaps: dict[str, str] | None = None):
        self.name = name
        self.log_path = log_path
        command = [sys.executable, '-m', 'monodepth_ros.ros.node', '--ros-args',
                   '-r', f'__node:={name}']
        for key, value in parameters.items():
            value = str(value).lower() if isinstance(value, bool) else value    # YAML
            command += ['-p', f'{key}:={value}']
        for source, target in (remaps or {}).items():
            command += ['-r', f'{source}:={target}']
        self._log = open(log_path, 'w')     # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    def topic(self, relative: str) -> str:
        return f'/{self.name}/{relative}'

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def interrupt(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGINT (Ctrl-C); the exit code, or None when it did not exit within ``timeout``."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


class Probe:
    """The test's own rclpy node: replays frames to the depth node and collects its outputs."""

    def __init__(self, depth_node: DepthNodeProcess, records):
        self.depth_node = depth_node
        self.node = rclpy.create_node(f'monodepth_probe_{depth_node.name}')
        self.replayer = BagReplayer(self.node, records, remap={
            topics.CAMERA_IMAGE_TOPIC: depth_node.topic('input/image'),
            topics.CAMERA_INFO_TOPIC: depth_node.topic('input/camera_info')},
            topic_order=INPUT_TOPICS)
        self.received: dict[str, dict[int, object]] = {key: {} for key in OUTPUT_TYPES}
        self.arrival: dict[int, float] = {}
        for key, suffix in topics.OUTPUT_SUFFIXES.items():
            self.node.create_subscription(OUTPUT_TYPES[key], depth_node.topic('output' + suffix),
                                          lambda msg, key=key: self._on_output(key, msg), 50)
        self.diagnostics: list[DiagnosticStatus] = []
        self.diagnostics_stamps: list = []
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)
        self.image_publisher = self.replayer.publishers[topics.CAMERA_IMAGE_TOPIC]
        self.info_publisher = self.replayer.publishers[topics.CAMERA_INFO_TOPIC]

    def _on_output(self, key: str, msg) -> None:
        stamp = messages.stamp_to_ns(msg.header.stamp)
        self.received[key][stamp] = msg
        if key == 'depth':
            self.arrival[stamp] = time.monotonic()

    def _on_diagnostics(self, msg) -> None:
        ours = [status for status in msg.status
                if status.name == f'{self.depth_node.name}: depth']
        self.diagnostics += ours
        self.diagnostics_stamps += [msg.header.stamp] * len(ours)

    def spin_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f'{what}: not within {timeout:.0f} s. Node log:\n'
                            f'{self.depth_node.log()[-3000:]}')
            if self.depth_node.process.poll() is not None:
                pytest.fail(f'{what}: the node exited with {self.depth_node.process.returncode}.'
                            f' Node log:\n{self.depth_node.log()[-3000:]}')
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def wait_until_running(self, image_publisher=None) -> None:
        """Model loaded (diagnostics OK) and both sides of every topic discovered."""
        image_publisher = image_publisher or self.image_publisher
        self.spin_until(lambda: any(s.level == DiagnosticStatus.OK for s in self.diagnostics),
                        START_TIMEOUT_S, 'diagnostics OK (model loaded)')
        self.spin_until(
            lambda: min(image_publisher.get_subscription_count(),
                        self.info_publisher.get_subscription_count()) > 0,
            FRAME_TIMEOUT_S, 'the node subscribed to the image and camera_info')
        self.spin_until(
            lambda: all(self.node.count_publishers(self.depth_node.topic('output' + suffix)) > 0
                        for suffix in topics.OUTPUT_SUFFIXES.values()),
            FRAME_TIMEOUT_S, 'the node publishes every output')
        self.spin_for(1.0)      # let the node see our subscriptions too

    def publish_and_wait(self, index: int, keys=tuple(OUTPUT_TYPES)) -> tuple[int, float]:
        """Publish frame ``index``; wait for its ``keys`` outputs; (stamp, latency seconds)."""
        started = time.monotonic()
        stamp = self.replayer.publish_frame(index)
        self.spin_until(lambda: all(stamp in self.received[key] for key in keys),
                        FRAME_TIMEOUT_S, f'outputs {list(keys)} of frame {index} (stamp {stamp})')
        return stamp, self.arrival[stamp] - started

    def outputs(self, stamp: int) -> dict[str, object]:
        return {key: got[stamp] for key, got in self.received.items() if stamp in got}

    def current_counters(self) -> dict[str, str]:
        """The values of a diagnostics message published from now on.

        Judged by its stamp (the node runs on wall time here): one published earlier may
        still wait in the subscription's queue.
        """
        since_ns = self.node.get_clock().now().nanoseconds
        self.diagnostics.clear()
        self.diagnostics_stamps.clear()
        self.spin_until(lambda: any(messages.stamp_to_ns(stamp) >= since_ns
                                    for stamp in self.diagnostics_stamps),
                        FRAME_TIMEOUT_S, 'a new diagnostics message')
        return diagnostic_values(self.diagnostics[-1])

    def latest_diagnostics(self, condition, what: str) -> DiagnosticStatus:
        self.spin_until(lambda: any(condition(s) for s in self.diagnostics[-3:]),
                        FRAME_TIMEOUT_S, what)
        return next(s for s in reversed(self.diagnostics) if condition(s))

    def call(self, service_type, service: str, request):
        client = self.node.create_client(service_type, self.depth_node.topic(service))
        try:
            self.spin_until(lambda: client.service_is_ready(), FRAME_TIMEOUT_S,
                            f'service {service}')
            future = client.call_async(request)
            self.spin_until(future.done, FRAME_TIMEOUT_S, f'answer of {service}')
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameter(self, name: str, value):
        request = SetParameters.Request(parameters=[Parameter(name=name,
                                                              value=parameter_value(value))])
        return self.call(SetParameters, 'set_parameters', request).results[0]

    def close(self) -> None:
        self.node.destroy_node()


def parameter_value(value) -> ParameterValue:
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)


def diagnostic_values(status) -> dict[str, str]:
    return {item.key: item.value for item in status.values}


# -- what every frame's outputs must be -----------------------------------------------------------
def check_frame(outputs: dict, image: Image, info: CameraInfo, expected: dict,
                cloud_stride: int = 1, cloud_max_range: float = 80.0) -> None:
    """The outputs of one frame: their own invariants, then equality with the offline run."""
    assert set(outputs) == set(expected)
    for key, msg in outputs.items():
        assert isinstance(msg, OUTPUT_TYPES[key]), key
        assert msg.header.stamp == image.header.stamp, key
        assert msg.header.frame_id == image.header.frame_id, key
        if key in OUTPUT_ENCODINGS:
            assert msg.encoding == OUTPUT_ENCODINGS[key], key
            assert msg.is_bigendian == (sys.byteorder == 'big'), key

    depth_msg = outputs['depth']
    depth = messages.image_to_array(depth_msg)
    assert depth.dtype == np.float32 and depth_msg.step == 4 * depth_msg.width
    # REP 118: invalid is NaN, never 0 or inf.
    assert not np.any(np.isinf(depth)) and not np.any(depth <= 0)

    if 'camera_info' in outputs:
        out_info = outputs['camera_info']
        assert (out_info.width, out_info.height) == (depth_msg.width, depth_msg.height)
        camera = messages.camera_info_to_model(info)
        if (depth_msg.width, depth_msg.height) == (info.width, info.height):
            want = camera                        # camera resolution: the input calibration
        else:                                    # network resolution: the framed camera
            want = plan_framing(info.width, info.height, (depth_msg.width, depth_msg.height),
                                camera).camera(camera)
        np.testing.assert_allclose(np.reshape(out_info.k, (3, 3)), want.K, rtol=1e-12,
                                   atol=1e-9)
        assert list(out_info.d) == list(info.d)

    if 'points' in outputs:
        cloud = outputs['points']
        rows, cols = math.ceil(depth_msg.height / cloud_stride), math.ceil(
            depth_msg.width / cloud_stride)
        assert (cloud.height, cloud.width) == (rows, cols)     # organized
        assert not cloud.is_dense and cloud.row_step == cloud.width * cloud.point_step
        xyz = {name: values.reshape(rows, cols)
               for name, values in messages.read_pointcloud2(cloud).items()}
        z = depth[::cloud_stride, ::cloud_stride]
        valid = z <= cloud_max_range
        assert np.array_equal(np.isnan(xyz['z']), ~valid)
        k_out = np.reshape(outputs['camera_info'].k, (3, 3))
        u = np.arange(depth_msg.width)[::cloud_stride]
        v = np.arange(depth_msg.height)[::cloud_stride]
        np.testing.assert_array_equal(xyz['z'][valid], z[valid])
        expected_x = (u[None, :] - k_out[0, 2]) / k_out[0, 0] * z
        expected_y = (v[:, None] - k_out[1, 2]) / k_out[1, 1] * z
        np.testing.assert_allclose(xyz['x'][valid], expected_x[valid], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(xyz['y'][valid], expected_y[valid], rtol=1e-5, atol=1e-5)

    for key, msg in outputs.items():     # the node and the offline pipeline agree exactly
        want = expected[key]
        if isinstance(msg, CameraInfo):
            assert (list(msg.k), list(msg.p), msg.width, msg.height) == \
                (list(want.k), list(want.p), want.width, want.height)
        else:
            assert (msg.height, msg.width) == (want.height, want.width), key
            assert bytes(msg.data) == bytes(want.data), f'{key} differs from the offline run'


_OFFLINE_PIPELINES: dict[tuple, DepthPipeline] = {}


def offline_pipeline(parameters: dict) -> DepthPipeline:
    """The pipeline the node runs with ``parameters``, made once per set of parameters."""
    key = tuple(sorted(parameters.items()))
    if key not in _OFFLINE_PIPELINES:
        config = NodeConfig.from_parameters({**NodeConfig().__dict__, **parameters})
        _OFFLINE_PIPELINES[key] = DepthPipeline(create_engine_from_config(config),
                                                config.pipeline_config())
    return _OFFLINE_PIPELINES[key]


def frame_messages(replayer: BagReplayer, index: int,
                   shift_ns: int = 0) -> tuple[Image, CameraInfo]:
    """Image and CameraInfo of frame ``index``, both stamped ``shift_ns`` later."""
    data = dict(replayer.frames[index][1])
    image = deserialize_message(data[topics.CAMERA_IMAGE_TOPIC], Image)
    info = deserialize_message(data[topics.CAMERA_INFO_TOPIC], CameraInfo)
    if shift_ns:
        image.header.stamp = info.header.stamp = messages.make_time(
            MessageTypes.rclpy(), messages.stamp_to_ns(image.header.stamp) + shift_ns)
    return image, info


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def ros_context():
    # A domain of its own (unless one is set), so that parallel runs on one machine do not
    # see each other; the node processes inherit it.
    previous = os.environ.get('ROS_DOMAIN_ID')
    os.environ['ROS_DOMAIN_ID'] = previous or str(1 + os.getpid() % 100)
    rclpy.init()
    yield
    rclpy.try_shutdown()
    if previous is None:
        del os.environ['ROS_DOMAIN_ID']


class RunningNode:
    """A depth node process, the probe talking to it and the parameters it was started with."""

    def __init__(self, name: str, bag: Path, parameters: dict, tmp_path: Path, frames: int):
        self.parameters = parameters
        self.node = DepthNodeProcess(name, parameters, tmp_path / f'{name}.log')
        self.probe = Probe(self.node, read_serialized(bag, INPUT_TOPICS))
        assert len(self.probe.replayer.frames) >= frames
        self.probe.wait_until_running()

    def close(self) -> None:
        self.probe.close()
        self.node.stop()


@pytest.fixture(scope='module')
def synthetic_bag(tmp_path_factory) -> Path:
    bag = tmp_path_factory.mktemp('ros_synthetic_bag') / 'drive'
    subprocess.run([sys.executable, '-m', 'monodepth_ros.cli', 'synth-bag', str(bag),
                    '--frames', '4', '--seed', '3'], check=True, capture_output=True)
    return bag


def tiny_model_parameters(tiny_onnx) -> dict:
    return {'model_path': str(tiny_onnx), 'backend': 'onnxruntime', 'precision': 'fp32',
            'diagnostics_period': 0.2}


@pytest.fixture(scope='module')
def synthetic(ros_context, tiny_onnx, synthetic_bag, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('ros_synthetic')
    running = RunningNode(f'depth_node_synthetic_{os.getpid()}', synthetic_bag,
                          tiny_model_parameters(tiny_onnx), tmp_path, 4)
    yield running
    running.close()


@pytest.fixture(scope='module')
def kitti(ros_context, kitti_bag, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('ros_kitti')
    # The packaged default model; its ONNX export is cached in a folder of the test's own.
    parameters = {'backend': 'onnxruntime', 'precision': 'fp32', 'diagnostics_period': 0.2,
                  'engine_cache_dir': str(tmp_path / 'engines')}
    running = RunningNode(f'depth_node_kitti_{os.getpid()}', kitti_bag[0], parameters,
                          tmp_path, 3)
    yield running
    running.close()


def run_frames(running: RunningNode, indices, **changes) -> list[float]:
    """Publish frames one at a time; check each one's outputs; return the latencies (s).

    ``changes``: parameters set on the node since its start (the offline run uses them too).
    """
    parameters = {**running.parameters, **changes}
    pipeline = offline_pipeline(parameters)
    latencies = []
    for index in indices:
        stamp, latency = running.probe.publish_and_wait(index)
        image, info = frame_messages(running.probe.replayer, index)
        expected = pipeline.process_messages(MessageTypes.rclpy(), image, info)
        check_frame(running.probe.outputs(stamp), image, info, expected,
                    cloud_stride=parameters.get('cloud_stride', 1),
                    cloud_max_range=parameters.get('cloud_max_range', 80.0))
        latencies.append(latency)
    return latencies


def interrupt_cleanly(node: DepthNodeProcess, signals: int = 1) -> None:
    """SIGINT ``signals`` times (10 ms apart): exit code 0, and no error logged meanwhile."""
    logged_before = len(node.log())
    for _ in range(signals - 1):
        node.process.send_signal(signal.SIGINT)
        time.sleep(0.01)
    code = node.interrupt()
    log = node.log()[logged_before:]
    assert code == 0, f'exit code {code} after SIGINT. Log since:\n{log[-3000:]}'
    for sign in ('Traceback', 'Error', 'ERROR', 'skipped', 'Failed'):
        assert sign not in log, f'{sign!r} logged after SIGINT:\n{log[-3000:]}'


def report_node_timings(what: str, values: dict[str, str]) -> None:
    print(f'\n{what}: node diagnostics: frame_total median {values["frame_total_ms_median"]} '
          f'ms (inference {values["inference_ms_median"]} ms), receive_to_output median '
          f'{values["receive_to_output_ms_median"]} ms')


def report_latency(what: str, latencies: list[float]) -> None:
    milliseconds = np.array(latencies) * 1e3
    print(f'\n{what}: input->output latency over {len(latencies)} frames (publish -> depth '
          f'received): median {np.median(milliseconds):.1f} ms, max {milliseconds.max():.1f} ms')


# -- synthetic drive (tiny model) -------------------------------------------------------------
class TestSyntheticDrive:

    def test_every_output_of_every_frame(self, synthetic):
        report_latency('synthetic, tiny model', run_frames(synthetic, range(3)))

    def test_diagnostics_count_the_frames(self, synthetic):
        # `before` must be counters published after every earlier frame was answered (a
        # diagnostics message still queued from before, counting fewer frames, once made the
        # wait below time out): current_counters takes one stamped after the call. The wait is
        # for "at least 2 more", the exact count is asserted after, so a miscount fails with
        # the figures instead of a timeout.
        probe = synthetic.probe
        before = probe.current_counters()
        run_frames(synthetic, range(2))
        status = probe.latest_diagnostics(
            lambda s: int(diagnostic_values(s)['processed']) >= int(before['processed']) + 2,
            'diagnostics counting 2 more frames')
        values = diagnostic_values(status)
        assert (int(values['processed']), int(values['received'])) == (
            int(before['processed']) + 2, int(before['received']) + 2), (before, values)
        assert status.level == DiagnosticStatus.OK and status.message == 'running'
        assert values['backend'] == 'onnxruntime' and values['errors'] == '0'
        assert values['frames_without_camera_info'] == '0'
        assert float(values['input_to_output_ms_median']) > 0
        # Per frame, receive -> output spans the processing (frame_total) and more.
        frame_total = float(values['frame_total_ms_median'])
        assert float(values['receive_to_output_ms_median']) >= frame_total > 0
        report_node_timings('synthetic, tiny model', values)

    def test_parameters_are_validated_by_the_parameter_service(self, synthetic):
        probe = synthetic.probe
        refused = {'cloud_stride': 0, 'backend': 'bogus', 'cloud_max_range': 'far',
                   'use_compressed_input': True, 'queue_size': 2.5}
        for name, value in refused.items():
            result = probe.set_parameter(name, value)
            assert not result.successful, f'{name}={value!r} was accepted'
            assert result.reason, f'{name}={value!r} refused without a reason'
        assert 'bogus' in probe.set_parameter('backend', 'bogus').reason
        got = probe.call(GetParameters, 'get_parameters',
                         GetParameters.Request(names=['cloud_stride', 'backend']))
        assert (got.values[0].integer_value, got.values[1].string_value) == (1, 'onnxruntime')
        described = probe.call(DescribeParameters, 'describe_parameters',
                               DescribeParameters.Request(names=['cloud_stride']))
        assert described.descriptors[0].integer_range[0].from_value == 1
        assert described.descriptors[0].description

        # Accepted changes apply from the next frame on (a cloud of every 2nd pixel, NaN
        # beyond 12 m: check_frame asserts both against the depth image).
        changes = {'cloud_stride': 2, 'cloud_max_range': 12.0}
        for name, value in changes.items():
            assert probe.set_parameter(name, value).successful
        run_frames(synthetic, [3], **changes)
        for name in changes:
            assert probe.set_parameter(name, NodeConfig().__dict__[name]).successful

    def test_camera_info_of_another_size_gives_depth_without_points(self, synthetic):
        probe = synthetic.probe
        image, info = frame_messages(probe.replayer, 0, shift_ns=1_000_000_000_000)
        stamp_ns = messages.stamp_to_ns(image.header.stamp)
        before = int(diagnostic_values(probe.diagnostics[-1])['camera_info_rejected'])
        info.width, info.height = 2 * info.width, 2 * info.height
        probe.info_publisher.publish(info)
        probe.image_publisher.publish(image)
        keys = ('depth', 'semantics', 'semantics_color', 'confidence')
        probe.spin_until(lambda: all(stamp_ns in probe.received[key] for key in keys),
                         FRAME_TIMEOUT_S, 'image outputs of the frame with a bad CameraInfo')
        probe.spin_for(1.0)
        assert stamp_ns not in probe.received['points']
        assert stamp_ns not in probe.received['camera_info']
        status = probe.latest_diagnostics(
            lambda s: int(diagnostic_values(s)['camera_info_rejected']) == before + 1,
            'camera_info_rejected counted')
        assert status.level == DiagnosticStatus.WARN
        assert 'CameraInfo not used' in status.message
        assert str(info.width) in diagnostic_values(status)['last_camera_info_problem']

    def test_camera_info_published_just_after_its_image_is_the_one_used(self, synthetic):
        # image_transport's CameraPublisher publishes the image first, then its CameraInfo, and
        # two topics may arrive some milliseconds apart: the node must use that CameraInfo,
        # not an older one from its cache.
        probe = synthetic.probe
        image, info = frame_messages(probe.replayer, 2, shift_ns=3_000_000_000_000)
        stamp_ns = messages.stamp_to_ns(image.header.stamp)
        info.k = [value * 1.25 if index in (0, 4) else value
                  for index, value in enumerate(info.k)]
        info.p = [value * 1.25 if index in (0, 5) else value
                  for index, value in enumerate(info.p)]
        probe.image_publisher.publish(image)
        time.sleep(CAMERA_INFO_DELAY_S)
        probe.info_publisher.publish(info)
        probe.spin_until(lambda: stamp_ns in probe.received['camera_info'], FRAME_TIMEOUT_S,
                         'camera_info output of a frame whose CameraInfo came second')
        expected = offline_pipeline(synthetic.parameters).process_messages(
            MessageTypes.rclpy(), image, info)
        assert list(probe.received['camera_info'][stamp_ns].k) == list(expected['camera_info'].k)

    def test_broken_image_is_counted_and_the_node_carries_on(self, synthetic):
        probe = synthetic.probe
        image, _ = frame_messages(probe.replayer, 1, shift_ns=2_000_000_000_000)
        image.data = bytes(image.data)[:100]     # far shorter than height * step
        errors = int(diagnostic_values(probe.diagnostics[-1])['errors'])
        probe.image_publisher.publish(image)
        status = probe.latest_diagnostics(
            lambda s: int(diagnostic_values(s)['errors']) == errors + 1, 'error counted')
        assert status.level == DiagnosticStatus.WARN and 'bad input' in status.message
        assert 'data' in diagnostic_values(status)['last_error']
        run_frames(synthetic, [2])      # and the next good frame is processed as before

    def test_a_model_that_cannot_load_is_an_error_until_a_good_one_is_set(self, synthetic):
        probe = synthetic.probe
        good = synthetic.parameters['model_path']
        assert probe.set_parameter('model_path', '/nonexistent/model.onnx').successful
        status = probe.latest_diagnostics(lambda s: s.level == DiagnosticStatus.ERROR,
                                          'ERROR diagnostics for a missing model')
        assert 'cannot load model /nonexistent/model.onnx' in status.message
        skipped = int(diagnostic_values(status)['skipped_no_model'])
        image, info = frame_messages(probe.replayer, 0, shift_ns=4_000_000_000_000)
        stamp_ns = messages.stamp_to_ns(image.header.stamp)
        probe.info_publisher.publish(info)
        probe.image_publisher.publish(image)
        probe.latest_diagnostics(
            lambda s: int(diagnostic_values(s)['skipped_no_model']) == skipped + 1,
            'a frame skipped without a model')
        probe.spin_for(0.3)
        assert all(stamp_ns not in received for received in probe.received.values())
        assert probe.set_parameter('model_path', good).successful
        probe.latest_diagnostics(lambda s: s.level == DiagnosticStatus.OK, 'model reloaded')
        run_frames(synthetic, [1])

    def test_sigint_while_frames_flow_exits_cleanly(self, synthetic):
        # Ctrl-C on `ros2 launch`: the terminal signals the node, and launch signals it again.
        node, probe = synthetic.node, synthetic.probe
        for index in range(3):
            probe.replayer.publish_frame(index)
            probe.spin_for(0.05)
        interrupt_cleanly(node, signals=2)


def test_node_logger_takes_every_level_and_falls_back_to_stderr_after_shutdown(capfd):
    from rclpy.context import Context

    from monodepth_ros.ros.node import _ContextLogger

    context = Context()
    rclpy.init(context=context)
    name = f'monodepth_logger_{os.getpid()}'
    node = rclpy.create_node(name, context=context)
    logger = _ContextLogger(node)
    for _ in range(2):      # rclpy ties a call site to one severity: each level has its own
        logger.info('an info line')
        logger.warning('a warning line')
        logger.error('an error line')
    context.shutdown()
    logger.warning('after shutdown')
    node.destroy_node()
    err = capfd.readouterr().err
    for level, text in (('INFO', 'an info line'), ('WARN', 'a warning line'),
                        ('ERROR', 'an error line')):      # through rclpy: with a timestamp
        assert len(re.findall(rf'\[{level}\] \[\d+\.\d+\] \[{name}\]: {text}', err)) == 2
    assert f'[WARN] [{name}]: after shutdown' in err
    assert 'rosout' not in err      # no "failed to publish log message to rosout"


def test_compressed_input_comes_on_the_image_transport_topic(ros_context, tiny_onnx,
                                                             synthetic_bag, tmp_path):
    # With use_compressed_input the node reads <~/input/image>/compressed, after the remap of
    # ~/input/image: /<camera>/image_raw/compressed, where image_transport publishes it.
    import cv2
    from sensor_msgs.msg import CompressedImage

    name = f'depth_node_compressed_{os.getpid()}'
    base_topic = f'/{name}_camera/image_raw'
    parameters = {**tiny_model_parameters(tiny_onnx), 'use_compressed_input': True}
    node = DepthNodeProcess(name, parameters, tmp_path / 'node.log',
                            remaps={'~/input/image': base_topic})
    probe = Probe(node, read_serialized(synthetic_bag, INPUT_TOPICS))
    try:
        publisher = probe.node.create_publisher(CompressedImage, base_topic + '/compressed', 10)
        probe.wait_until_running(image_publisher=publisher)
        assert probe.node.count_subscribers(base_topic) == 0    # not the raw topic
        image, info = frame_messages(probe.replayer, 0)
        rgb = messages.image_to_rgb(image)
        compressed = CompressedImage(header=image.header, format='rgb8; png compressed bgr8',
                                     data=cv2.imencode('.png', rgb[:, :, ::-1])[1].tobytes())
        probe.info_publisher.publish(info)
        publisher.publish(compressed)
        stamp = messages.stamp_to_ns(image.header.stamp)
        probe.spin_until(lambda: all(stamp in got for got in probe.received.values()),
                         FRAME_TIMEOUT_S, 'outputs of a compressed frame')
        expected = offline_pipeline(parameters).process_messages(MessageTypes.rclpy(),
                                                                 compressed, info)
        check_frame(probe.outputs(stamp), image, info, expected)
        interrupt_cleanly(node)
    finally:
        probe.close()
        node.stop()


def test_sim_time_follows_the_clock_topic(ros_context, tiny_onnx, synthetic_bag, tmp_path):
    # kitti.launch.py with bag:=... runs the node on sim time (ros2 bag play --clock): the
    # diagnostics timer and the input->output latency then follow /clock, not the wall clock.
    from rosgraph_msgs.msg import Clock

    name = f'depth_node_sim_time_{os.getpid()}'
    parameters = {**tiny_model_parameters(tiny_onnx), 'use_sim_time': True}
    node = DepthNodeProcess(name, parameters, tmp_path / 'node.log')
    probe = Probe(node, read_serialized(synthetic_bag, INPUT_TOPICS))
    clock = probe.node.create_publisher(Clock, '/clock', 10)
    first_stamp = probe.replayer.frames[0][0]

    def tick(stamp_ns: int) -> None:
        clock.publish(Clock(clock=messages.make_time(MessageTypes.rclpy(), stamp_ns)))

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any(s.level == DiagnosticStatus.OK for s in probe.diagnostics):
            assert time.monotonic() < deadline, f'no OK diagnostics on sim time:\n{node.log()}'
            tick(first_stamp + int(1e9 * (START_TIMEOUT_S - (deadline - time.monotonic()))))
            probe.spin_for(0.05)
        probe.wait_until_running()
        for index in range(3):
            stamp = probe.replayer.frames[index][0]
            tick(stamp + 30_000_000)        # the bag's clock: 30 ms after the frame's stamp
            probe.spin_for(0.1)
            probe.publish_and_wait(index)
        last = probe.replayer.frames[2][0]
        found = []
        for step in range(1, 100):          # the timer runs on sim time: let the clock go on
            tick(last + 30_000_000 + step * 50_000_000)
            probe.spin_for(0.05)
            found = [(status, stamp) for status, stamp in zip(probe.diagnostics,
                                                               probe.diagnostics_stamps)
                     if diagnostic_values(status).get('processed') == '3']
            if found:
                break
        assert found, f'no diagnostics after 3 frames:\n{node.log()}'
        status, stamp = found[-1]
        assert last < messages.stamp_to_ns(stamp) < last + 10**10     # sim time, not wall
        assert float(diagnostic_values(status)['input_to_output_ms_median']) == 30.0
        interrupt_cleanly(node)
    finally:
        probe.close()
        node.stop()


# -- KITTI drive (the packaged default model) -------------------------------------------------
class TestKittiDrive:

    def test_every_output_of_every_frame(self, kitti):
        latencies = run_frames(kitti, range(3))
        report_latency('KITTI 1242x375, default model', latencies)
        probe = kitti.probe
        depth = messages.image_to_array(probe.received['depth'][max(probe.received['depth'])])
        assert 3.0 < float(np.nanmedian(depth)) < 40.0     # a road scene, in metres

    def test_diagnostics(self, kitti):
        probe = kitti.probe
        before = probe.current_counters()
        run_frames(kitti, [3])
        status = probe.latest_diagnostics(
            lambda s: int(diagnostic_values(s)['processed']) == int(before['processed']) + 1,
            'diagnostics counting one more frame')
        assert status.level == DiagnosticStatus.OK
        assert diagnostic_values(status)['model_input'] == '320x96'
        # KITTI's camera is at the default model's canonical focal length: the far pass
        # zooms 2x (runtime.far_pass).
        assert diagnostic_values(status)['far_pass'] == 'zoom 2.00x'
        report_node_timings('KITTI, default model', diagnostic_values(status))

    def test_a_camera_faster_than_inference_drops_and_counts_stale_frames(self, kitti):
        # Frames at 30 Hz, faster than this CPU runs the model: the node processes the frame in
        # hand, keeps only the newest waiting (queue_size 1), and counts every frame it got
        # as processed or dropped; the dropped ones have no outputs.
        probe = kitti.probe
        before = probe.current_counters()
        count = len(probe.replayer.frames)
        for received in probe.received.values():    # earlier frames came before: forget them
            received.clear()
        stamps = []
        for index in range(count):
            stamps.append(probe.replayer.publish_frame(index))
            time.sleep(1 / 30)      # outputs wait in the subscriptions' history meanwhile
        deadline = time.monotonic() + FRAME_TIMEOUT_S      # the backlog: at most two frames
        while stamps[-1] not in probe.received['depth'] and time.monotonic() < deadline:
            probe.spin_for(0.05)
        probe.spin_for(0.5)
        after = probe.current_counters()
        received, processed, dropped = (int(after[key]) - int(before[key])
                                        for key in ('received', 'processed', 'dropped'))
        print(f'\nKITTI at 30 Hz: {received} of {count} frames received, {processed} '
              f'processed, {dropped} dropped (frame_total median '
              f'{after["frame_total_ms_median"]} ms)')
        assert 0 < received <= count and processed + dropped == received
        assert after['errors'] == before['errors']
        published = [stamp for stamp in stamps if stamp in probe.received['depth']]
        assert len(published) == processed
        for stamp in published:                 # a processed frame has all its outputs
            assert all(stamp in probe.received[key] for key in OUTPUT_TYPES)
        if float(after['frame_total_ms_median']) > 2 * 1000 / 30:
            assert dropped > 0      # slower than two camera frames: some must be dropped

    def test_sigint(self, kitti):
        interrupt_cleanly(kitti.node)


# -- a foreign model through its model card ---------------------------------------------------
def foreign_onnx(path: Path) -> Path:
    """A foreign model (no metadata of ours), 1x3x64x128 in: depth = 2 + 10 |channel mean|."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node('ReduceMean', ['pixel_values', 'axes'], ['mean'], keepdims=1),
             helper.make_node('Abs', ['mean'], ['magnitude']),
             helper.make_node('Mul', ['magnitude', 'ten'], ['scaled']),
             helper.make_node('Add', ['scaled', 'two'], ['predicted_depth'])]
    graph = helper.make_graph(
        nodes, 'foreign',
        [helper.make_tensor_value_info('pixel_values', TensorProto.FLOAT, [1, 3, 64, 128])],
        [helper.make_tensor_value_info('predicted_depth', TensorProto.FLOAT, [1, 1, 64, 128])],
        [helper.make_tensor('axes', TensorProto.INT64, [1], [1]),
         helper.make_tensor('ten', TensorProto.FLOAT, [], [10.0]),
         helper.make_tensor('two', TensorProto.FLOAT, [], [2.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)]), str(path))
    return path


def test_foreign_model_runs_with_its_model_card(ros_context, synthetic_bag, tmp_path):
    import yaml

    card = tmp_path / 'card.yaml'
    card.write_text(yaml.safe_dump({'name': 'foreign', 'input': {
        'size': {'policy': 'fixed', 'height': 64, 'width': 128}},
        'output': {'kind': 'metric_depth'}}))
    parameters = {'model_path': str(foreign_onnx(tmp_path / 'foreign.onnx')),
                  'model_card': str(card), 'backend': 'onnxruntime', 'precision': 'fp32',
                  'diagnostics_period': 0.2}
    name = f'depth_node_foreign_{os.getpid()}'
    node = DepthNodeProcess(name, parameters, tmp_path / 'node.log')
    probe = Probe(node, read_serialized(synthetic_bag, INPUT_TOPICS))
    try:
        probe.wait_until_running()
        keys = ('depth', 'camera_info', 'points')
        stamp, _ = probe.publish_and_wait(0, keys)
        probe.spin_for(0.5)   # semantics or confidence would have come with the depth
        image, info = frame_messages(probe.replayer, 0)
        expected = offline_pipeline(parameters).process_messages(MessageTypes.rclpy(), image,
                                                                 info)
        assert set(expected) == set(keys)
        check_frame(probe.outputs(stamp), image, info, expected)
        assert (f'model {parameters["model_path"]} has no confidence, semantics, '
                'semantics_color output: those topics are not published') in node.log()
        interrupt_cleanly(node)
    finally:
        probe.close()
        node.stop()
