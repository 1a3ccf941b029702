"""Frames per second of the synthetic drive at 1242x375, with and without the LiDAR.

Also the training size (416x128) and the LiDAR scan alone, measured side by side in one run.
Usage: python benchmarks/bench_synthetic.py [--frames N] [--seed S]
"""

import argparse
import statistics
import time

from monodepth_ros.synthetic.world import DriveConfig, SyntheticDrive


def _median_seconds(render, frames: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds a frame (CPU time is immune to other load)."""
    render(0)                                   # warm-up: ray grids, first chunks
    wall, cpu = [], []
    for index in range(1, frames + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        render(index)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    drive = SyntheticDrive(seed=args.seed)
    small = SyntheticDrive(seed=args.seed, config=DriveConfig(width=416, height=128))
    cases = {
        '1242x375 camera + LiDAR': lambda i: drive.render(i, lidar=True),
        '1242x375 camera only': lambda i: drive.render(i, lidar=False),
        '416x128 camera only': lambda i: small.render(i, lidar=False),
        'LiDAR scan only': lambda i: drive._scan(i, drive.objects_at(i)),
    }
    results = {name: _median_seconds(render, args.frames) for name, render in cases.items()}
    points = drive.render(1, lidar=True).lidar['x'].size
    print(f'synthetic drive, seed {args.seed}, median of {args.frames} frames '
          f'({points} LiDAR points a scan)')
    print(f'  {"":<26} {"wall ms":>8} {"frames/s":>9} {"CPU ms":>8} {"frames/s":>9}')
    for name, (wall, cpu) in results.items():
        print(f'  {name:<26} {wall * 1e3:8.1f} {1.0 / wall:9.1f} '
              f'{cpu * 1e3:8.1f} {1.0 / cpu:9.1f}')
    with_lidar = results['1242x375 camera + LiDAR'][0]
    ratio = with_lidar / results['1242x375 camera only'][0]
    print(f'  LiDAR adds {100 * (ratio - 1):.0f}% to a full frame (wall); target >= 5 frames/s '
          f'with LiDAR: {"met" if 1.0 / with_lidar >= 5 else "NOT met"} (wall clock)')


if __name__ == '__main__':
    main()
