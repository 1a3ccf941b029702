"""Start the depth node on the KITTI colour camera topics (as written by monodepth kitti2bag).

Arguments: model, backend, precision, bag, player, play_delay, rviz, use_sim_time. With a bag,
``use_sim_time`` defaults to true: the node's clock then follows the bag's /clock, so the
``input_to_output`` latency compares recording stamps with recording time (with wall time it
would be the age of the recording). Example::

    ros2 launch monodepth_ros kitti.launch.py bag:=drive rviz:=true

The bag is played (``PLAYER BAG --clock``, PLAYER ``ros2 bag play`` by default) only once the
node logged that its model is loaded, plus ``play_delay`` seconds: frames played while the
model loads would be lost.
"""

import os
import shlex

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    OpaqueFunction,
    RegisterEventHandler,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessIO
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from monodepth_ros.io import topics
from monodepth_ros.ros.log_lines import MODEL_LOADED_LINE

NODE_NAME = 'depth_node'


def _player_command(context) -> tuple[list[str], float]:
    """``PLAYER BAG --clock`` and the ``play_delay``; a bad argument is a one-line ValueError."""
    bag = context.launch_configurations['bag']
    player = shlex.split(context.launch_configurations['player'])
    delay_text = context.launch_configurations['play_delay']
    try:
        delay = float(delay_text)
    except ValueError:
        delay = -1.0
    if not delay >= 0.0:
        raise ValueError(f'kitti.launch.py: play_delay:={delay_text!r} is not a number of '
                         'seconds >= 0')
    if not player:
        raise ValueError('kitti.launch.py: player:= is empty; expected a command such as '
                         "'ros2 bag play'")
    return [*player, bag, '--clock'], delay


def _check_player_arguments(context):
    """Refuse a bad player or play_delay at start, not only once the model has loaded."""
    if context.launch_configurations['bag']:
        _player_command(context)
    return []


def _start_player(context):
    """The player of ``bag``: ``PLAYER BAG --clock`` after ``play_delay`` seconds."""
    command, delay = _player_command(context)
    play = ExecuteProcess(cmd=command, output='screen')
    return [TimerAction(period=delay, actions=[play])] if delay > 0 else [play]


class _PlayWhenModelLoaded:
    """OnProcessIO callback: the node's first MODEL_LOADED_LINE starts the player, once.

    Output arrives in chunks that may split a line, so each stream's text is kept until a
    newline.
    """

    def __init__(self):
        self.pending = {'stdout': '', 'stderr': ''}
        self.started = False

    def __call__(self, event):
        if self.started:
            return None
        stream = 'stdout' if event.from_stdout else 'stderr'
        text = self.pending[stream] + event.text.decode(errors='replace')
        *lines, self.pending[stream] = text.split('\n')
        if any(MODEL_LOADED_LINE in line for line in lines):
            self.started = True
            return [OpaqueFunction(function=_start_player)]
        return None


def generate_launch_description():
    share = get_package_share_directory('monodepth_ros')
    config = os.path.join(share, 'config', 'kitti.yaml')
    rviz_config = os.path.join(share, 'config', 'kitti.rviz')
    model = LaunchConfiguration('model')
    model_card = LaunchConfiguration('model_card')
    backend = LaunchConfiguration('backend')
    precision = LaunchConfiguration('precision')
    bag = LaunchConfiguration('bag')
    rviz = LaunchConfiguration('rviz')
    use_sim_time = LaunchConfiguration('use_sim_time')

    arguments = [
        DeclareLaunchArgument('model', default_value='',
                              description='model file (.onnx, or a .pt checkpoint exported once '
                              'and cached); empty = the packaged default model'),
        DeclareLaunchArgument('model_card', default_value='',
                              description='model card of a foreign ONNX model (YAML file or '
                              'preset); empty for our own models'),
        DeclareLaunchArgument('backend', default_value='auto',
                              description='auto | tensorrt | onnxruntime | torch'),
        DeclareLaunchArgument('precision', default_value='fp16',
                              description='fp16 | fp32 | int8 (TensorRT)'),
        DeclareLaunchArgument('bag', default_value='',
                              description='rosbag2 to play (PLAYER BAG --clock) once the node '
                              'has loaded its model'),
        DeclareLaunchArgument('player', default_value='ros2 bag play',
                              description='command that plays the bag, split like a shell '
                              'does; started as PLAYER BAG --clock'),
        DeclareLaunchArgument('play_delay', default_value='0.0',
                              description='seconds between the model loaded line and the '
                              'start of the playback (>= 0)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='start RViz with config/kitti.rviz'),
        DeclareLaunchArgument(
            'use_sim_time', default_value=PythonExpression(["'true' if '", bag,
                                                            "' else 'false'"]),
            description='follow /clock (default: true when bag:=... is given, else false)'),
    ]
    # Private topics of the node, remapped to the kitti2bag names and a /monodepth prefix.
    remappings = [('~/input/image', topics.CAMERA_IMAGE_TOPIC),
                  ('~/input/camera_info', topics.CAMERA_INFO_TOPIC)]
    remappings += [(f'~/output{suffix}', f'{topics.OUTPUT_PREFIX}{suffix}')
                   for suffix in topics.OUTPUT_SUFFIXES.values()]
    node = Node(
        package='monodepth_ros', executable='depth_node', name=NODE_NAME, output='screen',
        parameters=[config, {
            'model_path': ParameterValue(model, value_type=str),
            'model_card': ParameterValue(model_card, value_type=str),
            'backend': ParameterValue(backend, value_type=str),
            'precision': ParameterValue(precision, value_type=str),
            'use_sim_time': ParameterValue(use_sim_time, value_type=bool),
        }],
        remappings=remappings)
    # The player starts on the node's model loaded line (stdout or stderr: rclpy logs to
    # stderr unless RCUTILS_LOGGING_USE_STDOUT is set).
    play_when_loaded = _PlayWhenModelLoaded()
    play = RegisterEventHandler(
        OnProcessIO(target_action=node, on_stdout=play_when_loaded,
                    on_stderr=play_when_loaded),
        condition=IfCondition(PythonExpression(["'", bag, "' != ''"])))
    rviz_node = Node(
        package='rviz2', executable='rviz2', name='rviz2', arguments=['-d', rviz_config],
        parameters=[{'use_sim_time': ParameterValue(use_sim_time, value_type=bool)}],
        condition=IfCondition(rviz))
    check = OpaqueFunction(function=_check_player_arguments)
    return LaunchDescription(arguments + [check, node, play, rviz_node])
