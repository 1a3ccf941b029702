"""TensorRT engine cache: build once per (model, TensorRT, GPU, precision, shape), reuse after.

A serialized engine only runs on the TensorRT version and GPU it was built for, so the cache
key holds the sha256 of the ONNX bytes, the TensorRT version, the GPU name, compute capability
and SM count, the precision and the input shape. Each engine is stored as
``<cache_dir>/<key>.engine`` with a JSON sidecar ``<key>.json`` that spells the key out. An
engine whose sidecar is missing or does not match, or that fails to deserialize, is a cache
miss: it is rebuilt and the log says why. Writes are atomic (temporary file + ``os.replace``)
and happen under an exclusive ``fcntl.flock`` on ``<key>.lock`` so that two processes starting
together build once. The TensorRT timing cache is kept per GPU and TensorRT version.

Engines pile up as a model is retrained or TensorRT is upgraded (JetPack), each tens to
hundreds of MB, so after every build the cache keeps only the ``keep_per_model`` most recently
built or used engines of that model name (sidecar ``model_name``) and deletes the rest.

This module does not import TensorRT: the builder and deserializer are passed in.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from monodepth_ros.errors import EngineError

LOGGER = logging.getLogger(__name__)

CACHE_ENV = 'MONODEPTH_ENGINE_CACHE'
SIDECAR_FORMAT = 1
DEFAULT_KEEP_PER_MODEL = 3


def default_cache_dir() -> Path:
    """``$MONODEPTH_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/monodepth_ros/engines``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'monodepth_ros' / 'engines'


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    sm_count: int
    precision: str
    input_shape: tuple
    build_recipe: int = 1   # version of the builder settings (sidecars without it: 1)

    def to_dict(self) -> dict:
        data = asdict(self)
        data['input_shape'] = [int(v) for v in self.input_shape]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EngineKey:
        data = dict(data)
        data['input_shape'] = tuple(int(v) for v in data['input_shape'])
        data['sm_count'] = int(data['sm_count'])
        data['build_recipe'] = int(data.get('build_recipe', 1))
        return cls(**data)

    def digest(self) -> str:
        """File stem: readable prefix + sha256 of the key fields."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        shape = 'x'.join(str(v) for v in self.input_shape)
        return (f'{self.onnx_sha256[:12]}_{self.precision}_{shape}_'
                f'{hashlib.sha256(text.encode()).hexdigest()[:16]}')

    def differences(self, other: EngineKey) -> list[str]:
        """Human-readable list of the fields that differ ('tensorrt_version 10.3 != 10.7')."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f'{name} {theirs[name]} != {mine[name]}'
                for name in mine if mine[name] != theirs[name]]


@dataclass
class CacheResult:
    engine: object
    path: Path
    built: bool
    reason: str


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(handle, 'wb') as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


