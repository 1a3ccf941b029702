"""Typed errors. Each message says what was wrong, where, and what was expected.

The command line prints ``str(error)`` as one line (no traceback) and exits non-zero for any
``MonodepthError``; the node logs it, counts it in diagnostics and carries on.
"""


class MonodepthError(Exception):
    """Base class of every error this package raises on bad input or configuration."""


class MessageError(MonodepthError, ValueError):
    """A ROS message is malformed or uses an unsupported encoding/layout."""


class CalibrationError(MonodepthError, ValueError):
    """Camera or LiDAR calibration is missing, inconsistent or malformed."""


class TransformError(MonodepthError, LookupError):
    """Two frames cannot be connected by the known transforms."""


class ConfigError(MonodepthError, ValueError):
    """A configuration value or parameter is invalid."""


class ModelFileError(MonodepthError):
    """A model file (checkpoint, ONNX, engine) is missing, truncated or incompatible."""


class EngineError(MonodepthError):
    """An inference backend is unavailable or failed."""


class DatasetError(MonodepthError):
    """A dataset folder, split file or sample is missing or malformed."""


class BagError(MonodepthError):
    """A bag is missing, corrupt, or lacks the topics/messages asked for."""


class OutputError(MonodepthError):
    """An output path holds something this command did not make, or cannot be written."""


def interruption_behind(error: BaseException | None) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt among ``error`` and its causes and contexts, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def reraise_interruption(error: ImportError) -> None:
    """Re-raise the Ctrl-C (or SIGTERM) that an extension module turned into an ImportError.

    ONNX Runtime and others catch whatever interrupts their initialisation and raise an
    ImportError from it: a missing-package fallback must not swallow that interruption.
    """
    interruption = interruption_behind(error)
    if interruption is not None:
        raise interruption
