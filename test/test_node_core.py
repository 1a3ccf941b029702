"""The depth node's ROS-free logic, driven with rosbags messages and a real ONNX model."""

import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

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

from monodepth_ros.errors import ConfigError
from monodepth_ros.io import messages
from monodepth_ros.model.files import default_model_path
from monodepth_ros.ros.core import NodeCore, create_engine_from_config, outputs_to_compute
from monodepth_ros.ros.diagnostics import DiagnosticsReport, Throttle, diagnostics_message
from monodepth_ros.ros.frame_slot import Frame, LatestFrameSlot
from monodepth_ros.ros.log_lines import DEFAULT_MODEL_CAVEAT, MODEL_LOADED_LINE
from monodepth_ros.ros.parameters import (
    PARAMETER_SPECS,
    PARAMETERS,
    NodeConfig,
    check_parameter,
    parameter_defaults,
    parameter_descriptor,
)
from monodepth_ros.runtime.sync import CameraInfoCache, match_stamp

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


# Stand-ins for rcl_interfaces.msg.ParameterDescriptor, FloatingPointRange and IntegerRange
# (same field names): rcl_interfaces comes with ROS 2 and cannot be installed here.
# parameter_descriptor takes the classes as arguments; the node passes the real ones.
@dataclass
class _Descriptor:
    name: str = ''
    type: int = 0
    description: str = ''
    additional_constraints: str = ''
    read_only: bool = False
    dynamic_typing: bool = False
    floating_point_range: list = field(default_factory=list)
    integer_range: list = field(default_factory=list)


@dataclass
class _Range:      # stand-in for FloatingPointRange and IntegerRange
    from_value: float = 0
    to_value: float = 0
    step: float = 0


def describe(name):
    return parameter_descriptor(PARAMETER_SPECS[name], _Descriptor, _Range, _Range)


def test_parameter_descriptors_show_types_ranges_and_choices():
    stride = describe('cloud_stride')
    assert stride.dynamic_typing and stride.name == 'cloud_stride'
    assert stride.description.startswith('Keep every n-th')
    assert stride.integer_range == [_Range(1, 64, 0)] and stride.floating_point_range == []
    assert stride.additional_constraints == '>= 1; <= 64'
    assert isinstance(stride.integer_range[0].from_value, int)
    threshold = describe('confidence_threshold')
    assert threshold.floating_point_range == [_Range(0.0, 1.0, 0.0)]
    assert threshold.additional_constraints == '>= 0.0; <= 1.0; an integer is accepted'
    max_range = describe('cloud_max_range').floating_point_range[0]
    assert (max_range.from_value, max_range.to_value) == (0.0, sys.float_info.max)
    backend = describe('backend')
    assert backend.additional_constraints == 'one of: auto, tensorrt, onnxruntime, torch'
    assert backend.integer_range == [] and backend.floating_point_range == []
    assert describe('output_qos_depth').read_only
    assert describe('cloud_rgb').additional_constraints == ''


def test_backends_and_precisions_come_from_the_engines():
    from monodepth_ros import engines

    assert PARAMETER_SPECS['backend'].choices is engines.BACKENDS
    assert PARAMETER_SPECS['precision'].choices is engines.PRECISIONS


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
    for stamp in (300, 100, 200):           # received out of stamp order
        cache.add(f'info{stamp}', stamp)
    assert cache.match(205, 10, use_latest=False) == 'info200'
    assert cache.match(250, 10, use_latest=False) is None
    # No match within the tolerance: the newest stamped at or before the image.
    assert cache.match(250, 10, use_latest=True) == 'info200'
    assert cache.match(50, 10, use_latest=True) == 'info100'    # all newer: the oldest
    cache.add('info200b', 200)               # re-sent with the same stamp: replaces
    assert cache.match(200, 0, use_latest=False) == 'info200b'
    cache.add('info400', 400)                # size 3: the oldest received (300) falls out
    assert cache.match(300, 10, use_latest=False) is None
    assert (len(cache), cache.match(100, 0, use_latest=False)) == (3, 'info100')


