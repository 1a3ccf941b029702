"""Latency statistics, the /diagnostics content and throttled warnings of the depth node."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


class LatencyStats:
    """Rolling window of durations (ms) per name, summarised as median and p99."""

    def __init__(self, window: int = 200):
        self._values: dict[str, deque[float]] = {}
        self._window = window
        self._lock = threading.Lock()

    def add(self, name: str, milliseconds: float) -> None:
        with self._lock:
            self._values.setdefault(name, deque(maxlen=self._window)).append(float(milliseconds))

    def summary(self) -> dict[str, tuple[float, float]]:
        """Name -> (median, p99) in ms over the window."""
        with self._lock:
            items = {name: np.asarray(values) for name, values in self._values.items() if values}
        return {name: (float(np.median(v)), float(np.percentile(v, 99)))
                for name, v in items.items()}


@dataclass
class DiagnosticsReport:
    """Content of one DiagnosticStatus: level 0 OK, 1 WARN, 2 ERROR; values as strings."""

    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)

    OK = 0
    WARN = 1
    ERROR = 2


def diagnostics_message(types, report: DiagnosticsReport, stamp_ns: int,
                        name: str = 'monodepth_ros: depth_node', hardware_id: str = ''):
    """DiagnosticArray holding ``report`` (rclpy or rosbags classes)."""
    from monodepth_ros.io.messages import make_diagnostic_array
    return make_diagnostic_array(
        types, stamp_ns, [(report.level, name, report.message, hardware_id, report.values)])


class ScaleCounters:
    """The scale stage in /diagnostics: the last frame's scale and the counts since start."""

    def __init__(self):
        self._lock = threading.Lock()
        self.last = None               # runtime.scale.ScaleEstimate of the last frame
        self.frames_held = 0           # frames that kept an earlier scale (too few points...)
        self.resets = 0
        self.frames_without_lidar = 0
        self.last_lidar_problem: str | None = None

    def add(self, estimate) -> None:
        with self._lock:
            self.last = estimate
            self.frames_held += int(estimate.held)
            self.resets += int(estimate.reset)

    def no_lidar(self, problem: str) -> None:
        with self._lock:
            self.frames_without_lidar += 1
            self.last_lidar_problem = problem

    def values(self) -> dict[str, str]:
        """Diagnostics keys (none before the first frame with depth)."""
        with self._lock:
            last = self.last
            if last is None:
                return {}
            values = {'scale_mode': last.mode,
                      'scale': 'none yet' if last.scale is None else f'{last.scale:.6g}',
                      'scale_shift': f'{last.shift:.6g}',
                      'scale_residual': f'{last.residual:.4f}',
                      'scale_points': str(last.points),
                      'scale_frames_held': str(self.frames_held),
                      'scale_resets': str(self.resets),
                      'frames_without_lidar': str(self.frames_without_lidar)}
            if self.last_lidar_problem:
                values['last_lidar_problem'] = self.last_lidar_problem
            return values


class Throttle:
    """Allow one event per ``period`` seconds per key (for repeated warnings)."""

    def __init__(self, period: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.period = period
        self._clock = clock
        self._last: dict[str, float] = {}

    def __call__(self, key: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            return False
        self._last[key] = now
        return True
