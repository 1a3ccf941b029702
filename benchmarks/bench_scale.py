"""Cost and effect of the metric scale stage (runtime.scale) on the real KITTI excerpt.

Side by side in one run, with the packaged default model (ONNX Runtime) on drive 0009 of
../shared/data/kitti_raw:

1. cost per 1242x375 frame: the scale fit against a whole velodyne scan (about 120k points,
   projected into the network image, then fitted), the ground fit, and the pipeline's stages
   other than inference with --scale none and --scale lidar (the scale stage's share);
2. the effect on the ten frames (eval-bag's evaluator, kitti-eigen protocol, Garg crop,
   80 m): the model as it is (none), scaled from the camera height (ground, 1.65 m), and
   scaled to the LiDAR per frame and smoothed (fitted to the even-numbered points of each scan,
   graded on the odd ones); the jitter of the applied scale (std of the frame-to-frame change
   of its log) per frame against smoothed.

    .venv/bin/python benchmarks/bench_scale.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KITTI_DATE = REPO.parent / 'shared' / 'data' / 'kitti_raw' / '2011_09_26'
DRIVE = KITTI_DATE / '2011_09_26_drive_0009_sync'
KITTI_CAMERA_HEIGHT = 1.65    # metres, the KITTI recording car's colour cameras
COLUMNS = ('abs_rel', 'rmse', 'delta1')


def median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def costs(engine, repeats: int) -> None:
    import cv2

    from monodepth_ros.io.kitti import read_calibration, read_velodyne
    from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig
    from monodepth_ros.runtime.scale import (
        ScaleReference,
        ScaleSettings,
        fit_to_ground,
        fit_to_lidar,
    )

    calibration = read_calibration(KITTI_DATE)
    camera = calibration.camera_model(2)
    rgb = cv2.cvtColor(cv2.imread(str(DRIVE / 'image_02' / 'data' / '0000000000.png')),
                       cv2.COLOR_BGR2RGB)
    points = read_velodyne(DRIVE / 'velodyne_points' / 'data' / '0000000000.bin')[:, :3]
    T = calibration.T_cam_from_velo(2)
    plain = DepthPipeline(engine, PipelineConfig())
    result = plain.process_arrays(rgb, camera, outputs={'depth'})
    network_camera = result.framing.camera(camera)
    depth = result.depth
    lidar_ms = median_ms(lambda: fit_to_lidar(depth, 'metric', network_camera, points, T),
                         repeats)
    ground_ms = median_ms(lambda: fit_to_ground(depth, 'metric', network_camera,
                                                KITTI_CAMERA_HEIGHT), repeats)
    print(f'KITTI frame 0, {len(points)} LiDAR points, network input '
          f'{network_camera.width}x{network_camera.height}; median of {repeats} runs')
    print(f'  lidar fit (projection + robust fit): {lidar_ms:6.2f} ms (target <= 3 ms)')
    print(f'  ground fit (plane + robust fit):     {ground_ms:6.2f} ms')
    scaled = DepthPipeline(engine, PipelineConfig(scale=ScaleSettings('lidar', lidar=True)))
    reference = ScaleReference(points, T)
    rows = {}
    for name, pipeline, ref in (('none', plain, None), ('lidar', scaled, reference)):
        stages = []
        for _ in range(repeats):
            timings = pipeline.process_arrays(rgb, camera, {'depth', 'points'}, ref).timings
            stages.append([timings[key] for key in ('preprocess', 'scale', 'postprocess',
                                                    'cloud')])
        rows[name] = np.median(np.array(stages), axis=0)
    print('  pipeline stages other than inference, 1242x375 frame, depth + cloud (ms):')
    print(f'  {"scale mode":<12}{"preprocess":>12}{"scale":>10}{"postprocess":>13}'
          f'{"cloud":>9}{"total":>9}')
    for name, values in rows.items():
        print(f'  {name:<12}' + ''.join(f'{value:>{width}.2f}' for value, width in
                                       zip(values, (12, 10, 13, 9))) + f'{values.sum():>9.2f}')
    print(f'  the scale stage adds {rows["lidar"].sum() - rows["none"].sum():+.2f} ms '
          '(target <= 2 ms beyond inference)\n')


def evaluate(bag, **options):
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig
    from monodepth_ros.model.files import default_model_path

    config = EvaluationConfig(model=str(default_model_path()), backend='onnxruntime',
                              precision='fp32', protocol='kitti-eigen',
                              calib_dir=str(KITTI_DATE), qualitative_frames=0, progress=False,
                              **options)
    result = BagEvaluator(config).evaluate(bag)
    if result.error is not None:
        raise result.error
    return result


def jitter(result) -> float:
    scales = np.log([row['scale'] for row in result.rows if row.get('scale')])
    return float(np.std(np.diff(scales))) if scales.size >= 3 else float('nan')


def effect() -> None:
    from monodepth_ros.bagtools.kitti2bag import convert
    from monodepth_ros.runtime.scale import ScaleSettings

    with tempfile.TemporaryDirectory() as work:
        bag = Path(work) / 'kitti_0009'
        convert(DRIVE, bag, progress=False)
        runs = {
            'none': evaluate(bag, scale=ScaleSettings('none')),
            f'ground ({KITTI_CAMERA_HEIGHT} m)': evaluate(
                bag, scale=ScaleSettings('ground', KITTI_CAMERA_HEIGHT)),
            'lidar, per frame': evaluate(bag, scale=ScaleSettings('lidar', smoothing=False)),
            'lidar, smoothed': evaluate(bag, scale=ScaleSettings('lidar')),
        }
    print('KITTI drive 0009 frames 0-9, default model, kitti-eigen, Garg crop, cap 80 m '
          '(lidar: fitted to the even points, graded on the odd ones)\n')
    print('| scale | ' + ' | '.join(COLUMNS) + ' | scale median | flicker vs LiDAR | '
          'scale jitter |')
    print('|---|' + '---:|' * (len(COLUMNS) + 3))
    for name, result in runs.items():
        summary = result.summary()
        metrics = summary['cap_80']
        scale = summary['scale'] or {}
        print(f'| {name} | ' + ' | '.join(f'{metrics[c]:.3f}' for c in COLUMNS)
              + f' | {scale.get("scale_median", float("nan")):.3f} | '
              f'{summary["scale_stability"]["flicker"]:.4f} | {jitter(result):.4f} |')
    per_frame, smoothed = jitter(runs['lidar, per frame']), jitter(runs['lidar, smoothed'])
    print(f'\nscale jitter (std of the frame-to-frame change of log scale): smoothed / per '
          f'frame = {smoothed / per_frame:.2f} (target <= 0.5)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=50)
    args = parser.parse_args()
    if not DRIVE.is_dir():
        print(f'KITTI excerpt not found at {DRIVE}', file=sys.stderr)
        return 1
    from monodepth_ros.engines import create_engine
    from monodepth_ros.model.files import default_model_path

    engine = create_engine(str(default_model_path()), backend='onnxruntime', precision='fp32')
    costs(engine, args.repeats)
    effect()
    return 0


if __name__ == '__main__':
    sys.exit(main())
