"""The ``monodepth`` command: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their subcommand runs, so ``monodepth --help`` stays fast (no torch import).
How a subcommand runs (common options, one-line errors, exit codes) is
:func:`monodepth_ros.command.run_command`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from monodepth_ros import __version__
from monodepth_ros.command import build_parser as command_parser
from monodepth_ros.command import run_command

# name -> (module, one-line help). Order is the order shown by --help.
SUBCOMMANDS = {
    'demo': ('monodepth_ros.bagtools.demo',
             'run the whole job on a synthetic drive: bag, model, inference, evaluation'),
    'synth-bag': ('monodepth_ros.bagtools.synth_bag',
                  'write a synthetic KITTI-like drive as a rosbag2 (or a dataset folder)'),
    'kitti2bag': ('monodepth_ros.bagtools.kitti2bag', 'convert a KITTI raw drive to rosbag2'),
    'train': ('monodepth_ros.training.cli', 'train the depth network from a YAML recipe'),
    'export': ('monodepth_ros.model.export', 'export a checkpoint to ONNX (with its metadata)'),
    'inspect-model': ('monodepth_ros.model.inspect',
                      'show what an ONNX model takes and returns, and the model card in effect'),
    'build-engine': ('monodepth_ros.engines.build',
                     'build (or reuse from cache) a TensorRT engine for an ONNX model'),
    'infer': ('monodepth_ros.runtime.infer', 'run the model on image files'),
    'infer-bag': ('monodepth_ros.bagtools.infer_bag',
                  'run the depth pipeline on every image of a bag, write the outputs to a bag'),
    'eval-bag': ('monodepth_ros.evaluation.cli',
                 'grade depth (a topic, a model or a baseline) against LiDAR ground truth'),
    'compare': ('monodepth_ros.evaluation.compare',
                'grade several models on the same frames of a bag: metrics, flicker, latency'),
    'adapt': ('monodepth_ros.training.adapt',
              'fine-tune a model on a bag of your camera (LiDAR or self-supervised)'),
    'eval-fleet': ('monodepth_ros.fleet.eval_fleet',
                   'eval-bag on a fleet of bags (Ray, local or a cluster): one report over all'),
    'infer-fleet': ('monodepth_ros.fleet.infer_fleet',
                    'infer-bag on a fleet of bags (Ray, local or a cluster): a bag out per bag'),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='monodepth',
        description='Monocular metric depth for ROS 2: train, export, run and evaluate.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='commands:\n' + '\n'.join(
            f'  {name:<13} {help_text}' for name, (_, help_text) in SUBCOMMANDS.items())
        + '\n\nRun "monodepth COMMAND --help" for the options of one command.')
    parser.add_argument('--version', action='version', version=f'monodepth {__version__}')
    parser.add_argument('command', choices=list(SUBCOMMANDS), metavar='COMMAND',
                        help='one of the commands below')
    return parser


def build_parser(command: str) -> tuple[argparse.ArgumentParser, object]:
    """The parser of ``monodepth COMMAND`` and the module that runs it."""
    module_name, help_text = SUBCOMMANDS[command]
    module = importlib.import_module(module_name)
    return command_parser(command, module, help_text), module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        _top_parser().parse_args(argv or ['--help'])
        return 2
    module_name, help_text = SUBCOMMANDS[argv[0]]
    return run_command(argv[0], importlib.import_module(module_name), argv[1:], help_text)


if __name__ == '__main__':
    sys.exit(main())
