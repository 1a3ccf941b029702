"""eval-bag end to end: KITTI frames and a synthetic drive written to real rosbag2 files."""

import csv
import json

import numpy as np
import pytest
from conftest import EIGEN_REFERENCE, KITTI_DATE_DIR, camera_frames_by_stamp

from monodepth_ros.errors import BagError, TransformError
from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig
from monodepth_ros.evaluation.metrics import crop_bounds
from monodepth_ros.io import topics
from monodepth_ros.io.kitti import read_calibration, read_timestamps, read_velodyne
from monodepth_ros.io.messages import pointcloud2_to_xyz
from monodepth_ros.runtime.projection import (
    filter_occluded,
    kitti_eigen_depth_image,
    lidar_depth_image,
)

FRAMES = 3
DEPTH_TOPIC = '/test/depth'


def write_kitti_bag(path, drive_dir, depth_of=None, depth_shift_ns=0, tf_static=True,
                    frames=FRAMES, depth_encoding='32FC1', depth_size=None,
                    depth_write_delay_ns=0, tf_static_after_frame=None, bad_scan_frames=(),
                    storage='mcap', camera_images=False):
    """A bag of KITTI frames: camera_info, LiDAR, /tf_static and a depth topic.

    depth_of(scan, calibration) -> HxW metres (0 = none) gives the depth image of each frame,
    stamped with the velodyne stamp + depth_shift_ns and written depth_write_delay_ns later
    (a node's latency). /tf_static comes first, or after the messages of frame
    ``tf_static_after_frame``; the scans of ``bad_scan_frames`` are truncated. camera_images:
    also the camera's PNG images (rgb8) on the camera topic, stamped like the depth.
    """
    import cv2

    from monodepth_ros.bagtools.kitti2bag import static_transforms
    from monodepth_ros.io.bagio import BagWriter
    from monodepth_ros.io.kitti import KittiDrive
    from monodepth_ros.io.messages import (
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
    records = []   # (bag time, sequence, topic, message): written sorted by time
    with BagWriter(path, storage=storage) as bag:
        types = bag.types

        def write(topic, msg, stamp):
            records.append((stamp, len(records), topic, msg))

        for index in range(frames):
            stamp = stamps[index]
            scan = read_velodyne(drive_dir / 'velodyne_points' / 'data' / f'{index:010d}.bin')
            cloud = make_pointcloud2(types, make_header(types, stamp, topics.LIDAR_FRAME),
                                     scan[:, :3])
            if index in bad_scan_frames:
                cloud.data = cloud.data[:10]
            write(topics.LIDAR_TOPIC, cloud, stamp)
            depth_stamp = stamp + depth_shift_ns
            header = make_header(types, depth_stamp, topics.CAMERA_FRAME)
            write(topics.CAMERA_INFO_TOPIC, model_to_camera_info(types, camera, header),
                  depth_stamp)
            if camera_images:
                png = cv2.imread(str(drive_dir / 'image_02' / 'data' / f'{index:010d}.png'))
                write(topics.CAMERA_IMAGE_TOPIC, array_to_image(
                    types, np.ascontiguousarray(png[:, :, ::-1]), 'rgb8', header), depth_stamp)
            depth = depth_of(scan, calibration) if depth_of else np.ones((375, 1242))
            if depth_size is not None:
                depth = np.ones(depth_size[::-1])
            if depth_encoding == 'mono8':
                message = array_to_image(types, np.zeros(depth.shape, np.uint8), 'mono8',
                                         header)
            else:
                message = depth_to_image(types, np.where(depth > 0, depth, np.nan), header)
            write(DEPTH_TOPIC, message, depth_stamp + depth_write_delay_ns)
            if tf_static and index == tf_static_after_frame:
                write(topics.TF_STATIC_TOPIC, make_tf_message(
                    types, [(p, c, T, stamps[0]) for p, c, T in static_transforms(drive, [2])]),
                    depth_stamp)
        if tf_static and tf_static_after_frame is None:
            records.insert(0, (stamps[0], -1, topics.TF_STATIC_TOPIC, make_tf_message(
                types, [(p, c, T, stamps[0]) for p, c, T in static_transforms(drive, [2])])))
        for stamp, _, topic, msg in sorted(records, key=lambda record: record[:2]):
            bag.write(topic, msg, stamp)
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
    # pred = 1.1 g. The evaluator (occlusion filter on) grades the pixels of the filtered
    # ground truth with 1e-3 < g < 50, the prediction clamped to 50 m: per frame
    # abs_rel = mean(|g - min(1.1 g, 50)| / g), i.e. 0.1 where 1.1 g < 50 and less above.
    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, lidar_depth(1.1))
    summary = evaluate(bag).summary()
    calibration = read_calibration(KITTI_DATE_DIR)
    per_frame = []
    for index in range(FRAMES):
        scan = read_velodyne(kitti_drive_dir / 'velodyne_points' / 'data' / f'{index:010d}.bin')
        raw = lidar_depth(1.0)(scan, calibration)
        gt = filter_occluded(raw).astype(np.float64)
        pred = lidar_depth(1.1)(scan, calibration).astype(np.float64)
        keep = (gt > 1e-3) & (gt < 50.0)
        per_frame.append(np.mean(np.abs(gt[keep] - np.minimum(pred[keep], 50.0)) / gt[keep]))
    # /tf_static's rotation differs from the calibration's by ~1e-7: same pixels and depths
    # to float rounding.
    assert summary['cap_50']['abs_rel'] == pytest.approx(np.mean(per_frame), rel=1e-5)
    assert summary['cap_50']['abs_rel'] < 0.1   # some pixels are clamped
    assert summary['cap_50']['delta1'] == 1.0
    # silog ignores a global scale (up to the clamped pixels).
    assert summary['cap_50']['silog'] < 0.01
    scaled = evaluate(bag, median_scaling=True).summary()
    assert scaled['cap_50']['abs_rel'] < 1e-6


