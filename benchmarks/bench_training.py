"""Train the quick recipe on the synthetic world for a fixed budget and grade it.

Evaluates on synthetic frames from seeds never used for training (caps 50 m and 80 m) next to
the trivial baseline that predicts, for each image row, the mean training depth of that row,
on the same frames. With --ablation it also trains, on the same budget each:
classification only / + regression phase / + semantic conditioning (the full recipe).
Prints a markdown table and the peak RSS of the process.

    .venv/bin/python benchmarks/bench_training.py                 # quick recipe, its budget
    .venv/bin/python benchmarks/bench_training.py --ablation --minutes 5
    .venv/bin/python benchmarks/bench_training.py --grade runs/a/model.pt --grade b=runs/b/model.pt

--grade trains nothing: it grades finished models on the same hold-out, each at its own input
size (next to the packaged default with --grade packaged=).
"""

from __future__ import annotations

import argparse
import copy
import logging
import resource
import time
from pathlib import Path

from monodepth_ros.training.augment import frame_sample
from monodepth_ros.training.config import SourceConfig, load_config
from monodepth_ros.training.datasets import build_datasets, render_synthetic
from monodepth_ros.training.evaluate import (
    evaluate_samples,
    metrics_at_caps,
    row_mean_depth,
    row_mean_predictions,
)
from monodepth_ros.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'delta1', 'delta2', 'delta3')


def train_variant(config, minutes: float, output_dir: Path):
    config = copy.deepcopy(config)
    config.max_minutes = minutes
    config.output_dir = str(output_dir)
    started = time.monotonic()
    datasets = build_datasets(config)
    prepared = time.monotonic() - started
    trainer = Trainer(config, datasets, show_progress=True)
    trainer.run()
    train_s = time.monotonic() - started - prepared
    depth_samples = [frame_sample(s, config.data.height, config.data.width)
                     for s in datasets['depth'].samples]
    return trainer, depth_samples, prepared, train_s


def print_rows(rows, caps):
    for cap in caps:
        print(f'\ncap {cap:g} m')
        print('| model | steps | ' + ' | '.join(COLUMNS) + ' |')
        print('|---|---|' + '---|' * len(COLUMNS))
        for name, steps, metrics in rows:
            values = ' | '.join(f'{metrics[f"{c}@{cap:g}"]:.3f}' for c in COLUMNS)
            print(f'| {name} | {steps} | {values} |')


def grade_models(entries: list[str], seeds: list[int], frames: int) -> int:
    """Grade finished checkpoints on the hold-out, each at its own network input size."""
    import torch

    from monodepth_ros.model.checkpoint import load_model
    from monodepth_ros.model.files import default_model_path

    source = SourceConfig(kind='synthetic', seeds=seeds, frames_per_seed=frames, frame_stride=7)
    caps, rows, rendered = (50.0, 80.0), [], {}
    for entry in entries:
        name, _, path = entry.rpartition('=')
        path = Path(path) if path else default_model_path()
        model, metadata = load_model(path)
        size = (metadata.input_height, metadata.input_width)
        if size not in rendered:
            rendered[size] = render_synthetic(source, *size, desc=f'render eval {size}')
        metrics = evaluate_samples(model, rendered[size], torch.device('cpu'), caps)
        rows.append((f'{name or path.stem} ({size[0]}x{size[1]})', '', metrics))
    print(f'\nevaluated on {frames} frames each of unseen seeds {seeds}')
    print_rows(rows, caps)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=str(REPO / 'training/configs/synthetic_quick.yaml'))
    parser.add_argument('--minutes', type=float, help='training budget per variant '
                        '(default: the recipe max_minutes)')
    parser.add_argument('--eval-seeds', type=int, nargs='+', default=[950, 951, 952, 953])
    parser.add_argument('--eval-frames', type=int, default=10, help='frames per eval seed')
    parser.add_argument('--ablation', action='store_true')
    parser.add_argument('--output-dir', default='runs/bench_training')
    parser.add_argument('--grade', action='append', metavar='[NAME=]PATH',
                        help='grade this finished model instead of training (repeatable; '
                        'an empty PATH is the packaged default model)')
    parser.add_argument('overrides', nargs='*', help='recipe overrides key.sub=value')
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] %(name)s: %(message)s')

    if args.grade:
        return grade_models(args.grade, args.eval_seeds, args.eval_frames)
    config = load_config(args.config, args.overrides)
    minutes = args.minutes if args.minutes is not None else config.max_minutes
    used = set(config.data.depth.seeds) | set(config.data.semantic.seeds) | set(
        config.data.val.seeds)
    if used & set(args.eval_seeds):
        parser.error(f'evaluation seeds {sorted(used & set(args.eval_seeds))} are used in '
                     'training')
    eval_source = SourceConfig(kind='synthetic', seeds=args.eval_seeds,
                               frames_per_seed=args.eval_frames, frame_stride=7)
    eval_samples = render_synthetic(eval_source, config.data.height, config.data.width,
                                    desc='render eval')
    caps = (50.0, 80.0)

    variants = [('full recipe', config)]
    if args.ablation:
        classification = copy.deepcopy(config)
        classification.phase2_steps = 0
        classification.data.semantic = SourceConfig()
        regression = copy.deepcopy(config)
        regression.data.semantic = SourceConfig()
        variants = [('classification only', classification),
                    ('+ regression phase', regression),
                    ('+ semantic conditioning (full)', config)]

    rows, baseline = [], None
    for i, (name, variant) in enumerate(variants):
        print(f'\n== {name}: {minutes:g} min budget')
        trainer, train_samples, prepared, train_s = train_variant(
            variant, minutes, Path(args.output_dir) / f'variant{i}')
        metrics = evaluate_samples(trainer.module, eval_samples, trainer.device, caps)
        rows.append((name, trainer.step, metrics))
        print(f'{name}: data {prepared:.0f} s, training {train_s:.0f} s, {trainer.step} steps '
              f'({trainer.step / max(train_s, 1e-9):.2f} steps/s)')
        if baseline is None:
            row_means = row_mean_depth(train_samples, config.network.depth_max)
            baseline = metrics_at_caps(eval_samples,
                                       row_mean_predictions(row_means, eval_samples), caps)
    rows.append(('row-mean baseline', 0, baseline))
    print(f'\nevaluated on {len(eval_samples)} frames of unseen seeds {args.eval_seeds}, '
          f'{config.data.height}x{config.data.width}')
    print_rows(rows, caps)
    full = rows[-2][2]
    print(f'\nfull recipe vs baseline at 80 m: abs_rel {full["abs_rel@80"]:.3f} vs '
          f'{baseline["abs_rel@80"]:.3f} (ratio {full["abs_rel@80"] / baseline["abs_rel@80"]:.2f})'
          f', delta1 {full["delta1@80"]:.3f} vs {baseline["delta1@80"]:.3f}')
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f'peak RSS: {peak:.0f} MiB')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
