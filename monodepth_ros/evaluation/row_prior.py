"""The row prior: a depth baseline that never looks at the image.

For each image row it predicts the mean ground-truth depth of that row over other frames. On
a car-mounted camera this already captures the ground plane and the typical street
profile, so a depth network is only useful where it beats it. ``eval-bag --baseline
row-prior`` grades it leave-one-out (each frame's prior comes from all the other frames of
the bag); training benchmarks fit it on the training frames.
"""

from __future__ import annotations

import numpy as np

from monodepth_ros.errors import ConfigError


class RowPrior:
    """Per-row sums and counts of valid ground-truth depth, per frame and in total."""

    def __init__(self, max_depth: float = 80.0, min_depth: float = 1e-3):
        self.max_depth, self.min_depth = float(max_depth), float(min_depth)
        self.height = None
        self.sums = None
        self.counts = None
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def add(self, depth: np.ndarray, frame=None) -> None:
        """Add one ground-truth depth map (HxW metres; 0, NaN or beyond the caps = none).

        ``frame``: a key under which the frame's own rows are kept, for :meth:`leave_out`.
        """
        depth = np.asarray(depth, dtype=np.float64)
        if depth.ndim != 2:
            raise ConfigError(f'row prior: depth map has shape {depth.shape}, expected HxW')
        if self.height is None:
            self.height = depth.shape[0]
            self.sums = np.zeros(self.height)
            self.counts = np.zeros(self.height, dtype=np.int64)
        elif depth.shape[0] != self.height:
            raise ConfigError(f'row prior: depth map has {depth.shape[0]} rows, the earlier '
                              f'ones {self.height}')
        with np.errstate(invalid='ignore'):
            valid = np.isfinite(depth) & (depth > self.min_depth) & (depth < self.max_depth)
        row_sums = np.where(valid, depth, 0.0).sum(axis=1)
        row_counts = valid.sum(axis=1)
        self.sums += row_sums
        self.counts += row_counts
        if frame is not None:
            self._frames[frame] = (row_sums, row_counts)

    @property
    def frames(self) -> int:
        return len(self._frames)

    def row_means(self, leave_out=None) -> np.ndarray:
        """(H,) mean depth per row, without frame ``leave_out`` if it was added.

        Rows without any valid pixel get the mean of all valid pixels.
        """
        if self.height is None:
            raise ConfigError('row prior: no ground truth was added')
        sums, counts = self.sums, self.counts
        if leave_out in self._frames:
            own_sums, own_counts = self._frames[leave_out]
            sums, counts = sums - own_sums, counts - own_counts
        total = counts.sum()
        if total == 0:
            raise ConfigError('row prior: no valid ground-truth pixel in the other frames')
        overall = sums.sum() / total
        return np.where(counts > 0, sums / np.maximum(counts, 1), overall).astype(np.float32)

    def predict(self, width: int, height: int | None = None, leave_out=None) -> np.ndarray:
        """A height x width depth image whose every row holds that row's mean."""
        rows = self.row_means(leave_out)
        if height is not None and height != rows.size:
            # Another image height: sample the row profile at the same relative position
            # (row centres aligned, as cv2.resize does).
            position = (np.arange(height) + 0.5) * rows.size / height - 0.5
            rows = np.interp(position, np.arange(rows.size), rows).astype(np.float32)
        return np.repeat(rows[:, None], int(width), axis=1)