def test_kitti_eigen_protocol_from_a_bag_matches_the_reference(kitti_drive_dir, tmp_path):
    if not EIGEN_REFERENCE.is_file():
        pytest.skip(f'{EIGEN_REFERENCE} not found')
    from monodepth_ros.evaluation.ground_truth import GroundTruthBuilder, scan_from_message
    from monodepth_ros.io.bagio import BagReader

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
    # Graded: the ground-truth pixels with 1e-3 < gt < 80 inside the Garg crop, rows
    # [int(0.40810811 * 375), int(0.99189189 * 375)) = [153, 371) and columns
    # [int(0.03594771 * 1242), int(0.96405229 * 1242)) = [44, 1197).
    assert crop_bounds(375, 1242, 'garg') == (153, 371, 44, 1197)
    inside = gt[153:371, 44:1197]
    expected_pixels = np.count_nonzero((inside > 1e-3) & (inside < 80))
    assert summary['cap_80']['n_pixels'] == expected_pixels
    assert expected_pixels < np.count_nonzero(gt)   # the crop leaves some out


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
    assert summary['frames_evaluated'] == FRAMES
    assert summary['frames_skipped'] == {'count': 0, 'reasons': {}, 'examples': []}
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


def _json_equivalent(value):
    """What summary.json must hold for ``value``: NaN/inf as null, numpy scalars as numbers."""
    if isinstance(value, dict):
        return {key: _json_equivalent(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_equivalent(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def test_report_files_hold_the_result(kitti_drive_dir, tmp_path):
    # pred = 1.1 g on 3 frames, caps 80, 50 and 0.01 m (no LiDAR point is that close: NaN
    # metrics, shown as null / '-' / empty). frames.csv holds the rows, summary.json the
    # summary, report.md the per-cap table and distance bands, each value as the result has it.
    from monodepth_ros.evaluation.report import write_outputs

    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, lidar_depth(1.1))
    result = evaluate(bag, caps=(80.0, 50.0, 0.01), qualitative_frames=1)
    assert result.frames_evaluated == FRAMES
    out = tmp_path / 'out'
    write_outputs(result, out)

    with (out / 'frames.csv').open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == FRAMES
    for written, row in zip(rows, result.rows):
        assert list(written) == list(row)
        for key, value in row.items():
            if isinstance(value, float) and not np.isfinite(value):
                assert written[key] == ''
            else:
                assert type(value)(written[key]) == value, key
    assert rows[0]['cap_0.01_abs_rel'] == '' and rows[0]['cap_0.01_n_pixels'] == '0'

    summary = json.loads((out / 'summary.json').read_text())
    assert summary == _json_equivalent(result.summary())
    # The per-cap figures are the means of the frames' rows.
    for name in ('abs_rel', 'rmse', 'delta1', 'coverage'):
        assert summary['cap_80'][name] == pytest.approx(
            np.mean([row[name] for row in result.rows]), rel=1e-12)
        assert summary['cap_50'][name] == pytest.approx(
            np.mean([row[f'cap_50_{name}'] for row in result.rows]), rel=1e-12)
    assert summary['cap_80']['n_pixels'] == sum(row['n_pixels'] for row in result.rows)
    assert summary['cap_0.01']['abs_rel'] is None and summary['cap_0.01']['frames'] == 0

    report = (out / 'report.md').read_text().splitlines()
    header = next(line for line in report if line.startswith('| cap | frames |'))
    names = [cell.strip() for cell in header.strip('|').split('|')][2:]
    assert names[:3] == ['abs_rel', 'sq_rel', 'rmse'] and 'delta1' in names
    for key, label in (('cap_80', '80 m'), ('cap_50', '50 m'), ('cap_0.01', '0.01 m')):
        line = next(line for line in report if line.startswith(f'| {label} |'))
        cells = [cell.strip() for cell in line.strip('|').split('|')]
        assert cells[1] == str(summary[key]['frames'])
        for name, cell in zip(names, cells[2:], strict=True):
            value = summary[key][name]
            assert cell == ('-' if value is None else f'{value:.4f}'), (key, name)
    bands = [row for row in summary['by_distance'] if row['n_pixels']]
    assert bands
    for band in bands:
        line = next(line for line in report if line.startswith(f'| {band["group"]} |'))
        assert line == (f'| {band["group"]} | {band["n_pixels"]} | {band["abs_rel"]:.4f} | '
                        f'{band["rmse"]:.3f} | {band["delta1"]:.4f} | '
                        f'{band["mean_error"]:+.3f} |')
    # Every pixel graded at the 80 m cap falls in one band.
    assert sum(band['n_pixels'] for band in bands) == summary['cap_80']['n_pixels']


def test_corruption_mid_stream_keeps_the_frames_graded_so_far(kitti_drive_dir, tmp_path):
    # A sqlite3 bag whose last LiDAR scan (frame 2's) is cut to 10 bytes in the database:
    # reading stops there with a BagError. Frame 0 was graded when scan 1 arrived; frame 1's
    # depth was read and still waits for a later scan: it is graded with the scans read so far.
    # The outputs hold both and say the run stopped early.
    import sqlite3

    from monodepth_ros.cli import main

    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, lidar_depth(1.0),
                          storage='sqlite3')
    [database] = bag.glob('*.db3')
    with sqlite3.connect(database) as connection:
        [(topic_id,)] = connection.execute('SELECT id FROM topics WHERE name = ?',
                                           (topics.LIDAR_TOPIC,)).fetchall()
        message_id, data = connection.execute(
            'SELECT id, data FROM messages WHERE topic_id = ? ORDER BY timestamp DESC LIMIT 1',
            (topic_id,)).fetchone()
        connection.execute('UPDATE messages SET data = ? WHERE id = ?', (data[:10], message_id))
    out = tmp_path / 'out'
    assert main(['eval-bag', str(bag), '--depth-topic', DEPTH_TOPIC, '--out', str(out),
                 '--no-progress']) == 2
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames_evaluated'] == 2
    assert f'bag {bag} is corrupt or truncated' in summary['error']
    stamps = read_timestamps(kitti_drive_dir / 'velodyne_points' / 'timestamps.txt')
    with (out / 'frames.csv').open() as handle:
        assert [int(row['stamp_ns']) for row in csv.DictReader(handle)] == stamps[:2]
    assert '**Stopped early:** bag' in (out / 'report.md').read_text()


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
    from monodepth_ros.io.messages import (
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
    # DepthPipeline by ONNX Runtime: graded on every frame, with the model's own classes. The
    # expected figures are rebuilt here frame by frame: the same model at the camera size,
    # the frame's own scan projected (occlusion-filtered) into its camera_info's camera with
    # the /tf_static transform, metrics per frame, averaged.
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag
    from monodepth_ros.engines import create_engine
    from monodepth_ros.evaluation.metrics import compute_depth_metrics_caps
    from monodepth_ros.io.messages import camera_info_to_model, image_to_rgb
    from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

    bag = write_synthetic_bag(tmp_path / 'synth', frames=2, seed=1, size=(416, 128))
    result = evaluate(bag, depth_topic=None, model=str(tiny_onnx), backend='onnxruntime',
                      precision='fp32')
    assert result.error is None and result.frames_evaluated == 2
    summary = result.summary()
    assert 'onnxruntime' in summary['depth_source']

    pipeline = DepthPipeline(create_engine(str(tiny_onnx), backend='onnxruntime',
                                           precision='fp32'),
                             PipelineConfig(output_resolution='camera',
                                            depth_upsampling='bilinear'))
    by_stamp, transforms = camera_frames_by_stamp(bag)
    per_frame = []
    for stamp in sorted(by_stamp):
        frame = by_stamp[stamp]
        camera = camera_info_to_model(frame[topics.CAMERA_INFO_TOPIC])
        pred = pipeline.process_arrays(image_to_rgb(frame[topics.CAMERA_IMAGE_TOPIC]),
                                       camera, outputs={'depth'}).depth
        cloud = frame[topics.LIDAR_TOPIC]
        T = transforms.lookup(topics.CAMERA_FRAME, str(cloud.header.frame_id))
        gt = filter_occluded(lidar_depth_image(pointcloud2_to_xyz(cloud), T, camera))
        per_frame.append(compute_depth_metrics_caps(gt, pred, caps=(80.0, 50.0)))
    assert [row['stamp_ns'] for row in result.rows] == sorted(by_stamp)
    for cap, key in ((80.0, 'cap_80'), (50.0, 'cap_50')):
        for name in ('abs_rel', 'rmse', 'delta1'):
            assert summary[key][name] == pytest.approx(
                np.mean([metrics[cap][name] for metrics in per_frame]), rel=1e-6)
        assert summary[key]['n_pixels'] == sum(metrics[cap]['n_pixels']
                                               for metrics in per_frame)
    assert summary['by_class'] and len(result.qualitative) == 2
    assert result.qualitative[0].rgb.shape == (128, 416, 3)


def test_bad_input_of_one_frame_skips_that_frame_with_the_reason(tmp_path, tiny_onnx):
    # Three synthetic frames through the model: frame 0 comes with the camera_info of a
    # half-size image (CalibrationError in the pipeline), frame 1's image is 32FC1 (not a
    # colour image: MessageError), frame 2 is intact. Both bad frames are skipped and counted
    # with their reason; the run goes on and grades frame 2.
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag
    from monodepth_ros.io.bagio import BagReader, BagWriter
    from monodepth_ros.io.messages import (
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
    skipped = result.summary()['frames_skipped']
    assert skipped['count'] == 2 and skipped['reasons'] == {calibration: 1, encoding: 1}


def test_kitti_eigen_without_calib_grades_at_the_full_camera_size(kitti_drive_dir, kitti_bag,
                                                                   tmp_path):
    # A kitti2bag bag plus a recorded depth at a third of the image size with its own scaled
    # camera_info: the Eigen ground truth is built at 1242x375 from the camera's camera_info
    # and /tf_static (no --calib), the depth resized to it.
    if not EIGEN_REFERENCE.is_file():
        pytest.skip(f'{EIGEN_REFERENCE} not found')
    from monodepth_ros.io.bagio import BagReader, BagWriter
    from monodepth_ros.io.messages import (
        camera_info_to_model,
        depth_to_image,
        make_header,
        model_to_camera_info,
        stamp_to_ns,
    )

    converted, _ = kitti_bag
    bag = tmp_path / 'with_depth'
    depth_topic = '/monodepth/depth'
    with BagReader(converted) as reader, BagWriter(bag, storage='mcap') as writer:
        for topic, bag_ns, msg in reader.messages([topics.TF_STATIC_TOPIC, topics.LIDAR_TOPIC,
                                                   topics.CAMERA_INFO_TOPIC]):
            writer.write(topic, msg, bag_ns)
            if topic == topics.CAMERA_INFO_TOPIC and stamp_to_ns(msg.header.stamp) \
                    == read_timestamps(kitti_drive_dir / 'image_02' / 'timestamps.txt')[0]:
                header = make_header(writer.types, stamp_to_ns(msg.header.stamp),
                                     topics.CAMERA_FRAME)
                small = camera_info_to_model(msg).scaled(414, 125)
                writer.write(f'{depth_topic}/camera_info',
                             model_to_camera_info(writer.types, small, header), bag_ns)
                writer.write(depth_topic, depth_to_image(
                    writer.types, np.full((125, 414), 10.0, np.float32), header), bag_ns)
    result = evaluate(bag, depth_topic=depth_topic, protocol='kitti-eigen')
    assert result.error is None and result.frames_evaluated == 1
    frame = result.qualitative[0]
    reference = np.load(EIGEN_REFERENCE)['velx_0000000000']
    assert frame.gt.shape == reference.shape == frame.pred.shape == (375, 1242)
    # /tf_static carries KITTI's rotations (orthonormal to ~1e-7 only) as unit quaternions:
    # projections move by ~1e-7 * fx < 1e-4 px, so only a point within 1e-4 px of a rounding
    # border (u or v at k + 0.5: the protocol's round) may land one pixel over. Each such
    # point leaves at most one pixel and fills at most one; its depth is unchanged, so every
    # moved pixel has a neighbour in the other map with its depth.
    calibration = read_calibration(KITTI_DATE_DIR)
    scan = read_velodyne(kitti_drive_dir / 'velodyne_points' / 'data' / '0000000000.bin')
    front = scan[scan[:, 0] >= 0, :3].astype(np.float64)
    projected = calibration.velo_to_image_matrix(2) @ np.c_[front, np.ones(len(front))].T
    u, v = projected[:2] / projected[2]
    in_image = (projected[2] > 0) & (u > -1) & (u < 1244) & (v > -1) & (v < 377)
    near_border = (np.abs(u - np.floor(u) - 0.5) < 1e-4) | (np.abs(v - np.floor(v) - 0.5) < 1e-4)
    border_points = np.count_nonzero(in_image & near_border)
    filled = np.argwhere((frame.gt > 0) & (reference == 0))
    left = np.argwhere((reference > 0) & (frame.gt == 0))
    assert len(filled) + len(left) <= 2 * border_points

    def has_neighbour_with_depth(image, row, col, depth):
        window = image[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2]
        return bool(np.any((window > 0) & np.isclose(window, depth, rtol=1e-6, atol=0)))

    for row, col in filled:
        assert has_neighbour_with_depth(reference, row, col, frame.gt[row, col]), (row, col)
    for row, col in left:
        assert has_neighbour_with_depth(frame.gt, row, col, reference[row, col]), (row, col)
    both = (frame.gt > 0) & (reference > 0)
    np.testing.assert_allclose(frame.gt[both], reference[both], rtol=1e-6)
    np.testing.assert_allclose(frame.pred[np.isfinite(frame.pred)], 10.0, rtol=1e-6)

    # The full-size camera_info is required: a camera topic without one is refused.
    with pytest.raises(BagError, match=r"no topic '/nope/camera_info' \(full-size camera_info"):
        evaluate(bag, depth_topic=depth_topic, protocol='kitti-eigen',
                 camera_topic='/nope/image_raw')


def _fixed_depth_pipeline(model_path, depth):
    """The real DepthPipeline on ``model_path`` whose depth output is replaced by ``depth``.

    DepthPipeline itself turns 0, negative and non-finite model depth into NaN (REP 118), so
    0 and negative values never reach the evaluator through it; they do come from recorded
    depth topics of other nodes, and the evaluator has one rule for all of them. Everything
    else (decoding the bag's image, running the model at the camera size, the camera it
    returns) is the real pipeline's; only the depth array is swapped.
    """
    from monodepth_ros.engines import create_engine
    from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

    class FixedDepthPipeline(DepthPipeline):
        def process_arrays(self, rgb, camera=None, outputs=frozenset({'depth'}),
                           reference=None):
            result = super().process_arrays(rgb, camera, outputs, reference)
            assert result.depth.shape == depth.shape
            result.depth = depth.copy()
            return result

    engine = create_engine(str(model_path), backend='onnxruntime', precision='fp32')
    return FixedDepthPipeline(engine, PipelineConfig(output_resolution='camera',
                                                     depth_upsampling='bilinear'))


def test_evaluator_grades_with_the_metrics_module_rule(kitti_drive_dir, tmp_path, tiny_onnx):
    # One rule for an invalid prediction: non-finite. A model predicting 0 or negative depth
    # is graded (clamped to min_depth), NaN lowers coverage; the evaluator's figures are those
    # of metrics.compute_depth_metrics_caps on the same images.
    import cv2

    from monodepth_ros.evaluation.metrics import compute_depth_metrics_caps

    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, frames=1, camera_images=True)
    depth = np.full((375, 1242), 12.0, np.float32)
    depth[:, :400] = 0.0
    depth[:, 400:500] = -3.0
    depth[:, 500:600] = np.nan
    config = EvaluationConfig(model=str(tiny_onnx), progress=False, occlusion_filter=False)
    result = BagEvaluator(config, pipeline=_fixed_depth_pipeline(tiny_onnx, depth)).evaluate(bag)
    assert result.error is None and result.frames_evaluated == 1
    frame = result.qualitative[0]
    # The model ran on the camera's PNG, decoded from the bag.
    png = cv2.imread(str(kitti_drive_dir / 'image_02' / 'data' / '0000000000.png'))
    np.testing.assert_array_equal(frame.rgb, png[:, :, ::-1])
    expected = compute_depth_metrics_caps(frame.gt, depth, caps=(80.0, 50.0))
    row = result.rows[0]
    for name in ('abs_rel', 'rmse', 'delta1', 'n_pixels', 'coverage'):
        assert row[name] == pytest.approx(expected[80.0][name])
        assert row[f'cap_50_{name}'] == pytest.approx(expected[50.0][name])
    in_nan_band = frame.gt[:, 500:600]
    assert 0 < row['coverage'] < 1.0
    assert row['coverage'] == pytest.approx(1 - np.count_nonzero(
        (in_nan_band > 1e-3) & (in_nan_band < 80)) / np.count_nonzero(
        (frame.gt > 1e-3) & (frame.gt < 80)))


def test_bad_scans_and_late_tf_static_skip_frames_not_the_run(kitti_drive_dir, tmp_path):
    # Frame 0 is graded (at scan 1) before /tf_static arrives, after frame 1; scan 2 is
    # truncated, so frame 2's nearest usable scan is ~103 ms away. Frames 1 and 3 are graded.
    stamps = read_timestamps(kitti_drive_dir / 'velodyne_points' / 'timestamps.txt')
    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, lidar_depth(1.0), frames=4,
                          tf_static_after_frame=1, bad_scan_frames=(2,))
    result = evaluate(bag, occlusion_filter=False)
    assert result.error is None
    assert [row['stamp_ns'] for row in result.rows] == [stamps[1], stamps[3]]
    summary = result.summary()
    reasons = summary['frames_skipped']['reasons']
    assert summary['frames_skipped']['count'] == 2
    assert reasons['no LiDAR -> camera transform yet (/tf_static not received before this '
                   'frame)'] == 1
    assert any(reason.startswith('no LiDAR scan within 50 ms (nearest 10') for reason in reasons)
    assert summary['scans_skipped']['count'] == 1
    [scan_reason] = summary['scans_skipped']['reasons']
    assert scan_reason.startswith('bad LiDAR scan: ')


def test_recorded_depth_written_late_still_finds_its_scan(kitti_drive_dir, tmp_path):
    # Depth stamped with its scan's stamp but written 350 ms later (after 3 more scans).
    bag = write_kitti_bag(tmp_path / 'bag', kitti_drive_dir, lidar_depth(1.0), frames=5,
                          depth_write_delay_ns=350_000_000)
    result = evaluate(bag, occlusion_filter=False)
    assert result.error is None and result.frames_evaluated == 5
    assert [row['lidar_dt_ms'] for row in result.rows] == [0.0] * 5


def test_scan_window_keeps_a_time_span_and_a_bounded_count():
    from monodepth_ros.evaluation.ground_truth import LidarScan, ScanWindow

    def scan(stamp_s):
        return LidarScan(int(stamp_s * 1e9), 'velo_link', np.zeros((0, 3), np.float32))

    window = ScanWindow(span_ns=2_000_000_000, max_scans=100)
    for stamp_s in (0.0, 1.0, 2.0, 3.5):
        window.add(scan(stamp_s))
    # 3.5 s - 2 s = 1.5 s: the scans at 0 s and 1 s are gone.
    assert [item.stamp_ns for _, item in window.items] == [2_000_000_000, 3_500_000_000]
    nearest, gap = window.nearest(2_900_000_000)
    assert nearest.stamp_ns == 3_500_000_000 and gap == 600_000_000
    small = ScanWindow(span_ns=10**12, max_scans=2)
    for stamp_s in (0.0, 0.1, 0.2):
        small.add(scan(stamp_s))
    assert len(small) == 2 and small.nearest(0)[0].stamp_ns == 100_000_000
    assert ScanWindow().nearest(0) == (None, None)


def _to_ros1(typestore, msg):
    """The ROS 1 twin of a ROS 2 message built by our helpers (Header.seq, CameraInfo D/K/R/P)."""
    if isinstance(msg, list):
        return [_to_ros1(typestore, item) for item in msg]
    if not hasattr(msg, '__msgtype__'):
        return msg
    cls = typestore.types[msg.__msgtype__]
    values = {}
    for name in cls.__dataclass_fields__:
        if name == '__msgtype__':
            continue
        if name == 'seq':
            values[name] = 0
            continue
        source = name.lower() if name in ('D', 'K', 'R', 'P') else name
        values[name] = _to_ros1(typestore, getattr(msg, source))
    return cls(**values)


def test_ros1_bag(kitti_drive_dir, tmp_path):
    # A ROS 1 bag written with rosbags' rosbag1 writer (ROS 1 message definitions: Header.seq,
    # CameraInfo D/K/R/P, tf2_msgs/TFMessage): camera image, camera_info, LiDAR, /tf_static and
    # an exact depth topic; graded like the rosbag2 twin.
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from monodepth_ros.bagtools.kitti2bag import static_transforms
    from monodepth_ros.io.kitti import KittiDrive
    from monodepth_ros.io.messages import (
        MessageTypes,
        array_to_image,
        depth_to_image,
        make_header,
        make_pointcloud2,
        make_tf_message,
        model_to_camera_info,
    )

    ros1 = get_typestore(Stores.ROS1_NOETIC)
    if 'tf2_msgs/msg/TFMessage' not in ros1.types:
        ros1.register(get_types_from_msg('geometry_msgs/TransformStamped[] transforms',
                                         'tf2_msgs/msg/TFMessage'))
    types = MessageTypes.rosbags('humble')
    drive = KittiDrive.open(kitti_drive_dir)
    calibration = drive.calibration
    camera = calibration.camera_model(2)
    stamps = read_timestamps(kitti_drive_dir / 'velodyne_points' / 'timestamps.txt')
    path = tmp_path / 'drive.bag'
    with Writer(path) as writer:
        connections = {}

        def write(topic, msg, stamp):
            msgtype = msg.__msgtype__
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=ros1)
            writer.write(connections[topic], stamp,
                         ros1.serialize_ros1(_to_ros1(ros1, msg), msgtype))

        write(topics.TF_STATIC_TOPIC, make_tf_message(
            types, [(p, c, T, stamps[0]) for p, c, T in static_transforms(drive, [2])]),
            stamps[0])
        for index in range(2):
            stamp = stamps[index]
            scan = read_velodyne(kitti_drive_dir / 'velodyne_points' / 'data'
                                 / f'{index:010d}.bin')
            write(topics.LIDAR_TOPIC, make_pointcloud2(
                types, make_header(types, stamp, topics.LIDAR_FRAME), scan[:, :3]), stamp)
            header = make_header(types, stamp, topics.CAMERA_FRAME)
            write(topics.CAMERA_INFO_TOPIC, model_to_camera_info(types, camera, header), stamp)
            write(topics.CAMERA_IMAGE_TOPIC, array_to_image(
                types, np.zeros((375, 1242, 3), np.uint8), 'rgb8', header), stamp)
            depth = lidar_depth(1.0)(scan, calibration)
            write(DEPTH_TOPIC, depth_to_image(types, np.where(depth > 0, depth, np.nan),
                                              header), stamp)
    result = evaluate(path, occlusion_filter=False)
    assert result.error is None and result.frames_evaluated == 2
    summary = result.summary()
    assert summary['cap_80']['abs_rel'] < 1e-6 and summary['cap_80']['delta1'] == 1.0
    # The camera images (ROS 1 Image) were found for the qualitative strips.
    assert result.qualitative[0].rgb.shape == (375, 1242, 3)
