"""Outputs that are complete or absent: every command writes its bag, folder or file this way.

``atomic_output(path, kind, command)`` hands out a hidden temporary sibling of ``path``
(``.NAME.partial-<pid>``, same folder, so the final rename never crosses file systems) and
renames it to ``path`` only when the block ends without an error. On an error, Ctrl-C or
SIGTERM the sibling is deleted, so nothing is left at ``path``; after SIGKILL only the hidden
sibling remains, and the next run that writes the same path deletes it (its process is gone).

Folders (bags, reports, datasets) get a marker file naming the command that made them
(``.monodepth-output``). A command deletes or replaces a folder only when the marker says it
made it, and otherwise refuses with one line naming the path: nothing the user made is lost.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from monodepth_ros.errors import MonodepthError, OutputError

MARKER_NAME = '.monodepth-output'
# bag: a folder the writer creates itself (rosbag2 refuses an existing one) inside the
# temporary sibling; folder: the sibling itself; file: one file written at the sibling's path.
KINDS = ('bag', 'folder', 'file')
_TEMP_TAGS = ('partial', 'replaced')
# A full disk, a file-size limit, a full quota: what a write fails with however it was made.
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
# Names the bag readers take for a single file, not a rosbag2 folder.
BAG_FILE_SUFFIXES = {'.bag': 'a ROS 1 bag file', '.mcap': 'a lone MCAP file',
                     '.db3': 'a lone sqlite3 file'}


def temp_sibling(path: Path, tag: str = 'partial', pid: int | None = None) -> Path:
    """The hidden sibling ``.NAME.<tag>-<pid>`` of ``path`` used while it is written."""
    return path.with_name(f'.{path.name}.{tag}-{os.getpid() if pid is None else pid}')


def made_by(path) -> str | None:
    """The command named by the marker of the output folder ``path``; None when unmarked."""
    marker = Path(path) / MARKER_NAME
    try:
        return str(json.loads(marker.read_text())['command'])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_own_output(path, commands: Iterable[str]) -> None:
    """Delete the folder ``path`` if one of ``commands`` made it (or it is empty).

    Anything else at ``path`` is left untouched and refused with an OutputError naming it.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    commands = tuple(commands)
    folder = path.is_dir() and not path.is_symlink()
    if folder and not any(path.iterdir()):
        path.rmdir()
        return
    if (made_by(path) if folder else None) not in commands:
        raise OutputError(f'{path} exists and was not made by monodepth {" or ".join(commands)}; '
                          'it is left as it is: move it away or choose another output folder')
    shutil.rmtree(path)


