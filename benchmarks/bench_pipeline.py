"""Per-stage latency of the DepthPipeline at KITTI size (1242x375 rgb8 Image + CameraInfo in).

For every backend available here (torch, onnxruntime, tensorrt), on the same network (the tiny
encoder of the quick recipe at 96x320, random weights: speed does not depend on them), prints
median and p99 in milliseconds of decode, preprocess, inference, postprocess and cloud, and
the total of everything except inference, for the 'network' and 'camera' output resolutions.
The budget for everything except inference is 10 ms median per frame on a 2-core CPU.

Usage: python benchmarks/bench_pipeline.py [--frames 60] [--model path.pt|path.onnx]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from monodepth_ros import messages
from monodepth_ros.pipeline import ALL_OUTPUTS, STAGES, DepthPipeline, PipelineConfig

WIDTH, HEIGHT = 1242, 375


def make_models(folder: Path, height: int = 96, width: int = 320) -> tuple[Path, Path]:
    import torch

    from monodepth_ros.export import export_model
    from monodepth_ros.model.checkpoint import save_checkpoint
    from monodepth_ros.model.metadata import ModelMetadata
    from monodepth_ros.model.network import NetworkConfig, build_network

    torch.manual_seed(0)
    config = NetworkConfig(encoder='tiny', aspp_dilations=(1, 2, 3))
    network = build_network(config).eval()
    metadata = ModelMetadata(input_height=height, input_width=width, network=config.to_dict())
    checkpoint = save_checkpoint(folder / 'bench.pt', network, config, metadata)
    onnx_path = folder / 'bench.onnx'
    export_model(network, metadata, onnx_path, verify=False)
    return checkpoint, onnx_path


def kitti_like_messages(types):
    from monodepth_ros.camera import CameraModel

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    header = messages.make_header(types, 1_317_000_000_000_000_000, 'camera_color_left')
    camera = CameraModel.from_intrinsics(721.5377, 721.5377, 609.5593, 172.854, WIDTH, HEIGHT)
    return (messages.array_to_image(types, rgb, 'rgb8', header),
            messages.model_to_camera_info(types, camera, header))


def measure(pipeline, types, image, info, frames: int) -> dict[str, np.ndarray]:
    for _ in range(3):     # warm-up (first runs allocate)
        pipeline.process_messages(types, image, info, ALL_OUTPUTS)
    timings = {stage: [] for stage in STAGES}
    for _ in range(frames):
        pipeline.process_messages(types, image, info, ALL_OUTPUTS)
        for stage in STAGES:
            timings[stage].append(pipeline.last_timings[stage])
    out = {stage: np.asarray(values) for stage, values in timings.items()}
    out['all but inference'] = sum(out[s] for s in STAGES if s != 'inference')
    return out


def available_backends(checkpoint: Path, onnx_path: Path):
    from monodepth_ros.engines import create_engine

    yield 'torch', lambda: create_engine(str(checkpoint), backend='torch', precision='fp32')
    yield 'onnxruntime', lambda: create_engine(str(onnx_path), backend='onnxruntime',
                                               precision='fp32')
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        print('tensorrt: not installed here, skipped')
        return
    yield 'tensorrt', lambda: create_engine(str(onnx_path), backend='tensorrt', precision='fp16')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=60)
    args = parser.parse_args()
    types = messages.MessageTypes.rosbags('humble')
    image, info = kitti_like_messages(types)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, onnx_path = make_models(Path(tmp))
        print(f'input {WIDTH}x{HEIGHT} rgb8, network 320x96, {args.frames} frames, all outputs')
        print(f'{"backend":<12} {"resolution":<10} ' + ' '.join(
            f'{name:>20}' for name in STAGES + ('all but inference',)))
        medians = {}
        for backend, factory in available_backends(checkpoint, onnx_path):
            engine = factory()
            for resolution in ('network', 'camera'):
                pipeline = DepthPipeline(engine, PipelineConfig(output_resolution=resolution))
                result = measure(pipeline, types, image, info, args.frames)
                medians[(backend, resolution)] = np.median(result['inference'])
                print(f'{backend:<12} {resolution:<10} ' + ' '.join(
                    f'{np.median(v):8.2f} / p99 {np.percentile(v, 99):6.2f}'
                    for v in result.values()))
        if ('torch', 'network') in medians and ('onnxruntime', 'network') in medians:
            ratio = medians[('torch', 'network')] / medians[('onnxruntime', 'network')]
            print(f'inference median, torch eager / onnxruntime (same model, same run): '
                  f'{ratio:.2f}x')
        print('cells: median / p99 in ms; budget for "all but inference": <= 10 ms median')


if __name__ == '__main__':
    main()
