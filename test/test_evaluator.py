"""eval-bag end to end: KITTI frames and a synthetic drive written to real rosbag2 files."""

import csv
import json

import numpy as np
import pytest
from conftest import EIGEN_REFERENCE, KITTI_DATE_DIR

from monodepth_ros import topics
from monodepth_ros.errors import BagError, TransformError
from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig
from monodepth_ros.kitti import read_calibration, read_timestamps, read_velodyne
from monodepth_ros.projection import kitti_eigen_depth_image, lidar_depth_image

FRAMES = 3
DEPTH_TOPIC = '/test/depth'


def write_kitti_bag(path, drive_dir, depth_of=None, depth_shift_ns=0, tf_static=True,
                    frames=FRAMES, depth_encoding='32FC1', depth_size=None):
    """A bag of KITTI frames: camera_info, LiDAR, /tf_static and a depth topic.

    depth_of(scan, calibration) -> HxW metres (0 = none) gives the depth image of each frame,
    stamped with the velodyne stamp + depth_shift_ns.
    """
    from monodepth_ros.bagio import BagWriter
    from monodepth_ros.bagtools.kitti2bag import static_transforms
    from monodepth_ros.kitti import KittiDrive
    from monodepth_ros.messages import (
        array_to_image,
        depth_to_image,
        make_header,
        make_pointcloud2,
        make_tf_message,
        model_to_camera_info,
    )

    drive = KittiDrive.open(drive_dir)
    calibration = drive.calibration
    camera = calibration.camera_model(2)
    stamps = read_timestamps(drive_dir / 'velodyne_points' / 'timestamps.txt')
    with BagWriter(path, storage='mcap') as bag:
        types = bag.types
        if tf_static:
            bag.write(topics.TF_STATIC_TOPIC, make_tf_message(
                types, [(p, c, T, stamps[0]) for p, c, T in static_transforms(drive, [2])]),
                stamps[0])
        for index in range(frames):
            stamp = stamps[index]
            scan = read_velodyne(drive_dir / 'velodyne_points' / 'data' / f'{index:010d}.bin')
            bag.write(topics.LIDAR_TOPIC, make_pointcloud2(
                types, make_header(types, stamp, topics.LIDAR_FRAME), scan[:, :3]), stamp)
            depth_stamp = stamp + depth_shift_ns
            header = make_header(types, depth_stamp, topics.CAMERA_FRAME)
            bag.write(topics.CAMERA_INFO_TOPIC, model_to_camera_info(types, camera, header),
                      depth_stamp)
            depth = depth_of(scan, calibration) if depth_of else np.ones((375, 1242))
            if depth_size is not None:
                depth = np.ones(depth_size[::-1])
            if depth_encoding == 'mono8':
                message = array_to_image(types, np.zeros(depth.shape, np.uint8), 'mono8',
                                         header)
            else:
                message = depth_to_image(types, np.where(depth > 0, depth, np.nan), header)
            bag.write(DEPTH_TOPIC, message, depth_stamp)
    return path


def lidar_depth(scale):
    def depth_of(scan, calibration):
        return scale * lidar_depth_image(scan, calibration.T_cam2_from_velo,
                                         calibration.camera_model(2))
    return depth_of


def evaluate(bag, **options):
    options.setdefault('depth_topic', DEPTH_TOPIC)
    options.setdefault('progress', False)
    return BagEvaluator(EvaluationConfig(**options)).evaluate(bag)


def test_exact_depth_scores_perfectly(kitti_drive_dir, tmp_path):
    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, lidar_depth(1.0))
    result = evaluate(bag, occlusion_filter=False)
    assert result.error is None and result.frames_evaluated == FRAMES
    summary = result.summary()
    # /tf_static carries the calibration as unit quaternions (KITTI's rotations are orthonormal
    # to ~1e-7 only), so depths agree to float rounding, not bit for bit.
    for key in ('cap_80', 'cap_50'):
        assert summary[key]['abs_rel'] < 1e-6 and summary[key]['delta1'] == 1.0
        assert summary[key]['frames'] == FRAMES
    # Each frame matched its own scan (same stamp).
    assert [row['lidar_dt_ms'] for row in result.rows] == [0.0] * FRAMES


