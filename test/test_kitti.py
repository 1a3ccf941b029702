"""KITTI raw readers and kitti2bag, on the real excerpt and on hand-made folders."""

import shutil

import numpy as np
import pytest
from conftest import KITTI_DATE_DIR

from monodepth_ros.errors import CalibrationError, DatasetError, OutputError
from monodepth_ros.io import topics
from monodepth_ros.io.kitti import (
    OXTS_FIELDS,
    mercator_scale,
    oxts_pose,
    parse_timestamp,
    read_calibration,
    read_oxts,
    read_timestamps,
    read_velodyne,
    sensor_frames,
)


def test_parse_timestamp_keeps_nanoseconds():
    assert parse_timestamp('1970-01-01 00:00:01.5') == 1_500_000_000
    assert parse_timestamp('1970-01-01 00:01:00') == 60_000_000_000
    # 2011-09-26 is day 15243 after 1970-01-01: 15243*86400 + 13*3600 + 8*60 + 24 s.
    seconds = 15243 * 86400 + 13 * 3600 + 8 * 60 + 24
    assert parse_timestamp('2011-09-26 13:08:24.967930880') == seconds * 10**9 + 967930880
    with pytest.raises(DatasetError, match='YYYY-MM-DD'):
        parse_timestamp('26/09/2011 13:08')


def test_calibration_values(kitti_drive_dir):
    calibration = read_calibration(KITTI_DATE_DIR)
    assert calibration.S_rect[2] == (1242, 375)
    camera = calibration.camera_model(2)
    assert (camera.width, camera.height) == (1242, 375)
    assert camera.fx == 721.5377 and camera.cx == 609.5593 and camera.cy == 172.854
    # The camera's own optical frame: no baseline column left in P.
    np.testing.assert_array_equal(camera.P[:, 3], 0.0)
    # P_rect_02[:, 3] = K t: tz = 2.745884e-3, tx = (44.85728 - 609.5593 tz) / 721.5377.
    T_rect = calibration.T_rect_cam_from_rect_cam0(2)
    assert T_rect[2, 3] == pytest.approx(2.745884e-3)
    assert T_rect[0, 3] == pytest.approx((44.85728 - 609.5593 * 2.745884e-3) / 721.5377)
    assert T_rect[1, 3] == pytest.approx((0.2163791 - 172.854 * 2.745884e-3) / 721.5377)
    # [K | 0] T_cam2_from_velo projects like P_rect_02 R_rect_00 [R|T] for any point.
    points = np.array([[10.0, 2.0, -1.0, 1.0], [30.0, -5.0, 0.5, 1.0]])
    ours = camera.P @ calibration.T_cam2_from_velo @ points.T
    protocol = calibration.velo_to_image_matrix(2) @ points.T
    np.testing.assert_allclose(ours, protocol, rtol=1e-12)
    assert calibration.T_velo_from_imu[0, 3] == -8.086759e-01


def _copy_calibration(tmp_path):
    for name in ('calib_cam_to_cam.txt', 'calib_velo_to_cam.txt', 'calib_imu_to_velo.txt'):
        shutil.copy(KITTI_DATE_DIR / name, tmp_path / name)


def test_calibration_errors_name_the_file(kitti_drive_dir, tmp_path):
    with pytest.raises(CalibrationError, match='not found'):
        read_calibration(tmp_path / 'nowhere')
    _copy_calibration(tmp_path)
    path = tmp_path / 'calib_cam_to_cam.txt'
    text = path.read_text().replace('P_rect_02: 7.215377e+02 ', 'P_rect_02: ')
    path.write_text(text)
    with pytest.raises(CalibrationError, match=r"calib_cam_to_cam.txt: 'P_rect_02' has 11 "
                                               r'numbers, expected 12'):
        read_calibration(tmp_path)
    _copy_calibration(tmp_path)
    (tmp_path / 'calib_velo_to_cam.txt').write_text('R: 1 0 0 0 1 0 0 0 1\n')
    with pytest.raises(CalibrationError, match="calib_velo_to_cam.txt has no 'T' entry"):
        read_calibration(tmp_path)


