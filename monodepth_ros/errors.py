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
