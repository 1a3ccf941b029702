"""Bag I/O with rosbags: write rosbag2 (mcap or sqlite3), read rosbag2 and ROS 1 bags.

Writing serializes to CDR with the typestore of the chosen ROS 2 distro and writes the
``metadata.yaml`` and storage layout that distro's stock ``ros2 bag info``/``play`` open (see
``BAG_FORMATS``). ``/tf_static`` is offered with transient-local durability so late
subscribers of a replay still get the static transforms.

Reading streams messages in time order with ``rosbags.highlevel.AnyReader``; message classes
come from the definitions stored in the bag.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from monodepth_ros.errors import BagError
from monodepth_ros.io.messages import MessageTypes

STORAGES = ('mcap', 'sqlite3')


class BagFormat(NamedTuple):
    """What a distro's stock rosbag2 reads: metadata.yaml version and default storage."""

    version: int
    storage: str


# Per ROS 2 distro, the rosbag2 format its stock tools open (rosbag2 behaviour, ros2/rosbag2):
# - Humble (rosbag2 0.15) decodes metadata.yaml fields up to its own version 5 and ignores
#   newer keys, but reads offered_qos_profiles as a YAML *string* (rosbag2_storage yaml.hpp).
#   Version 9 stores a YAML list there and Humble fails with "Exception on parsing info file:
#   ... bad conversion" (ros2/rosbag2#2013), so Humble gets version 8 (QoS string, integer
#   enums). Its sqlite3 plugin reads only the messages/topics tables, so the newer sqlite3
#   schema is fine; mcap needs the extra ros-humble-rosbag2-storage-mcap package, hence sqlite3.
# - Jazzy reads versions up to 9 (QoS as a YAML list) and ships mcap as its default storage
#   (ros2/rosbag2#1160, since Iron).
BAG_FORMATS = {
    'humble': BagFormat(version=8, storage='sqlite3'),
    'jazzy': BagFormat(version=9, storage='mcap'),
}


def default_storage(distro: str) -> str:
    """Storage plugin that a stock install of ``distro`` opens ('sqlite3' or 'mcap')."""
    return _bag_format(distro).storage


def _bag_format(distro: str) -> BagFormat:
    if distro not in BAG_FORMATS:
        raise BagError(f'ROS distro {distro!r} unknown, expected one of {sorted(BAG_FORMATS)}')
    return BAG_FORMATS[distro]


def _transient_local_qos():
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    never = QosTime(sec=0, nsec=0)
    return Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL, deadline=never, lifespan=never,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=never,
               avoid_ros_namespace_conventions=False)


def _reliable_volatile_qos():
    from rosbags.interfaces import QosDurability

    return _transient_local_qos()._replace(durability=QosDurability.VOLATILE, depth=10)


class BagWriter:
    """Write a rosbag2 directory; topics are registered on their first message.

    Use as a context manager (``with BagWriter(path) as bag: bag.write(topic, msg, stamp)``);
    build messages with ``bag.types`` (the typestore classes of ``distro``). ``storage=None``
    (the default) picks the storage that a stock install of ``distro`` opens
    (``default_storage``: sqlite3 on Humble, mcap on Jazzy).
    """

    def __init__(self, path, storage: str | None = None, distro: str = 'humble'):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        bag_format = _bag_format(distro)
        storage = bag_format.storage if storage is None else storage
        if storage not in STORAGES:
            raise BagError(f'bag storage {storage!r} unknown, expected one of {STORAGES}')
        if self.path.exists():
            raise BagError(f'bag {self.path} exists already; remove it or choose another path')
        self.storage = storage
        self.types = MessageTypes.rosbags(distro)
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=bag_format.version, storage_plugin=plugin)
        # A non-empty custom_data keeps metadata.yaml free of a null map (rosbags writes
        # 'custom_data: null' otherwise), which strict readers of version >= 6 may reject.
        self._writer.set_custom_data('monodepth_ros.distro', distro)
        self._connections: dict[str, object] = {}
        self._open = False

    def open(self) -> BagWriter:
        try:
            self._writer.open()
        except Exception as err:
            raise BagError(f'cannot create bag {self.path}: {err}') from err
        self._open = True
        return self

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
            return
        try:     # the error that stopped the writing is the one to report
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._writer.close()
            except Exception as err:    # a full disk while the index and metadata are written
                raise BagError(f'cannot finish bag {self.path}: {_reason(err)}') from err

    def write(self, topic: str, msg, stamp_ns: int) -> None:
        """Serialize ``msg`` to CDR and store it on ``topic`` at ``stamp_ns`` (receive time)."""
        if not self._open:
            raise BagError(f'bag {self.path} is not open; use BagWriter as a context manager')
        msgtype = self.types.msgtype(msg)
        connection = self._connections.get(topic)
        if connection is None:
            qos = _transient_local_qos() if topic == '/tf_static' else _reliable_volatile_qos()
            connection = self._writer.add_connection(
                topic, msgtype, typestore=self.types.typestore, offered_qos_profiles=[qos])
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise BagError(f'topic {topic} in bag {self.path} carries {connection.msgtype}, '
                           f'cannot also write {msgtype}')
        try:
            data = self.types.typestore.serialize_cdr(msg, msgtype)
        except Exception as err:
            raise BagError(f'cannot serialize {msgtype} for topic {topic}: {err}') from err
        try:
            self._writer.write(connection, int(stamp_ns), data)
        except Exception as err:        # a full disk (sqlite3 reports it as its own error)
            raise BagError(f'cannot write to bag {self.path}: {_reason(err)}') from err