def write_image(path, image) -> None:
    """``cv2.imwrite`` that fails loudly: OpenCV only returns False on a full disk."""
    import cv2

    if not cv2.imwrite(str(path), image):
        raise OutputError(f'cannot write image {path} (is the disk full or the folder '
                          'read-only?)')


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False       # ours from an earlier process with the same id: not in use now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True         # another user's process
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete the temporary siblings of ``path`` left by processes that no longer run."""
    pattern = re.compile(rf'\.{re.escape(path.name)}\.(?:{"|".join(_TEMP_TAGS)})-(\d+)')
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for sibling in siblings:
        match = pattern.fullmatch(sibling.name)
        if match and not _process_alive(int(match.group(1))):
            _remove(sibling)
            removed.append(sibling)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def check_output(path, kind: str, command: str, replace_own: bool = False) -> None:
    """Refuse, before any work, a path ``command`` may not write (see atomic_output)."""
    path = Path(path)
    if kind == 'bag' and path.suffix in BAG_FILE_SUFFIXES:
        raise OutputError(f'{path}: a rosbag2 is a folder, and a name ending in {path.suffix} '
                          f'is read back as {BAG_FILE_SUFFIXES[path.suffix]}; choose a name '
                          f'without the suffix (e.g. {path.with_suffix("")})')
    if not path.exists() and not path.is_symlink():
        return
    if kind == 'file':
        if path.is_dir():
            raise OutputError(f'{path} is a folder; expected a file name for the output')
        return             # a file the user named as the output is replaced, as cp does
    if path.is_dir() and not path.is_symlink():
        if not any(path.iterdir()):
            return          # an empty folder is taken over
        owner = made_by(path)
        if replace_own and owner == command:
            return
        if owner is not None:
            raise OutputError(f'{path} exists already (an earlier monodepth {owner} output); '
                              'remove it or choose another path')
    raise OutputError(f'{path} exists already and was not made by monodepth {command}; '
                      'it is left as it is: remove it or choose another path')


def _make_folder(folder: Path) -> None:
    """``mkdir -p``; a file in the way is reported as such (not as 'File exists')."""
    blocker = next((parent for parent in (folder, *folder.parents)
                    if parent.exists() or parent.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(blocker))
    folder.mkdir(parents=True, exist_ok=True)


def _file_mode() -> int:
    """Read-write for everyone the umask allows (0644 under the usual umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_marker(folder, command: str) -> None:
    """Mark ``folder`` as made by ``command`` (read back by :func:`made_by`)."""
    (Path(folder) / MARKER_NAME).write_text(json.dumps({'command': command}) + '\n')


def claim_folder(path, command: str) -> Path:
    """Make (or take back) the folder ``path`` that ``command`` fills one piece at a time.

    For outputs written over several runs (a fleet resumes where it stopped): each piece goes
    in through :func:`atomic_output`, the folder itself is new, empty or marked by ``command``;
    anything else is refused as :func:`check_output` refuses it.
    """
    path = Path(path)
    check_output(path, 'folder', command, replace_own=True)
    _make_folder(path)
    if made_by(path) != command:
        write_marker(path, command)
    return path


def _commit(temp: Path, path: Path, kind: str, command: str) -> None:
    if kind == 'file':
        if not temp.is_file():
            raise OutputError(f'{path} was not written (no file at {temp})')
        with temp.open('rb') as stream:
            os.fsync(stream.fileno())
        os.chmod(temp, _file_mode())
        os.replace(temp, path)
        return
    built = temp / path.name if kind == 'bag' else temp
    if not built.is_dir():
        raise OutputError(f'{path} was not written (no folder at {built})')
    write_marker(built, command)
    if path.is_dir() and any(path.iterdir()):
        # Our own earlier output (checked on entry): swap, then delete the old one.
        old = temp_sibling(path, 'replaced')
        os.rename(path, old)
        os.rename(built, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(built, path)   # replaces an empty folder too
    if kind == 'bag':
        temp.rmdir()


@contextmanager
def atomic_output(path, kind: str, command: str, replace_own: bool = False) -> Iterator[Path]:
    """Write ``path`` through a hidden temporary sibling; yields the path to write to.

    ``kind``: 'bag' (a path inside the sibling, with the final name, that the bag writer
    creates: rosbag2 names its storage file after the folder), 'folder' (created here, empty)
    or 'file'. An existing ``path`` is refused (OutputError) unless it
    is an empty folder, a file (kind 'file'), or, with ``replace_own``, a folder that
    ``command`` made. Any exception, KeyboardInterrupt included, deletes the sibling and
    leaves ``path`` as it was.
    """
    if kind not in KINDS:
        raise ValueError(f'output kind {kind!r} unknown, expected one of {KINDS}')
    path = Path(path)
    remove_stale_temps(path)
    check_output(path, kind, command, replace_own)
    created = [parent for parent in reversed(path.parents) if not parent.exists()]
    _make_folder(path.parent)
    temp = temp_sibling(path)
    target = temp / path.name if kind == 'bag' else temp
    try:
        if kind != 'file':
            temp.mkdir()
        yield target
        _commit(temp, path, kind, command)
    except BaseException as error:
        _remove(temp)
        for parent in reversed(created):   # folders made only for this output, deepest first
            try:
                parent.rmdir()
            except OSError:
                break
        failed_write = _failed_write(error, path, (target, temp))
        if failed_write is not None:
            raise failed_write from error
        raise


def _failed_write(error: BaseException, path: Path, hidden: tuple[Path, ...]
                  ) -> OutputError | None:
    """An error while writing the hidden sibling (a full disk...), told about ``path``."""
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        text = f'cannot write {error.filename or path}: {error.strerror}'
    elif isinstance(error, OSError) and error.filename is not None:
        text = f'cannot write {error.filename}: {error.strerror or error}'
    elif isinstance(error, (OSError, MonodepthError)):
        text = str(error)
    else:
        return None
    about_output = any(str(name) in text for name in hidden)
    if not about_output and not (isinstance(error, OSError) and error.errno in DISK_FULL):
        return None         # not about the output (a missing input, a bad option...)
    for name in hidden:     # the longest first: the bag folder inside the sibling
        text = text.replace(str(name), str(path))
    return OutputError(f'{text}; nothing was written to {path}')
