"""Pairing each image with its CameraInfo by stamp: one rule for the node, infer-bag and adapt."""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from typing import Any

# Largest |image - camera_info| stamp difference counted as a match (the node's default).
STAMP_TOLERANCE_S = 0.001


def match_stamp(stamps, stamp_ns: int, tolerance_ns: int, use_latest: bool) -> int | None:
    """Index in sorted ``stamps`` of the CameraInfo to use for an image stamped ``stamp_ns``.

    The one matching rule of the node and ``monodepth infer-bag``:

    1. the CameraInfo with the stamp closest to the image's, when within ``tolerance_ns``
       (between two equally close ones, the earlier);
    2. otherwise, with ``use_latest``, the newest CameraInfo stamped at or before the image
       (a driver that publishes it rarely), or the oldest one when all are newer;
    3. otherwise None (no calibration for this frame).
    """
    if not len(stamps):
        return None
    after = bisect.bisect_right(stamps, stamp_ns)       # stamps[:after] <= stamp_ns
    candidates = [index for index in (after - 1, after) if 0 <= index < len(stamps)]
    nearest = min(candidates, key=lambda index: abs(stamps[index] - stamp_ns))
    if abs(stamps[nearest] - stamp_ns) <= tolerance_ns:
        return nearest
    if not use_latest:
        return None
    return max(after - 1, 0)


class CameraInfoCache:
    """CameraInfo messages by stamp, matched to images with :func:`match_stamp`.

    ``size`` bounds the number kept (the oldest received goes first; None keeps all, as
    infer-bag does for a whole bag). A CameraInfo re-sent with the same stamp replaces the old.
    """

    def __init__(self, size: int | None = 30):
        self._size = size
        self._messages: OrderedDict[int, Any] = OrderedDict()    # stamp -> msg, receive order
        self._arrivals = 0                          # CameraInfos added so far
        self._arrival: dict[int, int] = {}          # stamp -> its arrival number
        self._sorted: list[int] | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._added = threading.Condition(self._lock)

    def add(self, msg, stamp_ns: int) -> None:
        with self._lock:
            self._messages.pop(stamp_ns, None)
            self._messages[stamp_ns] = msg
            self._arrivals += 1
            self._arrival[stamp_ns] = self._arrivals
            if self._size is not None and len(self._messages) > self._size:
                oldest, _ = self._messages.popitem(last=False)
                del self._arrival[oldest]
            self._sorted = None
            self._added.notify_all()

    def _has(self, stamp_ns: int, tolerance_ns: int) -> bool:
        return any(abs(stamp - stamp_ns) <= tolerance_ns for stamp in self._messages)

    def has(self, stamp_ns: int, tolerance_ns: int) -> bool:
        """True when a CameraInfo within ``tolerance_ns`` of ``stamp_ns`` is here."""
        with self._lock:
            return self._has(stamp_ns, tolerance_ns)

    def wait_for(self, stamp_ns: int, tolerance_ns: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a CameraInfo within ``tolerance_ns`` of ``stamp_ns``.

        A camera driver publishes an image and its CameraInfo on two topics (image_transport:
        the image first), so the CameraInfo may land just after the image. Returns True when
        one is there; False after ``timeout``, after :meth:`close`, or as soon as a newer
        CameraInfo arrives during the wait (they come in stamp order: the image's own was
        lost). CameraInfos that came before the wait do not end it: after a bag loops or sim
        time jumps back, the cache still holds newer stamps from the previous pass.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            waiting_since = self._arrivals
            while True:
                if self._has(stamp_ns, tolerance_ns):
                    return True
                newer_arrived = any(stamp > stamp_ns and self._arrival[stamp] > waiting_since
                                    for stamp in self._messages)
                remaining = deadline - time.monotonic()
                if newer_arrived or self._closed or remaining <= 0:
                    return False
                self._added.wait(remaining)

    def close(self) -> None:
        """End a wait in progress and any later one at once (the node is stopping)."""
        with self._lock:
            self._closed = True
            self._added.notify_all()

    def match(self, stamp_ns: int, tolerance_ns: int, use_latest: bool):
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._messages)
            index = match_stamp(self._sorted, stamp_ns, tolerance_ns, use_latest)
            return None if index is None else self._messages[self._sorted[index]]

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)
