"""Launch test: ``kitti.launch.py`` started for real, fed by an rclpy replay of a synthetic drive.

Needs a ROS 2 installation (rclpy, launch, launch_ros, launch_testing) and this package built
into it (``colcon build`` then ``source install/setup.bash``: the launch file finds its config
and the ``depth_node`` executable through the ament index); skipped otherwise, with the
reason. Runs under plain pytest (launch_testing's plugin) or ``launch_test test/test_launch.py``.
"""

import os
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import pytest

try:
    import launch_testing
    import launch_testing.actions
    import launch_testing.asserts
    import rclpy
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from launch import LaunchDescription
    from launch.actions import ExecuteProcess, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
except ImportError as error:
    pytest.skip(f'launch test needs ROS 2 (rclpy, launch, launch_ros, launch_testing): {error}',
                allow_module_level=True)

try:
    SHARE = get_package_share_directory('monodepth_ros')
except PackageNotFoundError:
    pytest.skip('launch test needs monodepth_ros in the ament index: colcon build this package '
                'and source install/setup.bash', allow_module_level=True)

from monodepth_ros.io import topics  # noqa: E402

FRAMES = 5
SEED = 7
TIMEOUT_S = 120.0
TEST_DIR = Path(__file__).resolve().parent
OUTPUT_TYPES = {'depth': Image, 'camera_info': CameraInfo, 'points': PointCloud2}


def _prepare(work_dir: Path) -> tuple[Path, Path, set[int]]:
    """Write a tiny ONNX model and a synthetic bag; return them and the image stamps."""
    sys.path.insert(0, str(TEST_DIR))
    from conftest import make_tiny_onnx

    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.messages import stamp_to_ns

    model = make_tiny_onnx(work_dir / 'tiny.onnx')
    bag = work_dir / 'drive'
    subprocess.run([sys.executable, '-m', 'monodepth_ros.cli', 'synth-bag', str(bag),
                    '--frames', str(FRAMES), '--seed', str(SEED)], check=True)
    with BagReader(bag) as reader:
        stamps = {stamp_to_ns(msg.header.stamp)
                  for _, _, msg in reader.messages([topics.CAMERA_IMAGE_TOPIC])}
    return model, bag, stamps


@pytest.mark.launch_test
def generate_test_description():
    work_dir = Path(tempfile.mkdtemp(prefix='monodepth_launch_test_'))
    model, bag, stamps = _prepare(work_dir)
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, 'launch', 'kitti.launch.py')),
        launch_arguments={'model': str(model), 'backend': 'onnxruntime',
                          'precision': 'fp32', 'rviz': 'false'}.items())
    # Looping, so that frames published before the model finished loading come again.
    replay = ExecuteProcess(
        cmd=[sys.executable, str(TEST_DIR / 'rosbag_replay.py'), str(bag), '--topics',
             topics.CAMERA_INFO_TOPIC, topics.CAMERA_IMAGE_TOPIC, '--rate', '5', '--loop'],
        output='screen')
    return (LaunchDescription([node, replay, launch_testing.actions.ReadyToTest()]),
            {'stamps': stamps})


class TestDepthOutputs(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('monodepth_launch_test_listener')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.try_shutdown()

    def test_outputs_carry_the_image_stamps(self, stamps):
        received = {key: [] for key in OUTPUT_TYPES}
        for key, msg_type in OUTPUT_TYPES.items():
            self.node.create_subscription(
                msg_type, topics.OUTPUT_PREFIX + topics.OUTPUT_SUFFIXES[key],
                received[key].append, 10)
        diagnostics = []
        self.node.create_subscription(
            DiagnosticArray, '/diagnostics',
            lambda msg: diagnostics.extend(s for s in msg.status
                                           if s.name == 'depth_node: depth'), 10)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and not (
                all(received.values())
                and any(s.level == DiagnosticStatus.OK for s in diagnostics)):
            rclpy.spin_once(self.node, timeout_sec=0.2)
        for key in OUTPUT_TYPES:
            self.assertTrue(received[key], f'no {key} within {TIMEOUT_S:.0f} s')
        self.assertTrue(any(s.level == DiagnosticStatus.OK for s in diagnostics),
                        f'no OK diagnostics within {TIMEOUT_S:.0f} s: {diagnostics[-1:]}')
        for msg in sum(received.values(), []):
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.assertIn(stamp, stamps)
            self.assertEqual(msg.header.frame_id, topics.CAMERA_FRAME)
        depth = received['depth'][0]
        self.assertEqual(depth.encoding, '32FC1')
        info = received['camera_info'][0]
        self.assertEqual((info.width, info.height), (depth.width, depth.height))
        cloud = received['points'][0]
        self.assertEqual((cloud.height, cloud.width), (depth.height, depth.width))
        self.assertFalse(cloud.is_dense)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_processes_exit_cleanly_on_sigint(self, proc_info):
        # launch stops every process with SIGINT: the node and the replay exit with 0.
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
