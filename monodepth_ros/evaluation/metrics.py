"""Depth metrics of the KITTI / Eigen-split protocol (numpy only).

Every metric is computed per image over the evaluated pixels, then averaged over images
(``average_metrics``). Evaluated pixels: finite ground truth with ``min_depth < gt < max_depth``,
inside the optional crop and the optional caller mask, where the prediction is valid.

One rule for a valid prediction everywhere (``valid_prediction``): finite. REP 118 marks
missing depth with NaN (depth-image decoding already turns 16UC1 zeros into NaN); a non-finite
prediction lowers ``coverage``. A finite prediction, even 0 or negative, is graded after the
clamp to ``[min_depth, max_depth]``.

Metric definitions (natural log unless stated; ``p`` prediction, ``g`` ground truth, metres):

* ``abs_rel`` = mean(|g - p| / g)
* ``sq_rel`` = mean((g - p)^2 / g) (Eigen et al.); ``sq_rel_devkit`` = mean((g - p)^2 / g^2)
  (the KITTI depth devkit's ``sqErrorRel``)
* ``rmse`` = sqrt(mean((g - p)^2)) in metres; ``rmse_log`` = sqrt(mean((ln g - ln p)^2))
* ``log10`` = mean(|log10 g - log10 p|)
* ``silog`` = sqrt(mean(e^2) - mean(e)^2) with e = ln p - ln g, in log units (the KITTI
  leaderboard prints 100 x this value)
* ``irmse`` = sqrt(mean((1/g - 1/p)^2)) with depths in km, i.e. in 1/km (KITTI devkit)
* ``delta1..3`` = fraction of pixels with max(g/p, p/g) < 1.25^k
* ``n_pixels``: number of evaluated pixels; ``coverage``: the fraction of valid ground-truth
  pixels (after crop) that had a finite prediction.

With ``median_scaling`` the prediction is multiplied by median(g)/median(p) over the evaluated
pixels *before* it is clamped to ``[min_depth, max_depth]`` (the order of the published
protocol); the factor is returned as ``scale``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from monodepth_ros.errors import ConfigError

METRIC_NAMES = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'log10', 'silog',
                'delta1', 'delta2', 'delta3', 'sq_rel_devkit', 'irmse')
CROPS = ('none', 'garg', 'eigen')

# Fractions of the image height/width: [row_start, row_end, col_start, col_end).
_CROP_FRACTIONS = {
    'garg': (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    'eigen': (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}


def crop_bounds(height: int, width: int, crop: str | None) -> tuple[int, int, int, int]:
    """Return (row0, row1, col0, col1) of a Garg or Eigen crop, truncated to int like int32()."""
    if crop is None or crop == 'none':
        return 0, height, 0, width
    if crop not in _CROP_FRACTIONS:
        raise ConfigError(f'unknown crop {crop!r}, expected one of {CROPS}')
    r0, r1, c0, c1 = _CROP_FRACTIONS[crop]
    # The protocol multiplies in float and casts to int32, which truncates toward zero.
    return (int(r0 * height), int(r1 * height), int(c0 * width), int(c1 * width))


@lru_cache(maxsize=16)
def _crop_mask_cached(height: int, width: int, crop: str) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    row0, row1, col0, col1 = crop_bounds(height, width, crop)
    mask[row0:row1, col0:col1] = True
    mask.setflags(write=False)
    return mask


def crop_mask(height: int, width: int, crop: str | None) -> np.ndarray | None:
    """Boolean HxW mask of a crop, or None for no crop (read-only, cached)."""
    if crop is None or crop == 'none':
        return None
    return _crop_mask_cached(int(height), int(width), crop)


def evaluation_mask(gt: np.ndarray, min_depth: float = 1e-3, max_depth: float = 80.0,
                    crop: str | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """Pixels whose ground truth is evaluated: min_depth < gt < max_depth, in crop and mask."""
    with np.errstate(invalid='ignore'):
        valid = (gt > min_depth) & (gt < max_depth)
    region = crop_mask(gt.shape[0], gt.shape[1], crop)
    if region is not None:
        valid &= region
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    return valid


def _check_shapes(gt: np.ndarray, pred: np.ndarray, mask) -> None:
    if gt.ndim != 2 or pred.shape != gt.shape:
        raise ConfigError(
            f'depth metrics need two HxW arrays of one shape, got ground truth {gt.shape} '
            f'and prediction {pred.shape}')
    if mask is not None and np.shape(mask) != gt.shape:
        raise ConfigError(f'metric mask has shape {np.shape(mask)}, expected {gt.shape}')


def evaluated_indices(gt: np.ndarray, min_depth: float = 1e-3, max_depth: float = 80.0,
                      crop: str | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """Flat (row-major) indices of the pixels ``evaluation_mask`` selects, found faster.

    LiDAR ground truth is sparse (a few % of the pixels): one pass finds the pixels with a
    value, the depth range and crop are then tested on those few only.
    """
    flat_gt = gt.ravel()
    with np.errstate(invalid='ignore'):
        index = np.flatnonzero(flat_gt > min_depth)
    index = index[flat_gt[index] < max_depth]
    if crop is not None and crop != 'none':
        height, width = gt.shape
        row0, row1, col0, col1 = crop_bounds(height, width, crop)
        rows, cols = np.divmod(index, width)
        index = index[(rows >= row0) & (rows < row1) & (cols >= col0) & (cols < col1)]
    if mask is not None:
        index = index[np.asarray(mask, dtype=bool).ravel()[index]]
    return index


def empty_metrics() -> dict:
    """Metrics of an image with no evaluated pixel (NaN values, n_pixels 0)."""
    result = {name: float('nan') for name in METRIC_NAMES}
    result.update(n_pixels=0, coverage=0.0)
    return result


def metrics_from_values(gt: np.ndarray, pred: np.ndarray) -> dict:
    """All metrics for 1-D arrays of matching ground truth and (already clamped) prediction."""
    gt = gt.astype(np.float64, copy=False)
    pred = pred.astype(np.float64, copy=False)
    diff = gt - pred
    sq = diff * diff
    ratio = np.maximum(gt / pred, pred / gt)
    log_gt = np.log(gt)
    log_pred = np.log(pred)
    log_err = log_pred - log_gt
    inverse_err = 1000.0 / gt - 1000.0 / pred   # 1/km
    mean_log = float(np.mean(log_err))
    return {
        'abs_rel': float(np.mean(np.abs(diff) / gt)),
        'sq_rel': float(np.mean(sq / gt)),
        'rmse': float(np.sqrt(np.mean(sq))),
        'rmse_log': float(np.sqrt(np.mean(log_err * log_err))),
        'log10': float(np.mean(np.abs(log_err)) / np.log(10.0)),
        # max(0, .) guards against a tiny negative from rounding when all e are equal.
        'silog': float(np.sqrt(max(float(np.mean(log_err * log_err)) - mean_log ** 2, 0.0))),
        'delta1': float(np.mean(ratio < 1.25)),
        'delta2': float(np.mean(ratio < 1.25 ** 2)),
        'delta3': float(np.mean(ratio < 1.25 ** 3)),
        'sq_rel_devkit': float(np.mean(sq / (gt * gt))),
        'irmse': float(np.sqrt(np.mean(inverse_err * inverse_err))),
        'n_pixels': int(gt.size),
    }


def prepare_prediction(gt_values: np.ndarray, pred_values: np.ndarray, min_depth: float,
                       max_depth: float, median_scaling: bool) -> tuple[np.ndarray, float]:
    """Median-scale (optional) then clamp the prediction values, as the protocol orders it."""
    if not 0 < min_depth < max_depth:
        # Ground truth 0 means "no point" and the metrics divide by both depths.
        raise ConfigError(f'depth range {min_depth:g}..{max_depth:g} m: expected '
                          '0 < min_depth < max_depth')
    scale = 1.0
    pred_values = pred_values.astype(np.float64)
    if median_scaling:
        median_pred = float(np.median(pred_values))
        if median_pred > 0:
            scale = float(np.median(gt_values)) / median_pred
            pred_values *= scale
    np.clip(pred_values, min_depth, max_depth, out=pred_values)
    return pred_values, scale


def valid_prediction(pred_values: np.ndarray) -> np.ndarray:
    """Boolean mask of the predictions that are graded: the finite ones (see the module doc)."""
    return np.isfinite(pred_values)


def select_pixels(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None,
                  min_depth: float = 1e-3, max_depth: float = 80.0,
                  crop: str | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Ground truth and prediction (1-D) of the evaluated pixels.

    Also returns the pixel count before NaN predictions were dropped (for ``coverage``).
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    _check_shapes(gt, pred, mask)
    index = evaluated_indices(gt, min_depth, max_depth, crop, mask)
    gt_values = gt.ravel()[index]
    pred_values = pred.ravel()[index]
    valid = valid_prediction(pred_values)
    if not valid.all():
        return gt_values[valid], pred_values[valid], int(gt_values.size)
    return gt_values, pred_values, int(gt_values.size)


def metrics_for_values(gt_values: np.ndarray, pred_values: np.ndarray, n_gt: int,
                       min_depth: float = 1e-3, max_depth: float = 80.0,
                       median_scaling: bool = False) -> dict:
    """Metrics of selected pixels (see select_pixels): scaling, clamping, then the metrics."""
    if gt_values.size == 0:
        return empty_metrics()
    pred_values, scale = prepare_prediction(gt_values, pred_values, min_depth, max_depth,
                                            median_scaling)
    result = metrics_from_values(gt_values, pred_values)
    result['coverage'] = gt_values.size / n_gt
    if median_scaling:
        result['scale'] = scale
    return result


def compute_depth_metrics(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None,
                          min_depth: float = 1e-3, max_depth: float = 80.0,
                          crop: str | None = None, median_scaling: bool = False) -> dict:
    """Metrics of one depth image against its ground truth (see the module doc).

    gt: HxW metres, 0/NaN/inf where unknown. pred: HxW metres, NaN where invalid.
    mask: optional HxW bool of pixels to consider. crop: None/'none', 'garg' or 'eigen'.
    Returns a dict with METRIC_NAMES, ``n_pixels``, ``coverage`` (and ``scale`` when median
    scaling). An image with no evaluated pixel gives NaN metrics and ``n_pixels`` 0.
    """
    gt_values, pred_values, n_gt = select_pixels(gt, pred, mask, min_depth, max_depth, crop)
    return metrics_for_values(gt_values, pred_values, n_gt, min_depth, max_depth,
                              median_scaling)


def compute_depth_metrics_caps(gt: np.ndarray, pred: np.ndarray, caps=(80.0, 50.0),
                               mask: np.ndarray | None = None, min_depth: float = 1e-3,
                               crop: str | None = None,
                               median_scaling: bool = False) -> dict[float, dict]:
    """compute_depth_metrics at several caps, selecting the pixels once (cap -> metrics)."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    _check_shapes(gt, pred, mask)
    # One pass over the image at the largest cap; smaller caps are subsets of those pixels.
    index = evaluated_indices(gt, min_depth, max(caps), crop, mask)
    return metrics_at_caps(gt.ravel()[index], pred.ravel()[index], caps, min_depth,
                           median_scaling)


