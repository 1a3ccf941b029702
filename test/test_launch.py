"""Launch test: kitti.launch.py's node fed by ``ros2 bag play`` of a synthetic drive.

Needs a ROS 2 installation (rclpy, launch_testing, ros2 bag); skipped otherwise with the reason.
Run by ``colcon test`` (see .github/workflows/ros2.yml) or ``launch_test test/test_launch.py``.
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
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import ExecuteProcess, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from sensor_msgs.msg import Image, PointCloud2
except ImportError as error:
    pytest.skip(f'launch test needs ROS 2 (rclpy, launch, launch_testing, ros2 bag): {error}',
                allow_module_level=True)

from monodepth_ros import topics  # noqa: E402

FRAMES = 5
SEED = 7
TIMEOUT_S = 120.0


def _prepare(work_dir: Path) -> tuple[Path, Path, set[int]]:
    """Write a tiny ONNX model and a synthetic bag; return them and the image stamps."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import make_tiny_onnx

    from monodepth_ros.bagio import BagReader
    from monodepth_ros.messages import stamp_to_ns

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
    launch_file = os.path.join(get_package_share_directory('monodepth_ros'), 'launch',
                               'kitti.launch.py')
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file),
        launch_arguments={'model': str(model), 'backend': 'onnxruntime',
                          'precision': 'fp32', 'rviz': 'false'}.items())
    # Looping, so that frames published before the model finished loading come again.
    play = ExecuteProcess(cmd=['ros2', 'bag', 'play', str(bag), '--loop'], output='screen')
    return (LaunchDescription([node, play, launch_testing.actions.ReadyToTest()]),
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

    def test_depth_and_points_carry_the_image_stamps(self, stamps):
        received = {'depth': [], 'points': []}
        prefix = topics.OUTPUT_PREFIX
        self.node.create_subscription(Image, prefix + topics.OUTPUT_SUFFIXES['depth'],
                                      received['depth'].append, 10)
        self.node.create_subscription(PointCloud2, prefix + topics.OUTPUT_SUFFIXES['points'],
                                      received['points'].append, 10)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and not (received['depth'] and received['points']):
            rclpy.spin_once(self.node, timeout_sec=0.2)
        self.assertTrue(received['depth'], 'no depth image within the timeout')
        self.assertTrue(received['points'], 'no point cloud within the timeout')
        for msg in received['depth'] + received['points']:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.assertIn(stamp, stamps)
            self.assertEqual(msg.header.frame_id, topics.CAMERA_FRAME)
        depth = received['depth'][0]
        self.assertEqual(depth.encoding, '32FC1')
        cloud = received['points'][0]
        self.assertEqual((cloud.height, cloud.width), (depth.height, depth.width))
        self.assertFalse(cloud.is_dense)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_node_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(
            proc_info, allowable_exit_codes=[0, -2, -15, 130, 143])
