"""Hostile inputs: every one is refused with one line, or skipped and counted with the reason.

Option values out of range, topic names ROS rejects, PointCloud2 fields that overlap, KITTI
timestamps that go backwards, images over the pixel limit, synthetic drives that cannot fit,
empty and pickled-object checkpoints, an ONNX whose graph disagrees with its metadata, a
camera_info option naming an Image topic. The bags are real rosbag2 files (CDR through the
rosbags typestore), the models real ONNX Runtime sessions.
"""

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from test_pipeline import STAMP_NS, gradient_image, image_msg, info_msg

from monodepth_ros import cli
from monodepth_ros.errors import ConfigError, DatasetError, MessageError, ModelFileError
from monodepth_ros.io import messages, topics

DDAD_SCENE = SHARED_DATA / 'ddad' / 'ddad_scene_01'


def run_cli(argv, capsys) -> tuple[int, list[str], str]:
    """Exit status of ``monodepth ARGV``, its stderr lines and its stdout."""
    status = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.err.strip().splitlines(), captured.out


@pytest.fixture(scope='module')
def types():
    return messages.MessageTypes.rosbags('humble')


@pytest.fixture(scope='module')
def synth_bag(tmp_path_factory) -> Path:
    """Three small synthetic frames with LiDAR (read-only for the tests)."""
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag

    return write_synthetic_bag(tmp_path_factory.mktemp('hostile') / 'synth', frames=3, seed=3,
                               size=(160, 48), progress=False)


def rewrite_bag(source: Path, out: Path, change) -> Path:
    """Copy a bag message by message; ``change(topic, msg, types)`` returns the one to write."""
    from monodepth_ros.io.bagio import BagReader, BagWriter

    with BagReader(source) as reader, BagWriter(out, storage='sqlite3') as writer:
        for topic, bag_ns, msg in reader.messages():
            writer.write(topic, change(topic, msg, writer.types), bag_ns)
    return out


# -- numeric options and topic names: argparse's one-line error, status 2 ---------------------
BAD_OPTIONS = [
    (['eval-bag', 'BAG', '--baseline', 'row-prior', '--out', 'OUT', '--min-depth', '-1'],
     "argument --min-depth: expected a number > 0 and <= 50, got '-1'"),
    (['eval-bag', 'BAG', '--baseline', 'row-prior', '--out', 'OUT', '--max-time-diff-ms',
      'nan'], "argument --max-time-diff-ms: expected a finite number, got 'nan'"),
    (['eval-bag', 'BAG', '--baseline', 'row-prior', '--out', 'OUT', '--qualitative', '-1'],
     "argument --qualitative: expected an integer >= 0, got '-1'"),
    (['eval-bag', 'BAG', '--baseline', 'row-prior', '--out', 'OUT', '--lidar-topic',
      'velo points'], "argument --lidar-topic: topic name 'velo points' is not fully "
     'qualified'),
    (['eval-bag', 'BAG', '--depth-topic', '/monodepth//depth', '--out', 'OUT'],
     "argument --depth-topic: topic name '/monodepth//depth' has an invalid token ''"),
    (['adapt', 'BAG', '--out', 'OUT.pt', '--threads', '0'],
     "argument --threads: expected an integer >= 1, got '0'"),
    (['adapt', 'BAG', '--out', 'OUT.pt', '--lr', 'nan'],
     "argument --lr: expected a finite number, got 'nan'"),
    (['adapt', 'BAG', '--out', 'OUT.pt', '--minutes', 'inf'],
     "argument --minutes: expected a finite number, got 'inf'"),
    (['adapt', 'BAG', '--out', 'OUT.pt', '--seed', '-1'],
     "argument --seed: expected an integer >= 0 and <= 4294967295, got '-1'"),
    (['adapt', 'BAG', '--out', 'OUT.pt', '--camera-topic', '/cam/2d/image'],
     "argument --camera-topic: topic name '/cam/2d/image' has an invalid token '2d'"),
    (['export', 'model.pt', '--height', '0'],
     "argument --height: expected an integer >= 1 and <= 8192, got '0'"),
    (['synth-bag', 'OUT', '--frames', '0'],
     "argument --frames: expected an integer >= 1, got '0'"),
    (['infer-bag', 'BAG', 'OUT', '--cloud-stride', '0'],
     "argument --cloud-stride: expected an integer >= 1, got '0'"),
    (['infer-bag', 'BAG', 'OUT', '--confidence-threshold', 'nan'],
     "argument --confidence-threshold: expected a finite number, got 'nan'"),
    (['infer-bag', 'BAG', 'OUT', '--prefix', 'monodepth'],
     "argument --prefix: topic name 'monodepth' is not fully qualified"),
    (['infer', 'image.png', '--out', 'OUT', '--fx', 'nan'],
     "argument --fx: expected a finite number, got 'nan'"),
    (['train', '--config', 'recipe.yaml', '--max-minutes', '-5'],
     "argument --max-minutes: expected a number > 0, got '-5'"),
    (['build-engine', 'model.onnx', '--workspace-gb', 'inf'],
     "argument --workspace-gb: expected a finite number, got 'inf'"),
    (['demo', '--frames', '-3'], "argument --frames: expected an integer >= 1, got '-3'"),
]


