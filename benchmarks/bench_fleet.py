"""eval-fleet throughput: bags side by side on Ray vs one worker, measured in one run.

A fleet of synthetic bags (default 8 bags of 10 frames, 624x188) graded by ``monodepth
eval-fleet`` with the packaged default model (ONNX Runtime on the CPU), in four setups, each
run ``--repeat`` times interleaved with the others (best time kept):

* ``in-process 1x1``: ``--workers 1 --threads-per-worker 1``, no Ray: one such worker.
* ``in-process 1x2``: one worker with two inference threads.
* ``ray 1x1``: the same single worker, as a Ray task per bag (``--address`` of the local Ray
  started here). Ray's overhead per bag: its wall time less the time spent inside the tasks
  (scheduling, sending the model and the results), per bag; and its extra time over
  ``in-process 1x1``, per bag.
* ``ray 2x1``: two Ray workers of one inference thread each.

Ray's start-up and the first run (workers start, the model is exported to ONNX once into the
machine's cache) are reported apart. Memory: the peak RSS of each Ray worker after its first
bag and after its last one (``ray 2x1``; from the per-bag records), which must not grow with
the number of bags. The load average is printed first: on a machine shared with other work
the two workers do not get two free cores. Usage:
``nice -n 10 python benchmarks/bench_fleet.py [--bags 8] [--frames 10] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

from monodepth_ros.cli import main as monodepth
from monodepth_ros.model.files import default_model_path


def write_fleet(folder: Path, bags: int, frames: int) -> list[str]:
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag

    return [str(write_synthetic_bag(folder / f'drive{seed:02d}', frames=frames, seed=seed,
                                    size=(624, 188), progress=False))
            for seed in range(bags)]


def run_fleet(bags: list[str], out: Path, *options: str) -> tuple[float, dict]:
    """Wall time of one eval-fleet run (every bag redone) and its fleet summary."""
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        status = monodepth(['eval-fleet', *bags, '--model', str(default_model_path()),
                            '--backend', 'onnxruntime', '--qualitative', '0', '--out', str(out),
                            '--force', '--no-progress', *options])
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f'eval-fleet {" ".join(options)} failed with status {status}')
    return seconds, json.loads((out / 'report' / 'summary.json').read_text())


def worker_memory(out: Path) -> dict[int, list[float]]:
    """Peak RSS (MiB) of each worker process after each of its bags, in the order run.

    A process's peak RSS never decreases, so sorted values are in the order the bags ran.
    """
    by_worker: dict[int, list[float]] = {}
    for path in (out / '.fleet').glob('*.json'):
        record = json.loads(path.read_text())
        by_worker.setdefault(record['pid'], []).append(record['peak_rss_mib'])
    return {pid: sorted(values) for pid, values in by_worker.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--bags', type=int, default=8)
    parser.add_argument('--frames', type=int, default=10)
    parser.add_argument('--repeat', type=int, default=3)
    options = parser.parse_args()
    import ray

    print('load average (1, 5, 15 min): ' + ', '.join(f'{v:.2f}' for v in os.getloadavg()))

    os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        os.environ['MONODEPTH_ENGINE_CACHE'] = str(temp / 'cache')
        started = time.perf_counter()
        bags = write_fleet(temp / 'bags', options.bags, options.frames)
        print(f'{len(bags)} bags of {options.frames} frames written in '
              f'{time.perf_counter() - started:.1f} s')
        started = time.perf_counter()
        ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _node_ip_address='127.0.0.1')
        print(f'local Ray started in {time.perf_counter() - started:.1f} s')
        setups = {
            'in-process 1x1': ('--workers', '1', '--threads-per-worker', '1'),
            'in-process 1x2': ('--workers', '1', '--threads-per-worker', '2'),
            'ray 1x1': ('--address', 'auto', '--workers', '1', '--threads-per-worker', '1'),
            'ray 2x1': ('--address', 'auto', '--workers', '2', '--threads-per-worker', '1'),
        }
        first, _ = run_fleet(bags, temp / 'warm', *setups['ray 2x1'])
        print(f'first ray 2x1 run (workers start, ONNX export into the cache): {first:.1f} s')
        best: dict[str, float] = {}
        in_tasks: dict[str, float] = {}     # seconds spent inside the tasks, of the best run
        frames = 0
        for _ in range(options.repeat):
            for name, setup in setups.items():
                seconds, summary = run_fleet(bags, temp / name.replace(' ', '_'), *setup)
                frames = summary['frames_evaluated']
                if seconds < best.get(name, float('inf')):
                    best[name] = seconds
                    in_tasks[name] = sum(entry['seconds'] for entry in summary['per_bag'])
        memory = worker_memory(temp / 'ray_2x1')
        ray.shutdown()

    base = best['in-process 1x1']
    print(f'\n{frames} frames in {len(bags)} bags, best of {options.repeat}:')
    print(f'{"setup":<16}{"seconds":>9}{"frames/s":>10}{"vs 1x1":>8}')
    for name, seconds in best.items():
        print(f'{name:<16}{seconds:>9.2f}{frames / seconds:>10.2f}{base / seconds:>7.2f}x')
    overhead = (best['ray 1x1'] - in_tasks['ray 1x1']) / len(bags)
    print(f'Ray overhead per bag (ray 1x1: wall time - time inside the tasks): {overhead:.3f} s')
    print(f'ray 1x1 - in-process 1x1, per bag: {(best["ray 1x1"] - base) / len(bags):+.3f} s '
          f'(time inside the tasks: {in_tasks["ray 1x1"] / len(bags):.3f} vs '
          f'{in_tasks["in-process 1x1"] / len(bags):.3f} s per bag)')
    print(f'ray 2x1 vs ray 1x1: {best["ray 1x1"] / best["ray 2x1"]:.2f}x')
    print('peak RSS of each Ray worker (MiB) after each of its bags (ray 2x1):')
    for pid, values in memory.items():
        print(f'  worker {pid}: ' + ', '.join(f'{value:.0f}' for value in values))


if __name__ == '__main__':
    main()