def test_camera_info_cache_waits_for_a_camera_info_that_comes_after_its_image():
    cache = CameraInfoCache()
    cache.add('info100', 100)
    assert cache.wait_for(100, 0, timeout=5.0) and cache.has(100, 0)     # there already
    threading.Timer(0.05, cache.add, ('info200', 200)).start()
    started = time.monotonic()
    assert cache.wait_for(200, 0, timeout=5.0)                    # woken by its arrival
    assert 0.04 < time.monotonic() - started < 4.0
    # A newer CameraInfo arriving during the wait ends it: the image's own was lost.
    threading.Timer(0.05, cache.add, ('info400', 400)).start()
    started = time.monotonic()
    assert not cache.wait_for(300, 0, timeout=5.0)
    assert time.monotonic() - started < 4.0
    # Newer ones from before the wait (a bag that looped) do not end it.
    threading.Timer(0.05, cache.add, ('info150', 150)).start()
    assert cache.wait_for(150, 0, timeout=5.0)
    started = time.monotonic()
    assert not cache.wait_for(50, 0, timeout=0.1)                 # none: the whole timeout
    assert time.monotonic() - started >= 0.1
    threading.Timer(0.05, cache.close).start()                    # the node stops
    started = time.monotonic()
    assert not cache.wait_for(60, 0, timeout=5.0)
    assert time.monotonic() - started < 4.0


def test_core_uses_the_camera_info_that_comes_after_its_image(types, tiny_onnx):
    core, _, _ = make_core(types, tiny_onnx)
    assert core.load_model_if_needed()
    core.on_camera_info(info_msg(types, stamp_ns=STAMP_NS - 10**9))     # the previous one
    later = replace(CAMERA, K=CAMERA.K * [[1.25], [1.25], [1]],
                    P=CAMERA.P * [[1.25], [1.25], [1]])       # another focal length
    core.on_image(image_msg(types, gradient_image()), 0)
    threading.Timer(0.03, core.on_camera_info, (info_msg(types, camera=later),)).start()
    out = core.process_next(ALL_SUBSCRIBED, now_fn(), 0)
    network_size = core.pipeline.network_size
    assert list(out['camera_info'].k) == list(later.scaled(*network_size).K.ravel())
    report = core.diagnostics()
    assert report.values['frames_without_camera_info'] == '0'
    assert 20.0 < float(report.values['camera_info_wait_ms_median']) < 4000.0

    # Frame 1's CameraInfo never comes: it waits the whole camera_info_wait and uses the
    # newest; frame 2 does not wait; frame 2's CameraInfo turns up late, so frame 3 waits
    # again and gets its own, which comes 30 ms after the image.
    waits = []
    wait_for = core.camera_infos.wait_for
    core.camera_infos.wait_for = lambda stamp, tolerance, timeout: (
        waits.append(timeout) or wait_for(stamp, tolerance, timeout))
    third = replace(CAMERA, K=CAMERA.K * [[1.5], [1.5], [1]], P=CAMERA.P * [[1.5], [1.5], [1]])
    expected = {1: later, 2: later, 3: third}
    for index in (1, 2, 3):
        stamp = STAMP_NS + index * 10**8
        core.on_image(image_msg(types, gradient_image(), stamp_ns=stamp), 0)
        if index == 3:
            threading.Timer(0.03, core.on_camera_info,
                            (info_msg(types, camera=third, stamp_ns=stamp),)).start()
        out = core.process_next(ALL_SUBSCRIBED, now_fn(), 0)
        assert list(out['camera_info'].k) == list(
            expected[index].scaled(*network_size).K.ravel()), index
        if index == 2:
            core.on_camera_info(info_msg(types, camera=later, stamp_ns=stamp))
    assert waits == [0.1, 0.0, 0.1]


