"""kitti.launch.py evaluated with stand-ins for launch/launch_ros (no ROS needed).

The real launch run is test_launch.py (skipped without ROS 2); this checks the arguments and
their defaults, that docs/ros_interface.md lists the same arguments, and that the bag player
starts on the node's model loaded line (and not before), with the player and delay asked for.
"""

import importlib.util
import re
import sys
import types as pytypes
from pathlib import Path

import pytest

from monodepth_ros.ros.log_lines import MODEL_LOADED_LINE

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / 'launch' / 'kitti.launch.py'
DOC = ROOT / 'docs' / 'ros_interface.md'


class _Recorded:
    """Any launch action or substitution: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(_Recorded):
    pass


class PythonExpression(_Recorded):
    pass


class DeclareLaunchArgument(_Recorded):
    pass


class LaunchDescription(_Recorded):
    pass


class ExecuteProcess(_Recorded):
    pass


class Node(_Recorded):
    pass


class OnProcessIO(_Recorded):
    pass


class OpaqueFunction(_Recorded):
    pass


class RegisterEventHandler(_Recorded):
    pass


class TimerAction(_Recorded):
    pass


def _resolve(value, arguments):
    """Value of a substitution given launch argument values (as launch would compute it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, LaunchConfiguration):
        return arguments[value.args[0]]
    if isinstance(value, PythonExpression):
        return str(eval(''.join(_resolve(part, arguments) for part in value.args[0])))
    if isinstance(value, list):
        return ''.join(_resolve(part, arguments) for part in value)
    raise TypeError(f'cannot resolve {value!r}')


