"""ONNX Runtime (CPU) vs PyTorch eager (CPU) on the same network, side by side in one run.

Sizes: the training recipe's default input (320x96) and the KITTI frame size 1242x375
rounded up to the network stride (1248x384). Prints median and p99 latency per backend and
the PyTorch / ONNX Runtime ratio, for each thread count (both backends get the same).

    python benchmarks/bench_engines.py [--encoder tiny] [--runs 20] [--threads 1 2]

GPU section (runs only when torch sees a CUDA GPU, otherwise it prints why it is skipped): on
the packaged default model (monodepth_ros/models/default.pt, 96x320) and on a fresh
network of the same kind at 384x1248, PyTorch eager FP32 against autocast FP16, a CUDA graph
of the FP16 forward, torch.compile, ONNX Runtime's CUDA provider and TensorRT FP16 (the last
two when installed), each as its speed-up over eager FP32, plus GPU preprocessing (upload the
uint8 image, normalise on the GPU) against the numpy preprocess. On a GPU machine:

    python benchmarks/bench_engines.py --gpu-only [--gpu-runs 200] [--compile-mode MODE]

(drop --gpu-only to measure the CPU section as well; --compile-mode none skips torch.compile).
"""

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SIZES = ((96, 320, 'default network size'), (384, 1248, 'KITTI 1242x375 -> stride 32'))
PACKAGED_MODEL = Path(__file__).resolve().parents[1] / 'monodepth_ros' / 'models' / 'default.pt'
# GPU section: the packaged quick-recipe model at its own size, then a fresh network of the
# same configuration at the KITTI size (speed does not depend on the weights).
GPU_LARGE_SIZE = (384, 1248)


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


def run_cpu(args) -> None:
    import torch

    from monodepth_ros.engines import create_engine
    from monodepth_ros.model.export import export_onnx
    from monodepth_ros.model.preprocess import preprocess

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


# ----------------------------------------------------------------------------- GPU section

def gpu_skip_reason() -> str:
    """Why the GPU section cannot run here ('' when it can)."""
    try:
        import torch
    except ImportError as error:
        return f'torch is not installed ({error})'
    if not torch.cuda.is_available():
        return f'torch {torch.__version__} sees no CUDA GPU'
    return ''


def time_gpu(paths: dict[str, Callable], runs: int, warmup: int) -> dict[str, np.ndarray]:
    """Latencies in ms per path, taking turns run by run like ``time_round_robin``.

    The device is synchronized before the clock starts and before it stops, so each time is
    the whole of one call: launches, kernels and copies, whatever stream they ran on (ONNX
    Runtime and TensorRT use their own streams, which CUDA events on torch's stream miss).
    """
    import torch

    for path in paths.values():
        for _ in range(warmup):
            path()
    torch.cuda.synchronize()
    times = {name: [] for name in paths}
    for _ in range(runs):
        for name, path in paths.items():
            torch.cuda.synchronize()
            start = time.perf_counter()
            path()
            torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: np.asarray(values) for name, values in times.items()}


def eager_forward(wrapper, static_input, fp16: bool) -> Callable:
    """Eager forward of the GPU-resident input; FP16 through autocast (AMP) when asked."""
    import torch

    def forward():
        with torch.inference_mode(), torch.autocast('cuda', dtype=torch.float16, enabled=fp16):
            return wrapper(static_input)
    return forward


def cuda_graph_forward(wrapper, static_input) -> Callable:
    """Capture the autocast FP16 forward once; each call replays it on ``static_input``.

    A CUDA graph replays fixed kernels on fixed addresses: new frames must be copied into
    ``static_input`` and results read from the returned (static) outputs before the next
    replay overwrites them.
    """
    import torch

    # The autocast cache of FP16 weight copies must not outlive the capture: the casts are
    # captured into the graph instead (a 1.7 MB network: negligible).
    def amp():
        return torch.autocast('cuda', dtype=torch.float16, cache_enabled=False)

    # Warm up on a side stream (cuDNN autotuning, lazy initialisation, allocator) so that
    # nothing of that happens during capture, as the CUDA graphs notes of PyTorch ask.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad(), amp():
        for _ in range(3):
            wrapper(static_input)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), amp(), torch.cuda.graph(graph):
        static_outputs = wrapper(static_input)

    def forward():
        graph.replay()
        return static_outputs
    return forward


def compiled_forward(wrapper, static_input, mode: str) -> Callable:
    """torch.compile of the autocast FP16 forward (compiled at the first call)."""
    import torch

    compiled = torch.compile(wrapper, mode=mode)
    uses_graphs = mode == 'reduce-overhead'

    def forward():
        if uses_graphs:   # a new inference step: earlier graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.inference_mode(), torch.autocast('cuda', dtype=torch.float16):
            return compiled(static_input)
    return forward


