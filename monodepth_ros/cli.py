"""The ``monodepth`` command: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their subcommand runs, so ``monodepth --help`` stays fast (no torch import).
Any ``MonodepthError``, and any ``OSError`` (an unwritable output path, a full disk, a missing
file), is printed as one line and exits with status 2; ``--verbose`` logs the traceback too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

from monodepth_ros import __version__
from monodepth_ros.errors import MonodepthError

# name -> (module, one-line help). Order is the order shown by --help.
SUBCOMMANDS = {
    'demo': ('monodepth_ros.demo',
             'run the whole job on a synthetic drive: bag, model, inference, evaluation'),
    'synth-bag': ('monodepth_ros.bagtools.synth_bag',
                  'write a synthetic KITTI-like drive as a rosbag2 (or a dataset folder)'),
    'kitti2bag': ('monodepth_ros.bagtools.kitti2bag', 'convert a KITTI raw drive to rosbag2'),
    'train': ('monodepth_ros.training.cli', 'train the depth network from a YAML recipe'),
    'export': ('monodepth_ros.export', 'export a checkpoint to ONNX (with its metadata)'),
    'build-engine': ('monodepth_ros.engines.build',
                     'build (or reuse from cache) a TensorRT engine for an ONNX model'),
    'infer': ('monodepth_ros.infer', 'run the model on image files'),
    'infer-bag': ('monodepth_ros.bagtools.infer_bag',
                  'run the depth pipeline on every image of a bag, write the outputs to a bag'),
    'eval-bag': ('monodepth_ros.evaluation.cli',
                 'grade depth (a topic, a model or a baseline) against LiDAR ground truth'),
    'adapt': ('monodepth_ros.adapt',
              'fine-tune a model on a bag of your camera (LiDAR or self-supervised)'),
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


def _plain_text(docstring: str) -> str:
    """Drop reStructuredText markup (``code``, :func:`name`) so --help reads as plain text."""
    text = re.sub(r':[a-z]+:`([^`]*)`', r'\1', docstring)
    return re.sub(r'``([^`]*)``', r'\1', text)


def build_parser(command: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, help_text = SUBCOMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f'monodepth {command}', description=_plain_text(module.__doc__ or help_text).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    module.add_arguments(parser)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        _top_parser().parse_args(argv or ['--help'])
        return 2
    command = argv[0]
    parser, module = build_parser(command)
    args = parser.parse_args(argv[1:])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='[%(levelname)s] %(name)s: %(message)s')
    try:
        return int(module.run(args) or 0)
    except (MonodepthError, OSError) as error:
        logging.getLogger('monodepth').debug('%s failed', command, exc_info=True)
        print(f'monodepth {command}: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'monodepth {command}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
