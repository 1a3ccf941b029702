"""The depth node's ROS-free logic, driven with rosbags messages and a real ONNX model."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_pipeline import (
    CAMERA,
    FRAME,
    STAMP_NS,
    gradient_image,
    image_msg,
    info_msg,
)

from monodepth_ros import messages
from monodepth_ros.errors import ConfigError
from monodepth_ros.node_core import (
    PARAMETER_SPECS,
    PARAMETERS,
    CameraInfoCache,
    DiagnosticsReport,
    Frame,
    LatestFrameSlot,
    NodeConfig,
    NodeCore,
    Throttle,
    check_parameter,
    diagnostics_message,
    outputs_to_compute,
    parameter_defaults,
)

CONFIG_YAML = Path(__file__).resolve().parents[1] / 'config' / 'kitti.yaml'
ALL_SUBSCRIBED = {key: 1 for key in ('depth', 'camera_info', 'points', 'semantics',
                                     'semantics_color', 'confidence')}


class RecordingLogger:
    def __init__(self):
        self.records = []

    def info(self, message):
        self.records.append(('info', message))

    def warning(self, message):
        self.records.append(('warning', message))

    def error(self, message):
        self.records.append(('error', message))

    def of(self, level):
        return [message for lvl, message in self.records if lvl == level]


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope='module')
def types():
    return messages.MessageTypes.rosbags('humble')


def make_core(types, tiny_onnx, **overrides):
    config = NodeConfig.from_parameters({'model_path': str(tiny_onnx), 'backend': 'onnxruntime',
                                         'precision': 'fp32', **overrides})
    logger = RecordingLogger()
    clock = FakeClock()
    return NodeCore(types, config, logger=logger, clock=clock), logger, clock


def now_fn(value=STAMP_NS + 50_000_000):
    return lambda: value


# -- parameters -------------------------------------------------------------------------------
def test_yaml_matches_declared_parameters_and_types():
    data = yaml.safe_load(CONFIG_YAML.read_text())
    params = data['/**']['ros__parameters']
    assert set(params) == set(PARAMETER_SPECS)
    for name, value in params.items():
        default = PARAMETER_SPECS[name].default
        # ROS 2 parameters are typed: 1 in the YAML for a float parameter fails at start.
        assert type(value) is type(default), name
        assert value == default, name
    assert set(NodeConfig.__dataclass_fields__) == set(PARAMETER_SPECS)
    assert NodeConfig() == NodeConfig.from_parameters(parameter_defaults())
    assert all(spec.description for spec in PARAMETERS)


@pytest.mark.parametrize('name, value, reason', [
    ('backend', 'cuda', "backend must be one of .*'tensorrt'"),
    ('precision', 'fp8', 'precision must be one of'),
    ('cloud_stride', 0, 'cloud_stride must be >= 1, got 0'),
    ('cloud_stride', 1.5, 'cloud_stride must be an integer'),
    ('confidence_threshold', 1.2, 'confidence_threshold must be <= 1.0'),
    ('cloud_max_range', float('nan'), 'must be finite'),
    ('use_compressed_input', 'yes', 'must be true or false'),
    ('output_qos_reliability', 'sometimes', 'reliable'),
    ('no_such_parameter', 1, 'unknown node parameter'),
])
def test_bad_parameter_values_are_rejected(name, value, reason):
    with pytest.raises(ConfigError, match=reason):
        check_parameter(name, value)


def test_integer_is_accepted_for_float_parameter():
    assert check_parameter('cloud_max_range', 50) == 50.0
    assert isinstance(check_parameter('cloud_max_range', 50), float)


def test_config_consistency_and_read_only():
    with pytest.raises(ConfigError, match='cloud_max_range .* greater than cloud_min_range'):
        NodeConfig.from_parameters({'cloud_min_range': 10.0, 'cloud_max_range': 5.0})
    config = NodeConfig()
    with pytest.raises(ConfigError, match='use_compressed_input cannot change'):
        config.updated({'use_compressed_input': True})
    assert config.updated({'use_compressed_input': False}) == config


# -- slot, camera_info cache, throttle ----------------------------------------------------------
def test_latest_frame_slot_drops_and_counts_stale_frames():
    slot = LatestFrameSlot(capacity=1)
    for index in range(3):
        slot.put(Frame(index, index, index))
    assert (slot.received, slot.dropped, len(slot)) == (3, 2, 1)
    assert slot.take(0).msg == 2
    assert slot.take(0.01) is None
    slot.set_capacity(2)
    for index in range(3, 6):
        slot.put(Frame(index, index, index))
    assert slot.dropped == 3
    assert [slot.take(0).msg, slot.take(0).msg] == [4, 5]


def test_slot_close_wakes_a_waiting_worker():
    slot = LatestFrameSlot()
    results = []
    worker = threading.Thread(target=lambda: results.append(slot.take(5.0)))
    worker.start()
    time.sleep(0.05)
    slot.close()
    worker.join(1.0)
    assert not worker.is_alive() and results == [None]


def test_camera_info_cache_matching():
    cache = CameraInfoCache(size=3)
    assert cache.match(100, 10, use_latest=True) is None
    for stamp in (100, 200, 300):
        cache.add(f'info{stamp}', stamp)
    assert cache.match(205, 10, use_latest=False) == 'info200'
    assert cache.match(250, 10, use_latest=False) is None
    assert cache.match(250, 10, use_latest=True) == 'info300'
    cache.add('info400', 400)    # size 3: 100 falls out
    assert cache.match(100, 10, use_latest=False) is None


def test_throttle():
    clock = FakeClock()
    throttle = Throttle(5.0, clock)
    assert throttle('a') and not throttle('a') and throttle('b')
    clock.now += 5.0
    assert throttle('a')


def test_outputs_to_compute():
    assert outputs_to_compute({'depth': 1, 'points': 0, 'semantics': 2}) == {'depth',
                                                                            'semantics'}
    assert outputs_to_compute({'depth': 0}) == set()


# -- the core with a real model ---------------------------------------------------------------
def test_core_processes_frames_with_matching_camera_info(types, tiny_onnx):
    core, logger, _ = make_core(types, tiny_onnx)
    core.on_camera_info(info_msg(types, stamp_ns=STAMP_NS - 100_000_000))
    core.on_camera_info(info_msg(types))
    core.on_image(image_msg(types, gradient_image()), received_ns=STAMP_NS + 1_000_000)
    out = core.process_next(ALL_SUBSCRIBED, now_fn(), timeout=0)
    assert set(out) == set(ALL_SUBSCRIBED)
    for msg in out.values():
        assert messages.stamp_to_ns(msg.header.stamp) == STAMP_NS
        assert msg.header.frame_id == FRAME
    assert any('loaded: backend onnxruntime' in message for message in logger.of('info'))
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.OK
    assert report.values['processed'] == '1'
    assert report.values['backend'] == 'onnxruntime'
    assert report.values['precision'] == 'fp32'
    assert report.values['tensorrt_version'] == 'n/a'
    assert report.values['input_to_output_ms_median'] == '50.00'
    for stage in ('decode', 'preprocess', 'inference', 'postprocess', 'cloud'):
        assert float(report.values[f'{stage}_ms_p99']) >= 0.0
    assert core.process_next(ALL_SUBSCRIBED, now_fn(), timeout=0) is None


def test_only_subscribed_outputs_and_no_subscribers(types, tiny_onnx):
    core, _, _ = make_core(types, tiny_onnx)
    core.on_camera_info(info_msg(types))
    core.on_image(image_msg(types, gradient_image()), 0)
    assert set(core.process_next({'depth': 1, 'points': 0}, now_fn(), 0)) == {'depth'}
    core.on_image(image_msg(types, gradient_image()), 0)
    assert core.process_next({'depth': 0}, now_fn(), 0) == {}
    assert core.diagnostics().values['skipped_no_subscribers'] == '1'


def test_missing_camera_info_publishes_depth_and_warns_throttled(types, tiny_onnx):
    core, logger, clock = make_core(types, tiny_onnx, camera_info_cache=False)
    core.on_camera_info(info_msg(types, stamp_ns=STAMP_NS - 10**9))   # no stamp match
    for _ in range(3):
        core.on_image(image_msg(types, gradient_image()), 0)
        out = core.process_next(ALL_SUBSCRIBED, now_fn(), 0)
        assert set(out) == {'depth', 'semantics', 'semantics_color', 'confidence'}
    warnings = [m for m in logger.of('warning') if 'no CameraInfo' in m]
    assert len(warnings) == 1
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.WARN and 'CameraInfo' in report.message
    assert report.values['frames_without_camera_info'] == '3'
    # With the cache on, the latest CameraInfo is used although its stamp differs.
    assert core.set_parameters({'camera_info_cache': True}) == (True, '')
    core.on_image(image_msg(types, gradient_image()), 0)
    assert 'points' in core.process_next(ALL_SUBSCRIBED, now_fn(), 0)
    clock.now += 100.0
    assert core.diagnostics().level == DiagnosticsReport.OK


def test_bad_frame_is_counted_and_the_core_recovers(types, tiny_onnx):
    core, logger, clock = make_core(types, tiny_onnx)
    wrong = CAMERA.scaled(100, 50)
    core.on_camera_info(info_msg(types, wrong))
    core.on_image(image_msg(types, gradient_image()), 0)
    assert core.process_next(ALL_SUBSCRIBED, now_fn(), 0) == {}
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.WARN
    assert report.values['errors'] == '1'
    assert 'CameraInfo is 100x50 but the image is 256x128' in report.values['last_error']
    assert len(logger.of('error')) == 1
    core.on_camera_info(info_msg(types))
    core.on_image(image_msg(types, gradient_image()), 0)
    assert 'points' in core.process_next(ALL_SUBSCRIBED, now_fn(), 0)
    clock.now += 100.0
    assert core.diagnostics().level == DiagnosticsReport.OK


def test_model_that_fails_to_load_then_recovers(types, tiny_onnx, tmp_path):
    missing = tmp_path / 'missing.onnx'
    core, logger, clock = make_core(types, missing, model_retry_period=5.0)
    core.on_image(image_msg(types, gradient_image()), 0)
    assert core.process_next(ALL_SUBSCRIBED, now_fn(), 0) == {}
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.ERROR
    assert str(missing) in report.message and 'not found' in report.message
    assert len(logger.of('error')) == 1
    # No retry before the period; a retry after it, which succeeds once the file exists.
    missing.write_bytes(Path(tiny_onnx).read_bytes())
    clock.now += 1.0
    assert not core.load_model_if_needed()
    clock.now += 5.0
    assert core.load_model_if_needed()
    assert core.diagnostics().level == DiagnosticsReport.OK
    # A parameter change to a bad file fails at once; back to the good one recovers.
    assert core.set_parameters({'model_path': str(tmp_path / 'other.onnx')}) == (True, '')
    assert not core.load_model_if_needed()
    assert core.diagnostics().level == DiagnosticsReport.ERROR
    assert core.set_parameters({'model_path': str(tiny_onnx)}) == (True, '')
    core.on_camera_info(info_msg(types))
    core.on_image(image_msg(types, gradient_image()), 0)
    assert 'depth' in core.process_next(ALL_SUBSCRIBED, now_fn(), 0)


def test_set_parameters_rejects_with_reason_and_applies_pipeline_changes(types, tiny_onnx):
    core, _, _ = make_core(types, tiny_onnx)
    core.load_model_if_needed()
    ok, reason = core.set_parameters({'cloud_stride': 0})
    assert not ok and 'cloud_stride must be >= 1' in reason
    ok, reason = core.set_parameters({'output_qos_reliability': 'best_effort'})
    assert not ok and 'restart' in reason
    assert core.set_parameters({'cloud_stride': 4, 'output_resolution': 'camera'}) == (True, '')
    assert core.pipeline.config.cloud_stride == 4
    core.on_camera_info(info_msg(types))
    core.on_image(image_msg(types, gradient_image()), 0)
    out = core.process_next(ALL_SUBSCRIBED, now_fn(), 0)
    assert (out['points'].height, out['points'].width) == (128 // 4, 256 // 4)
    assert (out['depth'].height, out['depth'].width) == (128, 256)


def test_worker_thread_keeps_latest_frame_and_counts_drops(types, tiny_onnx):
    core, _, _ = make_core(types, tiny_onnx)
    core.load_model_if_needed()
    core.on_camera_info(info_msg(types))
    stop = threading.Event()
    published = []

    def work():
        while not stop.is_set():
            out = core.process_next(ALL_SUBSCRIBED, lambda: time.time_ns(), timeout=0.05)
            if out:
                published.append(messages.stamp_to_ns(out['depth'].header.stamp))

    worker = threading.Thread(target=work)
    worker.start()
    stamps = [STAMP_NS + index for index in range(40)]
    for stamp in stamps:        # far faster than the worker
        core.on_image(image_msg(types, gradient_image(), stamp_ns=stamp), 0)
        assert len(core.slot) <= 1
    time.sleep(0.5)
    stop.set()
    worker.join(5.0)
    report = core.diagnostics()
    processed, dropped = int(report.values['processed']), int(report.values['dropped'])
    assert processed + dropped == 40 and dropped > 0
    assert published == sorted(published) and published[-1] == stamps[-1]


def test_diagnostics_message_round_trips_through_cdr(types):
    report = DiagnosticsReport(DiagnosticsReport.ERROR, 'cannot load model',
                               {'processed': '0', 'backend': 'onnxruntime'})
    msg = diagnostics_message(types, report, STAMP_NS)
    data = types.typestore.serialize_cdr(msg, 'diagnostic_msgs/msg/DiagnosticArray')
    back = types.typestore.deserialize_cdr(data, 'diagnostic_msgs/msg/DiagnosticArray')
    status = back.status[0]
    assert status.level == 2 and status.message == 'cannot load model'
    assert {kv.key: kv.value for kv in status.values} == {'processed': '0',
                                                          'backend': 'onnxruntime'}
    assert messages.stamp_to_ns(back.header.stamp) == STAMP_NS
    assert np.isclose(len(back.status), 1)


def test_node_entry_point_without_ros_says_why(capsys):
    pytest.importorskip('monodepth_ros.node')
    try:
        import rclpy  # noqa: F401
    except ImportError:
        from monodepth_ros.node import main
        assert main([]) == 1
        assert 'depth_node needs ROS 2 (rclpy)' in capsys.readouterr().err
    else:
        pytest.skip('rclpy is installed: the launch test covers the node')


# -- node.py wiring, with a stand-in rclpy (the real one is exercised by test_launch.py) -------
class _FakePublisher:
    def __init__(self, msg_type, topic, qos):
        self.msg_type, self.topic, self.qos = msg_type, topic, qos
        self.subscribers = 0
        self.published = []

    def get_subscription_count(self):
        return self.subscribers

    def publish(self, msg):
        self.published.append(msg)


def _fake_ros_modules(overrides):
    import types as pytypes
    from dataclasses import dataclass

    @dataclass
    class ParameterDescriptor:
        description: str = ''
        read_only: bool = False

    @dataclass
    class SetParametersResult:
        successful: bool = True
        reason: str = ''

    class Parameter:
        def __init__(self, name, value):
            self.name, self.value = name, value

    class Node:
        def __init__(self, name):
            self.name = name
            self.parameters, self.descriptors = {}, {}
            self.publishers, self.subscriptions, self.timers = {}, {}, []
            self.parameter_callbacks = []

        def declare_parameter(self, name, value, descriptor):
            self.parameters[name] = overrides.get(name, value)
            self.descriptors[name] = descriptor

        def get_parameter(self, name):
            return Parameter(name, self.parameters[name])

        def add_on_set_parameters_callback(self, callback):
            self.parameter_callbacks.append(callback)

        def create_publisher(self, msg_type, topic, qos):
            self.publishers[topic] = _FakePublisher(msg_type, topic, qos)
            return self.publishers[topic]

        def create_subscription(self, msg_type, topic, callback, qos):
            self.subscriptions[topic] = (msg_type, callback, qos)

        def create_timer(self, period, callback):
            self.timers.append((period, callback))

        def get_clock(self):
            clock = pytypes.SimpleNamespace()
            clock.now = lambda: pytypes.SimpleNamespace(nanoseconds=time.time_ns())
            return clock

        def get_logger(self):
            return RecordingLogger()

        def get_name(self):
            return self.name

        def destroy_node(self):
            pass

    qos = pytypes.ModuleType('rclpy.qos')
    qos.HistoryPolicy = pytypes.SimpleNamespace(KEEP_LAST='keep_last')
    qos.ReliabilityPolicy = pytypes.SimpleNamespace(RELIABLE='reliable',
                                                    BEST_EFFORT='best_effort')
    qos.QoSProfile = lambda **kwargs: kwargs
    qos.qos_profile_sensor_data = 'sensor_data'
    node_module = pytypes.ModuleType('rclpy.node')
    node_module.Node = Node
    interfaces = pytypes.ModuleType('rcl_interfaces.msg')
    interfaces.ParameterDescriptor = ParameterDescriptor
    interfaces.SetParametersResult = SetParametersResult
    return {'rclpy': pytypes.ModuleType('rclpy'), 'rclpy.node': node_module, 'rclpy.qos': qos,
            'rcl_interfaces': pytypes.ModuleType('rcl_interfaces'),
            'rcl_interfaces.msg': interfaces}, Parameter


def test_node_wiring_with_stand_in_rclpy(types, tiny_onnx, monkeypatch):
    from monodepth_ros import node as node_module
    from monodepth_ros.messages import MessageTypes
    from monodepth_ros.node_core import OUTPUT_TOPICS

    modules, Parameter = _fake_ros_modules({
        'model_path': str(tiny_onnx), 'backend': 'onnxruntime', 'precision': 'fp32',
        'output_qos_reliability': 'best_effort'})
    for name, module in modules.items():
        monkeypatch.setitem(__import__('sys').modules, name, module)
    monkeypatch.setattr(MessageTypes, 'rclpy', classmethod(lambda cls: types))
    node = node_module._make_node_class()()
    try:
        assert set(node.parameters) == set(PARAMETER_SPECS)
        assert node.descriptors['cloud_stride'].description.startswith('Keep every n-th')
        assert node.descriptors['use_compressed_input'].read_only
        assert set(node.publishers) == set(OUTPUT_TOPICS.values()) | {'/diagnostics'}
        depth_publisher = node.publishers['~/output/depth']
        assert depth_publisher.qos['reliability'] == 'best_effort'
        assert depth_publisher.msg_type is types.Image
        assert node.publishers['~/output/points'].msg_type is types.PointCloud2
        image_type, on_image, image_qos = node.subscriptions['~/input/image']
        assert image_type is types.Image and image_qos == 'sensor_data'
        _, on_info, _ = node.subscriptions['~/input/camera_info']

        callback = node.parameter_callbacks[0]
        result = callback([Parameter('cloud_stride', 0)])
        assert not result.successful and 'cloud_stride must be >= 1' in result.reason
        assert callback([Parameter('use_sim_time', True)]).successful

        depth_publisher.subscribers = 1
        on_info(info_msg(types))
        on_image(image_msg(types, gradient_image()))
        deadline = time.monotonic() + 20
        while not depth_publisher.published and time.monotonic() < deadline:
            time.sleep(0.02)
        assert depth_publisher.published, node.core.diagnostics()
        assert messages.stamp_to_ns(depth_publisher.published[0].header.stamp) == STAMP_NS
        assert node.publishers['~/output/points'].published == []
        period, publish_diagnostics = node.timers[0]
        assert period == 1.0
        publish_diagnostics()
        status = node.publishers['/diagnostics'].published[0].status[0]
        assert status.name == 'depth_node: depth'
        assert {kv.key: kv.value for kv in status.values}['processed'] == '1'
    finally:
        node.stop()
    assert not node._worker.is_alive()


def test_rviz_config_shows_camera_depth_and_cloud():
    from monodepth_ros import topics

    rviz = yaml.safe_load((CONFIG_YAML.parent / 'kitti.rviz').read_text())
    manager = rviz['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] == topics.CAMERA_FRAME
    shown = {(d['Class'], d['Topic']['Value']) for d in manager['Displays']
             if d.get('Enabled') and 'Topic' in d}
    assert ('rviz_default_plugins/Image', topics.CAMERA_IMAGE_TOPIC) in shown
    assert ('rviz_default_plugins/Image', topics.OUTPUT_PREFIX + '/depth') in shown
    assert ('rviz_default_plugins/PointCloud2', topics.OUTPUT_PREFIX + '/points') in shown
