"""Spacing-increasing depth discretization (seed 000, eq. 1), numpy only."""

import numpy as np

from monodepth_ros.errors import ConfigError


def sid_bin_edges(depth_min: float, depth_max: float, num_bins: int) -> np.ndarray:
    """Edges d_i = exp(log a + log(b / a) * i / K), i = 0..K (K + 1 values, float64)."""
    if not (0 < depth_min < depth_max) or num_bins < 2:
        raise ConfigError(
            f'depth bins need 0 < depth_min < depth_max and num_bins >= 2, got '
            f'depth_min={depth_min}, depth_max={depth_max}, num_bins={num_bins}')
    i = np.arange(num_bins + 1, dtype=np.float64)
    return np.exp(np.log(depth_min) + np.log(depth_max / depth_min) * i / num_bins)


def sid_bin_centers(depth_min: float, depth_max: float, num_bins: int) -> np.ndarray:
    """Representative depth of each bin: the geometric mean of its two edges (K values)."""
    edges = sid_bin_edges(depth_min, depth_max, num_bins)
    return np.sqrt(edges[:-1] * edges[1:])