@pytest.mark.parametrize('argv, message', BAD_OPTIONS, ids=[
    ' '.join(argv[:1] + argv[-2:]) for argv, _ in BAD_OPTIONS])
def test_bad_option_values_are_refused_with_one_line(argv, message, tmp_path, capsys):
    argv = [str(tmp_path / arg) if arg in ('BAG', 'OUT', 'OUT.pt') else arg for arg in argv]
    status, lines, _ = run_cli(argv, capsys)
    assert status == 2
    assert lines[-1].startswith(f'monodepth {argv[0]}: error: {message}')
    assert not any(path.exists() for path in tmp_path.iterdir()), 'nothing is written'


@pytest.mark.parametrize('name', ['/kitti/velo/pointcloud', '/a', '/_private/x_1',
                                  '/ddad/CAMERA_01/image_raw/compressed'])
def test_valid_topic_names_pass(name):
    assert topics.validate_topic_name(name) == name


@pytest.mark.parametrize('name, problem', [
    ('', 'not fully qualified'), ('/', 'not fully qualified'),
    ('camera/image', 'not fully qualified'), ('/camera/', "invalid token ''"),
    ('/camera//image', "invalid token ''"), ('/camera/9image', "invalid token '9image'"),
    ('/camera/image raw', "invalid token 'image raw'"), ('~/image', 'not fully qualified'),
    ('/camera/{ns}', "invalid token '{ns}'"), ('/kamera/bild-roh', "invalid token 'bild-roh'"),
])
def test_invalid_topic_names_are_refused(name, problem):
    with pytest.raises(ConfigError, match=problem) as error:
        topics.validate_topic_name(name)
    assert '\n' not in str(error.value)


def test_recipe_values_must_be_finite():
    from monodepth_ros.training.config import config_from_dict, validate

    base = {'data': {'depth': {'kind': 'synthetic'}}}
    for override, message in (('optim.lr=.nan', 'optim.lr: expected a finite number'),
                              ('optim.weight_decay=.inf', 'optim.weight_decay: expected a '
                               'finite number'),
                              ('max_minutes=-.inf', 'max_minutes: expected a finite number')):
        with pytest.raises(ConfigError, match=message):
            config_from_dict(base, [override])
    with pytest.raises(ConfigError, match='optim.lr must be > 0'):
        validate(config_from_dict(base, ['optim.lr=0']))
    with pytest.raises(ConfigError, match='must be at least 32'):
        validate(config_from_dict(base, ['data.height=0']))
    with pytest.raises(ConfigError, match="data.depth.lidar_topic: topic name 'velo' is not "
                                          'fully qualified'):
        validate(config_from_dict(base, ['data.depth.lidar_topic=velo']))


# -- PointCloud2 fields: no overlap, inside point_step --------------------------------------------
def overlapping_cloud(types, msg):
    """The same scan, its x/y/z declared FLOAT64 at offsets 0/4/8 (they overlap)."""
    fields = [types.PointField(name=name, offset=offset, datatype=8, count=1)
              for name, offset in (('x', 0), ('y', 4), ('z', 8))]
    return types.PointCloud2(header=msg.header, height=msg.height, width=msg.width,
                             fields=fields, is_bigendian=msg.is_bigendian,
                             point_step=msg.point_step, row_step=msg.row_step, data=msg.data,
                             is_dense=msg.is_dense)


