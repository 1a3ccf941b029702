"""Per-stage latency of the DepthPipeline at KITTI size (1242x375 rgb8 Image + CameraInfo in).

Runs the model users get by default, the packaged monodepth_ros/models/default.pt
(EfficientNet-Lite2 encoder, 96x320 network input), opened with ``create_engine`` exactly as
``monodepth infer`` and the node open it, on every backend available here: torch (the
checkpoint), onnxruntime (its ONNX export, made once in the engine cache) and tensorrt (when
installed). Prints median and p99 in milliseconds of decode, preprocess, inference, postprocess
and cloud, and the total of everything except inference, for the 'network' and 'camera' output
resolutions. The budget for everything except inference is 10 ms median per frame on a 2-core
CPU.

Usage: python benchmarks/bench_pipeline.py [--frames 60] [--model path.pt|path.onnx]
       [--engine-cache-dir DIR]    (--frames 2: a quick check that it runs)
"""

import argparse
from pathlib import Path

import numpy as np

from monodepth_ros.io import messages
from monodepth_ros.runtime.pipeline import ALL_OUTPUTS, STAGES, DepthPipeline, PipelineConfig

WIDTH, HEIGHT = 1242, 375


def add_model_arguments(parser) -> None:
    """--model (default: the packaged default model) and --engine-cache-dir."""
    parser.add_argument('--model', type=Path, default=None,
                        help='model file (.pt or .onnx; default: the packaged default model)')
    parser.add_argument('--engine-cache-dir', default=None,
                        help='ONNX exports and TensorRT engines (default: the same cache as '
                        'monodepth infer and the node)')


def model_path(model: Path | None) -> Path:
    """``model``, or the packaged default model that users get when they name none."""
    from monodepth_ros.model.files import default_model_path

    path = Path(model) if model is not None else default_model_path()
    if not path.is_file():
        raise SystemExit(f'model {path} not found')
    return path


def kitti_like_messages(types):
    from monodepth_ros.io.camera import CameraModel

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


def available_backends(model: Path, cache_dir):
    from monodepth_ros.engines import create_engine

    if model.suffix == '.pt':      # eager PyTorch needs the checkpoint, not the export
        yield 'torch', lambda: create_engine(str(model), backend='torch', precision='fp32')
    yield 'onnxruntime', lambda: create_engine(str(model), backend='onnxruntime',
                                               precision='fp32', cache_dir=cache_dir)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        print('tensorrt: not installed here, skipped')
        return
    yield 'tensorrt', lambda: create_engine(str(model), backend='tensorrt', precision='fp16',
                                            cache_dir=cache_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=60, help='timed frames per row')
    add_model_arguments(parser)
    args = parser.parse_args()
    model = model_path(args.model)
    types = messages.MessageTypes.rosbags('humble')
    image, info = kitti_like_messages(types)
    print(f'model {model}, input {WIDTH}x{HEIGHT} rgb8, {args.frames} frames, all outputs')
    medians = {}
    header_printed = False
    for backend, factory in available_backends(model, args.engine_cache_dir):
        engine = factory()
        if not header_printed:
            meta = engine.metadata
            print(f'network input {meta.input_width}x{meta.input_height}')
            print(f'{"backend":<12} {"resolution":<10} ' + ' '.join(
                f'{name:>20}' for name in STAGES + ('all but inference',)))
            header_printed = True
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
