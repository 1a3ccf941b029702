"""The synthetic drive: determinism, exact geometry, camera/LiDAR consistency, synth-bag."""

from pathlib import Path

import numpy as np
import pytest

from monodepth_ros.errors import ConfigError, DatasetError, OutputError
from monodepth_ros.io import topics
from monodepth_ros.model.semantics import TRAIN_ID
from monodepth_ros.synthetic import raycast
from monodepth_ros.synthetic.world import (
    KITTI_FX,
    R_CAMERA_FROM_LIDAR,
    DriveConfig,
    SyntheticDrive,
)

SMALL = DriveConfig(width=208, height=64)
USED_CLASSES = {TRAIN_ID[name] for name in (
    'road', 'sidewalk', 'building', 'pole', 'traffic sign', 'vegetation', 'terrain', 'sky',
    'car', 'person', 'wall', 'fence', 'bicycle')}


@pytest.fixture(scope='module')
def full_frame():
    drive = SyntheticDrive(seed=3)
    return drive, drive.render(4, lidar=True)


def _assert_frames_equal(a, b):
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth, b.depth)     # NaNs compare equal here
    np.testing.assert_array_equal(a.semantics, b.semantics)
    assert a.stamp_ns == b.stamp_ns
    for key in ('x', 'y', 'z', 'intensity', 'ring'):
        np.testing.assert_array_equal(a.lidar[key], b.lidar[key])