@contextlib.contextmanager
def file_lock(lock_path: Path, wait: bool = True):
    """Exclusive advisory lock on ``lock_path`` (created if needed), held for the block.

    With ``wait=False`` it yields False at once when another holder has it, else True.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, 'a+b') as stream:
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(stream.fileno(), fcntl.LOCK_UN)


class EngineCache:
    """Engines on disk, keyed by ``EngineKey``; see the module docstring."""

    def __init__(self, cache_dir: str | os.PathLike | None = None,
                 keep_per_model: int | None = DEFAULT_KEEP_PER_MODEL):
        if keep_per_model is not None and keep_per_model < 1:
            raise EngineError(f'keep_per_model must be at least 1 (or None to keep every '
                              f'engine), got {keep_per_model}')
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.keep_per_model = keep_per_model

    def engine_path(self, key: EngineKey) -> Path:
        return self.cache_dir / f'{key.digest()}.engine'

    def sidecar_path(self, key: EngineKey) -> Path:
        return self.cache_dir / f'{key.digest()}.json'

    def lock_path(self, key: EngineKey) -> Path:
        return self.cache_dir / f'{key.digest()}.lock'

    def timing_cache_path(self, key: EngineKey) -> Path:
        """One timing cache per GPU model and TensorRT version (shared by all models)."""
        slug = re.sub(r'[^A-Za-z0-9.]+', '-', f'{key.gpu_name}_sm{key.compute_capability}_'
                      f'trt{key.tensorrt_version}').strip('-')
        return self.cache_dir / f'timing_{slug}.cache'

    def load_timing_cache(self, key: EngineKey) -> bytes:
        path = self.timing_cache_path(key)
        return path.read_bytes() if path.is_file() else b''

    def save_timing_cache(self, key: EngineKey, data: bytes) -> None:
        if not data:
            return
        path = self.timing_cache_path(key)
        with file_lock(path.with_suffix('.lock')):
            atomic_write_bytes(path, bytes(data))

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes],
                     deserialize: Callable[[bytes], object],
                     model_name: str = '') -> CacheResult:
        """Deserialize the cached engine for ``key``, or build, store and deserialize a new one.

        ``build()`` returns the serialized engine bytes; ``deserialize(data)`` returns an engine
        object, or None / raises when the bytes are unusable. ``model_name`` groups the engines
        of one model for ``prune`` (default: the ONNX hash, i.e. no grouping across versions).
        After a build the older engines of that model beyond ``keep_per_model`` are deleted.
        """
        model_name = model_name or _hash_group(key)
        result = self._get_locked(key, build, deserialize, model_name)
        if result.built and self.keep_per_model is not None:
            # After our lock is released: prune takes the other engines' locks.
            self.prune(self.keep_per_model, model_name=model_name)
        return result

    def _get_locked(self, key: EngineKey, build, deserialize, model_name: str) -> CacheResult:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.lock_path(key)):
            engine, reason = self._load(key, deserialize)
            if engine is not None:
                LOGGER.info('TensorRT engine cache hit: %s', self.engine_path(key))
                with contextlib.suppress(OSError):   # "used" counts as new for prune
                    os.utime(self.engine_path(key))
                return CacheResult(engine, self.engine_path(key), built=False, reason=reason)
            LOGGER.warning('building TensorRT engine %s: %s (this can take minutes; it is '
                           'cached for the next start)', self.engine_path(key).name, reason)
            started = time.monotonic()
            data = build()
            if not data:
                raise EngineError(f'TensorRT produced no engine for {key.digest()}')
            data = bytes(data)
            atomic_write_bytes(self.engine_path(key), data)
            sidecar = {'format': SIDECAR_FORMAT, 'key': key.to_dict(), 'model_name': model_name,
                       'engine_sha256': hashlib.sha256(data).hexdigest(),
                       'engine_bytes': len(data),
                       'built_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                       'build_seconds': round(time.monotonic() - started, 2)}
            atomic_write_bytes(self.sidecar_path(key),
                               (json.dumps(sidecar, indent=2, sort_keys=True) + '\n').encode())
            engine = _try_deserialize(deserialize, data)[0]
            if engine is None:
                raise EngineError(
                    f'TensorRT engine just built at {self.engine_path(key)} does not '
                    'deserialize; TensorRT installation problem?')
            LOGGER.info('TensorRT engine written to %s (%.1f s)', self.engine_path(key),
                        time.monotonic() - started)
            return CacheResult(engine, self.engine_path(key), built=True, reason=reason)

    def prune(self, keep: int = DEFAULT_KEEP_PER_MODEL, model_name: str | None = None
              ) -> list[Path]:
        """Delete all but the ``keep`` newest engines of each model name; returns the deleted.

        Newest means most recently built or loaded (engine file mtime). Only engines with a
        readable sidecar are considered; one whose lock is held (being built or loaded by
        another process right now) is left alone. ``model_name`` limits it to one model.
        """
        if keep < 1:
            raise EngineError(f'prune keeps at least 1 engine per model, got keep={keep}')
        found = []
        for sidecar_path in self.cache_dir.glob('*.json'):
            try:
                sidecar = json.loads(sidecar_path.read_text())
                key = EngineKey.from_dict(sidecar['key'])
                mtime = self.engine_path(key).stat().st_mtime_ns
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found.append((sidecar.get('model_name'), mtime, key))
        # Sidecars written before names were recorded join the name of the same ONNX.
        name_of_onnx = {key.onnx_sha256: name for name, _, key in found if name}
        groups: dict[str, list[tuple[int, EngineKey]]] = {}
        for name, mtime, key in found:
            name = name or name_of_onnx.get(key.onnx_sha256) or _hash_group(key)
            if model_name is None or name == model_name:
                groups.setdefault(name, []).append((mtime, key))
        removed = []
        for name, entries in groups.items():
            entries.sort(key=lambda entry: entry[0], reverse=True)
            for _, key in entries[keep:]:
                with file_lock(self.lock_path(key), wait=False) as locked:
                    if not locked:
                        continue
                    for path in (self.engine_path(key), self.sidecar_path(key)):
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                    # The empty .lock file stays: deleting it could let two builders lock
                    # different files for the same key.
                removed.append(self.engine_path(key))
                LOGGER.info('engine cache: removed %s (model %s keeps its %d newest engines)',
                            self.engine_path(key).name, name, keep)
        return removed

    def _load(self, key: EngineKey, deserialize) -> tuple[object | None, str]:
        """(engine, '') on a hit, else (None, why it is a miss)."""
        engine_path, sidecar_path = self.engine_path(key), self.sidecar_path(key)
        if not engine_path.is_file():
            return None, self._explain_absence(key)
        try:
            sidecar = json.loads(sidecar_path.read_text())
            stored = EngineKey.from_dict(sidecar['key'])
        except (OSError, ValueError, KeyError, TypeError) as error:
            return None, f'cached engine {engine_path.name} has no readable sidecar ({error})'
        if stored != key:
            return None, (f'cached engine {engine_path.name} was built for another '
                          f'configuration: {", ".join(key.differences(stored))}')
        data = engine_path.read_bytes()
        if sidecar.get('engine_sha256') not in (None, hashlib.sha256(data).hexdigest()):
            return None, f'cached engine {engine_path.name} does not match its sidecar hash'
        engine, error = _try_deserialize(deserialize, data)
        if engine is None:
            return None, f'cached engine {engine_path.name} failed to deserialize ({error})'
        return engine, 'cache hit'

    def _explain_absence(self, key: EngineKey) -> str:
        """Say why there is no engine: often one exists for another TensorRT version or GPU."""
        for sidecar_path in sorted(self.cache_dir.glob('*.json')):
            try:
                stored = EngineKey.from_dict(json.loads(sidecar_path.read_text())['key'])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if (stored.onnx_sha256, stored.precision, stored.input_shape) == (
                    key.onnx_sha256, key.precision, key.input_shape):
                return (f'the cached engine {sidecar_path.stem}.engine for this model was '
                        f'built for another setup ({", ".join(key.differences(stored))})')
        return 'no cached engine for this model, precision, shape, GPU and TensorRT version'


def _hash_group(key: EngineKey) -> str:
    return f'onnx-{key.onnx_sha256[:12]}'


def _try_deserialize(deserialize, data: bytes) -> tuple[object | None, str]:
    try:
        engine = deserialize(data)
    except Exception as error:  # noqa: B902 - any failure of a stale engine means rebuild
        return None, f'{type(error).__name__}: {error}'
    return engine, '' if engine is not None else 'deserializer returned None'
