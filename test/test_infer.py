"""`monodepth infer` and `monodepth infer-bag` on a real tiny ONNX model."""

import json

import cv2
import numpy as np
import pytest
from test_pipeline import (
    CAMERA,
    FRAME,
    direct_output,
    gradient_image,
    image_msg,
    info_msg,
    load_engine,
    upsample2,
)

from monodepth_ros import cli
from monodepth_ros.errors import BagError, CalibrationError, DatasetError
from monodepth_ros.io import messages, topics
from monodepth_ros.io.bagio import BagReader, BagWriter
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.outputs import MARKER_NAME
from monodepth_ros.runtime.infer import (
    colorize_depth,
    depth_to_png16,
    read_camera_info_yaml,
    read_rgb,
    write_ply,
)


@pytest.fixture(scope='module')
def engine(tiny_onnx):
    """The tiny model opened as the commands below open it (ONNX Runtime, fp32)."""
    return load_engine(tiny_onnx)


def read_ply(path):
    data = path.read_bytes()
    header, body = data.split(b'end_header\n', 1)
    count = int([line for line in header.decode().splitlines()
                 if line.startswith('element vertex')][0].split()[-1])
    dtype = [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', 'u1'), ('green', 'u1'),
             ('blue', 'u1')]
    return np.frombuffer(body, dtype=dtype, count=count)


def magma(levels) -> np.ndarray:
    """RGB of the magma colour map at the given 0..255 levels."""
    bgr = cv2.applyColorMap(np.asarray(levels, dtype=np.uint8).reshape(1, -1),
                            cv2.COLORMAP_MAGMA)[0]
    return bgr[:, ::-1]


def test_depth_png16():
    depth = np.array([[1.2346, np.nan], [-1.0, 70.0]], dtype=np.float32)
    np.testing.assert_array_equal(depth_to_png16(depth), [[1235, 0], [0, 65535]])


def test_depth_colours_span_the_image_percentiles():
    # 101 valid pixels with inverse depth 0.01 .. 0.11 (100 m .. 9.1 m) in steps of 0.001,
    # plus invalid ones (NaN, 0, negative, inf).
    inverse = 0.01 + 0.001 * np.arange(101)
    depth = np.concatenate([1.0 / inverse, [np.nan, 0.0, -3.0, np.inf]]).reshape(1, -1)
    colours = colorize_depth(depth.astype(np.float32))[0]
    # 2nd / 98th percentiles of the inverse depth: 0.012 and 0.108; between them, linear.
    expected_levels = np.clip((inverse - 0.012) / 0.096, 0, 1) * 255
    # Levels n + 0.5 (pixels 18, 50, 82) round either way after float32 depth: not compared.
    exact = np.abs(expected_levels % 1 - 0.5) > 0.01
    np.testing.assert_array_equal(colours[:101][exact], magma(np.rint(expected_levels[exact])))
    # At and below the 2nd percentile: darkest; a quarter, three quarters; the 98th and above.
    np.testing.assert_array_equal(colours[[0, 1, 2, 26, 74, 98, 100]],
                                  magma([0, 0, 0, 64, 191, 255, 255]))
    np.testing.assert_array_equal(colours[101:], np.zeros((4, 3)))


def test_depth_colours_of_a_street_use_the_whole_map():
    # A 5-50 m street: near pixels get the brightest colour, far ones the darkest.
    depth = np.linspace(5.0, 50.0, 200, dtype=np.float32).reshape(10, 20)
    colours = colorize_depth(depth)
    np.testing.assert_array_equal(colours[0, 0], magma([255])[0])
    np.testing.assert_array_equal(colours[-1, -1], magma([0])[0])


def test_depth_colours_of_one_depth_and_of_no_valid_pixel():
    np.testing.assert_array_equal(colorize_depth(np.full((2, 2), 7.0, np.float32)),
                                  np.broadcast_to(magma([128])[0], (2, 2, 3)))
    np.testing.assert_array_equal(colorize_depth(np.full((2, 2), np.nan, np.float32)),
                                  np.zeros((2, 2, 3)))


def test_write_ply_keeps_finite_points(tmp_path):
    xyz = np.array([[[1, 2, 3], [np.nan, np.nan, np.nan]]], dtype=np.float32)
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]], dtype=np.uint8)
    assert write_ply(tmp_path / 'a.ply', xyz, rgb) == 1
    vertex = read_ply(tmp_path / 'a.ply')
    assert vertex.tolist() == [(1.0, 2.0, 3.0, 10, 20, 30)]


