"""How one ``monodepth`` subcommand runs: its parser, the common options, one-line errors.

Used by the ``monodepth`` entry point (``cli.py``) and by commands that run other commands
(``demo``, ``torchrun -m monodepth_ros.training.cli``), so every way in behaves the same: any
``MonodepthError``, and any ``OSError`` (an unwritable output path, a full disk, a missing
file), is printed as one line and exits with status 2; ``--verbose`` logs the traceback too;
Ctrl-C exits with 130, SIGTERM with 143, both after the command's cleanups ran (no output is
left half-written).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading

from monodepth_ros.errors import MonodepthError, interruption_behind


def _plain_text(docstring: str) -> str:
    """Drop reStructuredText markup (``code``, :func:`name`) so --help reads as plain text."""
    text = re.sub(r':[a-z]+:`([^`]*)`', r'\1', docstring)
    return re.sub(r'``([^`]*)``', r'\1', text)


def build_parser(command: str, module, help_text: str = '') -> argparse.ArgumentParser:
    """The parser of ``monodepth COMMAND``: the module's docstring, the common options, its own.

    Every command gets ``-v``; a module that sets ``LONG_RUNNING = True`` (it shows progress
    bars) also gets ``--no-progress``, read by its ``run`` as ``args.no_progress``.
    """
    parser = argparse.ArgumentParser(
        prog=f'monodepth {command}', description=_plain_text(module.__doc__ or help_text).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    if getattr(module, 'LONG_RUNNING', False):
        parser.add_argument('--no-progress', action='store_true',
                            help='no progress bars (they are shown on a terminal only)')
    module.add_arguments(parser)
    return parser


def run_command(command: str, module, argv: list[str], help_text: str = '') -> int:
    """Parse ``argv`` for ``module`` and run it; errors become one line and status 2."""
    try:
        args = build_parser(command, module, help_text).parse_args(argv)
    except SystemExit as stop:    # argparse printed its one-line error (status 2) or --help (0)
        return stop.code if isinstance(stop.code, int) else 0
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='[%(levelname)s] %(name)s: %(message)s')
    previous = _terminate_like_ctrl_c()
    try:
        return int(module.run(args) or 0)
    except (MonodepthError, OSError) as error:
        logging.getLogger('monodepth').debug('%s failed', command, exc_info=True)
        message = describe_os_error(error) if isinstance(error, OSError) else str(error)
        print(f'monodepth {command}: error: {message}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ImportError) as error:
        # Ctrl-C while an extension module initialises (onnxruntime, torch) comes back as an
        # ImportError raised from the KeyboardInterrupt: still an interruption.
        interruption = interruption_behind(error)
        if interruption is None:
            raise
        print(f'monodepth {command}: interrupted', file=sys.stderr)
        return 143 if isinstance(interruption, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# What a path should have been, by the OSError it raised.
_EXPECTED_PATH = {
    FileExistsError: 'a path that does not exist yet (or a folder where a folder is needed)',
    NotADirectoryError: 'folders along the path, not a file',
    IsADirectoryError: 'a file, not a folder',
    FileNotFoundError: 'an existing file, or an existing folder to write into',
    PermissionError: 'a path this user may read (inputs) or write (outputs)',
}


def describe_os_error(error: OSError) -> str:
    """One line naming the path, what went wrong and what was expected (no raw '[Errno N]')."""
    if not error.filename:
        return str(error)
    where = str(error.filename) + (f' -> {error.filename2}' if error.filename2 else '')
    text = f'{where}: {error.strerror or type(error).__name__}'
    expected = next((what for kind, what in _EXPECTED_PATH.items()
                     if isinstance(error, kind)), None)
    return f'{text}; expected {expected}' if expected else text


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup runs; the exit status is 143."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _terminate_like_ctrl_c():
    """Make SIGTERM raise Terminated; returns the previous handler (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)
