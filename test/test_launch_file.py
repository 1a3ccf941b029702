"""kitti.launch.py evaluated with stand-ins for launch/launch_ros (no ROS needed).

The real launch run is test_launch.py (skipped without ROS 2); this checks the arguments and
their defaults, and that docs/ros_interface.md lists the same arguments.
"""

import importlib.util
import re
import sys
import types as pytypes
from pathlib import Path

import pytest

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
        'launch.conditions', 'launch.substitutions', 'launch_ros', 'launch_ros.actions',
        'launch_ros.parameter_descriptions')}
    modules['ament_index_python.packages'].get_package_share_directory = lambda name: '/share'
    modules['launch'].LaunchDescription = LaunchDescription
    modules['launch.actions'].DeclareLaunchArgument = DeclareLaunchArgument
    modules['launch.actions'].ExecuteProcess = type('ExecuteProcess', (_Recorded,), {})
    modules['launch.conditions'].IfCondition = type('IfCondition', (_Recorded,), {})
    modules['launch.substitutions'].LaunchConfiguration = LaunchConfiguration
    modules['launch.substitutions'].PythonExpression = PythonExpression
    modules['launch_ros.actions'].Node = type('Node', (_Recorded,), {})
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