def test_overlapping_or_protruding_fields_are_refused(types):
    header = messages.make_header(types, STAMP_NS, 'velo_link')
    cloud = messages.make_pointcloud2(types, header, np.ones((4, 3), np.float32),
                                      fields={'intensity': np.zeros(4, np.float32)})
    assert cloud.point_step == 16 and messages.pointcloud2_to_xyz(cloud).shape == (4, 3)
    with pytest.raises(MessageError, match=r"fields 'x' \(bytes 0\.\.7\) and 'y' \(bytes "
                                           r'4\.\.11\) overlap'):
        messages.read_pointcloud2(overlapping_cloud(types, cloud))
    # A field the reader was not asked for is checked too: it would mean the layout is wrong.
    wide = types.PointCloud2(
        header=header, height=1, width=4, fields=list(cloud.fields[:3]) + [types.PointField(
            name='intensity', offset=10, datatype=7, count=1)], is_bigendian=False,
        point_step=12, row_step=48, data=cloud.data[:48], is_dense=False)
    with pytest.raises(MessageError, match="field 'intensity' spans bytes 10..13, which does "
                                           'not fit in point_step 12'):
        messages.read_pointcloud2(wide, ('x',))


def test_eval_bag_and_the_row_prior_skip_scans_with_overlapping_fields(synth_bag, tmp_path):
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig

    stamps = []

    def garble_second_scan(topic, msg, types):
        if topic != topics.LIDAR_TOPIC:
            return msg
        stamps.append(msg.header.stamp)
        return overlapping_cloud(types, msg) if len(stamps) == 2 else msg

    bag = rewrite_bag(synth_bag, tmp_path / 'overlap', garble_second_scan)
    result = BagEvaluator(EvaluationConfig(baseline='row-prior', qualitative_frames=0,
                                           progress=False)).evaluate(bag)
    assert result.error is None
    scans = result.summary()['scans_skipped']
    assert scans['count'] == 1
    [reason] = scans['reasons']
    assert "fields 'x' (bytes 0..7) and 'y' (bytes 4..11) overlap" in reason
    # The frame of the garbled scan has no ground truth: skipped, never graded on garbage.
    assert len(result.rows) == 2 and result.frames_skipped == 1


# -- KITTI timestamps that go backwards ---------------------------------------------------------
def test_kitti2bag_refuses_image_timestamps_that_go_backwards(kitti_drive_dir, tmp_path,
                                                             capsys):
    date_dir = tmp_path / kitti_drive_dir.parent.name
    drive = date_dir / kitti_drive_dir.name
    drive.mkdir(parents=True)
    for calib in kitti_drive_dir.parent.glob('calib_*.txt'):
        (date_dir / calib.name).symlink_to(calib)
    for folder in kitti_drive_dir.iterdir():
        if folder.name != 'image_02':
            (drive / folder.name).symlink_to(folder)
    (drive / 'image_02').mkdir()
    (drive / 'image_02' / 'data').symlink_to(kitti_drive_dir / 'image_02' / 'data')
    lines = (kitti_drive_dir / 'image_02' / 'timestamps.txt').read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    stamps_file = drive / 'image_02' / 'timestamps.txt'
    stamps_file.write_text('\n'.join(lines) + '\n')
    out = tmp_path / 'bag'
    status, err, _ = run_cli(['kitti2bag', drive, out, '--no-progress'], capsys)
    assert status == 2
    assert err == [f'monodepth kitti2bag: error: {stamps_file}:5: timestamp {lines[4]!r} is '
                   'earlier than line 4; expected timestamps that never go backwards']
    assert not out.exists()
    from monodepth_ros.io.kitti import read_timestamps
    with pytest.raises(DatasetError, match=':5: timestamp'):
        read_timestamps(stamps_file)


