"""Evaluation outputs: summary.json, frames.csv, report.md, plots and qualitative strips.

Plots use matplotlib's Agg backend (no display needed). A qualitative strip stacks four
captioned rows (camera image, LiDAR ground truth, prediction, relative error); the two depth
panels share one colour scale (near red, far blue) with its colour bar in metres, the error
panel shows |p - g| / g at the LiDAR pixels, 0 (green) to 0.3 (red), with its own bar.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from monodepth_ros.evaluation.metrics import METRIC_NAMES

TABLE_METRICS = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'log10', 'silog', 'delta1', 'delta2',
                 'delta3', 'sq_rel_devkit', 'irmse')


def _clean(value):
    """JSON-safe value: NaN/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def format_table(summary: dict) -> str:
    """Plain-text table: one row per cap, one column per metric."""
    caps = [key for key in summary if key.startswith('cap_')]
    header = f'{"cap":<8}{"frames":>7} ' + ' '.join(f'{name:>13}' for name in TABLE_METRICS)
    lines = [header, '-' * len(header)]
    for key in caps:
        values = summary[key]
        cells = []
        for name in TABLE_METRICS:
            value = values.get(name)
            cells.append(f'{value:>13.4f}' if isinstance(value, float) and math.isfinite(value)
                         else f'{"-":>13}')
        lines.append(f'{key[4:] + " m":<8}{values.get("frames", 0):>7} ' + ' '.join(cells))
    skipped = summary['frames_skipped']
    lines.append(f'frames evaluated: {summary["frames_evaluated"]}, skipped: '
                 f'{skipped["count"]}')
    for reason, count in skipped['reasons'].items():
        lines.append(f'  skipped {count} x {reason}')
    for reason, count in summary.get('scans_skipped', {}).get('reasons', {}).items():
        lines.append(f'  LiDAR scans skipped: {count} x {reason}')
    lines += scale_lines(summary)
    if summary.get('error'):
        lines.append(f'stopped early: {summary["error"]}')
    return '\n'.join(lines)


def format_number(value, spec: str) -> str:
    """``value`` formatted with ``spec``, or '-' when it is missing or not finite."""
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) \
        else '-'


def scale_lines(summary: dict) -> list[str]:
    """The scale stage and the scale stability of a summary, one line each."""
    lines = []
    scale = summary.get('scale')
    if scale:
        lines.append(f'scale ({scale["mode"]}): median '
                     f'{format_number(scale["scale_median"], ".4g")} '
                     f'({format_number(scale["scale_min"], ".4g")}..'
                     f'{format_number(scale["scale_max"], ".4g")}), residual '
                     f'{format_number(scale["residual_median"], ".3f")}, points '
                     f'{format_number(scale["points_median"], ".0f")}, fitted '
                     f'{scale["frames_fitted"]}/{scale["frames"]} frames, held '
                     f'{scale["frames_held"]}, resets {scale["resets"]}')
    stability = summary.get('scale_stability')
    if stability:
        lines.append(f'scale against LiDAR: flicker '
                     f'{format_number(stability["flicker"], ".4f")}, '
                     f'drift {format_number(stability["drift"], ".4f")} (std of log scale, '
                     f'frame to frame and over the run; {stability["frames"]} frames)')
    return lines


def write_summary(summary: dict, out_dir: Path) -> Path:
    path = out_dir / 'summary.json'
    path.write_text(json.dumps(_clean(summary), indent=2) + '\n')
    return path


def write_frames_csv(rows: list[dict], out_dir: Path) -> Path:
    path = out_dir / 'frames.csv'
    columns = list(rows[0]) if rows else ['stamp_ns', *METRIC_NAMES]
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ('' if isinstance(value, float) and not math.isfinite(value)
                                   else value) for key, value in row.items()})
    return path


def _markdown_rows(rows: list[dict], label: str) -> list[str]:
    lines = [f'| {label} | pixels | abs_rel | rmse (m) | delta1 | mean error (m) |',
             '|---|---:|---:|---:|---:|---:|']
    for row in rows:
        if not row['n_pixels']:
            continue
        lines.append(f'| {row["group"]} | {row["n_pixels"]} | {row["abs_rel"]:.4f} | '
                     f'{row["rmse"]:.3f} | {row["delta1"]:.4f} | {row["mean_error"]:+.3f} |')
    return lines