def test_camera_info_yaml(tmp_path):
    path = tmp_path / 'cam.yaml'
    path.write_text('image_width: 256\nimage_height: 128\ncamera_name: left\n'
                    'camera_matrix: {rows: 3, cols: 3, data: [200, 0, 120, 0, 200, 60, 0, 0, 1]}\n'
                    'distortion_model: plumb_bob\n'
                    'distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n'
                    'projection_matrix: {rows: 3, cols: 4, data: [201, 0, 121, 0, 0, 201, 61, '
                    '0, 0, 0, 1, 0]}\n')
    camera = read_camera_info_yaml(path)
    assert (camera.width, camera.height) == (256, 128)
    assert (camera.fx, camera.cx, camera.cy) == (201.0, 121.0, 61.0)   # P wins over K
    path.write_text('image_width: 256\nimage_height: 128\n')
    with pytest.raises(CalibrationError, match="lacks 'camera_matrix'"):
        read_camera_info_yaml(path)


def test_read_rgb_grey_16_bit_and_rgba(tmp_path):
    # Grey: the one value in all three channels.
    grey = np.array([[0, 7], [128, 255]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'grey.png'), grey)
    np.testing.assert_array_equal(read_rgb(tmp_path / 'grey.png'),
                                  np.repeat(grey[:, :, None], 3, axis=2))
    # 16-bit colour: full scale maps to full scale, k * 257 -> k (PNG's 16 -> 8 bit rule).
    rgb8 = np.array([[[1, 2, 3], [250, 128, 0]]], dtype=np.uint8)
    rgb16 = rgb8.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / 'deep.png'), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    assert cv2.imread(str(tmp_path / 'deep.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    result = read_rgb(tmp_path / 'deep.png')
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, rgb8)
    # 16-bit grey likewise.
    cv2.imwrite(str(tmp_path / 'grey16.png'), grey.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_rgb(tmp_path / 'grey16.png'),
                                  np.repeat(grey[:, :, None], 3, axis=2))
    # RGBA: the alpha channel is dropped, colours kept whatever their alpha.
    rgba = np.array([[[10, 20, 30, 255], [40, 50, 60, 0]]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'alpha.png'), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert cv2.imread(str(tmp_path / 'alpha.png'), cv2.IMREAD_UNCHANGED).shape == (1, 2, 4)
    np.testing.assert_array_equal(read_rgb(tmp_path / 'alpha.png'), rgba[:, :, :3])
    (tmp_path / 'text.png').write_text('not an image')
    with pytest.raises(DatasetError, match='cannot read image .*text.png'):
        read_rgb(tmp_path / 'text.png')


def test_infer_writes_all_files(tmp_path, tiny_onnx, engine):
    image = tmp_path / 'frame.png'
    cv2.imwrite(str(image), cv2.cvtColor(gradient_image(), cv2.COLOR_RGB2BGR))
    out = tmp_path / 'out'
    status = cli.main(['infer', str(image), '--model', str(tiny_onnx), '--out', str(out),
                       '--backend', 'onnxruntime', '--fx', '200', '--fy', '200', '--cx',
                       '120', '--cy', '60', '--depth-upsampling', 'nearest'])
    assert status == 0
    depth = np.load(out / 'frame_depth.npy')
    assert depth.dtype == np.float32
    # The engine on the image as written, upsampled 2x (nearest) to the image size.
    expected = direct_output(engine, gradient_image())
    np.testing.assert_array_equal(depth, upsample2(expected.depth))
    np.testing.assert_array_equal(cv2.imread(str(out / 'frame_labels.png'),
                                             cv2.IMREAD_UNCHANGED),
                                  upsample2(expected.semantics))
    png = cv2.imread(str(out / 'frame_depth.png'), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16
    np.testing.assert_array_equal(png, np.rint(depth * 1000).astype(np.uint16))
    assert cv2.imread(str(out / 'frame_depth_color.png')).shape == (128, 256, 3)
    assert cv2.imread(str(out / 'frame_semantics.png')).shape == (128, 256, 3)
    vertex = read_ply(out / 'frame.ply')
    assert len(vertex) == np.isfinite(depth).sum() == 128 * 256
    # Row-major: vertex 5 is pixel (u=5, v=0); calibrated principal point (120, 60).
    assert vertex['z'][5] == pytest.approx(depth[0, 5])
    assert vertex['x'][5] == pytest.approx((5 - 120) / 200 * depth[0, 5], rel=1e-5)
    assert vertex['y'][5] == pytest.approx((0 - 60) / 200 * depth[0, 5], rel=1e-5)
    assert tuple(vertex[['red', 'green', 'blue']][5]) == tuple(gradient_image()[0, 5])


def test_infer_without_intrinsics_writes_no_ply(tmp_path, tiny_onnx, capsys):
    image = tmp_path / 'frame.png'
    cv2.imwrite(str(image), gradient_image())
    assert cli.main(['infer', str(image), '--model', str(tiny_onnx), '--out',
                     str(tmp_path / 'o'), '--backend', 'onnxruntime']) == 0
    assert not (tmp_path / 'o' / 'frame.ply').exists()
    assert cli.main(['infer', str(tmp_path / 'missing.png'), '--model', str(tiny_onnx),
                     '--out', str(tmp_path / 'o')]) == 2
    assert 'missing.png does not exist' in capsys.readouterr().err
    assert cli.main(['infer', str(image), '--model', str(tiny_onnx), '--out',
                     str(tmp_path / 'o'), '--fx', '100']) == 2
    assert 'go together' in capsys.readouterr().err


def write_input_bag(path, types_distro='humble'):
    """3 good frames (the second without its own CameraInfo) and 1 with a bad encoding."""
    stamps = [1_000_000_000 + index * 100_000_000 for index in range(4)]
    with BagWriter(path, storage='mcap', distro=types_distro) as bag:
        types = bag.types
        for index, stamp in enumerate(stamps):
            if index != 1:
                bag.write(topics.CAMERA_INFO_TOPIC, info_msg(types, stamp_ns=stamp), stamp)
            msg = image_msg(types, gradient_image(), stamp_ns=stamp)
            if index == 3:
                msg.encoding = 'weird16'
            bag.write(topics.CAMERA_IMAGE_TOPIC, msg, stamp + 1000)
    return stamps


def test_infer_bag_writes_outputs_with_input_stamps(tmp_path, tiny_onnx, engine, capsys):
    stamps = write_input_bag(tmp_path / 'in')
    out = tmp_path / 'out'
    assert cli.main(['infer-bag', str(tmp_path / 'in'), str(out), '--model', str(tiny_onnx),
                     '--backend', 'onnxruntime', '--copy-input', '--storage', 'sqlite3',
                     '--cloud-stride', '2']) == 0
    printed = capsys.readouterr().out
    assert '3 frame(s)' in printed and '1 frame(s) skipped' in printed
    with BagReader(out) as reader:
        assert reader.topics[topics.CAMERA_IMAGE_TOPIC] == 'sensor_msgs/msg/Image'
        counts = reader.message_counts
        for key, suffix in topics.OUTPUT_SUFFIXES.items():
            assert counts[topics.OUTPUT_PREFIX + suffix] == 3, key
        assert counts[topics.CAMERA_IMAGE_TOPIC] == 4
        by_topic = {}
        for topic, bag_ns, msg in reader.messages():
            by_topic.setdefault(topic, []).append((bag_ns, msg))
    for topic in (topics.OUTPUT_PREFIX + suffix for suffix in topics.OUTPUT_SUFFIXES.values()):
        got = [messages.stamp_to_ns(msg.header.stamp) for _, msg in by_topic[topic]]
        assert got == stamps[:3]
        assert [bag_ns for bag_ns, _ in by_topic[topic]] == [s + 1000 for s in stamps[:3]]
        assert all(msg.header.frame_id == FRAME for _, msg in by_topic[topic])
    # Network-resolution outputs: exactly the engine's on the input image.
    expected = direct_output(engine, gradient_image())
    for _, msg in by_topic['/monodepth/depth']:
        np.testing.assert_array_equal(messages.depth_image_to_metres(msg), expected.depth)
    for _, msg in by_topic['/monodepth/semantics']:
        np.testing.assert_array_equal(messages.image_to_array(msg), expected.semantics)
    for _, msg in by_topic['/monodepth/confidence']:
        np.testing.assert_array_equal(messages.image_to_array(msg), expected.confidence)
    cloud = by_topic['/monodepth/points'][1][1]    # frame 1 used the previous CameraInfo
    assert (cloud.height, cloud.width) == (32, 64)
    np.testing.assert_array_equal(messages.read_pointcloud2(cloud, ('z',))['z'],
                                  expected.depth[::2, ::2].ravel())
    info = by_topic['/monodepth/depth/camera_info'][0][1]
    scaled = CAMERA.scaled(128, 64)
    np.testing.assert_allclose(info.k, scaled.K.ravel())


def test_infer_bag_errors(tmp_path, tiny_onnx, capsys):
    write_input_bag(tmp_path / 'in')
    assert cli.main(['infer-bag', str(tmp_path / 'in'), str(tmp_path / 'out'), '--model',
                     str(tiny_onnx), '--camera-topic', '/nope']) == 2
    err = capsys.readouterr().err
    assert 'no topic /nope' in err and topics.CAMERA_IMAGE_TOPIC in err
    assert cli.main(['infer-bag', str(tmp_path / 'in'), str(tmp_path / 'in'), '--model',
                     str(tiny_onnx)]) == 2
    assert 'exists already' in capsys.readouterr().err
    assert cli.main(['infer-bag', str(tmp_path / 'in'), str(tmp_path / 'o2'), '--model',
                     str(tiny_onnx), '--outputs', 'depth,foo']) == 2
    assert 'subset of' in capsys.readouterr().err


def test_infer_bag_function_without_camera_info(tmp_path, tiny_onnx):
    from monodepth_ros.bagtools.infer_bag import infer_bag
    from monodepth_ros.engines import create_engine
    from monodepth_ros.runtime.pipeline import DepthPipeline

    with BagWriter(tmp_path / 'in', distro='jazzy') as bag:
        bag.write('/cam/image_raw', image_msg(bag.types, gradient_image()), 5)
    summary = infer_bag(tmp_path / 'in', tmp_path / 'out',
                        DepthPipeline(create_engine(str(tiny_onnx), backend='onnxruntime')),
                        camera_topic='/cam/image_raw', distro='jazzy', progress=False)
    assert (summary.frames, summary.frames_without_camera_info) == (1, 1)
    assert '/monodepth/points' not in summary.topics
    with BagReader(tmp_path / 'out') as reader:
        assert set(reader.topics) == {'/monodepth/depth', '/monodepth/semantics',
                                      '/monodepth/semantics/color', '/monodepth/confidence'}
    with pytest.raises(BagError, match='does not exist'):
        infer_bag(tmp_path / 'nothing', tmp_path / 'out2', None)


def test_infer_bag_matches_camera_info_like_the_node(tmp_path, tiny_onnx, capsys):
    """Stamp within 1 ms wins over an older exact-less one; a wrong-size one keeps depth."""
    from monodepth_ros.bagtools.infer_bag import format_summary, infer_bag
    from monodepth_ros.engines import create_engine
    from monodepth_ros.runtime.pipeline import DepthPipeline

    stamp = 2_000_000_000
    near = CameraModel.from_intrinsics(210.0, 210.0, 100.0, 70.0, 256, 128)
    with BagWriter(tmp_path / 'in', storage='mcap') as bag:
        types = bag.types
        bag.write(topics.CAMERA_INFO_TOPIC, info_msg(types, stamp_ns=stamp - 50_000_000), 1)
        bag.write(topics.CAMERA_INFO_TOPIC, info_msg(types, near, stamp_ns=stamp + 500_000), 2)
        bag.write(topics.CAMERA_IMAGE_TOPIC, image_msg(types, gradient_image(), stamp), 3)
        wrong = info_msg(types, CAMERA.scaled(100, 50), stamp_ns=stamp + 100_000_000)
        bag.write(topics.CAMERA_INFO_TOPIC, wrong, 4)
        bag.write(topics.CAMERA_IMAGE_TOPIC,
                  image_msg(types, gradient_image(), stamp + 100_000_000), 5)
    engine = create_engine(str(tiny_onnx), backend='onnxruntime')
    summary = infer_bag(tmp_path / 'in', tmp_path / 'out', DepthPipeline(engine),
                        progress=False)
    assert (summary.frames, summary.errors, summary.camera_info_rejected) == (2, 0, 1)
    assert '1 frame(s) whose CameraInfo did not fit' in format_summary(summary, engine)
    with BagReader(tmp_path / 'out') as reader:
        counts = reader.message_counts
        infos = [msg for _, _, msg in reader.messages(['/monodepth/depth/camera_info'])]
    assert counts['/monodepth/depth'] == 2 and counts['/monodepth/points'] == 1
    assert len(infos) == 1
    np.testing.assert_allclose(infos[0].k, near.scaled(128, 64).K.ravel())


def test_engine_cache_dir_help_names_the_real_default():
    import argparse

    from monodepth_ros.runtime.infer import add_model_arguments

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    text = ' '.join(parser.format_help().split())
    assert '$MONODEPTH_ENGINE_CACHE, else ~/.cache/monodepth_ros/engines' in text
    assert '<folder>/onnx' in text


def test_demo_with_a_given_model(tmp_path, tiny_onnx, capsys):
    out = tmp_path / 'demo'
    assert cli.main(['demo', '--out', str(out), '--frames', '2', '--model',
                     str(tiny_onnx), '--backend', 'onnxruntime']) == 0
    printed = capsys.readouterr().out
    assert 'abs_rel' in printed and f'output bag:  {out / "drive_depth"}' in printed
    with BagReader(out / 'drive_depth') as reader:
        counts = reader.message_counts
    # The output bag: the synthetic drive's topics (copied) and every pipeline output, one
    # message per frame each (the static TF once).
    outputs = {topics.OUTPUT_PREFIX + suffix for suffix in topics.OUTPUT_SUFFIXES.values()}
    inputs = {topics.CAMERA_IMAGE_TOPIC, topics.CAMERA_INFO_TOPIC, topics.LIDAR_TOPIC,
              topics.TF_TOPIC, topics.GT_DEPTH_TOPIC, topics.GT_SEMANTICS_TOPIC}
    assert counts == {**{topic: 2 for topic in outputs | inputs}, topics.TF_STATIC_TOPIC: 1}
    # Every frame asked for was graded against the LiDAR.
    summary = json.loads((out / 'report' / 'summary.json').read_text())
    assert summary['frames_evaluated'] == 2 and summary['error'] is None
    assert summary['frames_skipped']['count'] == 0
    # Both bags in the storage a stock Humble opens (the default distro).
    assert list((out / 'drive').glob('*.db3')) and list((out / 'drive_depth').glob('*.db3'))
    # A second run replaces its own previous outputs instead of failing on them.
    assert cli.main(['demo', '--out', str(out), '--frames', '1', '--model',
                     str(tiny_onnx), '--backend', 'onnxruntime']) == 0
    summary = json.loads((out / 'report' / 'summary.json').read_text())
    assert summary['frames_evaluated'] == 1


@pytest.mark.parametrize('command, positional', [
    ('synth-bag', ['out']), ('kitti2bag', ['drive', 'out']),
    ('infer-bag', ['in', 'out']), ('demo', [])])
def test_bag_writing_commands_default_to_the_distros_storage(command, positional, monkeypatch):
    monkeypatch.setenv('COLUMNS', '1000')     # help lines unwrapped
    parser, _ = cli.build_parser(command)
    args = parser.parse_args(positional)
    assert (args.storage, args.distro) == (None, 'humble')
    help_text = parser.format_help()
    assert "default: the distro's default, sqlite3 for humble, mcap for jazzy" in help_text
    assert 'ros-humble-rosbag2-storage-mcap' in help_text and '(default humble)' in help_text
    assert parser.parse_args([*positional, '--distro', 'jazzy', '--storage', 'sqlite3']
                             ).storage == 'sqlite3'


def test_synth_bag_storage_follows_the_distro(tmp_path, capsys):
    assert cli.main(['synth-bag', str(tmp_path / 'humble'), '--frames', '1',
                     '--size', '64x24']) == 0
    assert 'sqlite3, humble' in capsys.readouterr().out
    assert cli.main(['synth-bag', str(tmp_path / 'jazzy'), '--frames', '1', '--size', '64x24',
                     '--distro', 'jazzy']) == 0
    assert 'mcap, jazzy' in capsys.readouterr().out
    for distro, storage in (('humble', 'humble.db3'), ('jazzy', 'jazzy.mcap')):
        assert sorted(p.name for p in (tmp_path / distro).iterdir()) == [
            MARKER_NAME, storage, 'metadata.yaml']