# -- pixel limits -------------------------------------------------------------------------------
def png_header(width: int, height: int) -> bytes:
    """The first bytes of an 8-bit RGB PNG of that size: signature and IHDR, no pixels."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    chunk = b'IHDR' + ihdr
    return (b'\x89PNG\r\n\x1a\n' + struct.pack('>I', len(ihdr)) + chunk
            + struct.pack('>I', zlib.crc32(chunk)))


def compressed(types, data: bytes, fmt='png', stamp_ns=STAMP_NS):
    return types.CompressedImage(
        header=messages.make_header(types, stamp_ns, 'camera_color_left'), format=fmt,
        data=np.frombuffer(data, dtype=np.uint8))


def test_image_sizes_are_read_from_the_header():
    import cv2

    for suffix, params in (('.png', []), ('.jpg', []),
                           ('.jpg', [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])):
        ok, encoded = cv2.imencode(suffix, np.zeros((37, 53, 3), np.uint8), params)
        assert ok and messages.compressed_image_size(encoded.tobytes()) == (53, 37)
    assert messages.compressed_image_size(png_header(20000, 15000)) == (20000, 15000)


def test_images_over_the_pixel_limit_are_refused_before_decoding(types):
    limit = f'over the limit of {messages.MAX_IMAGE_PIXELS:,}'
    with pytest.raises(MessageError, match=f'CompressedImage is 20000x15000 = 300,000,000 '
                                           f'pixels, {limit}'):
        messages.compressed_image_to_rgb(compressed(types, png_header(20000, 15000)))
    raw = types.Image(header=messages.make_header(types, STAMP_NS, 'camera'), height=15000,
                      width=20000, encoding='rgb8', is_bigendian=0, step=60000,
                      data=np.zeros(16, np.uint8))
    with pytest.raises(MessageError, match=f'image is 20000x15000 = 300,000,000 pixels, '
                                           f'{limit}'):
        messages.image_to_rgb(raw)
    with pytest.raises(MessageError, match='neither|expected a png or jpeg header'):
        messages.compressed_image_to_rgb(compressed(types, b'GIF89a' + bytes(20)))


def test_the_node_counts_an_oversized_image_as_a_frame_error(types, tiny_onnx):
    from test_node_core import ALL_SUBSCRIBED, make_core, now_fn

    from monodepth_ros.ros.diagnostics import DiagnosticsReport

    core, logger, _ = make_core(types, tiny_onnx)
    core.on_camera_info(info_msg(types))
    core.on_image(compressed(types, png_header(20000, 15000)), 0)
    assert core.process_next(ALL_SUBSCRIBED, now_fn(), 0) == {}
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.WARN
    assert report.values['errors'] == '1'
    assert '20000x15000 = 300,000,000 pixels, over the limit' in report.values['last_error']
    core.on_image(image_msg(types, gradient_image()), 0)
    assert 'depth' in core.process_next(ALL_SUBSCRIBED, now_fn(), 0)


def test_infer_bag_skips_an_oversized_image_with_the_reason(synth_bag, tiny_onnx, tmp_path,
                                                           capsys, caplog):
    import cv2

    seen = []

    def compress(topic, msg, types):
        if topic != topics.CAMERA_IMAGE_TOPIC:
            return msg
        seen.append(msg)
        if len(seen) == 2:
            return compressed(types, png_header(20000, 15000),
                              stamp_ns=messages.stamp_to_ns(msg.header.stamp))
        bgr = np.ascontiguousarray(messages.image_to_rgb(msg)[..., ::-1])
        ok, data = cv2.imencode('.png', bgr)
        return compressed(types, data.tobytes(), stamp_ns=messages.stamp_to_ns(msg.header.stamp))

    bag = rewrite_bag(synth_bag, tmp_path / 'compressed', compress)
    out = tmp_path / 'out'
    status, _, printed = run_cli(['infer-bag', bag, out, '--model', tiny_onnx, '--backend',
                                  'onnxruntime', '--no-progress'], capsys)
    assert status == 0
    assert ': 2 frame(s) through' in printed and '1 frame(s) skipped' in printed
    assert any('over the limit' in record.getMessage() for record in caplog.records)


def test_synth_bag_refuses_sizes_and_lengths_it_cannot_hold(tmp_path, capsys):
    from monodepth_ros.bagtools.synth_bag import MAX_RENDER_PIXELS

    out = tmp_path / 'drive'
    status, err, _ = run_cli(['synth-bag', out, '--size', '20000x20000'], capsys)
    assert status == 2
    assert err == [f'monodepth synth-bag: error: --size 20000x20000 is 400,000,000 pixels; '
                   f'expected at most {MAX_RENDER_PIXELS:,} (4096x4096)']
    status, err, _ = run_cli(['synth-bag', out, '--frames', '1000000000'], capsys)
    assert status == 2 and len(err) == 1
    assert err[0].startswith('monodepth synth-bag: error: 1000000000 frame(s) of 1242x375 need '
                             'up to ')
    assert f'{tmp_path} has ' in err[0] and err[0].endswith(' GiB free')
    assert not out.exists()


def test_synth_bag_refuses_a_render_larger_than_the_available_memory(tmp_path, monkeypatch):
    from monodepth_ros.bagtools import synth_bag

    monkeypatch.setattr(synth_bag, '_available_memory', lambda: 2**30)
    with pytest.raises(ConfigError, match=r'--size 4096x4096 needs about 6\.4 GiB of memory to '
                                          r'render; 1\.0 GiB is available'):
        synth_bag.write_synthetic_bag(tmp_path / 'drive', frames=1, size=(4096, 4096))
    assert not (tmp_path / 'drive').exists()


# -- model files --------------------------------------------------------------------------------
def test_empty_and_pickled_object_checkpoints_are_one_line(synth_bag, tmp_path, capsys):
    import torch

    from monodepth_ros.model.checkpoint import read_checkpoint

    empty = tmp_path / 'empty.pt'
    empty.touch()
    status, err, _ = run_cli(['adapt', synth_bag, '--model', empty, '--out', tmp_path / 'a.pt'],
                          capsys)
    assert status == 2 and len(err) == 1 and f'{empty} is empty' in err[0]
    with pytest.raises(ModelFileError, match=r'checkpoint .*empty\.pt is empty \(0 bytes\)'):
        read_checkpoint(empty)

    objects = tmp_path / 'objects.pt'
    torch.save({'format': 'monodepth_ros.checkpoint/1', 'model': {}, 'what': Path('x')}, objects)
    with pytest.raises(ModelFileError) as error:
        read_checkpoint(objects)
    message = str(error.value)
    assert '\n' not in message
    assert 'holds Python objects other than tensors' in message
    assert 'only if you trust the file, re-save its weights' in message
    assert 'Re-running' not in message and 'add_safe_globals' not in message


@pytest.fixture(scope='module')
def mismatched_onnx(tiny_onnx, tmp_path_factory) -> Path:
    """The tiny model (graph input 64x128) whose metadata claims 96x320."""
    import onnx

    from monodepth_ros.model.metadata import METADATA_KEY

    model = onnx.load(str(tiny_onnx))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            data = json.loads(prop.value)
            data.update(input_height=96, input_width=320)
            prop.value = json.dumps(data)
    path = tmp_path_factory.mktemp('mismatch') / 'mismatch.onnx'
    onnx.save(model, str(path))
    return path


MISMATCH = ("has a graph input 'image' of shape ?x3x64x128, but its metadata says 3x96x320 "
            '(CxHxW)')


def test_onnx_graph_that_disagrees_with_its_metadata_fails_at_load(mismatched_onnx, synth_bag,
                                                                    tmp_path, capsys):
    from monodepth_ros.engines.onnxruntime_engine import OnnxRuntimeEngine

    with pytest.raises(ModelFileError, match=re.escape(MISMATCH)):
        OnnxRuntimeEngine(mismatched_onnx)
    out = tmp_path / 'out'
    status, err, _ = run_cli(['infer-bag', synth_bag, out, '--model', mismatched_onnx,
                           '--backend', 'onnxruntime', '--no-progress'], capsys)
    assert status == 2 and len(err) == 1 and MISMATCH in err[0]
    assert not out.exists()
    status, err, _ = run_cli(['eval-bag', synth_bag, '--model', mismatched_onnx, '--backend',
                           'onnxruntime', '--out', tmp_path / 'report', '--no-progress'], capsys)
    assert status == 2 and len(err) == 1 and MISMATCH in err[0]
    assert not (tmp_path / 'report').exists()


def test_the_node_reports_a_mismatched_model_as_failed_to_load(types, mismatched_onnx):
    from test_node_core import make_core

    from monodepth_ros.ros.diagnostics import DiagnosticsReport

    core, logger, _ = make_core(types, mismatched_onnx)
    assert not core.load_model_if_needed()
    report = core.diagnostics()
    assert report.level == DiagnosticsReport.ERROR
    assert MISMATCH in report.message and MISMATCH in logger.of('error')[0]


# -- camera_info topics -------------------------------------------------------------------------
def test_camera_info_topic_naming_an_image_topic_is_one_line(synth_bag, tiny_onnx, tmp_path,
                                                             capsys):
    expected = (f'topic {topics.CAMERA_IMAGE_TOPIC} in {synth_bag} carries sensor_msgs/msg/'
                'Image, expected sensor_msgs/msg/CameraInfo')
    status, err, _ = run_cli(['infer-bag', synth_bag, tmp_path / 'out', '--model', tiny_onnx,
                           '--backend', 'onnxruntime', '--camera-info-topic',
                           topics.CAMERA_IMAGE_TOPIC, '--no-progress'], capsys)
    assert status == 2 and err == [f'monodepth infer-bag: error: {expected}']
    status, err, _ = run_cli(['eval-bag', synth_bag, '--baseline', 'row-prior', '--out',
                           tmp_path / 'report', '--camera-info-topic', topics.CAMERA_IMAGE_TOPIC,
                           '--no-progress'], capsys)
    assert status == 2 and err == [f'monodepth eval-bag: error: {expected}']


def test_camera_info_of_a_compressed_image_topic_is_its_sibling():
    available = {'/cam/image_raw/compressed': 'sensor_msgs/msg/CompressedImage',
                 '/cam/camera_info': 'sensor_msgs/msg/CameraInfo'}
    assert topics.camera_info_topic_for('/cam/image_raw/compressed', available) == \
        '/cam/camera_info'
    assert topics.camera_info_topic_for('/cam/image_raw', available) == '/cam/camera_info'
    assert topics.camera_info_topic_for('/monodepth/depth', {
        '/monodepth/depth/camera_info': 'x', '/monodepth/camera_info': 'x'}) == \
        '/monodepth/depth/camera_info'


def test_infer_bag_finds_the_camera_info_of_a_compressed_topic(tiny_onnx, tmp_path, capsys):
    if not DDAD_SCENE.is_dir():
        pytest.skip(f'DDAD scene not found at {DDAD_SCENE}')
    from monodepth_ros.io.bagio import BagReader

    out = tmp_path / 'out'
    status, _, printed = run_cli([
        'infer-bag', DDAD_SCENE, out, '--model', tiny_onnx, '--backend', 'onnxruntime',
        '--camera-topic', '/ddad/CAMERA_01/image_raw/compressed', '--outputs',
        'depth,camera_info', '--no-progress'], capsys)
    assert status == 0 and 'without CameraInfo' not in printed
    with BagReader(out) as reader:
        assert reader.message_counts['/monodepth/depth/camera_info'] == 3



# -- operating-system errors: the path and what was expected, no raw '[Errno N]' ----------------
def test_os_errors_name_the_path_and_what_was_expected(tmp_path, capsys):
    from monodepth_ros.command import describe_os_error

    error = NotADirectoryError(20, 'Not a directory', '/data/a_file/out')
    assert describe_os_error(error) == ('/data/a_file/out: Not a directory; expected folders '
                                        'along the path, not a file')
    error = FileExistsError(17, 'File exists', '/data/out')
    assert describe_os_error(error) == ('/data/out: File exists; expected a path that does not '
                                        'exist yet (or a folder where a folder is needed)')
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    status, err, _ = run_cli(['synth-bag', blocker / 'drive', '--frames', '1', '--size', '32x16',
                              '--no-progress'], capsys)
    assert status == 2 and len(err) == 1
    assert str(blocker) in err[0] and '; expected ' in err[0] and '[Errno' not in err[0]
