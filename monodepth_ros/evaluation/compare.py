"""Grade several models on the same frames of one bag: ``monodepth compare``.

Each model runs through eval-bag's evaluator (the same DepthPipeline, ground truth and
metrics) with the same scale mode. The report folder holds report.md (a metrics table, error
by distance band, the scale flicker against the LiDAR, per-model latency on this machine, a
plot and picture strips: the camera image, the LiDAR, and each model's depth, all on one colour
scale, with its error map), summary.json, and each model's own eval-bag report in a subfolder.
A model card belongs to the ``--model`` given just before it (``--model A.onnx --model-card
A.yaml --model B.pt``). The report appears at --out only when complete.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from monodepth_ros.engines import BACKENDS, PRECISIONS
from monodepth_ros.errors import ConfigError
from monodepth_ros.evaluation.ground_truth import PROTOCOLS
from monodepth_ros.evaluation.metrics import CROPS
from monodepth_ros.evaluation.report import format_number
from monodepth_ros.io import topics
from monodepth_ros.options import non_negative_int
from monodepth_ros.runtime.infer import (
    add_framing_arguments,
    add_scale_arguments,
    scale_settings,
)

LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)
TABLE = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'delta1', 'delta2', 'delta3')


class _ModelAction(argparse.Action):
    """--model appends a model; --model-card gives a card to the --model just before it."""

    def __call__(self, parser, namespace, value, option_string=None):
        models = getattr(namespace, 'models', None) or []
        if self.dest == 'models':
            models.append({'model': value, 'card': None})
        elif not models:
            parser.error('--model-card must follow the --model it belongs to')
        elif models[-1]['card'] is not None:
            parser.error(f'--model {models[-1]["model"]} has two --model-card options')
        else:
            models[-1]['card'] = value
        namespace.models = models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bag', type=Path, help='rosbag2 folder (mcap or sqlite3) or ROS 1 .bag')
    parser.add_argument('--model', dest='models', action=_ModelAction, required=True,
                        metavar='MODEL', help='a model to grade (.pt or .onnx); repeat for '
                        'each model, in the order of the report')
    parser.add_argument('--model-card', dest='cards', action=_ModelAction, metavar='CARD',
                        help='model card (YAML or preset) of the --model just before it')
    parser.add_argument('--backend', default='auto', choices=BACKENDS,
                        help='engine backend (default: auto)')
    parser.add_argument('--precision', default='fp16', choices=PRECISIONS,
                        help='engine precision (default: fp16)')
    add_framing_arguments(parser)
    add_scale_arguments(parser, lidar=True)
    parser.add_argument('--camera-topic', default=topics.CAMERA_IMAGE_TOPIC,
                        type=topics.topic_name, help='camera image topic')
    parser.add_argument('--lidar-topic', default=topics.LIDAR_TOPIC, type=topics.topic_name,
                        help='PointCloud2 topic of the LiDAR')
    parser.add_argument('--calib', type=Path, default=None,
                        help='KITTI calibration folder (calib_*.txt) instead of /tf_static')
    parser.add_argument('--protocol', choices=PROTOCOLS, default='default',
                        help='ground-truth protocol, as eval-bag (default: default)')
    parser.add_argument('--crop', choices=CROPS, default=None,
                        help='evaluation crop (default: garg for kitti-eigen, else none)')
    parser.add_argument('--qualitative', type=non_negative_int, default=3,
                        help='number of picture strips, >= 0 (default 3)')
    parser.add_argument('--out', type=Path, required=True,
                        help='report folder: new, empty, or an earlier compare report '
                        '(replaced); anything else is refused')


def model_names(models: list[dict]) -> list[str]:
    """A short, unique name per model: its file name, numbered when two share one."""
    stems = [Path(entry['model']).stem or 'model' for entry in models]
    return [stem if stems.count(stem) == 1 else f'{index + 1}-{stem}'
            for index, stem in enumerate(stems)]


def model_row(name: str, summary: dict, cap: str) -> dict:
    """One model's line of the comparison: metrics, scale, flicker, latency."""
    metrics = summary.get(cap, {})
    timing = summary.get('timing_ms', {})
    scale = summary.get('scale') or {}
    stability = summary.get('scale_stability') or {}
    return {'model': name, 'frames': summary['frames_evaluated'],
            **{metric: metrics.get(metric, math.nan) for metric in TABLE},
            'flicker': stability.get('flicker', math.nan),
            'drift': stability.get('drift', math.nan),
            'scale_mode': scale.get('mode', ''), 'scale_median': scale.get('scale_median'),
            'scale_residual': scale.get('residual_median'),
            'inference_ms': timing.get('pipeline_inference', math.nan),
            'pipeline_ms': timing.get('inference', math.nan)}


def format_comparison(rows: list[dict]) -> list[str]:
    """The markdown table of the comparison (also printed)."""
    lines = ['| model | frames | ' + ' | '.join(TABLE) + ' | flicker | scale (mode) | '
             'inference ms | pipeline ms |', '|---|---:|' + '---:|' * (len(TABLE) + 4)]
    for row in rows:
        scale = (f'{format_number(row["scale_median"], ".4g")} ({row["scale_mode"]})'
                 if row['scale_mode'] else '-')
        lines.append(f'| {row["model"]} | {row["frames"]} | '
                     + ' | '.join(format_number(row[metric], '.3f') for metric in TABLE)
                     + f' | {format_number(row["flicker"], ".4f")} | {scale} | '
                     f'{format_number(row["inference_ms"], ".1f")} | '
                     f'{format_number(row["pipeline_ms"], ".1f")} |')
    return lines


