"""Ground truth + metrics for KITTI frames: our bag evaluator vs a straightforward script.

Measured side by side in one run on the KITTI excerpt (1242x375, ~120k points a scan):

* ``bag evaluator``: ``BagEvaluator`` streaming a rosbag2 (LiDAR PointCloud2, camera_info,
  /tf_static, a 32FC1 depth topic): read + decode + match + ground truth + metrics at caps 80
  and 50 + breakdowns, per frame.
* ``bag evaluator, kitti-eigen``: the same with the exact Eigen-split ground truth (float64,
  KITTI calibration, Garg crop, no occlusion filter).
* ``core``: ground truth (projection + nearest wins) and metrics at both caps on arrays
  already in memory (what the evaluator adds per frame beyond bag reading).
* ``straightforward``: a plain per-frame script reading the ``.bin`` file, projecting with
  ``P_rect @ R_rect @ [R|T]``, resolving pixels hit twice in a Python loop, and computing the
  metrics with simple numpy, as an Eigen-protocol script commonly does.

Peak Python heap (tracemalloc) of the evaluator on bags of 40 and 80 frames (4 and 8 s, both
longer than the 2 s of scans the evaluator keeps) shows whether memory grows with the bag
length. Usage: ``python benchmarks/bench_evaluation.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig
from monodepth_ros.evaluation.metrics import compute_depth_metrics
from monodepth_ros.io import topics
from monodepth_ros.io.kitti import KittiDrive, read_velodyne
from monodepth_ros.runtime.projection import lidar_depth_image

DRIVE = (Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'kitti_raw'
         / '2011_09_26' / '2011_09_26_drive_0009_sync')
DEPTH_TOPIC = '/bench/depth'


def write_bag(path: Path, drive: KittiDrive, frames: int) -> Path:
    """A bag of ``frames`` frames cycling over the excerpt's scans, 10 Hz stamps."""
    from monodepth_ros.bagtools.kitti2bag import static_transforms
    from monodepth_ros.io.bagio import BagWriter
    from monodepth_ros.io.messages import (
        depth_to_image,
        make_header,
        make_pointcloud2,
        make_tf_message,
        model_to_camera_info,
    )

    calibration = drive.calibration
    camera = calibration.camera_model(2)
    files = drive.velodyne().files
    start = 1_600_000_000 * 10**9
    with BagWriter(path) as bag:
        types = bag.types
        bag.write(topics.TF_STATIC_TOPIC, make_tf_message(
            types, [(p, c, T, start) for p, c, T in static_transforms(drive, [2])]), start)
        for index in range(frames):
            stamp = start + index * 100_000_000
            scan = read_velodyne(files[index % len(files)])
            bag.write(topics.LIDAR_TOPIC, make_pointcloud2(
                types, make_header(types, stamp, topics.LIDAR_FRAME), scan[:, :3],
                fields={'intensity': scan[:, 3]}), stamp)
            header = make_header(types, stamp + 5_000_000, topics.CAMERA_FRAME)
            bag.write(topics.CAMERA_INFO_TOPIC, model_to_camera_info(types, camera, header),
                      stamp + 5_000_000)
            # A dense prediction: the LiDAR depth * 1.05, filled with 20 m where no point.
            depth = lidar_depth_image(scan, calibration.T_cam2_from_velo, camera) * 1.05
            depth[depth == 0] = 20.0
            bag.write(DEPTH_TOPIC, depth_to_image(types, depth, header), stamp + 5_000_000)
    return path


def run_evaluator(bag: Path, **options) -> tuple[float, int]:
    config = EvaluationConfig(depth_topic=DEPTH_TOPIC, qualitative_frames=0, progress=False,
                              **options)
    start = time.perf_counter()
    result = BagEvaluator(config).evaluate(bag)
    elapsed = time.perf_counter() - start
    assert result.error is None, result.error
    return elapsed, result.frames_evaluated