@pytest.fixture()
def launch_description(monkeypatch):
    modules = {name: pytypes.ModuleType(name) for name in (
        'ament_index_python', 'ament_index_python.packages', 'launch', 'launch.actions',
        'launch.conditions', 'launch.event_handlers', 'launch.substitutions', 'launch_ros',
        'launch_ros.actions', 'launch_ros.parameter_descriptions')}
    modules['ament_index_python.packages'].get_package_share_directory = lambda name: '/share'
    modules['launch'].LaunchDescription = LaunchDescription
    modules['launch.actions'].DeclareLaunchArgument = DeclareLaunchArgument
    modules['launch.actions'].ExecuteProcess = ExecuteProcess
    modules['launch.actions'].OpaqueFunction = OpaqueFunction
    modules['launch.actions'].RegisterEventHandler = RegisterEventHandler
    modules['launch.actions'].TimerAction = TimerAction
    modules['launch.conditions'].IfCondition = type('IfCondition', (_Recorded,), {})
    modules['launch.event_handlers'].OnProcessIO = OnProcessIO
    modules['launch.substitutions'].LaunchConfiguration = LaunchConfiguration
    modules['launch.substitutions'].PythonExpression = PythonExpression
    modules['launch_ros.actions'].Node = Node
    modules['launch_ros.parameter_descriptions'].ParameterValue = type(
        'ParameterValue', (_Recorded,), {})
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location('kitti_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _arguments(description):
    return {action.args[0]: action.kwargs for action in description.args[0]
            if isinstance(action, DeclareLaunchArgument)}


def test_use_sim_time_defaults_to_true_with_a_bag(launch_description):
    use_sim_time = _arguments(launch_description)['use_sim_time']['default_value']
    assert _resolve(use_sim_time, {'bag': 'demo_output/drive'}) == 'true'
    assert _resolve(use_sim_time, {'bag': ''}) == 'false'


def test_model_argument_names_only_accepted_files(launch_description):
    description = _arguments(launch_description)['model']['description']
    assert '.onnx' in description and '.pt' in description
    assert '.engine' not in description       # check_model_path refuses serialized engines


def test_documented_launch_arguments_match_the_launch_file(launch_description):
    section = DOC.read_text().split('## Launch arguments', 1)[1].split('\n## ', 1)[0]
    documented = dict(re.findall(r'^\| `(\w+)` \| ([^|]+) \|', section, flags=re.MULTILINE))
    arguments = _arguments(launch_description)
    assert set(documented) == set(arguments)
    for name, kwargs in arguments.items():
        default = kwargs['default_value']
        if isinstance(default, str):
            assert documented[name].strip().strip('`') in (default, repr(default)), name


def _player_handler(description) -> OnProcessIO:
    [register] = [action for action in description.args[0]
                  if isinstance(action, RegisterEventHandler)]
    [node] = [action for action in description.args[0]
              if isinstance(action, Node) and action.kwargs['executable'] == 'depth_node']
    handler = register.args[0]
    assert isinstance(handler, OnProcessIO) and handler.kwargs['target_action'] is node
    # Only with a bag.
    condition = register.kwargs['condition'].args[0]
    assert _resolve(condition, {'bag': 'drive'}) == 'True'
    assert _resolve(condition, {'bag': ''}) == 'False'
    return handler


def _output(text: str, stream: str = 'stderr'):
    return pytypes.SimpleNamespace(text=text.encode(), from_stdout=stream == 'stdout')


def test_nothing_plays_the_bag_before_the_node_loaded_its_model(launch_description):
    assert not [action for action in launch_description.args[0]
                if isinstance(action, ExecuteProcess)]
    on_stderr = _player_handler(launch_description).kwargs['on_stderr']
    assert on_stderr(_output('[INFO] [1.0] [depth_node]: loading\n')) is None
    # The ready line split over two chunks of output: the player starts at its end, once.
    assert on_stderr(_output(f'[INFO] [2.0] [depth_node]: {MODEL_LOADED_LINE[:4]}')) is None
    [start] = on_stderr(_output(f'{MODEL_LOADED_LINE[4:]} m.onnx, backend onnxruntime\n'))
    assert isinstance(start, OpaqueFunction)
    assert on_stderr(_output(f'[INFO] [3.0] [depth_node]: {MODEL_LOADED_LINE} again\n')) is None


def test_the_ready_line_on_stdout_starts_the_player_too(launch_description):
    on_stdout = _player_handler(launch_description).kwargs['on_stdout']
    [start] = on_stdout(_output(f'[INFO] [depth_node]: {MODEL_LOADED_LINE} m.onnx\n', 'stdout'))
    assert isinstance(start, OpaqueFunction)


@pytest.fixture()
def start_player(launch_description):
    """The function the ready line runs, called with launch argument values."""
    on_stderr = _player_handler(launch_description).kwargs['on_stderr']
    [start] = on_stderr(_output(f'{MODEL_LOADED_LINE} m.onnx\n'))

    def started(**arguments):
        context = pytypes.SimpleNamespace(launch_configurations={
            'bag': 'runs/drive 1', 'player': 'ros2 bag play', 'play_delay': '0.0',
            **arguments})
        return start.kwargs['function'](context)
    return started


def test_player_command_and_delay(start_player):
    [play] = start_player()
    assert play.kwargs['cmd'] == ['ros2', 'bag', 'play', 'runs/drive 1', '--clock']
    [timer] = start_player(play_delay='2.5',
                           player="python3 '/tmp/my replay.py' --wait-for-subscribers")
    assert timer.kwargs['period'] == 2.5
    [play] = timer.kwargs['actions']
    assert play.kwargs['cmd'] == ['python3', '/tmp/my replay.py', '--wait-for-subscribers',
                                  'runs/drive 1', '--clock']


@pytest.mark.parametrize('delay', ['soon', '-1', 'nan'])
def test_bad_play_delay_is_refused_with_a_clear_message(start_player, delay):
    with pytest.raises(ValueError, match=f"play_delay:='{delay}' is not a number of seconds"):
        start_player(play_delay=delay)


def test_empty_player_is_refused(start_player):
    with pytest.raises(ValueError, match='player:= is empty'):
        start_player(player='  ')


def test_bad_player_arguments_are_refused_at_start(launch_description):
    [check] = [action for action in launch_description.args[0]
               if isinstance(action, OpaqueFunction)]
    arguments = {'bag': 'drive', 'player': 'ros2 bag play', 'play_delay': 'soon'}
    with pytest.raises(ValueError, match="play_delay:='soon'"):
        check.kwargs['function'](pytypes.SimpleNamespace(launch_configurations=arguments))
    # Without a bag nothing is played, so nothing is checked.
    assert check.kwargs['function'](pytypes.SimpleNamespace(
        launch_configurations={**arguments, 'bag': ''})) == []


def test_launch_file_imports_nothing_beyond_the_standard_library_from_this_package():
    # `ros2 launch` runs the launch file in ROS's Python, which may lack numpy and OpenCV.
    import ast
    import subprocess

    tree = ast.parse(LAUNCH_FILE.read_text())
    ours = sorted({node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   and node.module.startswith('monodepth_ros')})
    assert ours
    blocked = ['numpy', 'cv2', 'torch', 'onnxruntime', 'yaml']
    code = (f'import sys; sys.modules.update(dict.fromkeys({blocked!r})); '
            + '; '.join(f'import {module}' for module in ours))
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
