"""The bags of a fleet: paths, globs and manifest files; each bag once, each with its own name.

A manifest is a text file ending in ``.txt``: one bag path or glob per line, blank lines and
``#`` comments ignored, relative paths taken from the manifest's folder. A glob that matches
nothing is refused (a typo would silently shrink the fleet); a bag path that does not exist
stays in the fleet and fails alone, with its reason, like a corrupt bag.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path

from monodepth_ros.errors import ConfigError
from monodepth_ros.io.outputs import BAG_FILE_SUFFIXES

MANIFEST_SUFFIX = '.txt'
_GLOB_CHARACTERS = set('*?[')


def _expand_one(spec: str, base: Path, where: str) -> list[Path]:
    path = Path(os.path.expanduser(spec))
    if not path.is_absolute():
        path = base / path
    if _GLOB_CHARACTERS & set(spec):
        matches = sorted(glob.glob(str(path), recursive=True))
        if not matches:
            raise ConfigError(f'{where}: no bag matches {spec!r}')
        return [Path(match) for match in matches]
    return [path]


def expand_bags(specs: list[str]) -> list[Path]:
    """Absolute bag paths of ``specs`` (paths, globs, manifests) in order, each bag once."""
    bags: list[Path] = []
    for spec in specs:
        spec = str(spec)
        path = Path(os.path.expanduser(spec))
        if path.suffix == MANIFEST_SUFFIX and path.is_file():
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                entry = line.split('#', 1)[0].strip()
                if entry:
                    bags += _expand_one(entry, path.parent.absolute(),
                                        f'manifest {path} line {number}')
        else:
            bags += _expand_one(spec, Path.cwd(), 'bags')
    unique = list(dict.fromkeys(Path(os.path.abspath(bag)) for bag in bags))
    if not unique:
        raise ConfigError(f'no bags given (got {specs}); expected bag paths, globs or a '
                          f'manifest file ending in {MANIFEST_SUFFIX}')
    return unique


def bag_name(path: Path) -> str:
    """The bag's own name: its folder, or its file without the bag suffix."""
    return path.stem if path.suffix in BAG_FILE_SUFFIXES else path.name


def bag_keys(bags: list[Path]) -> dict[Path, str]:
    """A distinct output name per bag: its name, with a hash of its path where names repeat."""
    names = [bag_name(bag) for bag in bags]
    keys = {}
    for bag, name in zip(bags, names):
        if names.count(name) > 1:
            name += '-' + hashlib.sha256(str(bag).encode()).hexdigest()[:8]
        keys[bag] = name
    return keys


def fingerprint(path: Path) -> str | None:
    """Sizes and times of the bag's files: a bag recorded anew at the same path is redone."""
    try:
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        stats = [(file.name, file.stat().st_size, file.stat().st_mtime_ns) for file in files
                 if file.is_file()]
    except OSError:
        return None
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()