def test_match_stamp_rule():
    stamps = [100, 200, 300]
    assert match_stamp([], 100, 10, True) is None
    assert match_stamp(stamps, 205, 10, False) == 1
    assert match_stamp(stamps, 195, 10, False) == 1
    assert match_stamp(stamps, 150, 50, False) == 0    # equally close: the earlier
    assert match_stamp(stamps, 150, 49, False) is None
    assert match_stamp(stamps, 299, 0, True) == 1      # newest at or before
    assert match_stamp(stamps, 1000, 10, True) == 2
    assert match_stamp(stamps, 1000, 10, False) is None
    assert match_stamp(stamps, 0, 10, True) == 0


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
    # The stable line the launch file waits for; a model of one's own gets no caveat.
    assert logger.of('info') == [
        f'{MODEL_LOADED_LINE} {tiny_onnx}, backend onnxruntime, precision fp32, input 128x64, '
        'output resolution network']
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.OK
    assert report.values['processed'] == '1'
    assert report.values['backend'] == 'onnxruntime'
    assert report.values['precision'] == 'fp32'
    assert report.values['tensorrt_version'] == 'n/a'
    assert report.values['far_pass'] == 'off (one inference per frame)'   # not camera-aware
    assert report.values['input_to_output_ms_median'] == '50.00'
    for stage in ('decode', 'preprocess', 'inference', 'postprocess', 'cloud'):
        median = float(report.values[f'{stage}_ms_median'])
        assert float(report.values[f'{stage}_ms_p99']) >= median >= 0.0, stage
    # Running the network takes measurable time (the values have 0.01 ms resolution).
    assert float(report.values['inference_ms_p99']) >= float(
        report.values['inference_ms_median']) > 0.0
    assert core.process_next(ALL_SUBSCRIBED, now_fn(), timeout=0) is None


def test_diagnostics_say_whether_the_far_pass_runs(types, tmp_path):
    from conftest import make_tiny_onnx

    # Camera-aware, canonical focal length 100 px: the test camera is at 100 px at the
    # 128x64 input, so the far pass (far_pass_focal 2) zooms 2x; turned off, one pass.
    model = make_tiny_onnx(tmp_path / 'aware.onnx', canonical_focal=100.0)
    for overrides, expected in (({}, 'zoom 2.00x'),
                                ({'far_pass_focal': 0.0}, 'off (one inference per frame)')):
        core, _, _ = make_core(types, model, **overrides)
        core.on_camera_info(info_msg(types))
        core.on_image(image_msg(types, gradient_image()), received_ns=STAMP_NS + 1_000_000)
        assert set(core.process_next(ALL_SUBSCRIBED, now_fn(), timeout=0)) == set(
            ALL_SUBSCRIBED)
        assert core.diagnostics().values['far_pass'] == expected


def test_diagnostics_say_whether_ground_contact_runs(types, tmp_path):
    from conftest import make_tiny_onnx

    model = make_tiny_onnx(tmp_path / 'aware.onnx', canonical_focal=100.0)
    for overrides, expected in (({}, ' px on the last frame'), ({'ground_contact': False}, 'off')):
        core, _, _ = make_core(types, model, **overrides)
        core.on_camera_info(info_msg(types))
        core.on_image(image_msg(types, gradient_image()), received_ns=STAMP_NS + 1_000_000)
        core.process_next(ALL_SUBSCRIBED, now_fn(), timeout=0)
        assert core.diagnostics().values['ground_contact'].endswith(expected)


@pytest.mark.parametrize('model_path', ['', str(default_model_path())])
def test_default_model_load_line_says_its_semantics_are_synthetic_only(types, tiny_onnx,
                                                                       model_path):
    # '' or the packaged file's path: the packaged default model (the tiny model loads here).
    logger = RecordingLogger()
    config = NodeConfig.from_parameters({'model_path': model_path, 'backend': 'onnxruntime',
                                         'precision': 'fp32'})
    core = NodeCore(types, config, logger=logger,
                    engine_factory=lambda config: create_engine_from_config(
                        replace(config, model_path=str(tiny_onnx))))
    assert core.load_model_if_needed()
    [line] = logger.of('info')
    assert line.startswith(f'{MODEL_LOADED_LINE} {model_path or "(default)"}, backend '
                           'onnxruntime')
    assert line.endswith(f'; {DEFAULT_MODEL_CAVEAT}')
    assert 'synthetic world only' in line and 'as car' in line


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
    core.on_camera_info(info_msg(types))
    bad = image_msg(types, gradient_image())
    bad.encoding = 'weird16'
    core.on_image(bad, 0)
    assert core.process_next(ALL_SUBSCRIBED, now_fn(), 0) == {}
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.WARN
    assert report.values['errors'] == '1'
    assert 'weird16' in report.values['last_error']
    assert len(logger.of('error')) == 1
    core.on_image(image_msg(types, gradient_image()), 0)
    assert 'points' in core.process_next(ALL_SUBSCRIBED, now_fn(), 0)
    clock.now += 100.0
    assert core.diagnostics().level == DiagnosticsReport.OK