def test_scaled_depth_gives_the_scale_error_and_median_scaling_removes_it(kitti_drive_dir,
                                                                          tmp_path):
    # pred = 1.1 g: |g - p| / g = 0.1 wherever 1.1 g stays under the cap (clamped above).
    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, lidar_depth(1.1))
    summary = evaluate(bag).summary()
    assert 0.098 < summary['cap_50']['abs_rel'] <= 0.1 + 1e-6
    assert summary['cap_50']['delta1'] == 1.0
    # silog ignores a global scale (up to the clamped pixels).
    assert summary['cap_50']['silog'] < 0.01
    scaled = evaluate(bag, median_scaling=True).summary()
    assert scaled['cap_50']['abs_rel'] < 1e-6


def test_kitti_eigen_protocol_from_a_bag_matches_the_reference(kitti_drive_dir, tmp_path):
    if not EIGEN_REFERENCE.is_file():
        pytest.skip(f'{EIGEN_REFERENCE} not found')
    from monodepth_ros.bagio import BagReader
    from monodepth_ros.evaluation.ground_truth import GroundTruthBuilder, scan_from_message

    def eigen_depth(scan, calibration):
        return kitti_eigen_depth_image(scan, calibration.velo_to_image_matrix(2), 1242, 375)

    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, eigen_depth, frames=1)
    calibration = read_calibration(KITTI_DATE_DIR)
    builder = GroundTruthBuilder('kitti-eigen', calibration)
    with BagReader(bag) as reader:
        msg = next(m for _, _, m in reader.messages([topics.LIDAR_TOPIC]))
    gt = builder.build(scan_from_message(msg), calibration.camera_model(2), topics.CAMERA_FRAME)
    assert np.array_equal(gt, np.load(EIGEN_REFERENCE)['velx_0000000000'])
    result = evaluate(bag, protocol='kitti-eigen', calib_dir=str(KITTI_DATE_DIR))
    assert result.config.crop == 'garg'
    summary = result.summary()
    assert summary['cap_80']['abs_rel'] == 0.0
    # Garg crop and 1e-3 < gt < 80 select fewer pixels than the full map holds.
    assert 0 < summary['cap_80']['n_pixels'] < int((gt > 0).sum())


def test_frames_without_a_close_scan_are_skipped(kitti_drive_dir, tmp_path):
    # Depth stamped 60 ms after its scan; scans are ~103 ms apart, so the nearest is 43 ms
    # (next scan) for all but the last frame, which has only its 60 ms old scan.
    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, lidar_depth(1.0),
                          depth_shift_ns=60_000_000)
    result = evaluate(bag, max_time_diff_ms=30.0)
    assert result.frames_evaluated == 0
    assert result.frames_skipped == FRAMES
    assert all(reason.startswith('no LiDAR scan within 30 ms') for reason in result.skipped)


def test_wrong_encoding_and_size_are_skipped(kitti_drive_dir, tmp_path):
    bag = write_kitti_bag(tmp_path / 'a', kitti_drive_dir, depth_encoding='mono8')
    result = evaluate(bag)
    assert result.frames_evaluated == 0
    assert any("'mono8' is not supported" in reason for reason in result.skipped)
    bag = write_kitti_bag(tmp_path / 'b', kitti_drive_dir, depth_size=(640, 192))
    result = evaluate(bag)
    assert list(result.skipped) == ['depth image 640x192 does not match its camera_info '
                                    '1242x375']


def test_wrong_topic_lists_the_bag_topics(kitti_drive_dir, tmp_path):
    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, frames=1)
    with pytest.raises(BagError, match=r"no topic '/nope' \(depth to grade\).*"
                                       r'/kitti/velo/pointcloud \(sensor_msgs/msg/PointCloud2\)'):
        evaluate(bag, depth_topic='/nope')


def test_missing_transform_names_the_frames(kitti_drive_dir, tmp_path):
    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, tf_static=False, frames=1)
    result = evaluate(bag)
    assert isinstance(result.error, TransformError)
    assert "'velo_link'" in str(result.error) and "'camera_color_left'" in str(result.error)
    # With the calibration folder instead of /tf_static it works.
    result = evaluate(bag, calib_dir=str(KITTI_DATE_DIR))
    assert result.error is None and result.frames_evaluated == 1


