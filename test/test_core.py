"""Tests of the small shared modules: depth bins, model metadata, semantics, the CLI."""

import math
import subprocess
import sys

import numpy as np
import pytest

from monodepth_ros.cli import SUBCOMMANDS, build_parser, main
from monodepth_ros.errors import ConfigError, ModelFileError
from monodepth_ros.model.bins import sid_bin_centers, sid_bin_edges
from monodepth_ros.model.metadata import ModelMetadata
from monodepth_ros.model.semantics import CITYSCAPES_CLASSES, IGNORE_LABEL, colorize_labels


def test_sid_edges_follow_the_seed_formula():
    # d_i = exp(log a + log(b/a) * i / K): with a=1, b=16, K=4 the edges are 1, 2, 4, 8, 16.
    np.testing.assert_allclose(sid_bin_edges(1.0, 16.0, 4), [1.0, 2.0, 4.0, 8.0, 16.0])
    edges = sid_bin_edges(1.0, 80.0, 80)
    assert edges.shape == (81,)
    assert edges[0] == pytest.approx(1.0) and edges[-1] == pytest.approx(80.0)
    widths = np.diff(edges)
    assert np.all(np.diff(widths) > 0), 'spacing must increase with depth'


def test_sid_centers_are_geometric_means():
    np.testing.assert_allclose(sid_bin_centers(1.0, 16.0, 4),
                               [math.sqrt(2), math.sqrt(8), math.sqrt(32), math.sqrt(128)])


@pytest.mark.parametrize('a,b,k', [(0.0, 80.0, 80), (10.0, 5.0, 8), (1.0, 80.0, 1)])
def test_sid_rejects_bad_ranges(a, b, k):
    with pytest.raises(ConfigError, match='depth_min'):
        sid_bin_edges(a, b, k)


def test_metadata_json_round_trip():
    meta = ModelMetadata(input_height=128, input_width=416, depth_min=1.0, depth_max=80.0,
                         num_bins=64, network={'encoder': 'tiny'}, description='x')
    back = ModelMetadata.from_json(meta.to_json())
    assert back == meta
    assert back.class_names == CITYSCAPES_CLASSES
    np.testing.assert_allclose(back.bin_centers(), sid_bin_centers(1.0, 80.0, 64))


def test_metadata_rejects_unknown_keys_and_bad_json():
    with pytest.raises(ModelFileError, match='model.onnx: metadata does not match'):
        ModelMetadata.from_dict({'input_height': 1, 'input_width': 2, 'colour': 3},
                                source='model.onnx')
    with pytest.raises(ModelFileError, match='not valid JSON'):
        ModelMetadata.from_json('{broken', source='m')


def test_colorize_labels_uses_cityscapes_palette_and_black_for_ignore():
    labels = np.array([[0, 13], [10, IGNORE_LABEL]], dtype=np.uint8)
    color = colorize_labels(labels)
    assert color.dtype == np.uint8 and color.shape == (2, 2, 3)
    assert tuple(color[0, 0]) == (128, 64, 128)   # road
    assert tuple(color[0, 1]) == (0, 0, 142)      # car
    assert tuple(color[1, 0]) == (70, 130, 180)   # sky
    assert tuple(color[1, 1]) == (0, 0, 0)


def test_cli_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_cli_unknown_command_fails_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['no-such-command'])
    assert exit_info.value.code == 2
    assert 'invalid choice' in capsys.readouterr().err


@pytest.mark.parametrize('command', list(SUBCOMMANDS))
def test_every_command_has_its_own_help(command):
    result = subprocess.run([sys.executable, '-m', 'monodepth_ros.cli', command, '--help'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f'usage: monodepth {command}' in result.stdout


# The commands that show progress bars; each gets --no-progress from command.build_parser.
LONG_RUNNING_COMMANDS = {'demo', 'synth-bag', 'kitti2bag', 'train', 'infer', 'infer-bag',
                         'eval-bag', 'adapt', 'eval-fleet', 'infer-fleet', 'compare'}


@pytest.mark.parametrize('command', list(SUBCOMMANDS))
def test_common_options_of_every_command(command):
    parser, _ = build_parser(command)
    help_text = parser.format_help()
    assert '-v, --verbose' in help_text
    assert ('--no-progress' in help_text) == (command in LONG_RUNNING_COMMANDS), command
    # Declared once, in command.build_parser: the option appears exactly once.
    options = [option for action in parser._actions for option in action.option_strings]
    assert options.count('--verbose') == 1 and options.count('--no-progress') <= 1


def test_no_progress_reaches_the_long_running_commands():
    parser, _ = build_parser('infer-bag')
    assert parser.parse_args(['in', 'out', '--no-progress']).no_progress is True
    assert parser.parse_args(['in', 'out']).no_progress is False


def test_cli_prints_os_errors_in_one_line(tmp_path, capsys):
    # An output folder below a regular file cannot be created (NotADirectoryError).
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    out = blocker / 'data'
    assert main(['synth-bag', str(out), '--dataset', '--frames', '1', '--size', '32x16']) == 2
    err = capsys.readouterr().err
    assert err.startswith('monodepth synth-bag: error: ') and err.count('\n') == 1
    assert 'Not a directory' in err and str(blocker) in err


def test_synth_bag_dataset_refuses_bag_storage_and_help_is_plain_text(tmp_path, capsys,
                                                                     monkeypatch):
    out = tmp_path / 'data'
    assert main(['synth-bag', str(out), '--dataset', '--storage', 'mcap', '--frames', '1']) == 2
    err = capsys.readouterr().err
    assert err == ('monodepth synth-bag: error: --storage mcap applies to bags only; drop it '
                   'with --dataset (which writes a folder of PNGs)\n')
    assert not out.exists()
    monkeypatch.setenv('COLUMNS', '1000')
    parser, _ = build_parser('synth-bag')
    help_text = parser.format_help()
    for markup in ('``', ':func:', ':class:', ':meth:'):
        assert markup not in help_text
    assert 'Dataset mode (--dataset)' in help_text and 'read_dataset_frame()' in help_text
    assert '(--storage and --distro do not apply)' in help_text