def write_report_md(summary: dict, out_dir: Path, images: list[str]) -> Path:
    lines = ['# Depth evaluation against LiDAR', '',
             f'- bag: `{summary["bag"]}`', f'- depth: {summary["depth_source"]}',
             f'- protocol: {summary["protocol"]}, crop: {summary["crop"]}, median scaling: '
             f'{summary["median_scaling"]}, min depth {summary["min_depth"]} m, LiDAR match '
             f'within {summary["max_time_diff_ms"]} ms',
             f'- frames evaluated: {summary["frames_evaluated"]}, skipped: '
             f'{summary["frames_skipped"]["count"]}', '']
    if summary.get('error'):
        lines += [f'**Stopped early:** {summary["error"]} (the figures below cover the frames '
                  'evaluated before that)', '']
    lines += ['## Metrics (per image, averaged over images)', '',
              '| cap | frames | ' + ' | '.join(TABLE_METRICS) + ' |',
              '|---|---:|' + '---:|' * len(TABLE_METRICS)]
    for key in [k for k in summary if k.startswith('cap_')]:
        values = summary[key]
        cells = [f'{values[name]:.4f}' if isinstance(values.get(name), float)
                 and math.isfinite(values[name]) else '-' for name in TABLE_METRICS]
        lines.append(f'| {key[4:]} m | {values.get("frames", 0)} | ' + ' | '.join(cells) + ' |')
    lines += ['', 'abs_rel, sq_rel (Eigen, /gt), rmse (m), rmse_log, log10, silog (log units; '
              'x100 for the KITTI leaderboard figure), delta_k = share of max(g/p, p/g) < '
              '1.25^k, sq_rel_devkit (/gt^2), irmse (1/km).', '']
    if summary['frames_skipped']['reasons']:
        lines += ['## Skipped frames', '']
        lines += [f'- {count} x {reason}'
                  for reason, count in summary['frames_skipped']['reasons'].items()]
        lines.append('')
    if summary.get('scans_skipped', {}).get('reasons'):
        lines += ['## Skipped LiDAR scans', '']
        lines += [f'- {count} x {reason}'
                  for reason, count in summary['scans_skipped']['reasons'].items()]
        lines.append('')
    scale = scale_lines(summary)
    if scale:
        lines += ['## Metric scale and stability', '']
        lines += [f'- {line}' for line in scale]
        lines += ['', 'scale: the scale stage of the pipeline (s of metres = s * d + t in the '
                  "model's space); residual: median relative error of the points it kept. "
                  'flicker: std of the change of log(median(LiDAR / prediction)) between '
                  'consecutive frames (0.01 = 1 %); drift: its std over the run.', '']
    if summary.get('by_distance'):
        lines += ['## Error by ground-truth distance (first cap, pixels pooled)', '']
        lines += _markdown_rows(summary['by_distance'], 'distance (m)')
        lines.append('')
    if summary.get('by_class'):
        lines += ['## Error by semantic class (first cap, pixels pooled)', '']
        lines += _markdown_rows(summary['by_class'], 'class')
        lines.append('')
    if images:
        lines += ['## Figures', '']
        lines += [f'![{Path(name).stem}]({name})' for name in images]
        lines.append('')
    path = out_dir / 'report.md'
    path.write_text('\n'.join(lines))
    return path