def describe_topics(available: dict[str, str]) -> str:
    """'its topics are: /a (type), ...' for error messages, or what an empty bag means."""
    if not available:
        return 'it has no topics at all (an empty recording, or one cut off before any message)'
    return 'its topics are: ' + ', '.join(f'{topic} ({msgtype})'
                                          for topic, msgtype in sorted(available.items()))


def _reason(error: Exception) -> str:
    """Why a write failed, without Python's '[Errno N]' prefix."""
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


def _bag_paths(path: Path) -> list[Path]:
    """AnyReader wants a rosbag2 directory or ROS 1 '.bag' files; accept a lone .mcap/.db3."""
    if path.is_file() and path.suffix in ('.mcap', '.db3') \
            and (path.parent / 'metadata.yaml').exists():
        return [path.parent]
    return [path]


class BagReader:
    """Stream messages of a rosbag2 (mcap or sqlite3) or ROS 1 bag in time order.

    Use as a context manager. Message classes come from the definitions stored in the bag,
    or from the ``distro`` typestore when the bag has none.
    """

    def __init__(self, path, distro: str = 'humble'):
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f'bag {self.path} does not exist')
        self.distro = distro
        self._reader = None

    def open(self) -> BagReader:
        from rosbags.highlevel import AnyReader

        try:
            # Bags recorded by Humble's sqlite3 plugin store no message definitions: those
            # are decoded with the typestore of ``distro``.
            default_types = MessageTypes.rosbags(self.distro).typestore
            self._reader = AnyReader(_bag_paths(self.path), default_typestore=default_types)
            self._reader.open()
        except Exception as err:
            self._reader = None
            raise BagError(f'cannot open bag {self.path}: {err} (expected a rosbag2 directory '
                           'with metadata.yaml or a ROS 1 .bag file)') from err
        return self

    def __enter__(self) -> BagReader:
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close()

    def _opened(self):
        if self._reader is None:
            raise BagError(f'bag {self.path} is not open; use BagReader as a context manager')
        return self._reader

    @property
    def topics(self) -> dict[str, str]:
        """Map topic -> message type (e.g. 'sensor_msgs/msg/Image')."""
        return {topic: info.msgtype for topic, info in self._opened().topics.items()}

    @property
    def message_counts(self) -> dict[str, int]:
        return {topic: info.msgcount for topic, info in self._opened().topics.items()}

    @property
    def start_time_ns(self) -> int:
        return int(self._opened().start_time)

    @property
    def end_time_ns(self) -> int:
        """One past the last message's stamp (rosbags' convention), in nanoseconds."""
        return int(self._opened().end_time)

    def message_count(self, topics: Sequence[str] | None = None) -> int:
        counts = self.message_counts
        return sum(counts[topic] for topic in (topics if topics is not None else counts))

    def messages(self, topics: Sequence[str] | None = None) -> Iterator[tuple[str, int, object]]:
        """Yield (topic, stamp_ns, msg) in bag-time order; ``topics=None`` reads them all."""
        reader = self._opened()
        for connection, stamp_ns, raw in self._records(topics):
            yield connection.topic, stamp_ns, self._decoded(reader.deserialize, raw,
                                                            connection.msgtype)

    def serialized_messages(self, topics: Sequence[str] | None = None
                            ) -> Iterator[tuple[str, str, int, bytes]]:
        """Yield (topic, msgtype, stamp_ns, CDR bytes) in bag-time order, without decoding.

        The bytes are what a ROS 2 publisher sends (a replay publishes them as they are);
        messages of a ROS 1 bag are converted to CDR.
        """
        reader = self._opened()
        for connection, stamp_ns, raw in self._records(topics):
            if not reader.is2:
                raw = self._decoded(reader.typestore.ros1_to_cdr, raw, connection.msgtype)
            yield connection.topic, connection.msgtype, stamp_ns, bytes(raw)

    def _decoded(self, decode, raw, msgtype: str):
        """``decode(raw, msgtype)``; a failure is a BagError naming the bag (a cut message)."""
        try:
            return decode(raw, msgtype)
        except Exception as err:
            raise BagError(f'bag {self.path} is corrupt or truncated: {err}') from err

    def _records(self, topics: Sequence[str] | None):
        """(connection, stamp_ns, raw) of ``topics`` (all when None); BagError when unreadable."""
        reader = self._opened()
        if isinstance(topics, str):
            topics = [topics]
        if topics is not None:
            known = self.topics
            missing = [topic for topic in topics if topic not in known]
            if missing:
                raise BagError(f'bag {self.path} has no topic(s) {missing}; it has '
                               f'{sorted(known)}')
        connections = [connection for connection in reader.connections
                       if topics is None or connection.topic in topics]
        if not connections:
            return
        try:
            for connection, stamp_ns, raw in reader.messages(connections=connections):
                yield connection, int(stamp_ns), raw
        except BagError:
            raise
        except Exception as err:
            raise BagError(f'bag {self.path} is corrupt or truncated: {err}') from err