def _fake_sensor(folder, names, stamps):
    (folder / 'data').mkdir(parents=True)
    for name in names:
        (folder / 'data' / name).write_text('x')
    (folder / 'timestamps.txt').write_text('\n'.join(stamps) + '\n')


def test_frames_not_starting_at_zero(tmp_path):
    stamps = [f'2011-09-26 13:08:2{i}.000000000' for i in range(3)]
    _fake_sensor(tmp_path / 'a', ['0000000005.txt', '0000000007.txt', '0000000006.txt'], stamps)
    frames = sensor_frames(tmp_path / 'a', 'txt')
    assert frames.indices == [5, 6, 7]                  # sorted by number
    assert frames.stamps_ns[0] == parse_timestamp(stamps[0])   # one line per file
    # A full drive's timestamps with a subset of files: line n belongs to frame n.
    _fake_sensor(tmp_path / 'b', ['0000000001.txt', '0000000003.txt'],
                 [f'2011-09-26 13:08:2{i}' for i in range(5)])
    frames = sensor_frames(tmp_path / 'b', 'txt')
    assert frames.stamps_ns == [parse_timestamp('2011-09-26 13:08:21'),
                                parse_timestamp('2011-09-26 13:08:23')]
    _fake_sensor(tmp_path / 'c', ['0000000009.txt', '0000000010.txt'], stamps[:1])
    with pytest.raises(DatasetError, match='1 lines for 2 files'):
        sensor_frames(tmp_path / 'c', 'txt')
    with pytest.raises(DatasetError, match='not found'):
        sensor_frames(tmp_path / 'missing', 'txt')


def test_velodyne_and_oxts_readers(tmp_path):
    scan = np.arange(8, dtype=np.float32).reshape(2, 4)
    scan.tofile(tmp_path / 'scan.bin')
    np.testing.assert_array_equal(read_velodyne(tmp_path / 'scan.bin'), scan)
    (tmp_path / 'bad.bin').write_bytes(b'\0' * 20)
    with pytest.raises(DatasetError, match='multiple of 16'):
        read_velodyne(tmp_path / 'bad.bin')
    (tmp_path / 'packet.txt').write_text(' '.join(['1'] * 29))
    with pytest.raises(DatasetError, match='29 values, expected 30'):
        read_oxts(tmp_path / 'packet.txt')
    (tmp_path / 'packet.txt').write_text(' '.join(str(i) for i in range(30)))
    packet = read_oxts(tmp_path / 'packet.txt')
    assert packet['yaw'] == 5.0 and packet['orimode'] == 29.0 and len(OXTS_FIELDS) == 30


