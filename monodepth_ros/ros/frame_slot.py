"""Hand-over of images from the subscription to the worker: the newest frame wins."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass
class Frame:
    """An image message waiting for the worker, with the time it arrived."""

    msg: Any
    stamp_ns: int
    received_ns: int


class LatestFrameSlot:
    """Bounded hand-over from the subscription to the worker; overflow drops the oldest."""

    def __init__(self, capacity: int = 1):
        self._capacity = max(int(capacity), 1)
        self._frames: deque[Frame] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.received = 0

    def set_capacity(self, capacity: int) -> None:
        with self._condition:
            self._capacity = max(int(capacity), 1)
            while len(self._frames) > self._capacity:
                self._frames.popleft()
                self.dropped += 1

    def put(self, frame: Frame) -> bool:
        """Offer a frame; returns True when an older frame was dropped to make room."""
        with self._condition:
            self.received += 1
            dropped = False
            while len(self._frames) >= self._capacity:
                self._frames.popleft()
                self.dropped += 1
                dropped = True
            self._frames.append(frame)
            self._condition.notify()
            return dropped

    def take(self, timeout: float | None = None) -> Frame | None:
        """Oldest waiting frame, waiting up to ``timeout`` seconds; None on timeout or close."""
        with self._condition:
            if not self._frames and not self._closed:
                self._condition.wait(timeout)
            if not self._frames:
                return None
            return self._frames.popleft()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def __len__(self) -> int:
        with self._condition:
            return len(self._frames)
