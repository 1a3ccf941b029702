"""Command-line options of the commands that write a rosbag2 (synth-bag, kitti2bag, infer-bag).

The storage default follows the distro: a stock Humble install opens sqlite3 only (mcap needs
the extra ros-humble-rosbag2-storage-mcap package), Jazzy defaults to mcap
(``monodepth_ros.io.bagio.BAG_FORMATS``).
"""

from __future__ import annotations

from monodepth_ros.io.bagio import BAG_FORMATS, STORAGES, default_storage

DEFAULT_DISTRO = 'humble'


def add_bag_format_arguments(parser, what: str = 'the output bag') -> None:
    """Add ``--storage`` (default None: the distro's) and ``--distro`` (default humble)."""
    per_distro = ', '.join(f'{bag_format.storage} for {distro}'
                           for distro, bag_format in BAG_FORMATS.items())
    parser.add_argument(
        '--storage', choices=STORAGES, default=None,
        help=f"rosbag2 storage plugin of {what} (default: the distro's default, {per_distro}; "
        'Humble opens mcap only with ros-humble-rosbag2-storage-mcap installed)')
    parser.add_argument(
        '--distro', choices=tuple(BAG_FORMATS), default=DEFAULT_DISTRO,
        help='ROS 2 distro whose message definitions and bag format are written '
        f'(default {DEFAULT_DISTRO})')


def resolved_storage(storage: str | None, distro: str) -> str:
    """The storage a writer uses: ``storage``, or the distro's default when None."""
    return default_storage(distro) if storage is None else storage