def _discontinuity(depth: np.ndarray, threshold: float = 0.03) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood spans more than ``threshold`` relative depth (or sky)."""
    padded = np.pad(np.nan_to_num(depth, nan=1e6), 1, mode='edge')
    h, w = depth.shape
    windows = [padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]
    low, high = np.min(windows, axis=0), np.max(windows, axis=0)
    return (high - low) > threshold * low


# -- the world -------------------------------------------------------------------------------
def test_same_seed_same_frames_whatever_the_order():
    first = SyntheticDrive(seed=7, config=SMALL)
    second = SyntheticDrive(seed=7, config=SMALL)
    for index in range(3):
        first.render(index)
    _assert_frames_equal(first.render(30), second.render(30))


def test_seeds_differ_in_layout_camera_and_image():
    a, b = SyntheticDrive(seed=0, config=SMALL), SyntheticDrive(seed=1, config=SMALL)
    assert a.camera_height != b.camera_height
    assert not np.allclose(a.T_base_from_camera, b.T_base_from_camera)
    objects_a, objects_b = a.objects_at(0), b.objects_at(0)
    assert (objects_a['bmin'].shape != objects_b['bmin'].shape
            or not np.allclose(objects_a['bmin'], objects_b['bmin']))
    frame_a, frame_b = a.render(0, lidar=False), b.render(0, lidar=False)
    assert np.mean(frame_a.semantics != frame_b.semantics) > 0.05


def test_camera_height_and_pitch_stay_in_range():
    for seed in range(6):
        drive = SyntheticDrive(seed=seed, config=SMALL)
        assert 1.5 <= drive.camera_height <= 1.8
        optical_axis = drive.T_base_from_camera[:3, 2]
        pitch = np.degrees(np.arcsin(-optical_axis[2]))
        assert abs(pitch) <= 2.0 + 1e-9
        # The rig is KITTI's: camera 0.27 m ahead of and 0.08 m below the LiDAR.
        camera_in_lidar = np.linalg.inv(drive.T_camera_from_lidar)[:3, 3]
        np.testing.assert_allclose(camera_in_lidar, [0.27, 0.0, -0.08], atol=1e-12)


def test_kitti_intrinsics_and_scaled_render():
    drive = SyntheticDrive(seed=0)
    camera = drive.camera
    assert (camera.width, camera.height) == (1242, 375)
    assert camera.fx == camera.fy == KITTI_FX
    assert (camera.cx, camera.cy) == (609.5593, 172.854)
    frame = drive.render(0, lidar=False, size=(416, 128))
    assert frame.rgb.shape == (128, 416, 3) and frame.depth.shape == (128, 416)
    small = camera.scaled(416, 128)
    assert frame.camera.fx == pytest.approx(small.fx)
    assert frame.camera.cx == pytest.approx(small.cx)


def test_labels_and_depth_validity(full_frame):
    _, frame = full_frame
    assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (375, 1242, 3)
    assert frame.depth.dtype == np.float32 and frame.semantics.dtype == np.uint8
    assert set(np.unique(frame.semantics)) <= USED_CLASSES
    sky = frame.semantics == TRAIN_ID['sky']
    assert np.all(np.isnan(frame.depth[sky]))
    assert np.all(np.isfinite(frame.depth[~sky])) and np.all(frame.depth[~sky] > 0)
    # A street scene: road, buildings or vegetation, and sky are all present.
    for name in ('road', 'sky', 'sidewalk'):
        assert np.any(frame.semantics == TRAIN_ID[name]), name


def test_road_depth_is_the_exact_ground_plane_intersection(full_frame):
    drive, frame = full_frame
    camera = drive.camera
    T = drive.T_world_from_camera(frame.index)
    rows, cols = np.nonzero(frame.semantics == TRAIN_ID['road'])
    assert rows.size > 10000
    rays = np.stack([(cols - camera.cx) / camera.fx, (rows - camera.cy) / camera.fy,
                     np.ones(cols.size)], axis=1)
    down = rays @ T[2, :3]                     # world z component of each ray
    expected = -T[2, 3] / down                 # depth where the ray meets z = 0
    np.testing.assert_allclose(frame.depth[rows, cols], expected, rtol=2e-6)


def test_moving_cars_move_with_their_speed():
    drive = SyntheticDrive(seed=2, config=SMALL)
    dt = 1.0 / drive.frame_rate_hz
    now, later = drive._traffic(1.0), drive._traffic(1.0 + dt)
    oncoming = now['bmin'][:, 1] > 0          # left of the road centre
    shift = later['bmin'][oncoming, 0] - now['bmin'][oncoming, 0]
    assert shift.size > 0
    np.testing.assert_allclose(shift, drive.scene.oncoming_speed * dt, atol=1e-9)


def test_no_object_ever_contains_a_sensor():
    # Ray casting assumes every ray starts outside every object.
    for seed in range(8):
        drive = SyntheticDrive(seed=seed, config=SMALL)
        for index in range(0, 200, 7):
            objects = drive.objects_at(index)
            for T in (drive.T_world_from_camera(index), drive.T_world_from_lidar(index)):
                origin = T[:3, 3]
                inside_box = np.all((objects['bmin'] - 0.05 <= origin)
                                    & (origin <= objects['bmax'] + 0.05), axis=1)
                assert not inside_box.any(), (seed, index)


def test_ground_shadows_match_a_brute_force_sun_ray_test():
    from dataclasses import replace

    drive = SyntheticDrive(seed=2, config=SMALL)
    sun = np.array([-0.5, -0.6, 0.4])
    drive.scene = replace(drive.scene, sun=sun / np.linalg.norm(sun))
    sun = drive.scene.sun
    index = 5
    T = drive.T_world_from_camera(index)
    grid = drive._camera_grid(drive.camera)
    t, hit, objects = drive._cast(grid, T, drive.objects_at(index), 300.0)
    surface = drive._surface(grid, T[:3, 3], t, hit, objects)
    shadow = drive._ground_shadow(grid, T[:3, 3], hit, surface, objects)
    # Every ground point against every object, in float64, no windows.
    ground = np.flatnonzero(hit.ravel() == 0)
    p = np.stack([surface['point'][0][ground], surface['point'][1][ground],
                  np.zeros(ground.size)], axis=1)[:, None, :].astype(np.float64)
    lo, hi = objects['bmin'][None], objects['bmax'][None]
    a, b = (lo - p) / sun, (hi - p) / sun
    near = np.minimum(a, b).max(axis=2)
    far = np.maximum(a, b).min(axis=2)
    box_blocks = (near <= far) & (far > 0)
    centre = (lo + hi) / 2 - p
    along = centre @ sun
    miss = np.sum(centre ** 2, axis=2) - along ** 2
    sphere_blocks = (along > 0) & (miss <= ((hi[..., 0] - lo[..., 0]) / 2) ** 2)
    is_sphere = objects['kind'][None] == raycast.SPHERE
    expected = np.where(is_sphere, sphere_blocks, box_blocks).any(axis=1)
    assert 50 < expected.sum() < ground.size - 50
    np.testing.assert_array_equal(np.isin(ground, np.flatnonzero(shadow)), expected)
    assert not np.any(shadow[hit.ravel() != 0])


def test_bad_configuration_is_rejected():
    with pytest.raises(ConfigError, match='seed'):
        SyntheticDrive(seed=-1)
    with pytest.raises(ConfigError, match='too small'):
        DriveConfig(width=4, height=4)
    with pytest.raises(ConfigError, match='negative'):
        SyntheticDrive(seed=0, config=SMALL).render(-1)


# -- ray casting -----------------------------------------------------------------------------
def _scene():
    kinds = np.array([raycast.BOX, raycast.SPHERE])
    bmin = np.array([[10.0, -1.0, 0.0], [19.0, 4.0, 1.5]])
    bmax = np.array([[12.0, 1.0, 3.0], [21.0, 6.0, 3.5]])     # sphere: centre (20,5,2.5), r 1
    return kinds, bmin, bmax


def test_camera_rays_hit_box_sphere_and_ground_exactly():
    # Camera 1.5 m above the ground looking along +x (optical z = world x).
    R = R_CAMERA_FROM_LIDAR.T
    grid = raycast.CameraGrid(100.0, 100.0, 50.0, 30.0, 101, 61, R)
    origin = np.array([0.0, 0.0, 1.5])
    kinds, bmin, bmax = _scene()
    corners = (raycast.box_corners(bmin, bmax) - origin) @ R
    t, hit = raycast.cast(grid, origin, kinds, bmin, bmax, grid.windows(corners), 1000.0)
    assert t[30, 50] == pytest.approx(10.0) and hit[30, 50] == 1       # box front face
    # Row 60 looks down by 30/100: the ground is met at depth 1.5 / 0.3 = 5 m.
    assert t[60, 0] == pytest.approx(5.0) and hit[60, 0] == 0
    assert hit[0, 0] == -1 and np.isinf(t[0, 0])                       # sky
    # The ray through pixel (25, 25) is (-0.25, -0.05, 1): towards the sphere centre
    # (20, 5, 2.5) at 20 m depth, so it enters 1 m earlier along the ray.
    distance = np.sqrt(20.0**2 + 5.0**2 + 1.0**2)
    expected = (distance - 1.0) / np.sqrt(1 + 0.25**2 + 0.05**2)
    assert t[25, 25] == pytest.approx(expected, rel=1e-5) and hit[25, 25] == 2


def test_lidar_rays_hit_box_at_its_range():
    grid = raycast.LidarGrid([-10.0, 0.0, 5.0], 360, np.eye(3))
    origin = np.array([0.0, 0.0, 1.5])
    kinds, bmin, bmax = _scene()
    corners = raycast.box_corners(bmin, bmax) - origin
    t, hit = raycast.cast(grid, origin, kinds, bmin, bmax, grid.windows(corners), 120.0)
    assert t[1, 0] == pytest.approx(10.0) and hit[1, 0] == 1            # straight ahead
    assert t[1, 180] == np.inf                                           # behind: nothing
    # The -10 deg beam backwards meets the ground at 1.5 / sin(10 deg).
    assert t[0, 180] == pytest.approx(1.5 / np.sin(np.radians(10.0)), rel=1e-6)


@pytest.mark.parametrize('sensor', ['camera', 'lidar'])
def test_culling_windows_lose_no_hit(sensor):
    # Random boxes all around the sensor, some straddling the camera plane or the azimuth
    # wrap: casting inside the windows must equal casting on every ray.
    rng = np.random.default_rng(0)
    centre = rng.uniform([-30, -20, 0], [60, 20, 4], size=(60, 3))
    size = rng.uniform([0.3, 0.3, 0.5], [20, 6, 12], size=(60, 3))
    centre[np.abs(centre[:, 1]) < 2, 1] += 5.0          # keep the sensor outside every box
    bmin, bmax = centre - size / 2, centre + size / 2
    bmin[:, 2] = np.maximum(bmin[:, 2], 0.0)
    kinds = np.where(rng.random(60) < 0.2, raycast.SPHERE, raycast.BOX)
    bmax[kinds == raycast.SPHERE] = bmin[kinds == raycast.SPHERE] + size[kinds == 1, :1]
    origin = np.array([0.5, 0.2, 1.7])
    pitch = np.radians(1.5)
    tilt = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0],
                     [-np.sin(pitch), 0, np.cos(pitch)]])
    if sensor == 'camera':
        R = tilt @ R_CAMERA_FROM_LIDAR.T
        grid = raycast.CameraGrid(300.0, 300.0, 160.0, 50.0, 320, 100, R)
    else:
        R = tilt
        grid = raycast.LidarGrid(np.linspace(-24.9, 2.0, 32), 720, R)
    corners = (raycast.box_corners(bmin, bmax) - origin) @ R
    windows = grid.windows(corners)
    everything = [[(slice(None), slice(None))]] * len(kinds)
    t_fast, hit_fast = raycast.cast(grid, origin, kinds, bmin, bmax, windows, 500.0)
    t_all, hit_all = raycast.cast(grid, origin, kinds, bmin, bmax, everything, 500.0)
    assert (hit_all > 0).sum() > 1000
    np.testing.assert_array_equal(t_fast, t_all)
    np.testing.assert_array_equal(hit_fast, hit_all)


# -- LiDAR and camera see the same world -----------------------------------------------------
def test_lidar_points_land_on_matching_depth(full_frame):
    drive, frame = full_frame
    scan = frame.lidar
    assert scan['x'].size > 100_000
    assert scan['ring'].dtype == np.uint16 and scan['ring'].max() == 63
    assert np.all((scan['intensity'] >= 0) & (scan['intensity'] <= 1))
    assert np.all(np.sqrt(scan['x']**2 + scan['y']**2 + scan['z']**2) <= 120.0 + 1e-3)
    points = np.stack([scan['x'], scan['y'], scan['z']], axis=1).astype(np.float64)
    camera_points = points @ drive.T_camera_from_lidar[:3, :3].T + drive.T_camera_from_lidar[:3, 3]
    u, v = drive.camera.project(camera_points)
    cols, rows = np.rint(u), np.rint(v)
    inside = (camera_points[:, 2] > 0.5) & (cols >= 0) & (cols < 1242) & (rows >= 0) & (
        rows < 375)
    cols, rows = cols[inside].astype(int), rows[inside].astype(int)
    z = camera_points[inside, 2]
    smooth = ~_discontinuity(frame.depth)[rows, cols]
    assert smooth.sum() > 5000
    relative = np.abs(frame.depth[rows, cols][smooth] - z[smooth]) / z[smooth]
    assert np.median(relative) < 0.01
    assert np.percentile(relative, 90) < 0.03


# -- synth-bag -------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def small_bag(tmp_path_factory):
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag

    path = tmp_path_factory.mktemp('synth') / 'bag'
    write_synthetic_bag(path, frames=3, seed=5, start=2, size=(416, 128))
    return path


def test_synth_bag_topics_counts_and_stamps(small_bag):
    from rosbags.highlevel import AnyReader

    expected_counts = {
        topics.CAMERA_IMAGE_TOPIC: 3, topics.CAMERA_INFO_TOPIC: 3, topics.LIDAR_TOPIC: 3,
        topics.GT_DEPTH_TOPIC: 3, topics.GT_SEMANTICS_TOPIC: 3, topics.TF_STATIC_TOPIC: 1,
        topics.TF_TOPIC: 3}
    stamps: dict[str, list[int]] = {}
    with AnyReader([Path(small_bag)]) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == expected_counts
        for connection, log_time, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.topic in (topics.TF_TOPIC, topics.TF_STATIC_TOPIC):
                header = msg.transforms[0].header
            else:
                header = msg.header
                frame = (topics.LIDAR_FRAME if connection.topic == topics.LIDAR_TOPIC
                         else topics.CAMERA_FRAME)
                assert header.frame_id == frame
            stamp = header.stamp.sec * 10**9 + header.stamp.nanosec
            assert stamp == log_time
            stamps.setdefault(connection.topic, []).append(stamp)
    drive = SyntheticDrive(seed=5)
    frame_stamps = [drive.stamp_ns(index) for index in (2, 3, 4)]
    for topic, values in stamps.items():
        assert values == (frame_stamps[:1] if topic == topics.TF_STATIC_TOPIC else frame_stamps)


def test_synth_bag_round_trips_the_frames(small_bag):
    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.messages import (
        camera_info_to_model,
        depth_image_to_metres,
        image_to_array,
        read_pointcloud2,
    )

    drive = SyntheticDrive(seed=5, config=DriveConfig(width=416, height=128))
    expected = drive.render(3)
    seen = set()
    with BagReader(small_bag) as bag:
        for topic, stamp, msg in bag.messages():
            if stamp != expected.stamp_ns:
                continue
            seen.add(topic)
            if topic == topics.CAMERA_IMAGE_TOPIC:
                assert msg.encoding == 'rgb8'
                np.testing.assert_array_equal(image_to_array(msg), expected.rgb)
            elif topic == topics.GT_DEPTH_TOPIC:
                assert msg.encoding == '32FC1'
                np.testing.assert_array_equal(depth_image_to_metres(msg), expected.depth)
            elif topic == topics.GT_SEMANTICS_TOPIC:
                assert msg.encoding == 'mono8'
                np.testing.assert_array_equal(image_to_array(msg), expected.semantics)
            elif topic == topics.CAMERA_INFO_TOPIC:
                camera = camera_info_to_model(msg)
                np.testing.assert_allclose(camera.projection, drive.camera.projection)
            elif topic == topics.LIDAR_TOPIC:
                cloud = read_pointcloud2(msg, ('x', 'y', 'z', 'intensity', 'ring'))
                for key in cloud:
                    np.testing.assert_array_equal(cloud[key], expected.lidar[key])
                assert cloud['ring'].dtype == np.uint16
    assert seen == {topics.CAMERA_IMAGE_TOPIC, topics.CAMERA_INFO_TOPIC, topics.LIDAR_TOPIC,
                    topics.GT_DEPTH_TOPIC, topics.GT_SEMANTICS_TOPIC, topics.TF_TOPIC}


def test_bag_lidar_projects_onto_gt_depth_through_its_own_calibration(small_bag):
    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.messages import (
        camera_info_to_model,
        depth_image_to_metres,
        read_pointcloud2,
    )
    from monodepth_ros.io.transforms import TransformBuffer
    from monodepth_ros.runtime.projection import lidar_depth_image

    buffer = TransformBuffer()
    camera, points, depth = None, None, None
    with BagReader(small_bag) as bag:
        for topic, _, msg in bag.messages():
            if topic == topics.TF_STATIC_TOPIC:
                buffer.add_message(msg, static=True)
            elif topic == topics.CAMERA_INFO_TOPIC and camera is None:
                camera = camera_info_to_model(msg)
            elif topic == topics.LIDAR_TOPIC and points is None:
                cloud = read_pointcloud2(msg)
                points = np.stack([cloud['x'], cloud['y'], cloud['z']], axis=1)
            elif topic == topics.GT_DEPTH_TOPIC and depth is None:
                depth = depth_image_to_metres(msg)
    T = buffer.lookup(topics.CAMERA_FRAME, topics.LIDAR_FRAME)
    lidar_depth = lidar_depth_image(points, T, camera)
    compared = (lidar_depth > 0) & ~_discontinuity(depth)
    assert compared.sum() > 2000
    relative = np.abs(lidar_depth[compared] - depth[compared]) / depth[compared]
    assert np.median(relative) < 0.01


def test_synth_bag_sqlite3_jazzy_through_the_command_line(tmp_path):
    from rosbags.highlevel import AnyReader

    from monodepth_ros.cli import main

    out = tmp_path / 'jazzy'
    assert main(['synth-bag', str(out), '--frames', '2', '--seed', '1', '--storage', 'sqlite3',
                 '--distro', 'jazzy', '--size', '160x48']) == 0
    assert list(out.glob('*.db3'))
    with AnyReader([out]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts[topics.CAMERA_IMAGE_TOPIC] == 2 and counts[topics.LIDAR_TOPIC] == 2
        image = next(reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()
                     if c.topic == topics.CAMERA_IMAGE_TOPIC)
        assert (image.width, image.height, image.encoding) == (160, 48, 'rgb8')
    assert main(['synth-bag', str(out), '--frames', '1']) == 2     # exists: refused


def test_dataset_folder_round_trip(tmp_path):
    from monodepth_ros.bagtools.synth_bag import read_dataset_frame, write_synthetic_dataset

    out = tmp_path / 'data'
    write_synthetic_dataset(out, frames=2, seed=4, start=10, size=(160, 48), lidar=True)
    drive = SyntheticDrive(seed=4, config=DriveConfig(width=160, height=48))
    expected = drive.render(11)
    frame = read_dataset_frame(out, 11)
    np.testing.assert_array_equal(frame['rgb'], expected.rgb)
    np.testing.assert_array_equal(frame['semantics'], expected.semantics)
    # The PNG holds metres * 256 in 16 bits: farther than 255.99 m reads back as no depth.
    storable = np.where(expected.depth * 256 <= 65535, expected.depth, np.nan)
    np.testing.assert_array_equal(np.isnan(frame['depth']), np.isnan(storable))
    np.testing.assert_allclose(frame['depth'], storable, atol=0.5 / 256, equal_nan=True)
    assert frame['camera'].fx == pytest.approx(drive.camera.fx)
    np.testing.assert_array_equal(frame['lidar']['ring'], expected.lidar['ring'])
    with pytest.raises(OutputError, match='exists already'):
        write_synthetic_dataset(out, frames=1, seed=4)
    with pytest.raises(DatasetError, match='missing'):
        read_dataset_frame(out, 99)


def test_cli_reports_bad_arguments_in_one_line(tmp_path, capsys):
    from monodepth_ros.cli import main

    assert main(['synth-bag', str(tmp_path / 'bag'), '--frames', '0']) == 2
    assert "argument --frames: expected an integer >= 1, got '0'" in capsys.readouterr().err
    assert main(['synth-bag', str(tmp_path / 'x'), '--size', '12by4', '--dataset']) == 2
    assert 'WIDTHxHEIGHT' in capsys.readouterr().err


# -- heading against the road (far-field views) ---------------------------------------------
@pytest.mark.parametrize('yaw', [10.0, -7.5])
def test_heading_turns_the_rig_and_the_road_stays_exact(yaw):
    level = SyntheticDrive(seed=3, config=DriveConfig(width=208, height=64, pitch_deg=0.0,
                                                      camera_height=1.6))
    turned = SyntheticDrive(seed=3, config=DriveConfig(width=208, height=64, pitch_deg=0.0,
                                                       camera_height=1.6, yaw_deg=yaw))
    T = turned.T_world_from_camera(4)
    axis = T[:3, 2]                              # the optical axis in the world
    assert np.degrees(np.arctan2(axis[1], axis[0])) == pytest.approx(yaw, abs=1e-9)
    assert axis[2] == pytest.approx(0.0, abs=1e-12)
    # The car stands where it stood; the rig (LiDAR and camera) turns about base_link.
    np.testing.assert_allclose(turned.T_world_from_base(4)[:3, 3],
                               level.T_world_from_base(4)[:3, 3], atol=1e-12)
    offset = level.T_world_from_camera(4)[:3, 3] - level.T_world_from_base(4)[:3, 3]
    c, s = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
    np.testing.assert_allclose(T[:3, 3] - turned.T_world_from_base(4)[:3, 3],
                               [c * offset[0] - s * offset[1], s * offset[0] + c * offset[1],
                                offset[2]], atol=1e-12)
    lidar_axis = turned.T_world_from_lidar(4)[:3, 0]
    assert np.degrees(np.arctan2(lidar_axis[1], lidar_axis[0])) == pytest.approx(yaw, abs=1e-9)
    frame = turned.render(4, lidar=False)
    camera = turned.camera
    rows, cols = np.nonzero(frame.semantics == TRAIN_ID['road'])
    rays = np.stack([(cols - camera.cx) / camera.fx, (rows - camera.cy) / camera.fy,
                     np.ones(cols.size)], axis=1)
    np.testing.assert_allclose(frame.depth[rows, cols], -T[2, 3] / (rays @ T[2, :3]),
                               rtol=2e-6)


def test_heading_zero_is_the_straight_world_and_bad_headings_are_rejected():
    from monodepth_ros.training.config import load_config
    from monodepth_ros.training.datasets import drive_heading

    plain = SyntheticDrive(seed=3, config=SMALL).render(2, lidar=False)
    zero = SyntheticDrive(seed=3, config=DriveConfig(width=208, height=64, yaw_deg=0.0))
    np.testing.assert_array_equal(zero.render(2, lidar=False).rgb, plain.rgb)
    with pytest.raises(ConfigError, match='yaw_deg'):
        DriveConfig(yaw_deg=50.0)
    headings = [drive_heading(seed, 12.0) for seed in range(100, 148)]
    assert all(-12.0 <= h <= 12.0 for h in headings) and len(set(headings)) == 48
    assert drive_heading(101, 12.0) == drive_heading(101, 12.0)
    assert drive_heading(101, 0.0) == 0.0
    with pytest.raises(ConfigError, match='heading_deg'):
        load_config(Path(__file__).parents[1] / 'training/configs/synthetic_default.yaml',
                    ['data.depth.heading_deg=60'])


# -- cross streets ---------------------------------------------------------------------------
def test_junctions_clear_the_kerbside_keep_things_whole_and_change_nothing_else():
    from monodepth_ros.synthetic.world import BUILDING, CAR, FOLIAGE, GLASS, SIDEWALK, TRUNK

    plain = SyntheticDrive(seed=5, config=SMALL)
    crossed = SyntheticDrive(seed=5, config=DriveConfig(width=208, height=64, junctions=1.0))
    for k in range(4):
        x_lo, x_hi = crossed._junction_span(k)
        assert 12.0 <= x_hi - x_lo <= 20.0 and k * 50.0 <= x_lo < (k + 1) * 50.0
        objects = crossed._chunk(k)
        lo, hi, material = objects['bmin'], objects['bmax'], objects['material']
        across = (hi[:, 0] > x_lo + 1e-9) & (lo[:, 0] < x_hi - 1e-9)
        spheres = objects['kind'] == raycast.SPHERE
        # Only the cross street's own sidewalks and buildings lie across it: no car, tree,
        # pole or person, and the main street's kerbside strips are cut at its edges.
        assert set(material[across]) <= {SIDEWALK, BUILDING}
        assert np.all(hi[across & (material == SIDEWALK), 1]
                      - lo[across & (material == SIDEWALK), 1] > 100.0)
        # Parts of one thing go together: every car's glass sits on its body, every trunk
        # carries its crown.
        bodies = lo[material == CAR], hi[material == CAR]
        for glass_lo, glass_hi in zip(lo[material == GLASS], hi[material == GLASS]):
            assert np.any(np.all((bodies[0][:, :2] <= glass_lo[:2])
                                 & (glass_hi[:2] <= bodies[1][:, :2]), axis=1))
        assert np.sum(material == TRUNK) == np.sum(spheres & (material == FOLIAGE))
        # Away from the cross street the chunk is the plain world's, object for object.
        away = plain._chunk(k)
        far = (away['bmax'][:, 0] < x_lo - 6.0) | (away['bmin'][:, 0] > x_hi + 6.0)
        rows = {tuple(np.r_[b, t]) for b, t in zip(lo, hi)}
        assert far.sum() >= 10
        assert all(tuple(np.r_[b, t]) in rows
                   for b, t in zip(away['bmin'][far], away['bmax'][far]))


def test_cross_street_ground_is_road_at_the_exact_ground_depth():
    drive = SyntheticDrive(seed=5, config=DriveConfig(junctions=1.0))
    frame = drive.render(0, lidar=False)
    camera = drive.camera
    T = drive.T_world_from_camera(0)
    rows, cols = np.nonzero(frame.semantics == TRAIN_ID['road'])
    rays = np.stack([(cols - camera.cx) / camera.fx, (rows - camera.cy) / camera.fy,
                     np.ones(cols.size)], axis=1)
    depth = -T[2, 3] / (rays @ T[2, :3])
    np.testing.assert_allclose(frame.depth[rows, cols], depth, rtol=2e-6)
    world_y = T[1, 3] + depth * (rays @ T[1, :3])
    beyond = (world_y > drive.scene.road_left() + 0.5) | (world_y < -drive.scene.road_right()
                                                          - 0.5)
    assert beyond.sum() > 1000          # road pixels off to the side: the cross street
    # The cross street is road within its length only.
    x_lo, x_hi = drive._junction_span(0)
    x = np.full(4, (x_lo + x_hi) / 2)
    y = np.array([drive.scene.road_left() + 10.0, drive.scene.road_left() + 130.0,
                  -drive.scene.road_right() - 10.0, -drive.scene.road_right() - 130.0])
    assert drive._in_cross_street(x, y).tolist() == [True, False, True, False]
    assert not drive._in_cross_street(np.full(4, x_hi + 1.0), y).any()   # past its kerb


def test_bad_junction_probabilities_are_rejected():
    from monodepth_ros.training.config import load_config

    with pytest.raises(ConfigError, match='junctions'):
        DriveConfig(junctions=1.5)
    with pytest.raises(ConfigError, match='junctions'):
        load_config(Path(__file__).parents[1] / 'training/configs/synthetic_default.yaml',
                    ['data.depth.junctions=-0.1'])
