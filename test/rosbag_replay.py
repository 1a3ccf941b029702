"""Replay a rosbag2 through rclpy publishers, for the tests that run against a real ROS 2.

Messages go out as the CDR bytes stored in the bag (rclpy publishes ``bytes`` as they are), so
stamps, frame ids and payloads reach the subscriber unchanged. Used in-process by
``test_ros_node.py`` (:class:`BagReplayer`) and as a process by ``test_launch.py``, where it
stands in for ``ros2 bag play`` (``kitti.launch.py player:=...``, started as ``PLAYER BAG
--clock``)::

    python test/rosbag_replay.py BAG --topics /a /b --rate 5 --loop --wait-for-subscribers

Needs rclpy and the message packages of the replayed topics.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monodepth_ros.io import topics as bag_topics  # noqa: E402
from monodepth_ros.io.bagio import BagReader  # noqa: E402

DEFAULT_TOPICS = [bag_topics.CAMERA_INFO_TOPIC, bag_topics.CAMERA_IMAGE_TOPIC]


def read_serialized(bag: Path, topics: list[str]) -> list[tuple[str, str, int, bytes]]:
    """Every (topic, msgtype, stamp_ns, CDR bytes) of ``topics`` in ``bag``, in bag order."""
    with BagReader(bag) as reader:
        return list(reader.serialized_messages(topics))


def group_by_stamp(records, topic_order: list[str]) -> list[tuple[int, list[tuple[str, bytes]]]]:
    """Records grouped into frames: [(stamp_ns, [(topic, bytes), ...]), ...] in time order.

    Within a frame, messages follow ``topic_order`` (a camera driver publishes the CameraInfo
    with its image; putting it first replays a frame that is complete when the image lands).
    """
    frames: dict[int, list[tuple[str, bytes]]] = {}
    for topic, _, stamp_ns, data in records:
        frames.setdefault(stamp_ns, []).append((topic, data))
    return [(stamp, sorted(messages, key=lambda item: topic_order.index(item[0])))
            for stamp, messages in sorted(frames.items())]


class BagReplayer:
    """rclpy publishers for the topics of a bag; ``publish_frame`` sends one stamp's messages.

    ``remap`` maps a bag topic to the topic to publish on. The messages of one frame go out in
    the order of ``topic_order`` (default: the order the records name them).
    """

    def __init__(self, node, records, remap: dict[str, str] | None = None, qos_depth: int = 10,
                 topic_order: list[str] | None = None):
        from rosidl_runtime_py.utilities import get_message

        remap = remap or {}
        self.publishers = {}
        for topic, msgtype, _, _ in records:
            if topic not in self.publishers:
                self.publishers[topic] = node.create_publisher(
                    get_message(msgtype), remap.get(topic, topic), qos_depth)
        self.frames = group_by_stamp(records, topic_order or list(self.publishers))

    def publish_frame(self, index: int) -> int:
        """Publish the messages of frame ``index``; returns its stamp (ns)."""
        stamp_ns, messages = self.frames[index]
        for topic, data in messages:
            self.publishers[topic].publish(data)
        return stamp_ns


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('bag', type=Path)
    parser.add_argument('--topics', nargs='+', default=DEFAULT_TOPICS,
                        help='bag topics to publish, in the order a frame publishes them '
                        f'(default: {" ".join(DEFAULT_TOPICS)})')
    parser.add_argument('--rate', type=float, default=5.0, help='frames per second')
    parser.add_argument('--loop', action='store_true', help='start again after the last frame')
    parser.add_argument('--clock', action='store_true',
                        help="publish /clock: each frame's stamp just before the frame")
    parser.add_argument('--wait-for-subscribers', action='store_true',
                        help='publish the first frame only once every topic has a subscriber '
                        '(a message sent before that is lost)')
    args = parser.parse_args(argv)

    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.executors import ExternalShutdownException
    from rosgraph_msgs.msg import Clock

    records = read_serialized(args.bag, args.topics)
    if not records:
        print(f'{args.bag} has no messages on {args.topics}', file=sys.stderr)
        return 1
    rclpy.init()
    node = rclpy.create_node('monodepth_bag_replay')
    replayer = BagReplayer(node, records, topic_order=args.topics)
    clock = node.create_publisher(Clock, '/clock', 10) if args.clock else None
    try:
        while args.wait_for_subscribers and rclpy.ok() and not all(
                publisher.get_subscription_count() > 0
                for publisher in replayer.publishers.values()):
            time.sleep(0.05)
        if args.wait_for_subscribers:
            time.sleep(0.5)     # the subscribers' side of the match may come a moment later
        index = 0
        while rclpy.ok():
            if clock is not None:
                stamp_ns = replayer.frames[index][0]
                clock.publish(Clock(clock=Time(sec=stamp_ns // 1_000_000_000,
                                               nanosec=stamp_ns % 1_000_000_000)))
            replayer.publish_frame(index)
            index += 1
            if index == len(replayer.frames):
                if not args.loop:
                    break
                index = 0
            time.sleep(1.0 / args.rate)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # launch stops the player with SIGINT, possibly just as it finishes on its own: a
        # second interrupt must not cut the clean-up short (the process would end by SIGINT).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # Interrupted before rclpy was up (reading the bag): a player stopped, not a failure.
        sys.exit(0)