def _plots(result, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = []
    rows = result.by_distance.rows() if result.by_distance else []
    used = [row for row in rows if row['n_pixels']]
    if used:
        figure, axis = plt.subplots(figsize=(7, 4))
        labels = [row['group'] for row in used]
        axis.bar(labels, [row['abs_rel'] for row in used], color='tab:blue', label='abs_rel')
        axis.set_xlabel('ground-truth distance (m)')
        axis.set_ylabel('abs_rel')
        other = axis.twinx()
        other.plot(labels, [row['rmse'] for row in used], 'o-', color='tab:red', label='rmse')
        other.set_ylabel('rmse (m)')
        axis.set_title('Error vs distance')
        figure.tight_layout()
        figure.savefig(out_dir / 'error_vs_distance.png', dpi=100)
        plt.close(figure)
        names.append('error_vs_distance.png')
    if result.rows:
        figure, axis = plt.subplots(figsize=(7, 3.5))
        stamps = np.array([row['stamp_ns'] for row in result.rows], dtype=np.float64)
        axis.plot((stamps - stamps[0]) / 1e9, [row['delta1'] for row in result.rows], '.-')
        axis.set_xlabel('time since first frame (s)')
        axis.set_ylabel('delta1')
        axis.set_ylim(0, 1.02)
        axis.set_title('delta1 per frame')
        figure.tight_layout()
        figure.savefig(out_dir / 'delta1_per_frame.png', dpi=100)
        plt.close(figure)
        names.append('delta1_per_frame.png')
    if result.histogram.sum():
        from monodepth_ros.evaluation.evaluator import HISTOGRAM_EDGES

        figure, axis = plt.subplots(figsize=(7, 3.5))
        centres = 0.5 * (HISTOGRAM_EDGES[1:] + HISTOGRAM_EDGES[:-1])
        axis.bar(centres, result.histogram / result.histogram.sum(),
                 width=np.diff(HISTOGRAM_EDGES), color='tab:gray')
        axis.set_xlabel('prediction - ground truth (m), clipped to +-10 m')
        axis.set_ylabel('share of pixels')
        axis.set_title('Error histogram')
        figure.tight_layout()
        figure.savefig(out_dir / 'error_histogram.png', dpi=100)
        plt.close(figure)
        names.append('error_histogram.png')
    return names


def _colorize(values: np.ndarray, valid: np.ndarray, low: float, high: float,
              colormap: str) -> np.ndarray:
    from matplotlib import colormaps

    scaled = np.clip((np.nan_to_num(values) - low) / max(high - low, 1e-6), 0.0, 1.0)
    rgb = (colormaps[colormap](scaled)[..., :3] * 255).astype(np.uint8)
    rgb[~valid] = 0
    return rgb


# Layout of a qualitative strip: a caption band above each panel, a colour bar on the right.
STRIP_CAPTION_HEIGHT = 22
STRIP_BAR_AREA = 76           # width of the column right of the panels
STRIP_BAR_MARGIN = 6          # between a panel and its colour bar
STRIP_BAR_WIDTH = 14
STRIP_ERROR_MAX = 0.3         # relative error at the top of the error colour map
_STRIP_TEXT = (235, 235, 235)
_STRIP_BACKGROUND = (32, 32, 32)


def _depth_label(metres: float) -> str:
    return f'{metres:.0f} m' if metres >= 10 else f'{metres:.1f} m'


def colour_bar(height: int, low: float, high: float, colormap: str,
               labels: list[tuple[float, str]]) -> np.ndarray:
    """A ``height`` x STRIP_BAR_AREA RGB column: a vertical colour bar and its tick labels.

    ``high`` is at the top, ``low`` at the bottom: row r shows
    ``high - (high - low) * r / (height - 1)``; ``labels`` are (value, text) ticks.
    """
    import cv2

    column = np.full((height, STRIP_BAR_AREA, 3), _STRIP_BACKGROUND, np.uint8)
    values = high - (high - low) * np.arange(height) / max(height - 1, 1)
    bar = _colorize(values[:, None], np.ones((height, 1), bool), low, high, colormap)
    x0, x1 = STRIP_BAR_MARGIN, STRIP_BAR_MARGIN + STRIP_BAR_WIDTH
    column[:, x0:x1] = bar
    for value, text in labels:
        row = int(round((high - value) / (high - low) * (height - 1)))
        cv2.line(column, (x1, row), (x1 + 3, row), _STRIP_TEXT, 1)
        # Keep the text inside the column at the top and bottom rows.
        baseline = min(max(row + 4, 10), height - 2)
        cv2.putText(column, text, (x1 + 5, baseline), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    _STRIP_TEXT, 1, cv2.LINE_AA)
    return column


def _captioned(panel: np.ndarray, caption: str, bar: np.ndarray | None) -> np.ndarray:
    """One row of the strip: the caption band over [panel | colour bar or blank]."""
    import cv2

    height, width = panel.shape[:2]
    row = np.full((STRIP_CAPTION_HEIGHT + height, width + STRIP_BAR_AREA, 3), _STRIP_BACKGROUND,
                  np.uint8)
    cv2.putText(row, caption, (6, STRIP_CAPTION_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                _STRIP_TEXT, 1, cv2.LINE_AA)
    row[STRIP_CAPTION_HEIGHT:, :width] = panel
    if bar is not None:
        row[STRIP_CAPTION_HEIGHT:, width:] = bar
    return row


class _StripPanels:
    """The panels of strips for frames of one ground truth: image, LiDAR, depth, error."""

    def __init__(self, gt: np.ndarray, rgb: np.ndarray | None, max_depth: float):
        import cv2

        self.gt = gt
        height, width = gt.shape
        self.has_gt = gt > 0
        # Sparse LiDAR pixels are grown to 3x3 for visibility only.
        self.kernel = np.ones((3, 3), np.uint8)
        self.grown = cv2.dilate(self.has_gt.astype(np.uint8), self.kernel) > 0
        # One depth colour scale for every depth panel: near red, far blue.
        self.scale_max = 0.5 * max_depth
        if rgb is not None and rgb.shape[:2] == (height, width):
            self.image = rgb
        elif rgb is not None:
            self.image = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        else:
            self.image = np.zeros((height, width, 3), np.uint8)
        depth_labels = [(0.0, _depth_label(0.0)),
                        (self.scale_max / 2, _depth_label(self.scale_max / 2)),
                        (self.scale_max, _depth_label(self.scale_max) + '+')]
        self.depth_bar = colour_bar(height, 0.0, self.scale_max, 'turbo_r', depth_labels)
        self.error_bar = colour_bar(height, 0.0, STRIP_ERROR_MAX, 'RdYlGn_r', [
            (0.0, '0'), (STRIP_ERROR_MAX / 2, f'{STRIP_ERROR_MAX / 2:.2f}'),
            (STRIP_ERROR_MAX, f'{STRIP_ERROR_MAX:.1f}+')])

    def lidar(self) -> np.ndarray:
        import cv2

        gt_grown = cv2.dilate(np.where(self.has_gt, self.scale_max * 2 - self.gt,
                                       0).astype(np.float32), self.kernel)
        gt_grown = np.where(self.grown, self.scale_max * 2 - gt_grown, 0)
        return _colorize(gt_grown, self.grown, 0.0, self.scale_max, 'turbo_r')

    def depth(self, pred: np.ndarray) -> np.ndarray:
        return _colorize(pred, np.isfinite(pred), 0.0, self.scale_max, 'turbo_r')

    def error(self, pred: np.ndarray) -> np.ndarray:
        import cv2

        finite = np.isfinite(pred)
        gt, has_gt = self.gt, self.has_gt
        with np.errstate(divide='ignore', invalid='ignore'):
            rel = np.where(has_gt & finite, np.abs(pred - gt) / np.where(has_gt, gt, 1), 0)
        rel_grown = cv2.dilate(rel.astype(np.float32), self.kernel)
        shown = self.grown & (cv2.dilate((has_gt & finite).astype(np.uint8), self.kernel) > 0)
        return _colorize(rel_grown, shown, 0.0, STRIP_ERROR_MAX, 'RdYlGn_r')


def qualitative_strip(frame, max_depth: float) -> np.ndarray:
    """RGB strip of four captioned rows: image, LiDAR ground truth, prediction, relative error.

    Each row is a caption band (``STRIP_CAPTION_HEIGHT`` px) over the panel; right of the
    depth panels a colour bar in metres (0 to half the largest cap, farther clipped), right of
    the error panel one of |p - g| / g (0 to ``STRIP_ERROR_MAX``, larger clipped). A HxW frame
    gives a (4 * (H + STRIP_CAPTION_HEIGHT)) x (W + STRIP_BAR_AREA) strip.
    """
    panels = _StripPanels(frame.gt, frame.rgb, max_depth)
    return np.vstack([
        _captioned(panels.image, 'camera image', None),
        _captioned(panels.lidar(), 'LiDAR ground truth depth (m; black: no return)',
                   panels.depth_bar),
        _captioned(panels.depth(frame.pred), 'predicted depth (m)', panels.depth_bar),
        _captioned(panels.error(frame.pred),
                   'relative error |pred - gt| / gt at the LiDAR points', panels.error_bar),
    ])


def comparison_strip(frames: dict, max_depth: float) -> np.ndarray:
    """The strip of one frame graded for several models: name -> QualitativeFrame.

    Rows: the camera image, the LiDAR ground truth, then each model's depth and relative error;
    every depth panel shares one colour scale (that of :func:`qualitative_strip`).
    """
    first = next(iter(frames.values()))
    panels = _StripPanels(first.gt, first.rgb, max_depth)
    rows = [_captioned(panels.image, 'camera image', None),
            _captioned(panels.lidar(), 'LiDAR ground truth depth (m; black: no return)',
                       panels.depth_bar)]
    for name, frame in frames.items():
        pred = frame.pred
        rows.append(_captioned(panels.depth(pred), f'{name}: depth (m)', panels.depth_bar))
        rows.append(_captioned(panels.error(pred), f'{name}: relative error |pred - gt| / gt',
                               panels.error_bar))
    return np.vstack(rows)


def write_outputs(result, out_dir) -> dict:
    """Write every output file of an evaluation into ``out_dir``; returns the summary."""
    import cv2

    from monodepth_ros.io.outputs import write_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    write_summary(summary, out_dir)
    write_frames_csv(result.rows, out_dir)
    images = _plots(result, out_dir)
    max_depth = max(result.config.caps)
    for frame in result.qualitative:
        name = f'qualitative_{frame.stamp_ns}.png'
        strip = qualitative_strip(frame, max_depth)
        write_image(out_dir / name, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        images.append(name)
    write_report_md(summary, out_dir, images)
    return summary
