"""Bag write -> read round trips (mcap and sqlite3, Humble and Jazzy) and bag errors."""

import sqlite3
import struct

import numpy as np
import pytest
import yaml

from monodepth_ros.errors import BagError
from monodepth_ros.io.bagio import BagReader, BagWriter, default_storage
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.geometry import make_transform
from monodepth_ros.io.messages import (
    MessageTypes,
    array_to_image,
    camera_info_to_model,
    make_header,
    make_pointcloud2,
    make_tf_message,
    model_to_camera_info,
    read_pointcloud2,
    stamp_to_ns,
)
from monodepth_ros.io.transforms import TransformBuffer

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


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_start_and_end_time_span_the_messages(tmp_path, storage):
    # write_drive writes frames in reverse; the first message is /tf_static at START_NS and
    # the last the cloud of frame 2 at START_NS + 2 * STEP_NS + 1. The end time follows the
    # half-open convention of rosbags (and of messages(start, stop)): one past the last stamp.
    write_drive(tmp_path / 'drive', storage, 'jazzy', frames=3)
    with BagReader(tmp_path / 'drive') as bag:
        assert bag.start_time_ns == START_NS
        assert bag.end_time_ns == START_NS + 2 * STEP_NS + 1 + 1
        assert bag.end_time_ns - 1 == max(stamp for _, stamp, _ in bag.messages())
    with pytest.raises(BagError, match='is not open; use BagReader as a context manager'):
        _ = bag.start_time_ns


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_serialized_messages_are_the_cdr_of_the_decoded_ones(tmp_path, storage):
    images, _ = write_drive(tmp_path / 'drive', storage, 'humble', frames=2)
    typestore = MessageTypes.rosbags('humble').typestore
    with BagReader(tmp_path / 'drive') as bag:
        decoded = list(bag.messages(['/camera/image_raw', '/camera/camera_info']))
        raw = list(bag.serialized_messages(['/camera/image_raw', '/camera/camera_info']))
        with pytest.raises(BagError, match='has no topic'):
            next(bag.serialized_messages(['/nope']))
    assert [(topic, stamp) for topic, _, stamp, _ in raw] == \
        [(topic, stamp) for topic, stamp, _ in decoded]
    assert [msgtype for _, msgtype, _, _ in raw][:2] == ['sensor_msgs/msg/Image',
                                                         'sensor_msgs/msg/CameraInfo']
    for (_, msgtype, _, data), (_, _, msg) in zip(raw, decoded):
        assert isinstance(data, bytes)
        assert data == bytes(typestore.serialize_cdr(msg, msgtype))
    image = typestore.deserialize_cdr(raw[2][3], 'sensor_msgs/msg/Image')
    np.testing.assert_array_equal(np.asarray(image.data).reshape(20, 32, 3), images[1])


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


# rmw enum values (rmw/types.h) as Humble stores them in the QoS string of metadata version 8.
RMW_KEEP_LAST, RMW_RELIABLE, RMW_TRANSIENT_LOCAL, RMW_VOLATILE, RMW_AUTOMATIC = 1, 1, 1, 2, 1