def metrics_at_caps(gt_values: np.ndarray, pred_values: np.ndarray, caps=(80.0, 50.0),
                    min_depth: float = 1e-3, median_scaling: bool = False) -> dict[float, dict]:
    """Metrics per cap of pixels selected at the largest cap (``evaluated_indices``).

    gt_values, pred_values: 1-D, every prediction still there (invalid ones are dropped here,
    counting against ``coverage``).
    """
    valid = valid_prediction(pred_values)
    results = {}
    for cap in caps:
        in_cap = gt_values < cap
        keep = in_cap & valid
        results[cap] = metrics_for_values(gt_values[keep], pred_values[keep],
                                          int(np.count_nonzero(in_cap)), min_depth, cap,
                                          median_scaling)
    return results


def average_metrics(per_image: list[dict]) -> dict:
    """Mean of each metric over images that had evaluated pixels (``frames`` = their count)."""
    used = [m for m in per_image if m.get('n_pixels', 0) > 0]
    result = {}
    for name in METRIC_NAMES + ('coverage',):
        values = [m[name] for m in used if name in m]
        result[name] = float(np.mean(values)) if values else float('nan')
    result['n_pixels'] = int(sum(m['n_pixels'] for m in used))
    result['frames'] = len(used)
    return result


class RunningMean:
    """Per-metric running mean over images, in constant memory."""

    def __init__(self):
        self._sums: dict[str, float] = {}
        self.frames = 0
        self.n_pixels = 0

    def add(self, metrics: dict) -> None:
        if metrics.get('n_pixels', 0) <= 0:
            return
        self.frames += 1
        self.n_pixels += int(metrics['n_pixels'])
        for name in METRIC_NAMES + ('coverage',):
            if name in metrics:
                self._sums[name] = self._sums.get(name, 0.0) + float(metrics[name])

    def result(self) -> dict:
        result = {name: (self._sums[name] / self.frames if self.frames and name in self._sums
                         else float('nan')) for name in METRIC_NAMES + ('coverage',)}
        result.update(n_pixels=self.n_pixels, frames=self.frames)
        return result