def straightforward_frame(bin_path: Path, matrix: np.ndarray, width: int, height: int,
                          pred: np.ndarray) -> list[dict]:
    """Read, project and grade one frame the plain way (per-frame, loop over duplicates)."""
    scan = np.fromfile(bin_path, dtype=np.float32).reshape(-1, 4)
    scan = scan[scan[:, 0] >= 0]
    homogeneous = np.hstack([scan[:, :3], np.ones((scan.shape[0], 1), np.float32)])
    projected = (matrix @ homogeneous.T).T
    projected[:, :2] /= projected[:, 2:3]
    cols = np.round(projected[:, 0]) - 1
    rows = np.round(projected[:, 1]) - 1
    inside = (cols >= 0) & (rows >= 0) & (cols < width) & (rows < height)
    cols, rows = cols[inside].astype(int), rows[inside].astype(int)
    depth_values = scan[inside, 0]
    gt = np.zeros((height, width))
    gt[rows, cols] = depth_values
    # Pixels hit by several points keep the nearest one.
    flat = rows * width + cols
    unique, counts = np.unique(flat, return_counts=True)
    for pixel in unique[counts > 1]:
        hits = np.where(flat == pixel)[0]
        gt[rows[hits[0]], cols[hits[0]]] = depth_values[hits].min()
    results = []
    for cap in (80.0, 50.0):
        mask = (gt > 1e-3) & (gt < cap)
        g = gt[mask]
        p = np.clip(pred[mask], 1e-3, cap)
        ratio = np.maximum(g / p, p / g)
        results.append({
            'abs_rel': np.mean(np.abs(g - p) / g), 'sq_rel': np.mean((g - p) ** 2 / g),
            'rmse': np.sqrt(np.mean((g - p) ** 2)),
            'rmse_log': np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)),
            'delta1': np.mean(ratio < 1.25), 'delta2': np.mean(ratio < 1.25 ** 2),
            'delta3': np.mean(ratio < 1.25 ** 3)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=3, help='runs per measurement')
    args = parser.parse_args()
    drive = KittiDrive.open(DRIVE)
    calibration = drive.calibration
    camera = calibration.camera_model(2)
    width, height = calibration.S_rect[2]
    files = drive.velodyne().files
    scans = [read_velodyne(path) for path in files]
    preds = [lidar_depth_image(scan, calibration.T_cam2_from_velo, camera) * 1.05 + 0.01
             for scan in scans]
    matrix = calibration.velo_to_image_matrix(2)
    T = calibration.T_cam2_from_velo

    with tempfile.TemporaryDirectory() as tmp:
        bag10 = write_bag(Path(tmp) / 'bag10', drive, 10)
        bag40 = write_bag(Path(tmp) / 'bag40', drive, 40)
        bag80 = write_bag(Path(tmp) / 'bag80', drive, 80)
        run_evaluator(bag10)   # warm-up (imports, typestore)

        ours, eigen, core, plain = [], [], [], []
        for _ in range(args.repeat):
            elapsed, frames = run_evaluator(bag40)
            ours.append(elapsed / frames)
            elapsed, frames = run_evaluator(bag40, protocol='kitti-eigen',
                                            calib_dir=str(DRIVE.parent))
            eigen.append(elapsed / frames)
            start = time.perf_counter()
            for scan, pred in zip(scans, preds):
                gt = lidar_depth_image(scan, T, camera)
                for cap in (80.0, 50.0):
                    compute_depth_metrics(gt, pred, max_depth=cap)
            core.append((time.perf_counter() - start) / len(scans))
            start = time.perf_counter()
            for path, pred in zip(files, preds):
                straightforward_frame(path, matrix, width, height, pred)
            plain.append((time.perf_counter() - start) / len(files))

        peaks = {}
        for name, bag in (('40 frames', bag40), ('80 frames', bag80)):
            tracemalloc.start()
            run_evaluator(bag)
            peaks[name] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()

    ours_ms, eigen_ms, core_ms, plain_ms = (1e3 * statistics.median(x)
                                            for x in (ours, eigen, core, plain))
    print(f'KITTI frames 1242x375, {np.mean([len(s) for s in scans]):.0f} points a scan, '
          f'metrics at caps 80 and 50 m; median of {args.repeat} runs')
    print(f'{"method":<44}{"ms/frame":>10}{"frames/s":>10}')
    for name, value in (('bag evaluator (read+decode+GT+metrics)', ours_ms),
                        ('bag evaluator, --protocol kitti-eigen', eigen_ms),
                        ('core: GT projection + metrics (arrays)', core_ms),
                        ('straightforward: .bin + loop + metrics', plain_ms)):
        print(f'{name:<44}{value:>10.2f}{1e3 / value:>10.1f}')
    print(f'ratio straightforward / bag evaluator: {plain_ms / ours_ms:.2f}x; '
          f'straightforward / core: {plain_ms / core_ms:.2f}x')
    print('peak Python heap of the evaluator (tracemalloc): ' + ', '.join(
        f'{name}: {value:.1f} MiB' for name, value in peaks.items())
        + f'; ratio 80/40 = {peaks["80 frames"] / peaks["40 frames"]:.2f}')


if __name__ == '__main__':
    main()