def test_camera_info_of_another_size_publishes_depth_and_warns(types, tiny_onnx):
    core, logger, clock = make_core(types, tiny_onnx)
    core.on_camera_info(info_msg(types, CAMERA.scaled(100, 50)))
    for _ in range(2):
        core.on_image(image_msg(types, gradient_image()), 0)
        out = core.process_next(ALL_SUBSCRIBED, now_fn(), 0)
        assert set(out) == {'depth', 'semantics', 'semantics_color', 'confidence'}
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.WARN
    assert report.message.startswith('CameraInfo not used (CameraInfo is 100x50 but the image '
                                     'is 256x128')
    assert (report.values['camera_info_rejected'], report.values['errors'],
            report.values['processed']) == ('2', '0', '2')
    warnings = [m for m in logger.of('warning') if 'not used' in m]
    assert len(warnings) == 1 and 'CameraInfo is 100x50' in warnings[0]
    assert logger.of('error') == []
    # Only camera outputs subscribed: the frame yields nothing, still counted as processed.
    core.on_image(image_msg(types, gradient_image()), 0)
    assert core.process_next({'points': 1}, now_fn(), 0) == {}
    core.on_camera_info(info_msg(types))
    core.on_image(image_msg(types, gradient_image()), 0)
    assert 'points' in core.process_next(ALL_SUBSCRIBED, now_fn(), 0)
    clock.now += 100.0
    assert core.diagnostics().level == DiagnosticsReport.OK


class _FlakyEngine:
    """A real engine whose infer raises ``error`` the first ``failures`` times; counts close."""

    def __init__(self, engine, error=None, failures=0):
        self._engine, self._error, self._failures = engine, error, failures
        self.closed = 0

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def infer(self, batch):
        if self._failures > 0:
            self._failures -= 1
            raise self._error
        return self._engine.infer(batch)

    def close(self):
        self.closed += 1


def test_unexpected_exception_in_a_frame_is_counted_and_the_core_recovers(types, tiny_onnx):
    config = NodeConfig.from_parameters({'model_path': str(tiny_onnx),
                                         'backend': 'onnxruntime', 'precision': 'fp32'})
    logger, clock = RecordingLogger(), FakeClock()
    core = NodeCore(types, config, logger=logger, clock=clock, engine_factory=lambda c:
                    _FlakyEngine(create_engine_from_config(c), ValueError('boom'), 2))
    core.on_camera_info(info_msg(types))
    for _ in range(2):
        core.on_image(image_msg(types, gradient_image()), 0)
        assert core.process_next(ALL_SUBSCRIBED, now_fn(), 0) == {}
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.WARN
    assert report.message == 'bad input: ValueError: boom'
    assert (report.values['errors'], report.values['last_error']) == ('2', 'ValueError: boom')
    assert logger.of('error') == [f'frame {STAMP_NS} ns skipped: ValueError: boom']
    core.on_image(image_msg(types, gradient_image()), 0)
    assert 'points' in core.process_next(ALL_SUBSCRIBED, now_fn(), 0)


def test_unexpected_exception_in_model_load_is_an_error_in_diagnostics(types, tiny_onnx):
    def factory(config):
        raise KeyError('input_height')

    core = NodeCore(types, NodeConfig(), engine_factory=factory, logger=RecordingLogger(),
                    clock=FakeClock())
    assert not core.load_model_if_needed()
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.ERROR
    assert report.message == "cannot load model (default): KeyError: 'input_height'"


def test_diagnostics_report_a_stopped_worker(types, tiny_onnx):
    core, _, _ = make_core(types, tiny_onnx)
    core.load_model_if_needed()
    assert core.diagnostics().level == DiagnosticsReport.OK
    report = core.diagnostics(worker_alive=False)
    assert report.level == DiagnosticsReport.ERROR and 'worker thread stopped' in report.message