def _distance_lines(summaries: dict) -> list[str]:
    bands = [row['group'] for row in next(iter(summaries.values()))['by_distance']]
    lines = ['| model | ' + ' | '.join(f'{band} m' for band in bands) + ' |',
             '|---|' + '---:|' * len(bands)]
    for name, summary in summaries.items():
        cells = {row['group']: row for row in summary['by_distance']}
        lines.append(f'| {name} | ' + ' | '.join(
            format_number(cells[band]['abs_rel'], '.3f')
            if cells.get(band, {}).get('n_pixels') else '-'
            for band in bands) + ' |')
    return lines


def _plot(results: dict, out_dir: Path) -> str:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    figure, (bands_axis, scale_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for name, result in results.items():
        rows = [row for row in result.by_distance.rows() if row['n_pixels']]
        bands_axis.plot([row['group'] for row in rows], [row['abs_rel'] for row in rows],
                        'o-', label=name)
        logs = np.array([row.get('log_scale_to_lidar', np.nan) for row in result.rows])
        scale_axis.plot(np.arange(len(logs)), np.exp(logs), '.-', label=name)
    bands_axis.set_xlabel('ground-truth distance (m)')
    bands_axis.set_ylabel('abs_rel')
    bands_axis.set_title('Error by distance')
    bands_axis.legend()
    scale_axis.set_xlabel('graded frame')
    scale_axis.set_ylabel('median(LiDAR / prediction)')
    scale_axis.set_title('Scale against the LiDAR per frame (flicker)')
    scale_axis.axhline(1.0, color='gray', linewidth=0.8)
    figure.tight_layout()
    figure.savefig(out_dir / 'comparison.png', dpi=100)
    plt.close(figure)
    return 'comparison.png'


def write_comparison(bag, results: dict, out_dir: Path) -> list[dict]:
    """Every output file of a comparison (results: name -> EvaluationResult); the table rows."""
    import cv2

    from monodepth_ros.evaluation.report import comparison_strip, write_outputs, write_summary
    from monodepth_ros.io.outputs import write_image

    summaries = {name: write_outputs(result, out_dir / name) for name, result in results.items()}
    first = next(iter(results.values()))
    cap = f'cap_{first.config.caps[0]:g}'
    rows = [model_row(name, summary, cap) for name, summary in summaries.items()]
    images = [_plot(results, out_dir)]
    by_stamp = {}
    for name, result in results.items():
        for frame in result.qualitative:
            by_stamp.setdefault(frame.stamp_ns, {})[name] = frame
    for stamp_ns, frames in sorted(by_stamp.items()):
        if len(frames) == len(results):   # only frames every model was graded on
            name = f'strip_{stamp_ns}.png'
            strip = comparison_strip(frames, max(first.config.caps))
            write_image(out_dir / name, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
            images.append(name)
    lines = ['# Model comparison against LiDAR', '', f'- bag: `{bag}`',
             f'- protocol: {first.config.protocol}, crop: {first.config.crop}, scale: '
             f'{first.config.scale.mode}, metrics at {cap[4:]} m, per image averaged over images',
             '', '## Metrics', '', *format_comparison(rows), '',
             'flicker: std of the frame-to-frame change of log(median(LiDAR / prediction)) '
             '(0.01 = 1 %). inference ms: the engine per frame (two passes for our '
             'camera-aware models with the far pass, one for a foreign model); '
             'pipeline ms: decode, '
             'preprocess, inference, scale and postprocess per frame, on this machine.', '']
    if any(
            (summary.get('scale') or {}).get('mode') == 'lidar'
            for summary in summaries.values()):
        lines += ['Models scaled to the LiDAR: fitted to the even-numbered points of each '
                  'scan and graded on the odd ones; still more favourable to them than '
                  'grading a metric model that saw no LiDAR.', '']
    lines += ['## abs_rel by ground-truth distance', '', *_distance_lines(summaries), '',
              '## Figures', '', *[f'![{Path(image).stem}]({image})' for image in images], '',
              "Each model's own report: " + ', '.join(f'[{name}]({name}/report.md)'
                                                      for name in summaries), '']
    (out_dir / 'report.md').write_text('\n'.join(lines))
    write_summary({'bag': str(bag), 'models': rows}, out_dir)
    return rows


def compare(args) -> dict:
    """Grade every model of ``args`` on the bag; name -> EvaluationResult."""
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig

    models = list(args.models or [])
    if len(models) < 1:
        raise ConfigError('give at least one --model')
    results = {}
    for name, entry in zip(model_names(models), models):
        config = EvaluationConfig(
            model=str(entry['model']), model_card=entry['card'], backend=args.backend,
            precision=args.precision, camera_topic=args.camera_topic,
            lidar_topic=args.lidar_topic, calib_dir=str(args.calib) if args.calib else None,
            protocol=args.protocol, crop=args.crop, qualitative_frames=args.qualitative,
            framing=args.framing, framing_anchor=args.framing_anchor,
            far_pass_focal=args.far_pass_focal, ground_contact=args.ground_contact,
            scale=scale_settings(args, lidar=True),
            progress=not args.no_progress)
        result = BagEvaluator(config).evaluate(args.bag)
        if result.error is not None:
            raise result.error
        if not result.frames_evaluated:
            raise ConfigError(f'model {entry["model"]}: no frame of {args.bag} could be graded '
                              f'(skipped: {dict(result.skipped)})')
        results[name] = result
    return results


def run(args) -> int:
    from monodepth_ros.io.outputs import atomic_output

    # Every model is graded before anything is written: a failing one leaves no report.
    with atomic_output(args.out, 'folder', 'compare', replace_own=True) as partial:
        results = compare(args)
        rows = write_comparison(args.bag, results, partial)
    print('\n'.join(format_comparison(rows)))
    print(f'report in {args.out}/report.md')
    return 0