def test_oxts_pose_hand_values():
    # At the equator (scale 1), lon = 1 deg is R * pi/180 m east; yaw = 90 deg turns x to y.
    packet = {'lat': 0.0, 'lon': 1.0, 'alt': 5.0, 'roll': 0.0, 'pitch': 0.0,
              'yaw': np.pi / 2}
    pose = oxts_pose(packet, mercator_scale(0.0))
    assert pose[0, 3] == pytest.approx(6378137.0 * np.pi / 180)
    assert pose[1, 3] == pytest.approx(0.0, abs=1e-6) and pose[2, 3] == 5.0
    np.testing.assert_allclose(pose[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)


# -- kitti2bag -------------------------------------------------------------------------------

# The converted excerpt is the session fixture ``kitti_bag`` of conftest.py.

def test_kitti2bag_round_trip(kitti_bag, kitti_drive_dir):
    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.messages import (
        camera_info_to_model,
        image_to_rgb,
        read_pointcloud2,
        stamp_to_ns,
    )
    from monodepth_ros.io.transforms import TransformBuffer

    path, counts = kitti_bag
    calibration = read_calibration(KITTI_DATE_DIR)
    image_stamps = read_timestamps(kitti_drive_dir / 'image_02' / 'timestamps.txt')
    velo_stamps = read_timestamps(kitti_drive_dir / 'velodyne_points' / 'timestamps.txt')
    oxts_stamps = read_timestamps(kitti_drive_dir / 'oxts' / 'timestamps.txt')
    seen = {}
    buffer = TransformBuffer()
    first_pose = None
    imu_checked = fix_checked = 0
    with BagReader(path) as bag:
        assert set(bag.topics) == {
            topics.CAMERA_IMAGE_TOPIC, topics.CAMERA_INFO_TOPIC, topics.LIDAR_TOPIC,
            topics.TF_STATIC_TOPIC, topics.TF_TOPIC, topics.IMU_TOPIC, topics.GPS_FIX_TOPIC}
        assert bag.message_counts[topics.TF_STATIC_TOPIC] == 1
        for topic, stamp, msg in bag.messages():
            seen.setdefault(topic, []).append(stamp)
            if topic != topics.TF_STATIC_TOPIC and topic != topics.TF_TOPIC:
                assert stamp_to_ns(msg.header.stamp) == stamp
            if topic == topics.CAMERA_INFO_TOPIC:
                camera = camera_info_to_model(msg)
                np.testing.assert_array_equal(
                    camera.P, np.hstack([calibration.P_rect[2][:, :3], np.zeros((3, 1))]))
                assert msg.header.frame_id == topics.CAMERA_FRAME
            elif topic == topics.CAMERA_IMAGE_TOPIC and len(seen[topic]) == 1:
                import cv2

                png = cv2.imread(str(kitti_drive_dir / 'image_02' / 'data' / '0000000000.png'))
                np.testing.assert_array_equal(image_to_rgb(msg), png[:, :, ::-1])
                assert msg.encoding == 'rgb8'
            elif topic == topics.LIDAR_TOPIC and len(seen[topic]) == 1:
                fields = read_pointcloud2(msg, ('x', 'y', 'z', 'intensity'))
                scan = read_velodyne(kitti_drive_dir / 'velodyne_points' / 'data' /
                                     '0000000000.bin')
                np.testing.assert_array_equal(fields['x'], scan[:, 0])
                np.testing.assert_array_equal(fields['intensity'], scan[:, 3])
                assert msg.header.frame_id == topics.LIDAR_FRAME
            elif topic == topics.TF_STATIC_TOPIC:
                buffer.add_message(msg, static=True)
            elif topic == topics.TF_TOPIC and first_pose is None:
                first_pose = msg.transforms[0]
            elif topic in (topics.IMU_TOPIC, topics.GPS_FIX_TOPIC):
                # The k-th packet of the oxts folder, field by field (oxts body axes: x
                # forward, y left, z up = imu_link).
                index = len(seen[topic]) - 1
                packet = read_oxts(kitti_drive_dir / 'oxts' / 'data' / f'{index:010d}.txt')
                assert msg.header.frame_id == topics.IMU_FRAME
                if topic == topics.IMU_TOPIC:
                    acceleration, rate = msg.linear_acceleration, msg.angular_velocity
                    assert (acceleration.x, acceleration.y, acceleration.z) == (
                        packet['af'], packet['al'], packet['au'])
                    assert (rate.x, rate.y, rate.z) == (packet['wf'], packet['wl'], packet['wu'])
                    imu_checked += 1
                else:
                    assert (msg.latitude, msg.longitude, msg.altitude) == (
                        packet['lat'], packet['lon'], packet['alt'])
                    assert msg.status.status == 0 and msg.status.service == 1
                    fix_checked += 1
    assert seen[topics.CAMERA_IMAGE_TOPIC] == image_stamps
    assert seen[topics.LIDAR_TOPIC] == velo_stamps
    assert seen[topics.TF_TOPIC] == oxts_stamps
    assert seen[topics.IMU_TOPIC] == oxts_stamps
    assert counts[topics.CAMERA_IMAGE_TOPIC] == 10
    assert imu_checked == fix_checked == len(oxts_stamps) == 10
    # The static chain reproduces the calibration. KITTI's rotations, printed to 7 digits, are
    # orthonormal to ~1e-7 only; the quaternions of /tf_static are exactly unit.
    np.testing.assert_allclose(buffer.lookup(topics.CAMERA_FRAME, topics.LIDAR_FRAME),
                               calibration.T_cam2_from_velo, atol=1e-6)
    np.testing.assert_allclose(buffer.lookup(topics.LIDAR_FRAME, topics.BASE_FRAME),
                               calibration.T_velo_from_imu, atol=1e-6)
    # The first oxts pose is the world origin.
    assert first_pose.header.frame_id == topics.WORLD_FRAME
    assert first_pose.child_frame_id == topics.BASE_FRAME
    assert abs(first_pose.transform.translation.x) < 1e-6
    assert first_pose.transform.rotation.w == pytest.approx(1.0)


def test_kitti2bag_errors(kitti_drive_dir, tmp_path, kitti_bag):
    from monodepth_ros.bagtools.kitti2bag import convert

    with pytest.raises(DatasetError, match='image_03'):
        convert(kitti_drive_dir, tmp_path / 'b', cameras=[3], progress=False)
    with pytest.raises(OutputError, match='exists already'):
        convert(kitti_drive_dir, kitti_bag[0], progress=False)
    with pytest.raises(DatasetError, match='not found'):
        convert(tmp_path / 'no_drive', tmp_path / 'c', progress=False)


def test_kitti2bag_frames_numbered_from_5(kitti_drive_dir, tmp_path):
    # The first 4 frames of the excerpt with their data files renumbered 5..8 (symlinks) and
    # the first 4 lines of each timestamps file: KITTI's timestamps.txt is line-indexed, line
    # i stamps the i-th file in frame number order, so the k-th message carries line k and the
    # content of the k-th file.
    import cv2

    from monodepth_ros.bagtools.kitti2bag import convert
    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.geometry import quaternion_to_matrix
    from monodepth_ros.io.kitti import oxts_rotation
    from monodepth_ros.io.messages import image_to_rgb, read_pointcloud2

    date_dir = tmp_path / KITTI_DATE_DIR.name
    drive = date_dir / kitti_drive_dir.name
    for calib in KITTI_DATE_DIR.glob('calib_*.txt'):
        date_dir.mkdir(exist_ok=True)
        (date_dir / calib.name).symlink_to(calib)
    frames = 4
    for folder in ('image_02', 'velodyne_points', 'oxts'):
        (drive / folder / 'data').mkdir(parents=True)
        lines = (kitti_drive_dir / folder / 'timestamps.txt').read_text().splitlines()
        (drive / folder / 'timestamps.txt').write_text('\n'.join(lines[:frames]) + '\n')
        for source in sorted((kitti_drive_dir / folder / 'data').iterdir())[:frames]:
            renamed = f'{int(source.stem) + 5:010d}{source.suffix}'
            (drive / folder / 'data' / renamed).symlink_to(source)
    out = tmp_path / 'bag'
    counts = convert(drive, out, storage='mcap', progress=False)
    assert counts[topics.CAMERA_IMAGE_TOPIC] == counts[topics.LIDAR_TOPIC] == frames

    received = {topics.CAMERA_IMAGE_TOPIC: [], topics.LIDAR_TOPIC: [], topics.IMU_TOPIC: []}
    with BagReader(out) as bag:
        for topic, stamp, msg in bag.messages(list(received)):
            index = len(received[topic])   # k-th message = k-th original file
            received[topic].append(stamp)
            if topic == topics.CAMERA_IMAGE_TOPIC and index in (0, frames - 1):
                png = cv2.imread(str(kitti_drive_dir / 'image_02' / 'data' / f'{index:010d}.png'))
                np.testing.assert_array_equal(image_to_rgb(msg), png[:, :, ::-1])
            elif topic == topics.LIDAR_TOPIC and index in (0, frames - 1):
                scan = read_velodyne(kitti_drive_dir / 'velodyne_points' / 'data'
                                     / f'{index:010d}.bin')
                np.testing.assert_array_equal(read_pointcloud2(msg)['z'], scan[:, 2])
            elif topic == topics.IMU_TOPIC and index == 3:
                packet = read_oxts(kitti_drive_dir / 'oxts' / 'data' / '0000000003.txt')
                q = msg.orientation
                np.testing.assert_allclose(quaternion_to_matrix([q.x, q.y, q.z, q.w]),
                                           oxts_rotation(packet), atol=1e-12)
    for topic, folder in ((topics.CAMERA_IMAGE_TOPIC, 'image_02'),
                          (topics.LIDAR_TOPIC, 'velodyne_points'), (topics.IMU_TOPIC, 'oxts')):
        assert received[topic] == read_timestamps(
            kitti_drive_dir / folder / 'timestamps.txt')[:frames]
