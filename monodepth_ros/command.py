"""How one ``monodepth`` subcommand runs: its parser, the common options, one-line errors.

Used by the ``monodepth`` entry point (``cli.py``) and by commands that run other commands
(``demo``, ``torchrun -m monodepth_ros.training.cli``), so every way in behaves the same: any
``MonodepthError``, and any ``OSError`` (an unwritable output path, a full disk, a missing
file), is printed as one line and exits with status 2; ``--verbose`` logs the traceback too;
Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from monodepth_ros.errors import MonodepthError


def _plain_text(docstring: str) -> str:
    """Drop reStructuredText markup (``code``, :func:`name`) so --help reads as plain text."""
    text = re.sub(r':[a-z]+:`([^`]*)`', r'\1', docstring)
    return re.sub(r'``([^`]*)``', r'\1', text)


def build_parser(command: str, module, help_text: str = '') -> argparse.ArgumentParser:
    """The parser of ``monodepth COMMAND``: the module's docstring, -v and its own options."""
    parser = argparse.ArgumentParser(
        prog=f'monodepth {command}', description=_plain_text(module.__doc__ or help_text).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    module.add_arguments(parser)
    return parser


def run_command(command: str, module, argv: list[str], help_text: str = '') -> int:
    """Parse ``argv`` for ``module`` and run it; errors become one line and status 2."""
    args = build_parser(command, module, help_text).parse_args(argv)
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
