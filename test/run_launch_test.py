"""Run test_launch.py with launch_testing's own runner (``launch_test``), or say why not.

launch_testing's pytest plugin declares a hook argument that pytest 8 removed, so ``make test``
blocks that plugin (``-p no:launch_testing``) and runs the launch test through this script.
Exit status: the launch test's, or 0 with the reason printed when ROS 2 or this package's
install (``make ros-install``) is missing.
"""

import sys
from pathlib import Path

LAUNCH_TEST = Path(__file__).resolve().parent / 'test_launch.py'


def missing_prerequisite() -> str | None:
    try:
        import launch_testing.launch_test  # noqa: F401
        import rclpy  # noqa: F401
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError as error:
        return f'no ROS 2 sourced (rclpy, launch_testing): {error}'
    try:
        get_package_share_directory('monodepth_ros')
    except PackageNotFoundError:
        return ('monodepth_ros is not in the ament index: run `make ros-install` and '
                '`source install/setup.bash`')
    return None


def main() -> int:
    reason = missing_prerequisite()
    if reason:
        print(f'launch test skipped: {reason}')
        return 0
    from launch_testing.launch_test import main as launch_test_main

    sys.argv = ['launch_test', str(LAUNCH_TEST)]
    return launch_test_main()


if __name__ == '__main__':
    sys.exit(main())
