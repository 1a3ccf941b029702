"""Start the depth node on the KITTI colour camera topics (as written by monodepth kitti2bag).

Arguments: model, backend, precision, bag (played alongside with ``ros2 bag play --clock``),
rviz, use_sim_time. With a bag, ``use_sim_time`` defaults to true: the node's clock then
follows the bag's /clock, so the ``input_to_output`` latency compares recording stamps with
recording time (with wall time it would be the age of the recording). Example::

    ros2 launch monodepth_ros kitti.launch.py bag:=drive rviz:=true
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from monodepth_ros.io import topics

NODE_NAME = 'depth_node'


def generate_launch_description():
    share = get_package_share_directory('monodepth_ros')
    config = os.path.join(share, 'config', 'kitti.yaml')
    rviz_config = os.path.join(share, 'config', 'kitti.rviz')
    model = LaunchConfiguration('model')
    backend = LaunchConfiguration('backend')
    precision = LaunchConfiguration('precision')
    bag = LaunchConfiguration('bag')
    rviz = LaunchConfiguration('rviz')
    use_sim_time = LaunchConfiguration('use_sim_time')

    arguments = [
        DeclareLaunchArgument('model', default_value='',
                              description='model file (.onnx, or a .pt checkpoint exported once '
                              'and cached); empty = the packaged default model'),
        DeclareLaunchArgument('backend', default_value='auto',
                              description='auto | tensorrt | onnxruntime | torch'),
        DeclareLaunchArgument('precision', default_value='fp16',
                              description='fp16 | fp32 | int8 (TensorRT)'),
        DeclareLaunchArgument('bag', default_value='',
                              description='rosbag2 to play alongside (ros2 bag play --clock)'),
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
            'backend': ParameterValue(backend, value_type=str),
            'precision': ParameterValue(precision, value_type=str),
            'use_sim_time': ParameterValue(use_sim_time, value_type=bool),
        }],
        remappings=remappings)
    play = ExecuteProcess(
        cmd=['ros2', 'bag', 'play', bag, '--clock'], output='screen',
        condition=IfCondition(PythonExpression(["'", bag, "' != ''"])))
    rviz_node = Node(
        package='rviz2', executable='rviz2', name='rviz2', arguments=['-d', rviz_config],
        parameters=[{'use_sim_time': ParameterValue(use_sim_time, value_type=bool)}],
        condition=IfCondition(rviz))
    return LaunchDescription(arguments + [node, play, rviz_node])