def test_cli_outputs_and_truncated_bag(kitti_drive_dir, tmp_path, capsys):
    from monodepth_ros.cli import main

    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, lidar_depth(1.0))
    out = tmp_path / 'out'
    assert main(['eval-bag', str(bag), '--depth-topic', DEPTH_TOPIC, '--out', str(out),
                 '--no-progress', '--qualitative', '2']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames_evaluated'] == FRAMES and summary['frames_skipped'] == 0
    assert set(summary['cap_80']) >= {'abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'log10',
                                      'silog', 'delta1', 'delta2', 'delta3', 'sq_rel_devkit',
                                      'irmse'}
    with (out / 'frames.csv').open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == FRAMES and 'stamp_ns' in rows[0] and 'cap_50_abs_rel' in rows[0]
    for name in ('report.md', 'error_vs_distance.png', 'delta1_per_frame.png',
                 'error_histogram.png'):
        assert (out / name).is_file()
    assert len(list(out.glob('qualitative_*.png'))) == 2

    # Cut the bag's file in half: the bag cannot be opened; one line naming it, status 2.
    storage = next(bag.glob('*.mcap'))
    data = storage.read_bytes()
    storage.write_bytes(data[:len(data) // 2])
    status = main(['eval-bag', str(bag), '--depth-topic', DEPTH_TOPIC, '--out',
                   str(tmp_path / 'out2'), '--no-progress'])
    assert status == 2
    assert f'cannot open bag {bag}' in capsys.readouterr().err


def test_corruption_mid_stream_keeps_the_frames_graded_so_far(kitti_drive_dir, tmp_path,
                                                             monkeypatch):
    from monodepth_ros.bagio import BagReader
    from monodepth_ros.cli import main

    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, lidar_depth(1.0))
    real_messages = BagReader.messages

    def failing_messages(self, topics=None):
        # Messages of frame 0 and 1 then a damaged record, as a reader of a corrupt file
        # reports it.
        for count, item in enumerate(real_messages(self, topics)):
            if count == 9:
                raise BagError(f'bag {self.path} is corrupt or truncated: bad record')
            yield item

    monkeypatch.setattr(BagReader, 'messages', failing_messages)
    out = tmp_path / 'out'
    assert main(['eval-bag', str(bag), '--depth-topic', DEPTH_TOPIC, '--out', str(out),
                 '--no-progress']) == 2
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames_evaluated'] == 2
    assert f'bag {bag} is corrupt' in summary['error']
    assert 'Stopped early' in (out / 'report.md').read_text()


def test_no_frame_evaluated_exits_1(kitti_drive_dir, tmp_path):
    from monodepth_ros.cli import main

    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, depth_shift_ns=60_000_000)
    assert main(['eval-bag', str(bag), '--depth-topic', DEPTH_TOPIC, '--out',
                 str(tmp_path / 'out'), '--no-progress', '--max-time-diff-ms', '30']) == 1


def test_synthetic_bag_ground_truth_depth_agrees_with_its_lidar(tmp_path):
    synth = pytest.importorskip('monodepth_ros.bagtools.synth_bag')
    bag = synth.write_synthetic_bag(tmp_path / 'synth', frames=2, seed=0, size=(416, 128))
    result = evaluate(bag, depth_topic=topics.GT_DEPTH_TOPIC,
                      semantics_topic=topics.GT_SEMANTICS_TOPIC)
    summary = result.summary()
    assert result.frames_evaluated == 2
    assert summary['cap_80']['abs_rel'] <= 0.01
    assert summary['cap_80']['delta1'] >= 0.99
    assert summary['by_class'] and summary['by_class'][0]['n_pixels'] > 0


def test_scan_reading_fast_path_equals_the_field_reader():
    from monodepth_ros.evaluation.ground_truth import scan_from_message
    from monodepth_ros.messages import (
        MessageTypes,
        make_header,
        make_pointcloud2,
        pointcloud2_to_xyz,
    )

    types = MessageTypes.rosbags('humble')
    xyz = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0], [4.0, 5.0, 6.0]], np.float32)
    # x, y, z, intensity, ring: 20-byte points, like a driver's padded layout.
    msg = make_pointcloud2(types, make_header(types, 5, 'velo_link'), xyz,
                           fields={'intensity': np.ones(3), 'ring': np.zeros(3)})
    scan = scan_from_message(msg)
    np.testing.assert_array_equal(scan.points[[0, 2]], pointcloud2_to_xyz(msg))
    assert scan.stamp_ns == 5 and scan.frame_id == 'velo_link'
    # Big-endian data takes the field reader.
    swapped = make_pointcloud2(types, make_header(types, 5, 'velo_link'), xyz)
    swapped.is_bigendian = True
    swapped.data = np.ascontiguousarray(
        swapped.data.view('<f4').astype('>f4').view(np.uint8))
    np.testing.assert_array_equal(scan_from_message(swapped).points, xyz[[0, 2]])


