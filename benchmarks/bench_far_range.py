"""Where a model's depth goes wrong with range: error by distance band, side by side.

For each model given (default: the packaged default model), in one run:

1. real KITTI drive 2011_09_26_0009, frames 0-9 (../shared/data, graded only, never trained
   on), eval-bag's evaluator with the KITTI Eigen protocol (drive calibration, Garg crop,
   cap 80 m): the overall metrics, the same with per-frame median scaling (is the scale or
   the shape wrong?), and abs_rel / signed mean error / delta1 per 10 m band of the LiDAR
   distance, plus abs_rel pooled over 40-80 m;
2. a synthetic hold-out (drives 950-953, never used by a training recipe, 10 frames each,
   exact ground truth), the same evaluator with the default protocol, overall and per band;
3. ONNX Runtime inference time per frame of each model on this machine: the pipeline's
   inference stage on a KITTI-size frame (median of 60 frames, the models taking turns; both
   passes when the far pass runs), and its ratio to the first row's.

Each model runs as the pipeline runs it by default (with the far pass, runtime.far_pass, for
our camera-aware models); ``--one-pass`` adds a row per model without it (far_pass_focal 0),
graded and timed in the same run, and puts it first.

    .venv/bin/python benchmarks/bench_far_range.py
    .venv/bin/python benchmarks/bench_far_range.py --one-pass --model old=old.pt --model packaged=
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_sim2real import DRIVE, KITTI_DATE

from monodepth_ros.runtime.far_pass import DEFAULT_FAR_PASS_FOCAL

SYNTHETIC_SEEDS = (950, 951, 952, 953)
FAR_BANDS = ('40-50', '50-60', '60-70', '70-80')


def parse_model(text: str) -> tuple[str, Path]:
    """NAME=PATH, or PATH (named by its file); an empty PATH is the packaged default model."""
    from monodepth_ros.model.files import default_model_path

    name, _, path = text.rpartition('=')
    if not name:
        name = Path(path).stem
    return name, Path(path) if path else default_model_path()


def grade(bag: Path, model: Path, **options) -> dict:
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig

    config = EvaluationConfig(model=str(model), backend='onnxruntime', qualitative_frames=0,
                              progress=False, caps=(80.0,), **options)
    result = BagEvaluator(config).evaluate(bag)
    if result.error is not None:
        raise result.error
    return result.summary()


def far_abs_rel(bands: list[dict]) -> float:
    """abs_rel pooled over the pixels of the 40-80 m bands."""
    rows = [row for row in bands if row['group'] in FAR_BANDS and row['n_pixels']]
    pixels = sum(row['n_pixels'] for row in rows)
    return sum(row['abs_rel'] * row['n_pixels'] for row in rows) / pixels if pixels else np.nan


def latency_ms(models: dict[str, tuple[Path, float]], runs: int = 30,
               ground_contact: bool = True) -> dict[str, float]:
    """Median of the pipeline's inference stage (ms) per model, on a KITTI-size frame.

    The models take turns frame by frame, so that a busier moment of the machine weighs on
    all of them alike.
    """
    from monodepth_ros.engines import create_engine
    from monodepth_ros.io.kitti import read_calibration
    from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

    camera = read_calibration(KITTI_DATE).camera_model(2)
    rgb = np.random.default_rng(0).integers(0, 255, (camera.height, camera.width, 3),
                                            dtype=np.uint8)
    pipelines = {name: DepthPipeline(create_engine(model, backend='onnxruntime'),
                                     PipelineConfig(far_pass_focal=focal,
                                                    ground_contact=ground_contact))
                 for name, (model, focal) in models.items()}
    times = {name: [] for name in models}
    for run in range(runs + 1):
        for name, pipeline in pipelines.items():
            pipeline.process_arrays(rgb, camera, outputs={'depth'})
            if run:   # the first frame warms up
                times[name].append(pipeline.last_timings['inference'])
    return {name: statistics.median(values) for name, values in times.items()}


def print_bands(title: str, results: dict) -> None:
    names = list(results)
    bands = [row['group'] for row in results[names[0]]['by_distance']]
    print(f'\n{title}: abs_rel / mean error (m) / delta1 per band of the ground-truth '
          'distance\n')
    print('| band (m) | pixels | ' + ' | '.join(names) + ' |')
    print('|---|---:|' + '---|' * len(names))
    for index, band in enumerate(bands):
        cells = []
        for name in names:
            row = results[name]['by_distance'][index]
            cells.append('-' if not row['n_pixels'] else
                         f'{row["abs_rel"]:.3f} / {row["mean_error"]:+.1f} / '
                         f'{row["delta1"]:.2f}')
        pixels = results[names[0]]['by_distance'][index]['n_pixels']
        print(f'| {band} | {pixels} | ' + ' | '.join(cells) + ' |')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', action='append', default=None, metavar='[NAME=]PATH',
                        help='a .pt or .onnx model, optionally named (repeat; default: the '
                        'packaged default model; NAME= alone is the packaged model)')
    parser.add_argument('--synthetic-frames', type=int, default=10,
                        help='frames of each synthetic hold-out drive (default 10)')
    parser.add_argument('--one-pass', action='store_true',
                        help='also grade and time each model without the far pass, first')
    parser.add_argument('--latency-runs', type=int, default=60,
                        help='frames timed per model (default 60)')
    parser.add_argument('--no-ground-contact', action='store_true',
                        help='grade and time without the ground-contact stage (on by default)')
    parser.add_argument('--no-latency', action='store_true',
                        help='skip the latency runs (their figures need an idle machine)')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format='[%(levelname)s] %(name)s: %(message)s')
    if not DRIVE.is_dir():
        print(f'KITTI excerpt not found at {DRIVE}', file=sys.stderr)
        return 1
    from monodepth_ros.bagtools.kitti2bag import convert
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag

    # name -> (model file, far_pass_focal)
    models = {}
    for name, path in (parse_model(text) for text in (args.model or ['packaged='])):
        if args.one_pass:
            models[f'{name}, one pass'] = (path, 0.0)
        models[name] = (path, DEFAULT_FAR_PASS_FOCAL)
    contact = not args.no_ground_contact
    kitti, kitti_median, synthetic = {}, {}, {}
    with tempfile.TemporaryDirectory() as work:
        kitti_bag = Path(work) / 'kitti_0009'
        convert(DRIVE, kitti_bag, progress=False)
        synthetic_bags = []
        for seed in SYNTHETIC_SEEDS:
            bag = Path(work) / f'synthetic_{seed}'
            write_synthetic_bag(bag, frames=args.synthetic_frames, seed=seed, progress=False)
            synthetic_bags.append(bag)
        for name, (model, focal) in models.items():
            kitti[name] = grade(kitti_bag, model, protocol='kitti-eigen',
                                calib_dir=str(KITTI_DATE), far_pass_focal=focal,
                                ground_contact=contact)
            kitti_median[name] = grade(kitti_bag, model, protocol='kitti-eigen',
                                       calib_dir=str(KITTI_DATE), median_scaling=True,
                                       far_pass_focal=focal, ground_contact=contact)
            synthetic[name] = merge([grade(bag, model, far_pass_focal=focal,
                                           ground_contact=contact) for bag in synthetic_bags])
    latency = ({name: np.nan for name in models} if args.no_latency else
               latency_ms(models, args.latency_runs, contact))

    first = next(iter(models))
    print('KITTI drive 0009 frames 0-9 (Eigen, Garg crop, 80 m) and synthetic hold-out '
          f'{SYNTHETIC_SEEDS} ({args.synthetic_frames} frames each, 80 m)\n')
    print('| model | KITTI abs_rel / rmse / delta1 | median-scaled abs_rel / delta1 | '
          'KITTI abs_rel 40-80 m | synthetic abs_rel / rmse / delta1 | synthetic abs_rel '
          '40-80 m | inference ms / ratio |')
    print('|---|---|---|---|---|---|---|')
    for name in models:
        overall = kitti[name]['cap_80']
        median = kitti_median[name]['cap_80']
        synth = synthetic[name]
        print(f'| {name} | {overall["abs_rel"]:.3f} / {overall["rmse"]:.3f} / '
              f'{overall["delta1"]:.3f} | {median["abs_rel"]:.3f} / {median["delta1"]:.3f} | '
              f'{far_abs_rel(kitti[name]["by_distance"]):.3f} | {synth["abs_rel"]:.3f} / '
              f'{synth["rmse"]:.3f} / {synth["delta1"]:.3f} | '
              f'{far_abs_rel(synth["by_distance"]):.3f} | {latency[name]:.1f} / '
              f'{latency[name] / latency[first]:.2f}x |')
    for name, (model, focal) in models.items():
        print(f'{name}: {model}, far_pass_focal {focal}')
    print_bands('KITTI drive 0009', kitti)
    print_bands('Synthetic hold-out', synthetic)
    return 0


def merge(summaries: list[dict]) -> dict:
    """Frame-weighted overall metrics and pixel-pooled bands over several bags."""
    frames = [s['cap_80']['frames'] for s in summaries]
    total = sum(frames)
    merged = {key: sum(s['cap_80'][key] * n for s, n in zip(summaries, frames)) / total
              for key in ('abs_rel', 'rmse', 'delta1')}
    bands = []
    for index, row in enumerate(summaries[0]['by_distance']):
        rows = [s['by_distance'][index] for s in summaries]
        pixels = sum(r['n_pixels'] for r in rows)
        pooled = {'group': row['group'], 'n_pixels': pixels}
        for key in ('abs_rel', 'mean_error', 'delta1'):
            pooled[key] = (sum(r[key] * r['n_pixels'] for r in rows if r['n_pixels']) / pixels
                           if pixels else np.nan)
        bands.append(pooled)
    merged['by_distance'] = bands
    return merged


if __name__ == '__main__':
    raise SystemExit(main())