def read_metadata(path):
    return yaml.safe_load((path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']


def check_humble_qos_string(qos_text, durability):
    """Humble parses offered_qos_profiles as a string holding a YAML list with int enums."""
    assert isinstance(qos_text, str)
    (qos,) = yaml.safe_load(qos_text)
    assert (qos['history'], qos['reliability'], qos['durability'], qos['liveliness']) == (
        RMW_KEEP_LAST, RMW_RELIABLE, durability, RMW_AUTOMATIC)
    assert qos['deadline'] == {'sec': 0, 'nsec': 0}


@pytest.mark.parametrize('distro, storage, suffix', [('humble', 'sqlite3', '.db3'),
                                                      ('jazzy', 'mcap', '.mcap')])
def test_storage_none_is_the_one_the_distro_opens_out_of_the_box(tmp_path, distro, storage,
                                                                      suffix):
    assert default_storage(distro) == storage
    with BagWriter(tmp_path / 'bag', storage=None, distro=distro) as bag:
        bag.write('/tf', make_tf_message(bag.types, []), 5)
    assert read_metadata(tmp_path / 'bag')['storage_identifier'] == storage
    assert (tmp_path / 'bag' / f'bag{suffix}').is_file()
    with pytest.raises(BagError, match="distro 'iron' unknown"):
        default_storage('iron')


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_humble_metadata_has_the_fields_and_types_humble_decodes(tmp_path, storage):
    path = tmp_path / 'drive'
    write_drive(path, storage, 'humble', frames=2)
    metadata = read_metadata(path)
    # Humble (metadata version 5) requires these keys with these types; newer keys are ignored.
    assert metadata['version'] == 8
    assert metadata['storage_identifier'] == storage
    suffix = 'db3' if storage == 'sqlite3' else 'mcap'
    assert metadata['relative_file_paths'] == [f'drive.{suffix}']
    assert (path / metadata['relative_file_paths'][0]).is_file()
    assert metadata['message_count'] == 7
    assert metadata['starting_time'] == {'nanoseconds_since_epoch': START_NS}
    assert metadata['duration'] == {'nanoseconds': STEP_NS + 1}
    assert (metadata['compression_format'], metadata['compression_mode']) == ('', '')
    (file_info,) = metadata['files']
    assert file_info['path'] == metadata['relative_file_paths'][0]
    assert file_info['message_count'] == 7
    assert metadata['custom_data'] == {'monodepth_ros.distro': 'humble'}
    topics = {entry['topic_metadata']['name']: entry for entry in
              metadata['topics_with_message_count']}
    assert topics['/camera/image_raw']['message_count'] == 2
    for name, entry in topics.items():
        topic = entry['topic_metadata']
        assert topic['serialization_format'] == 'cdr'
        check_humble_qos_string(topic['offered_qos_profiles'], RMW_TRANSIENT_LOCAL
                                if name == '/tf_static' else RMW_VOLATILE)


def test_humble_sqlite3_tables_answer_humbles_queries(tmp_path):
    write_drive(tmp_path / 'drive', 'sqlite3', 'humble', frames=2)
    database = sqlite3.connect(tmp_path / 'drive' / 'drive.db3')
    try:
        # The queries Humble's sqlite3 plugin runs to list topics and to read messages.
        topics = database.execute('SELECT name, type, serialization_format, '
                                  'offered_qos_profiles FROM topics ORDER BY id').fetchall()
        rows = database.execute('SELECT data, timestamp, topics.name FROM messages JOIN topics '
                                'ON messages.topic_id = topics.id ORDER BY messages.timestamp'
                                ).fetchall()
    finally:
        database.close()
    assert [(name, msgtype) for name, msgtype, _, _ in topics] == [
        ('/tf_static', 'tf2_msgs/msg/TFMessage'), ('/camera/image_raw', 'sensor_msgs/msg/Image'),
        ('/camera/camera_info', 'sensor_msgs/msg/CameraInfo'),
        ('/velo/points', 'sensor_msgs/msg/PointCloud2')]
    for name, _, serialization, qos_text in topics:
        assert serialization == 'cdr'
        check_humble_qos_string(qos_text, RMW_TRANSIENT_LOCAL if name == '/tf_static'
                                else RMW_VOLATILE)
    assert [row[1] for row in rows] == sorted(row[1] for row in rows) and len(rows) == 7
    assert rows[0][2] == '/tf_static' and rows[0][0][:4] == bytes([0, 1, 0, 0])  # CDR LE header


def test_jazzy_metadata_stores_qos_as_a_list_with_names(tmp_path):
    write_drive(tmp_path / 'drive', 'mcap', 'jazzy', frames=1)
    metadata = read_metadata(tmp_path / 'drive')
    assert metadata['version'] == 9 and metadata['storage_identifier'] == 'mcap'
    topics = {entry['topic_metadata']['name']: entry['topic_metadata'] for entry in
              metadata['topics_with_message_count']}
    (qos,) = topics['/tf_static']['offered_qos_profiles']
    assert (qos['history'], qos['reliability'], qos['durability']) == (
        'keep_last', 'reliable', 'transient_local')
    assert topics['/camera/image_raw']['offered_qos_profiles'][0]['durability'] == 'volatile'
    assert topics['/camera/image_raw']['type_description_hash'].startswith('RIHS01_')


def read_mcap_summary(path):
    """Profile, schemas and channels of an MCAP file, from its top-level records."""
    data = path.read_bytes()
    assert data[:8] == b'\x89MCAP0\r\n' and data[-8:] == b'\x89MCAP0\r\n'

    def string(buffer, offset):
        (length,) = struct.unpack_from('<I', buffer, offset)
        return buffer[offset + 4:offset + 4 + length].decode(), offset + 4 + length

    profile, schemas, channels, offset = None, {}, {}, 8
    while offset < len(data) - 8:
        opcode, length = struct.unpack_from('<BQ', data, offset)
        body = data[offset + 9:offset + 9 + length]
        offset += 9 + length
        if opcode == 0x01:  # header: profile, library
            profile, _ = string(body, 0)
        elif opcode == 0x03:  # schema: id, name, encoding, data
            (schema_id,) = struct.unpack_from('<H', body, 0)
            name, at = string(body, 2)
            encoding, at = string(body, at)
            schemas[schema_id] = (name, encoding)
        elif opcode == 0x04:  # channel: id, schema id, topic, message encoding, metadata map
            _, schema_id = struct.unpack_from('<HH', body, 0)
            topic, at = string(body, 4)
            encoding, at = string(body, at)
            (map_length,) = struct.unpack_from('<I', body, at)
            at, end, metadata = at + 4, at + 4 + map_length, {}
            while at < end:
                key, at = string(body, at)
                metadata[key], at = string(body, at)
            channels[topic] = (schema_id, encoding, metadata)
        elif opcode == 0x02:  # footer
            break
    return profile, schemas, channels


@pytest.mark.parametrize('distro', ['humble', 'jazzy'])
def test_mcap_follows_the_ros2_profile(tmp_path, distro):
    write_drive(tmp_path / 'drive', 'mcap', distro, frames=1)
    profile, schemas, channels = read_mcap_summary(tmp_path / 'drive' / 'drive.mcap')
    assert profile == 'ros2'
    assert set(channels) == {'/tf_static', '/camera/image_raw', '/camera/camera_info',
                             '/velo/points'}
    name, encoding = schemas[channels['/camera/image_raw'][0]]
    assert (name, encoding) == ('sensor_msgs/msg/Image', 'ros2msg')
    for topic, (_, message_encoding, metadata) in channels.items():
        assert message_encoding == 'cdr'
        qos_text = metadata['offered_qos_profiles']
        if distro == 'humble':
            check_humble_qos_string(qos_text, RMW_TRANSIENT_LOCAL if topic == '/tf_static'
                                    else RMW_VOLATILE)
        else:
            assert yaml.safe_load(qos_text)[0]['history'] == 'keep_last'


def test_describe_topics_names_each_topic_or_says_the_bag_is_empty():
    from monodepth_ros.io.bagio import describe_topics

    assert describe_topics({'/b': 'sensor_msgs/msg/Image', '/a': 'tf2_msgs/msg/TFMessage'}) == (
        'its topics are: /a (tf2_msgs/msg/TFMessage), /b (sensor_msgs/msg/Image)')
    assert describe_topics({}).startswith('it has no topics at all (an empty recording')
