"""Bag write -> read round trips (mcap and sqlite3, Humble and Jazzy) and bag errors."""

import sqlite3

import numpy as np
import pytest
import yaml

from monodepth_ros.bagio import BagReader, BagWriter
from monodepth_ros.camera import CameraModel
from monodepth_ros.errors import BagError
from monodepth_ros.geometry import TransformBuffer, make_transform
from monodepth_ros.messages import (
    array_to_image,
    camera_info_to_model,
    make_header,
    make_pointcloud2,
    make_tf_message,
    model_to_camera_info,
    read_pointcloud2,
    stamp_to_ns,
)

CAMERA = CameraModel.from_intrinsics(50.0, 52.0, 15.5, 9.25, 32, 20)
STEP_NS = 100_000_000
START_NS = 1_700_000_000_000_000_000


def write_drive(path, storage, distro, frames=3):
    """A small bag: tf_static once, then per frame an image, camera_info and a cloud."""
    rng = np.random.default_rng(0)
    images, clouds = [], []
    with BagWriter(path, storage=storage, distro=distro) as bag:
        types = bag.types
        bag.write('/tf_static', make_tf_message(
            types, [('camera', 'velo_link', make_transform(None, [0.0, -0.08, -0.27]),
                     START_NS)]), START_NS)
        # Written out of order on purpose: the reader must return bag-time order.
        for index in reversed(range(frames)):
            stamp = START_NS + index * STEP_NS
            header = make_header(types, stamp, 'camera')
            image = rng.integers(0, 256, (20, 32, 3)).astype(np.uint8)
            xyz = rng.normal(size=(7, 3)).astype(np.float32)
            images.insert(0, image)
            clouds.insert(0, xyz)
            bag.write('/camera/image_raw', array_to_image(types, image, 'rgb8', header), stamp)
            bag.write('/camera/camera_info', model_to_camera_info(types, CAMERA, header), stamp)
            bag.write('/velo/points', make_pointcloud2(types, make_header(
                types, stamp, 'velo_link'), xyz), stamp + 1)
    return images, clouds


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize('distro', ['humble', 'jazzy'])
def test_bag_round_trip(tmp_path, storage, distro):
    path = tmp_path / 'drive'
    images, clouds = write_drive(path, storage, distro)
    metadata = yaml.safe_load((path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert metadata['storage_identifier'] == storage
    assert metadata['version'] == {'humble': 8, 'jazzy': 9}[distro]
    assert metadata['message_count'] == 10
    with BagReader(path) as bag:
        assert bag.topics == {'/tf_static': 'tf2_msgs/msg/TFMessage',
                              '/camera/image_raw': 'sensor_msgs/msg/Image',
                              '/camera/camera_info': 'sensor_msgs/msg/CameraInfo',
                              '/velo/points': 'sensor_msgs/msg/PointCloud2'}
        assert bag.message_count(['/camera/image_raw']) == 3
        records = list(bag.messages())
        stamps = [stamp for _, stamp, _ in records]
        assert stamps == sorted(stamps) and len(records) == 10
        assert records[0][0] == '/tf_static'
        buffer = TransformBuffer()
        buffer.add_message(records[0][2], static=True)
        np.testing.assert_allclose(buffer.lookup('camera', 'velo_link')[:3, 3],
                                   [0.0, -0.08, -0.27])
        image_msgs = [msg for _, _, msg in bag.messages(['/camera/image_raw'])]
        cloud_msgs = list(bag.messages(['/velo/points']))
        info = next(iter(bag.messages(['/camera/camera_info'])))[2]
    for index, msg in enumerate(image_msgs):
        assert stamp_to_ns(msg.header.stamp) == START_NS + index * STEP_NS
        np.testing.assert_array_equal(
            np.asarray(msg.data).reshape(20, 32, 3), images[index])
    for index, (topic, stamp, msg) in enumerate(cloud_msgs):
        assert topic == '/velo/points' and stamp == START_NS + index * STEP_NS + 1
        arrays = read_pointcloud2(msg)
        np.testing.assert_array_equal(np.stack([arrays['x'], arrays['y'], arrays['z']], 1),
                                      clouds[index])
    model = camera_info_to_model(info)
    assert (model.fx, model.fy, model.cx, model.cy) == (50.0, 52.0, 15.5, 9.25)


def test_reader_accepts_the_storage_file_itself(tmp_path):
    write_drive(tmp_path / 'drive', 'mcap', 'jazzy', frames=1)
    with BagReader(tmp_path / 'drive' / 'drive.mcap') as bag:
        assert '/camera/image_raw' in bag.topics


def test_missing_topic_lists_the_bag_topics(tmp_path):
    write_drive(tmp_path / 'drive', 'sqlite3', 'humble', frames=1)
    with BagReader(tmp_path / 'drive') as bag:
        with pytest.raises(BagError, match=r"no topic\(s\) \['/lidar'\]; it has \['/camera"):
            list(bag.messages(['/camera/image_raw', '/lidar']))


def test_missing_and_corrupt_bags_are_reported_with_their_path(tmp_path):
    with pytest.raises(BagError, match='nowhere.* does not exist'):
        BagReader(tmp_path / 'nowhere')
    corrupt = tmp_path / 'corrupt'
    corrupt.mkdir()
    (corrupt / 'metadata.yaml').write_text('rosbag2_bagfile_information: [not, a, map\n')
    with pytest.raises(BagError, match='cannot open bag .*corrupt'):
        BagReader(corrupt).open()
    no_metadata = tmp_path / 'empty_dir'
    no_metadata.mkdir()
    with pytest.raises(BagError, match='cannot open bag .*empty_dir'):
        with BagReader(no_metadata):
            pass
    ros1 = tmp_path / 'garbage.bag'
    ros1.write_bytes(b'#ROSBAG V2.0\n' + bytes(64))
    with pytest.raises(BagError, match='garbage.bag'):
        BagReader(ros1).open()


def test_writer_refuses_existing_path_and_bad_options(tmp_path):
    with pytest.raises(BagError, match='exists already'):
        BagWriter(tmp_path)
    with pytest.raises(BagError, match="storage 'rosbag1' unknown"):
        BagWriter(tmp_path / 'a', storage='rosbag1')
    with pytest.raises(BagError, match="distro 'noetic' unknown"):
        BagWriter(tmp_path / 'b', distro='noetic')
    with BagWriter(tmp_path / 'c') as bag:
        header = make_header(bag.types, 0, 'x')
        bag.write('/t', array_to_image(bag.types, np.zeros((2, 2), np.uint8), 'mono8', header), 0)
        with pytest.raises(BagError, match='carries sensor_msgs/msg/Image'):
            bag.write('/t', make_tf_message(bag.types, []), 1)


def test_bag_without_message_definitions_uses_the_distro_typestore(tmp_path):
    # Humble's sqlite3 plugin records no message definitions; emulate such a bag.
    write_drive(tmp_path / 'drive', 'sqlite3', 'humble', frames=1)
    database = sqlite3.connect(tmp_path / 'drive' / 'drive.db3')
    database.execute('DELETE FROM message_definitions')
    database.commit()
    database.close()
    with BagReader(tmp_path / 'drive', distro='humble') as bag:
        (_, stamp, msg), = bag.messages(['/camera/image_raw'])
    assert stamp == START_NS and (msg.height, msg.width, msg.encoding) == (20, 32, 'rgb8')