def test_frames_without_a_model_are_counted(types, tiny_onnx, tmp_path):
    core, _, _ = make_core(types, tmp_path / 'missing.onnx')
    for _ in range(2):
        core.on_image(image_msg(types, gradient_image()), 0)
        assert core.process_next(ALL_SUBSCRIBED, now_fn(), 0) == {}
    assert core.set_parameters({'model_path': str(tiny_onnx)}) == (True, '')
    core.on_image(image_msg(types, gradient_image()), 0)
    assert core.process_next({'depth': 0}, now_fn(), 0) == {}
    core.on_image(image_msg(types, gradient_image()), 0)
    core.on_image(image_msg(types, gradient_image()), 0)     # replaces the waiting one
    assert 'depth' in core.process_next(ALL_SUBSCRIBED, now_fn(), 0)
    values = core.diagnostics().values
    counts = {name: int(values[name]) for name in (
        'received', 'processed', 'dropped', 'errors', 'skipped_no_model',
        'skipped_no_subscribers')}
    assert counts == {'received': 5, 'processed': 1, 'dropped': 1, 'errors': 0,
                      'skipped_no_model': 2, 'skipped_no_subscribers': 1}
    assert counts['received'] == sum(value for name, value in counts.items()
                                     if name != 'received')


def test_reload_closes_the_previous_engine(types, tiny_onnx, tmp_path):
    engines = []

    def factory(config):
        engines.append(_FlakyEngine(create_engine_from_config(config)))
        return engines[-1]

    config = NodeConfig.from_parameters({'model_path': str(tiny_onnx),
                                         'backend': 'onnxruntime', 'precision': 'fp32'})
    core = NodeCore(types, config, engine_factory=factory, logger=RecordingLogger(),
                    clock=FakeClock())
    assert core.load_model_if_needed()
    assert core.set_parameters({'cloud_stride': 2}) == (True, '')   # no reload
    assert core.load_model_if_needed() and len(engines) == 1
    assert core.set_parameters({'engine_cache_dir': str(tmp_path)}) == (True, '')
    assert core.load_model_if_needed()
    assert [engine.closed for engine in engines] == [1, 0]
    core.release_model()
    assert [engine.closed for engine in engines] == [1, 1] and core.pipeline is None


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

    def settled():
        values = core.diagnostics().values
        return int(values['processed']) + int(values['dropped']) == len(stamps)

    # Wait for the worker to take the last frame, however loaded the machine is.
    deadline = time.monotonic() + 30.0
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.02)
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
    assert len(back.status) == 1


def test_node_entry_point_without_ros_says_why(capsys):
    pytest.importorskip('monodepth_ros.ros.node')
    try:
        import rclpy  # noqa: F401
    except ImportError:
        from monodepth_ros.ros.node import main
        assert main([]) == 1
        assert 'depth_node needs ROS 2 (rclpy)' in capsys.readouterr().err
    else:
        pytest.skip('rclpy is installed: test_ros_node.py runs the node on it')


# -- node.py wiring, with a stand-in rclpy (the real one: test_ros_node.py, test_launch.py) --
class _FakePublisher:
    def __init__(self, msg_type, topic, qos):
        self.msg_type, self.topic, self.qos = msg_type, topic, qos
        self.subscribers = 0
        self.published = []
        self.destroyed = False

    def get_subscription_count(self):
        return self.subscribers

    def publish(self, msg):
        if self.destroyed:      # rclpy raises on a destroyed publisher handle
            raise RuntimeError('cannot use Destroyable because destruction was requested')
        self.published.append(msg)


class _ParameterException(Exception):
    pass