def frame_of(forward: Callable, static_input, batch: np.ndarray) -> Callable:
    """One frame as the pipeline sees it: host batch in, ``EngineOutput`` on the host out.

    The same work as ``TensorRTEngine.infer``: host batch to a pinned buffer, upload into the
    static input, forward, argmax and copies back.
    """
    import torch

    from monodepth_ros.engines.base import outputs_from_tensors

    host = torch.empty(batch.shape, dtype=torch.float32, pin_memory=True)

    def frame():
        host.copy_(torch.from_numpy(batch))
        static_input.copy_(host, non_blocking=True)
        return outputs_from_tensors(*forward())
    return frame


def gpu_preprocess(rgb, scale, offset):
    """HxWx3 uint8 numpy -> (1,3,H,W) float32 on the device of ``scale``: upload, normalise.

    Uploads 1 byte per value instead of 4; ``scale`` and ``offset`` (1,3,1,1) float32 are
    the ``preprocess`` constants, so the result is the same ``x / (255 std) - mean / std``.
    """
    import torch

    image = torch.from_numpy(rgb).to(scale.device)
    batch = image.permute(2, 0, 1).unsqueeze(0).to(torch.float32,
                                                   memory_format=torch.contiguous_format)
    return batch.mul_(scale).sub_(offset)


def preprocess_constants(metadata, device):
    import torch

    std = np.asarray(metadata.std, dtype=np.float64)
    scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(1, 3, 1, 1)
    offset = (np.asarray(metadata.mean, dtype=np.float64) / std).astype(np.float32)
    return (torch.from_numpy(scale).to(device),
            torch.from_numpy(offset.reshape(1, 3, 1, 1)).to(device))


def print_rows(rows: dict[str, np.ndarray], baseline: str, extra: dict | None = None) -> None:
    """Median, p99 and speed-up (baseline median / row median) per row."""
    reference = float(np.median(rows[baseline]))
    for name, times in rows.items():
        median = float(np.median(times))
        note = (extra or {}).get(name, '')
        print(f'  {name:<34} {median:>9.3f} {np.percentile(times, 99):>9.3f} '
              f'{reference / median:>8.2f}x  {note}')


def bench_gpu_model(checkpoint: Path, onnx_path: Path, args, folder: Path) -> None:
    """All GPU paths on one model at its own input size."""
    import torch

    from monodepth_ros.engines import create_engine
    from monodepth_ros.engines.tensorrt_engine import tensorrt_status
    from monodepth_ros.errors import EngineError
    from monodepth_ros.model.checkpoint import load_model
    from monodepth_ros.model.metadata import INPUT_NAME
    from monodepth_ros.model.network import InferenceWrapper
    from monodepth_ros.model.preprocess import preprocess

    model, metadata = load_model(str(checkpoint), device='cuda')
    wrapper = InferenceWrapper(model).eval()
    height, width = metadata.input_height, metadata.input_width
    rgb = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    batch = preprocess(rgb, metadata)
    # Zeros at capture time: a graph that did not see the frames copied in would give the
    # depth of a black image, which the parity column below would show.
    static_input = torch.zeros(batch.shape, dtype=torch.float32, device='cuda')
    print(f'\n{checkpoint.name}: {width}x{height}, {args.gpu_runs} runs after '
          f'{args.gpu_warmup} warm-up calls per path')

    forwards = {'torch eager fp32': eager_forward(wrapper, static_input, fp16=False),
                'torch autocast fp16 (AMP)': eager_forward(wrapper, static_input, fp16=True)}
    skipped = []
    try:
        forwards['torch cuda graph fp16'] = cuda_graph_forward(wrapper, static_input)
    except RuntimeError as error:
        skipped.append(f'cuda graph: {first_line(error)}')
    if args.compile_mode != 'none':
        name = f'torch.compile fp16 ({args.compile_mode})'
        try:
            torch.compiler.reset()
            forward = compiled_forward(wrapper, static_input, args.compile_mode)
            static_input.copy_(torch.from_numpy(batch))
            forward()   # compiles here: failures show up at the first call
            forwards[name] = forward
        except Exception as error:   # any compiler failure only skips this path
            skipped.append(f'torch.compile: {type(error).__name__}: {first_line(error)}')
    frames = {name: frame_of(forward, static_input, batch) for name, forward in forwards.items()}

    engines = []
    try:
        import onnxruntime
        if 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
            # The provider order of the engine: the TensorRT provider first when it exists.
            engine = create_engine(onnx_path, backend='onnxruntime', device='cuda',
                                   cache_dir=folder / 'cache')
            engines.append(engine)
            frames[f'onnxruntime {engine.info["providers"][0]}'] = \
                lambda engine=engine: engine.infer(batch)
        else:
            skipped.append('onnxruntime CUDA: providers are '
                           f'{onnxruntime.get_available_providers()}')
    except ImportError as error:
        skipped.append(f'onnxruntime: not installed ({error})')
    except EngineError as error:
        skipped.append(f'onnxruntime CUDA: {error}')
    trt_ok, trt_reason = tensorrt_status()
    if trt_ok:
        try:
            engine = create_engine(onnx_path, backend='tensorrt', precision='fp16',
                                   cache_dir=folder / 'cache')
        except EngineError as error:
            skipped.append(f'tensorrt: {error}')
        else:
            engines.append(engine)
            frames['tensorrt fp16'] = lambda engine=engine: engine.infer(batch)
            # Forward only: the batch stays in the engine's input buffer; run the context
            # alone on the engine's stream.
            engine.buffers[INPUT_NAME].copy_(torch.from_numpy(batch))
            forwards['tensorrt fp16'] = lambda engine=engine: engine.context.execute_async_v3(
                engine.stream.cuda_stream)
    else:
        skipped.append(f'tensorrt: {trt_reason}')

    # Parity: every frame path against eager FP32 on the same batch (FP16 differs a little).
    reference = frames['torch eager fp32']().depth
    parity = {name: f'max |depth - fp32| {np.abs(frame().depth - reference).max():.3g} m'
              for name, frame in frames.items()}

    header = f'  {"path":<34} {"median ms":>9} {"p99 ms":>9} {"speed-up":>9}'
    print('network forward (input already on the GPU, outputs left there):')
    print(header)
    print_rows(time_gpu(forwards, args.gpu_runs, args.gpu_warmup), 'torch eager fp32')
    print('frame (preprocessed host batch in, depth/semantics/confidence on the host out):')
    print(header)
    print_rows(time_gpu(frames, args.gpu_runs, args.gpu_warmup), 'torch eager fp32', parity)
    for reason in skipped:
        print(f'  skipped {reason}')

    # Preprocessing: both rows end with the normalised (1,3,H,W) float32 batch on the GPU.
    scale, offset = preprocess_constants(metadata, 'cuda')
    difference = np.abs(gpu_preprocess(rgb, scale, offset).cpu().numpy() - batch).max()
    rows = {'numpy preprocess + upload float32':
            lambda: torch.from_numpy(preprocess(rgb, metadata)).to('cuda'),
            'upload uint8 + normalise on the GPU': lambda: gpu_preprocess(rgb, scale, offset),
            'numpy preprocess alone (CPU)': lambda: preprocess(rgb, metadata)}
    print(f'preprocess {width}x{height} (GPU result vs numpy: max difference {difference:.2g}):')
    print(header)
    print_rows(time_gpu(rows, args.gpu_runs, args.gpu_warmup),
               'numpy preprocess + upload float32')
    for engine in engines:
        engine.close()


