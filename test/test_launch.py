"""Launch test: ``kitti.launch.py`` started for real, playing a synthetic drive once.

The launch file's player is ``test/rosbag_replay.py`` (rclpy publishers; rosbag2 need not be
installed), started, as ``ros2 bag play`` would be, on the node's model loaded line: every
frame of the bag must come out of the node, none lost while the model loaded.

Needs a ROS 2 installation (rclpy, launch, launch_ros, launch_testing) and this package built
into it (``colcon build`` then ``source install/setup.bash``: the launch file finds its config
and the ``depth_node`` executable through the ament index); skipped otherwise, with the
reason. Runs under plain pytest (launch_testing's plugin) or ``launch_test test/test_launch.py``.
"""

import os
import shlex
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
    from launch.actions import IncludeLaunchDescription
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
PLAY_DELAY_S = 1.0
TEST_DIR = Path(__file__).resolve().parent
OUTPUT_TYPES = {'depth': Image, 'camera_info': CameraInfo, 'points': PointCloud2}


def _prepare(work_dir: Path) -> tuple[Path, Path, set[int]]:
    """Write a tiny checkpoint and a synthetic bag; return them and the image stamps.

    A checkpoint, exported to ONNX into an empty engine cache when the node loads it: the node
    subscribes at once and then loads for seconds (torch, export, parity check), so a player
    started with the node would lose frames; the launch file must wait for the loaded line.
    """
    sys.path.insert(0, str(TEST_DIR))
    from conftest import save_tiny_checkpoint

    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.messages import stamp_to_ns

    model = save_tiny_checkpoint(work_dir / 'tiny.pt')
    os.environ['MONODEPTH_ENGINE_CACHE'] = str(work_dir / 'engines')   # the node inherits it
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
    # Played once, at 5 frames/s. Wall time: the five frames' /clock spans 0.4 s, too short
    # for the diagnostics timer. play_delay leaves the listener below time to subscribe to the
    # outputs (the node computes no output nobody subscribes to).
    player = shlex.join([sys.executable, str(TEST_DIR / 'rosbag_replay.py'), '--rate', '5',
                         '--wait-for-subscribers'])
    launch = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, 'launch', 'kitti.launch.py')),
        launch_arguments={'model': str(model), 'backend': 'onnxruntime', 'precision': 'fp32',
                          'rviz': 'false', 'use_sim_time': 'false', 'bag': str(bag),
                          'player': player,
                          'play_delay': str(PLAY_DELAY_S)}.items())
    return (LaunchDescription([launch, launch_testing.actions.ReadyToTest()]),
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

    def test_every_frame_of_the_bag_comes_out_with_its_stamp(self, stamps):
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

        def stamps_of(key):
            return {msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                    for msg in received[key]}

        def counted_every_frame(status):
            return {item.key: item.value for item in status.values}['processed'] == str(FRAMES)
        while time.monotonic() < deadline and not (
                all(stamps_of(key) == stamps for key in OUTPUT_TYPES)
                and any(counted_every_frame(s) for s in diagnostics)):
            rclpy.spin_once(self.node, timeout_sec=0.2)
        # No frame lost: the playback started once the model was loaded.
        for key in OUTPUT_TYPES:
            self.assertEqual(stamps_of(key), stamps,
                             f'{key}: {len(stamps_of(key))} of {len(stamps)} frames within '
                             f'{TIMEOUT_S:.0f} s')
        counted = [s for s in diagnostics if counted_every_frame(s)]
        self.assertTrue(counted, f'no diagnostics counting {FRAMES} processed frames within '
                        f'{TIMEOUT_S:.0f} s: {diagnostics[-1:]}')
        self.assertEqual(counted[-1].level, DiagnosticStatus.OK)
        values = {item.key: item.value for item in counted[-1].values}
        self.assertEqual((values['received'], values['dropped'], values['skipped_no_model'],
                          values['skipped_no_subscribers'], values['errors']),
                         (str(FRAMES), '0', '0', '0', '0'))
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