def _fake_ros_modules(overrides):
    """Stand-ins for the rclpy pieces node.py uses, with rclpy's parameter type/range checks."""
    import types as pytypes

    class SetParametersResult:
        def __init__(self, successful=True, reason=''):
            self.successful, self.reason = successful, reason

    class Parameter:
        def __init__(self, name, value):
            self.name, self.value = name, value

    class Context:
        def __init__(self):
            self.is_ok = True

        def ok(self):
            return self.is_ok

    class Node:
        def __init__(self, name):
            self.name = name
            self.context = Context()
            self.parameters, self.descriptors = {}, {}
            self.publishers, self.subscriptions, self.timers = {}, {}, []
            self.parameter_callbacks = []
            self.logger = RecordingLogger()
            self.logger.fatal = lambda message: self.logger.records.append(('fatal', message))

        def declare_parameter(self, name, value, descriptor):
            value = overrides.get(name, value)
            # As rclpy: without dynamic typing the type is the default's; ranges are checked.
            if not descriptor.dynamic_typing and type(value) is not type(
                    PARAMETER_SPECS[name].default):
                raise _ParameterException(f'Trying to set parameter {name!r} to {value!r}')
            for limits in (descriptor.integer_range if type(value) is int else
                           descriptor.floating_point_range if type(value) is float else []):
                if not limits.from_value <= value <= limits.to_value:
                    raise _ParameterException(f'Invalid parameter value ({value}) for '
                                              'parameter. Reason: Parameter ' f'{name} out of '
                                              'range')
            self.parameters[name] = value
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
            return self.logger

        def get_name(self):
            return self.name

        def destroy_node(self):
            for publisher in self.publishers.values():
                publisher.destroyed = True

    qos = pytypes.ModuleType('rclpy.qos')
    qos.HistoryPolicy = pytypes.SimpleNamespace(KEEP_LAST='keep_last')
    qos.ReliabilityPolicy = pytypes.SimpleNamespace(RELIABLE='reliable',
                                                    BEST_EFFORT='best_effort')
    qos.DurabilityPolicy = pytypes.SimpleNamespace(TRANSIENT_LOCAL='transient_local')
    qos.QoSProfile = lambda **kwargs: kwargs
    qos.qos_profile_sensor_data = 'sensor_data'
    node_module = pytypes.ModuleType('rclpy.node')
    node_module.Node = Node
    exceptions = pytypes.ModuleType('rclpy.exceptions')
    exceptions.ParameterException = _ParameterException
    interfaces = pytypes.ModuleType('rcl_interfaces.msg')
    interfaces.ParameterDescriptor = _Descriptor
    interfaces.IntegerRange = _Range
    interfaces.FloatingPointRange = _Range
    interfaces.SetParametersResult = SetParametersResult
    rclpy = pytypes.ModuleType('rclpy')
    rclpy.exceptions = exceptions
    return {'rclpy': rclpy, 'rclpy.node': node_module, 'rclpy.qos': qos,
            'rclpy.exceptions': exceptions,
            'rcl_interfaces': pytypes.ModuleType('rcl_interfaces'),
            'rcl_interfaces.msg': interfaces}, Parameter


def _stand_in_node(types, monkeypatch, overrides):
    from monodepth_ros.io.messages import MessageTypes
    from monodepth_ros.ros import node as node_module

    modules, Parameter = _fake_ros_modules(overrides)
    for name, module in modules.items():
        monkeypatch.setitem(__import__('sys').modules, name, module)
    monkeypatch.setattr(MessageTypes, 'rclpy', classmethod(lambda cls: types))
    return node_module._make_node_class(), Parameter