def fresh_checkpoint_like(folder: Path, source: Path, height: int, width: int) -> Path:
    """A randomly initialised network of ``source``'s configuration at another input size."""
    import dataclasses

    import torch

    from monodepth_ros.model.checkpoint import load_model, save_checkpoint
    from monodepth_ros.model.network import NetworkConfig, build_network

    _, metadata = load_model(str(source), device='cpu')
    config = NetworkConfig.from_dict(dict(metadata.network))
    torch.manual_seed(0)
    metadata = dataclasses.replace(metadata, input_height=height, input_width=width)
    path = folder / f'{source.stem}_fresh_{width}x{height}.pt'
    return save_checkpoint(path, build_network(config).eval(), config, metadata)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else repr(error)


def run_gpu(args) -> None:
    reason = gpu_skip_reason()
    if reason:
        print(f'GPU section skipped: {reason}')
        return
    import torch

    from monodepth_ros.model.export import export_onnx

    # Fixed input sizes: let cuDNN pick its fastest convolution algorithms (all paths alike).
    torch.backends.cudnn.benchmark = True
    print(f'\nGPU {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA '
          f'{torch.version.cuda}, cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, '
          f'matmul precision {torch.get_float32_matmul_precision()}; speed-up = torch eager '
          'fp32 median / path median')
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        larger = fresh_checkpoint_like(folder, PACKAGED_MODEL, *GPU_LARGE_SIZE)
        for checkpoint in (PACKAGED_MODEL, larger):
            onnx_path = export_onnx(checkpoint, folder / f'{checkpoint.stem}.onnx',
                                    verify=False).path
            bench_gpu_model(checkpoint, onnx_path, args, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--encoder', default='tiny')
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2],
                        help='thread counts to measure, each for both backends (default: 1 2)')
    parser.add_argument('--gpu-only', action='store_true',
                        help='skip the CPU section (ONNX Runtime vs PyTorch on the CPU)')
    parser.add_argument('--gpu-runs', type=int, default=200,
                        help='timed calls per GPU path (default: 200)')
    parser.add_argument('--gpu-warmup', type=int, default=10,
                        help='untimed calls per GPU path first (default: 10)')
    parser.add_argument('--compile-mode', default='reduce-overhead',
                        help="torch.compile mode: 'reduce-overhead' (default, CUDA graphs), "
                             "'max-autotune-no-cudagraphs' (slow to compile), 'default', or "
                             "'none' to skip torch.compile")
    args = parser.parse_args()
    if not args.gpu_only:
        run_cpu(args)
    run_gpu(args)


if __name__ == '__main__':
    main()