# -- breakdowns by distance band and by semantic class ----------------------------------------

def distance_band_edges(max_depth: float = 80.0, step: float = 10.0) -> np.ndarray:
    """Band edges 0, step, 2 step, ... up to max_depth (last band ends at max_depth)."""
    edges = np.arange(0.0, max_depth, step)
    return np.append(edges, max_depth)


class GroupedErrors:
    """Pixel-pooled errors per group (distance band or class), summed over images.

    For each group: ``abs_rel`` = mean |g-p|/g, ``rmse`` (m), ``delta1`` and ``mean_error``
    (signed mean p - g, m) over all pixels of that group in all images added so far.
    """

    def __init__(self, labels: list[str]):
        self.labels = list(labels)
        size = len(self.labels)
        self.count = np.zeros(size, dtype=np.int64)
        self.abs_rel_sum = np.zeros(size)
        self.sq_err_sum = np.zeros(size)
        self.signed_err_sum = np.zeros(size)
        self.delta1_count = np.zeros(size, dtype=np.int64)

    def add(self, group: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> None:
        """Add pixels: group index (int, out-of-range ignored), gt and clamped pred (1-D)."""
        size = len(self.labels)
        keep = (group >= 0) & (group < size)
        group = group[keep].astype(np.intp)
        gt = gt[keep].astype(np.float64)
        pred = pred[keep].astype(np.float64)
        diff = pred - gt
        self.count += np.bincount(group, minlength=size)
        self.abs_rel_sum += np.bincount(group, np.abs(diff) / gt, minlength=size)
        self.sq_err_sum += np.bincount(group, diff * diff, minlength=size)
        self.signed_err_sum += np.bincount(group, diff, minlength=size)
        good = np.maximum(gt / pred, pred / gt) < 1.25
        self.delta1_count += np.bincount(group[good], minlength=size)

    def add_rows(self, rows: list[dict]) -> None:
        """Pool another run's ``rows()`` (e.g. one bag's) into these sums, by group label.

        Groups this one lacks are ignored; delta1 comes back as a whole pixel count.
        """
        for row in rows:
            count = int(row['n_pixels'])
            if not count or row['group'] not in self.labels:
                continue
            index = self.labels.index(row['group'])
            self.count[index] += count
            self.abs_rel_sum[index] += row['abs_rel'] * count
            self.sq_err_sum[index] += row['rmse'] ** 2 * count
            self.signed_err_sum[index] += row['mean_error'] * count
            self.delta1_count[index] += round(row['delta1'] * count)

    def rows(self) -> list[dict]:
        rows = []
        for index, label in enumerate(self.labels):
            n = int(self.count[index])
            if n == 0:
                rows.append({'group': label, 'n_pixels': 0, 'abs_rel': float('nan'),
                             'rmse': float('nan'), 'delta1': float('nan'),
                             'mean_error': float('nan')})
                continue
            rows.append({'group': label, 'n_pixels': n,
                         'abs_rel': float(self.abs_rel_sum[index] / n),
                         'rmse': float(np.sqrt(self.sq_err_sum[index] / n)),
                         'delta1': float(self.delta1_count[index] / n),
                         'mean_error': float(self.signed_err_sum[index] / n)})
        return rows


def band_labels(edges: np.ndarray) -> list[str]:
    return [f'{edges[i]:g}-{edges[i + 1]:g}' for i in range(len(edges) - 1)]


def distance_band_index(gt_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Band index of each ground-truth depth: band i holds edges[i] <= g < edges[i+1]."""
    return np.searchsorted(edges, gt_values, side='right') - 1


def error_by_distance(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None,
                      min_depth: float = 1e-3, max_depth: float = 80.0, step: float = 10.0,
                      crop: str | None = None) -> list[dict]:
    """Errors of one image per distance band of the ground truth (0-10, 10-20, ... m)."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    _check_shapes(gt, pred, mask)
    valid = evaluation_mask(gt, min_depth, max_depth, crop, mask) & valid_prediction(pred)
    edges = distance_band_edges(max_depth, step)
    grouped = GroupedErrors(band_labels(edges))
    gt_values = gt[valid]
    pred_values = np.clip(pred[valid].astype(np.float64), min_depth, max_depth)
    grouped.add(distance_band_index(gt_values, edges), gt_values, pred_values)
    return grouped.rows()


def error_by_class(gt: np.ndarray, pred: np.ndarray, labels: np.ndarray,
                   class_names: list[str], mask: np.ndarray | None = None,
                   min_depth: float = 1e-3, max_depth: float = 80.0,
                   crop: str | None = None) -> list[dict]:
    """Errors of one image per semantic class (labels HxW of class ids; others ignored)."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    _check_shapes(gt, pred, mask)
    if np.shape(labels) != gt.shape:
        raise ConfigError(f'label image has shape {np.shape(labels)}, expected {gt.shape}')
    valid = evaluation_mask(gt, min_depth, max_depth, crop, mask) & valid_prediction(pred)
    grouped = GroupedErrors(class_names)
    pred_values = np.clip(pred[valid].astype(np.float64), min_depth, max_depth)
    grouped.add(np.asarray(labels)[valid].astype(np.int64), gt[valid], pred_values)
    return grouped.rows()


def log_scale_to_lidar(gt_values: np.ndarray, pred_values: np.ndarray) -> float:
    """log(median(g / p)) over one frame's graded pixels (NaN when none are positive).

    0 for a prediction at the LiDAR's scale; its change from one frame to the next is the
    scale flicker that :func:`scale_stability` summarises.
    """
    gt_values = np.asarray(gt_values, dtype=np.float64)
    pred_values = np.asarray(pred_values, dtype=np.float64)
    usable = (gt_values > 0) & (pred_values > 0) & np.isfinite(pred_values)
    if not usable.any():
        return float('nan')
    return float(np.log(np.median(gt_values[usable] / pred_values[usable])))


def scale_stability(log_scales) -> dict:
    """Scale drift of a run from the per-frame :func:`log_scale_to_lidar` values, in order.

    flicker: standard deviation of the change of the log scale between consecutive frames
    (how much the depth breathes from frame to frame; 0.01 is about 1 %); drift: standard
    deviation of the log scale over the run; frames: frames with a value. NaN below 3 frames
    (flicker) or 2 (drift).
    """
    values = np.asarray([value for value in log_scales if np.isfinite(value)], np.float64)
    steps = np.diff(values)
    return {'flicker': float(np.std(steps)) if steps.size >= 2 else float('nan'),
            'drift': float(np.std(values)) if values.size >= 2 else float('nan'),
            'frames': int(values.size)}