def _wait_for(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_node_wiring_with_stand_in_rclpy(types, tiny_onnx, monkeypatch):
    from monodepth_ros.ros.core import OUTPUT_TOPICS

    node_class, Parameter = _stand_in_node(types, monkeypatch, {
        'model_path': str(tiny_onnx), 'backend': 'onnxruntime', 'precision': 'fp32',
        'output_qos_reliability': 'best_effort', 'cloud_max_range': 50})
    node = node_class()
    try:
        assert set(node.parameters) == set(PARAMETER_SPECS)
        assert node.descriptors['cloud_stride'].description.startswith('Keep every n-th')
        assert node.descriptors['cloud_stride'].integer_range == [_Range(1, 64, 0)]
        assert node.descriptors['use_compressed_input'].read_only
        # An integer for a float parameter (cloud_max_range:=50) is accepted as 50.0.
        assert node.core.config.cloud_max_range == 50.0
        assert set(node.publishers) == set(OUTPUT_TOPICS.values()) | {'/diagnostics'}
        depth_publisher = node.publishers['~/output/depth']
        assert depth_publisher.qos['reliability'] == 'best_effort'
        assert depth_publisher.msg_type is types.Image
        assert node.publishers['~/output/points'].msg_type is types.PointCloud2
        image_type, on_image, image_qos = node.subscriptions['~/input/image']
        assert image_type is types.Image and image_qos == 'sensor_data'
        _, on_info, _ = node.subscriptions['~/input/camera_info']
        # The scale stage's transforms (camera_height 0: from /tf_static), latched; no LiDAR.
        tf_type, _, tf_qos = node.subscriptions['/tf_static']
        assert tf_type is types.TFMessage and tf_qos['durability'] == 'transient_local'
        assert not any(topic.startswith('/lidar') for topic in node.subscriptions)

        callback = node.parameter_callbacks[0]
        result = callback([Parameter('cloud_stride', 0)])
        assert not result.successful and 'cloud_stride must be >= 1' in result.reason
        assert callback([Parameter('use_sim_time', True)]).successful

        depth_publisher.subscribers = 1
        on_info(info_msg(types))
        on_image(image_msg(types, gradient_image()))
        assert _wait_for(lambda: depth_publisher.published), node.core.diagnostics()
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


@pytest.mark.parametrize('overrides, reason', [
    ({'cloud_stride': 0}, 'parameter cloud_stride: Invalid parameter value'),
    ({'backend': 3}, 'backend must be a string, got 3'),
    ({'cloud_max_range': 'far'}, 'cloud_max_range must be a number'),
])
def test_node_refuses_bad_start_parameters_with_one_line(types, monkeypatch, overrides,
                                                         reason):
    from monodepth_ros.errors import ConfigError

    node_class, _ = _stand_in_node(types, monkeypatch, overrides)
    with pytest.raises(ConfigError, match=reason):
        node_class()


def test_node_worker_survives_errors_and_stops_cleanly(types, tiny_onnx, monkeypatch):
    node_class, _ = _stand_in_node(types, monkeypatch, {
        'model_path': str(tiny_onnx), 'backend': 'onnxruntime', 'precision': 'fp32'})
    node = node_class()
    depth_publisher = node.publishers['~/output/depth']
    depth_publisher.subscribers = 1
    _, on_image, _ = node.subscriptions['~/input/image']
    _, publish_diagnostics = node.timers[0]
    try:
        # A publish that fails while the node runs is counted; the worker carries on.
        failures = []

        def failing_publish(msg):
            failures.append(msg)
            raise KeyError('publisher gone')

        depth_publisher.publish = failing_publish
        on_image(image_msg(types, gradient_image()))
        assert _wait_for(lambda: node.core.errors == 1), node.core.diagnostics()
        assert node.core.last_error == "KeyError: 'publisher gone'"
        del depth_publisher.publish
        # A frame still running when stop() is called is finished but not published.
        assert _wait_for(lambda: node.core.pipeline is not None)
        engine = node.core.pipeline.engine
        in_inference = threading.Event()
        real_infer = engine.infer

        def slow_infer(batch):
            in_inference.set()
            time.sleep(0.3)
            return real_infer(batch)

        monkeypatch.setattr(engine, 'infer', slow_infer)
        on_image(image_msg(types, gradient_image()))
        assert in_inference.wait(20.0)
    finally:
        assert node.stop()
    assert not node._worker.is_alive()
    assert depth_publisher.published == []
    assert node.core.pipeline is None          # engine released after the worker ended
    node.destroy_node()
    publish_diagnostics()                      # a late timer after shutdown: silently nothing
    assert node.publishers['/diagnostics'].published == []
    assert node.logger.of('error') == ["worker: KeyError: 'publisher gone'"]


def test_diagnostics_of_a_node_whose_worker_died(types, tiny_onnx, monkeypatch):
    node_class, _ = _stand_in_node(types, monkeypatch, {
        'model_path': str(tiny_onnx), 'backend': 'onnxruntime', 'precision': 'fp32'})
    node = node_class()
    _, publish_diagnostics = node.timers[0]
    node.stop()
    node._running = True            # as if the thread had ended on its own
    publish_diagnostics()
    status = node.publishers['/diagnostics'].published[0].status[0]
    assert status.level == 2 and 'worker thread stopped' in status.message


def test_rviz_config_shows_camera_depth_and_cloud():
    from monodepth_ros.io import topics

    rviz = yaml.safe_load((CONFIG_YAML.parent / 'kitti.rviz').read_text())
    manager = rviz['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] == topics.CAMERA_FRAME
    shown = {(d['Class'], d['Topic']['Value']) for d in manager['Displays']
             if d.get('Enabled') and 'Topic' in d}
    assert ('rviz_default_plugins/Image', topics.CAMERA_IMAGE_TOPIC) in shown
    assert ('rviz_default_plugins/Image', topics.OUTPUT_PREFIX + '/depth') in shown
    assert ('rviz_default_plugins/PointCloud2', topics.OUTPUT_PREFIX + '/points') in shown