def test_model_on_a_synthetic_bag(tmp_path, tiny_onnx):
    # A small randomly initialised network of the real architecture, run through the
    # DepthPipeline by ONNX Runtime: graded on every frame, with the model's own classes.
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag

    bag = write_synthetic_bag(tmp_path / 'synth', frames=2, seed=1, size=(416, 128))
    result = evaluate(bag, depth_topic=None, model=str(tiny_onnx), backend='onnxruntime',
                      precision='fp32')
    assert result.error is None and result.frames_evaluated == 2
    summary = result.summary()
    assert 'onnxruntime' in summary['depth_source']
    assert 0 < summary['cap_80']['abs_rel'] < float('inf')
    assert summary['by_class'] and len(result.qualitative) == 2
    assert result.qualitative[0].rgb.shape == (128, 416, 3)


def test_bad_input_of_one_frame_skips_that_frame_with_the_reason(tmp_path, tiny_onnx):
    # Three synthetic frames through the model: frame 0 comes with the camera_info of a
    # half-size image (CalibrationError in the pipeline), frame 1's image is 32FC1 (not a
    # colour image: MessageError), frame 2 is intact. Both bad frames are skipped and counted
    # with their reason; the run goes on and grades frame 2.
    from monodepth_ros.bagio import BagReader, BagWriter
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag
    from monodepth_ros.messages import (
        array_to_image,
        camera_info_to_model,
        make_header,
        model_to_camera_info,
        stamp_to_ns,
    )

    synth = write_synthetic_bag(tmp_path / 'synth', frames=3, seed=2, size=(160, 48))
    bag = tmp_path / 'bad_frames'
    with BagReader(synth) as reader, BagWriter(bag, storage='sqlite3') as writer:
        stamps = sorted({stamp for _, stamp, _ in reader.messages([topics.CAMERA_IMAGE_TOPIC])})
        for topic, bag_ns, msg in reader.messages():
            stamp = stamp_to_ns(msg.header.stamp) if hasattr(msg, 'header') else bag_ns
            if topic == topics.CAMERA_INFO_TOPIC and stamp == stamps[0]:
                half = camera_info_to_model(msg).scaled(80, 24)
                msg = model_to_camera_info(writer.types, half, make_header(
                    writer.types, stamp, topics.CAMERA_FRAME))
            elif topic == topics.CAMERA_IMAGE_TOPIC and stamp == stamps[1]:
                msg = array_to_image(writer.types, np.ones((48, 160), np.float32), '32FC1',
                                     make_header(writer.types, stamp, topics.CAMERA_FRAME))
            writer.write(topic, msg, bag_ns)
    result = evaluate(bag, depth_topic=None, model=str(tiny_onnx), backend='onnxruntime',
                      precision='fp32', qualitative_frames=0)
    assert result.error is None
    assert [row['stamp_ns'] for row in result.rows] == [stamps[2]]
    assert result.frames_skipped == 2 and len(result.skipped) == 2
    calibration, encoding = sorted(result.skipped, key=lambda reason: 'CameraInfo' not in reason)
    assert calibration.startswith('frame not usable: CameraInfo is 80x24 but the image is '
                                  '160x48')
    assert "'32FC1' is not a colour/mono" in encoding
    assert result.skipped_examples[0].startswith(f'{stamps[0]}: ')
    assert result.summary()['skipped_reasons'] == {calibration: 1, encoding: 1}
