"""Sim-to-real evidence on real KITTI frames: a model against the row prior, and adapt.

On the real KITTI raw excerpt (drive 2011_09_26_0009, frames 0-9, in ../shared/data; used
to grade only, never to train the packaged model), side by side in one run:

1. the model (default: the packaged default model, trained on the synthetic world only) and
   the row prior (each image row's mean LiDAR depth over the other nine frames, no image),
   graded on all ten frames with eval-bag's evaluator: KITTI Eigen protocol with the
   drive's calibration, Garg crop, cap 80 m; prints the ratios against the targets
   abs_rel <= 0.8 x row prior and delta1 >= row prior + 0.10;
2. ``monodepth adapt`` of that model on frames 0-4 (LiDAR-supervised, and self-supervised
   from the camera motion on /tf without the LiDAR), graded on frames 5-9 before and after,
   next to the row prior fitted on frames 0-4.

    .venv/bin/python benchmarks/bench_sim2real.py
    .venv/bin/python benchmarks/bench_sim2real.py --model runs/x/model.pt --adapt-minutes 2
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KITTI_DATE = REPO.parent / 'shared' / 'data' / 'kitti_raw' / '2011_09_26'
DRIVE = KITTI_DATE / '2011_09_26_drive_0009_sync'
COLUMNS = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'delta1', 'delta2', 'delta3')


def evaluate(bag, **kwargs) -> dict:
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig

    row_prior = kwargs.pop('row_prior', None)
    config = EvaluationConfig(protocol='kitti-eigen', calib_dir=str(KITTI_DATE),
                              qualitative_frames=0, progress=False, **kwargs)
    result = BagEvaluator(config, row_prior=row_prior).evaluate(bag)
    if result.error is not None:
        raise result.error
    return dict(result.summary()['cap_80'], frames=result.frames_evaluated)


def row(name: str, metrics: dict) -> str:
    return (f'| {name} | {metrics["frames"]} | '
            + ' | '.join(f'{metrics[c]:.3f}' for c in COLUMNS) + ' |')


def header() -> str:
    return ('| depth | frames | ' + ' | '.join(COLUMNS) + ' |\n|---|---|'
            + '---|' * len(COLUMNS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', type=Path, default=None,
                        help='.pt checkpoint (default: the packaged default model)')
    parser.add_argument('--adapt-minutes', type=float, default=3.0,
                        help='adapt time budget (default 3)')
    parser.add_argument('--adapt-steps', type=int, default=300)
    parser.add_argument('--skip-adapt', action='store_true')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format='[%(levelname)s] %(name)s: %(message)s')
    if not DRIVE.is_dir():
        print(f'KITTI excerpt not found at {DRIVE}', file=sys.stderr)
        return 1
    from monodepth_ros.bagtools.kitti2bag import convert
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig
    from monodepth_ros.evaluation.row_prior import RowPrior
    from monodepth_ros.model.files import default_model_path

    model = args.model or default_model_path()
    with tempfile.TemporaryDirectory() as work:
        bag = Path(work) / 'kitti_0009'
        convert(DRIVE, bag, progress=False)
        print(f'model {model}\nKITTI drive 0009 frames 0-9, kitti-eigen protocol, Garg crop, '
              'cap 80 m\n')
        started = time.perf_counter()
        ours = evaluate(bag, model=str(model), backend='onnxruntime')
        prior = evaluate(bag, baseline='row-prior')
        print(header())
        print(row('model', ours))
        print(row('row prior (leave-one-out)', prior))
        ratio = ours['abs_rel'] / prior['abs_rel']
        gain = ours['delta1'] - prior['delta1']
        print(f'\nabs_rel ratio model / row prior: {ratio:.3f} (target <= 0.80: '
              f'{"met" if ratio <= 0.8 else "NOT met"}); delta1 gain: {gain:+.3f} (target '
              f'>= +0.10: {"met" if gain >= 0.10 else "NOT met"}); graded in '
              f'{time.perf_counter() - started:.1f} s')
        if args.skip_adapt:
            return 0

        from monodepth_ros.training.adapt import adapt, add_arguments

        # The options as `monodepth adapt` parses them, defaults included (lr, batch, framing).
        adapt_parser = argparse.ArgumentParser()
        add_arguments(adapt_parser)
        reports = {}
        for mode in ('lidar', 'self-supervised'):
            adapt_args = adapt_parser.parse_args([
                str(bag), '--model', str(model), '--out', str(Path(work) / f'adapted-{mode}.pt'),
                '--mode', mode, '--holdout', '0.5', '--minutes', str(args.adapt_minutes),
                '--steps', str(args.adapt_steps),
                '--camera-topic', '/kitti/camera_color_left/image_raw',
                '--lidar-topic', '/kitti/velo/pointcloud', '--protocol', 'kitti-eigen',
                '--calib', str(KITTI_DATE)])
            adapt_args.no_progress = True
            reports[mode] = adapt(adapt_args)
        fitted = RowPrior()
        BagEvaluator(EvaluationConfig(protocol='kitti-eigen', calib_dir=str(KITTI_DATE),
                                      last_frame=5, progress=False)).ground_truth_frames(
            bag, lambda frame, gt, _camera: fitted.add(gt, frame=frame.index))
        prior_tail = evaluate(bag, baseline='row-prior', first_frame=5, row_prior=fitted)
        print('\nadapt on frames 0-4, graded on frames 5-9\n')
        print(header())
        print(row('model before adapt', reports['lidar']['before']))
        for mode, report in reports.items():
            print(row(f'after adapt, {mode} ({report["steps"]} steps, {report["minutes"]} '
                      'min)', report['after']))
        print(row('row prior (frames 0-4)', prior_tail))
        for mode, report in reports.items():
            before, after = report['before'], report['after']
            print(f'adapt {mode}: abs_rel {before["abs_rel"]:.3f} -> {after["abs_rel"]:.3f} '
                  f'(ratio {after["abs_rel"] / before["abs_rel"]:.2f}), delta1 '
                  f'{before["delta1"]:.3f} -> {after["delta1"]:.3f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
