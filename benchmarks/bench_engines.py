"""ONNX Runtime (CPU) vs PyTorch eager (CPU) on the same network, side by side in one run.

Sizes: the training recipe's default input (320x96) and the KITTI frame size 1242x375
rounded up to the network stride (1248x384). Prints median and p99 latency per backend and
the PyTorch / ONNX Runtime ratio, for each thread count (both backends get the same).

    python benchmarks/bench_engines.py [--encoder tiny] [--runs 20] [--threads 1 2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = ((96, 320, 'default network size'), (384, 1248, 'KITTI 1242x375 -> stride 32'))


def make_checkpoint(folder: Path, encoder: str, height: int, width: int) -> Path:
    import torch

    from monodepth_ros.model.checkpoint import save_checkpoint
    from monodepth_ros.model.metadata import ModelMetadata
    from monodepth_ros.model.network import NetworkConfig, build_network

    torch.manual_seed(0)
    config = NetworkConfig(encoder=encoder)
    metadata = ModelMetadata(input_height=height, input_width=width, depth_min=config.depth_min,
                             depth_max=config.depth_max, num_bins=config.num_bins)
    path = folder / f'{encoder}_{width}x{height}.pt'
    return save_checkpoint(path, build_network(config).eval(), config, metadata)


def time_round_robin(engines: dict, batch, runs: int, warmup: int = 3) -> dict:
    """Latencies in ms per engine; the engines take turns run by run.

    Taking turns makes changes in machine load hit every engine alike.
    """
    for engine in engines.values():
        for _ in range(warmup):
            engine.infer(batch)
    times = {name: [] for name in engines}
    for _ in range(runs):
        for name, engine in engines.items():
            start = time.perf_counter()
            engine.infer(batch)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: np.asarray(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--encoder', default='tiny')
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2],
                        help='thread counts to measure, each for both backends (default: 1 2)')
    args = parser.parse_args()

    import torch

    from monodepth_ros.engines import create_engine, preprocess
    from monodepth_ros.export import export_onnx

    rng = np.random.default_rng(0)
    print(f'encoder {args.encoder}, {args.runs} runs, torch {torch.__version__}')
    print(f'{"threads":>7} {"input":>10} {"backend":>12} {"median ms":>10} {"p99 ms":>8}')
    with tempfile.TemporaryDirectory() as folder:
        for height, width, label in SIZES:
            checkpoint = make_checkpoint(Path(folder), args.encoder, height, width)
            onnx_path = export_onnx(checkpoint, checkpoint.with_suffix('.onnx'),
                                    verify=False).path
            rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            for threads in args.threads:
                torch.set_num_threads(threads)
                engines = {
                    'torch': create_engine(checkpoint, backend='torch', device='cpu'),
                    'onnxruntime': create_engine(onnx_path, backend='onnxruntime',
                                                 device='cpu', num_threads=threads),
                }
                batch = preprocess(rgb, engines['torch'].metadata)
                samples = time_round_robin(engines, batch, args.runs)
                medians = {}
                for name, times in samples.items():
                    medians[name] = float(np.median(times))
                    print(f'{threads:>7} {width:>5}x{height:<4} {name:>12} '
                          f'{medians[name]:>10.2f} {np.percentile(times, 99):>8.2f}')
                print(f'{"":>18} torch / onnxruntime median ratio: '
                      f'{medians["torch"] / medians["onnxruntime"]:.2f}x ({label}, '
                      f'{threads} threads)')
                for engine in engines.values():   # free the session's thread pool
                    engine.close()


if __name__ == '__main__':
    main()
