"""The depth node's logic (NodeCore, no ROS) fed with rosbags messages at KITTI size.

Two runs of the model users get by default, the packaged monodepth_ros/models/default.pt
(EfficientNet-Lite2 encoder, 96x320 network input), loaded by NodeCore as the node loads it, on
ONNX Runtime (its ONNX export, made once in the engine cache):

1. 10 Hz input (the KITTI camera): per-stage median/p99, everything except inference (budget
   <= 10 ms median per frame), input-to-output latency, drops (expected 0);
2. input far above the processing rate (--fast-hz, default 200 Hz): the latest-frame slot
   drops stale frames, so input-to-output latency stays bounded (p50/p99) instead of growing
   with a backlog; prints the drop count.

Usage: python benchmarks/bench_node.py [--seconds 6] [--fast-hz 200] [--model path.pt|path.onnx]
       [--engine-cache-dir DIR]    (--seconds 1: a quick check that it runs)
"""

import argparse
import threading
import time

import numpy as np
from bench_pipeline import HEIGHT, WIDTH, add_model_arguments, kitti_like_messages, model_path

from monodepth_ros.io import messages
from monodepth_ros.ros.core import NodeCore
from monodepth_ros.ros.parameters import NodeConfig
from monodepth_ros.runtime.pipeline import STAGES

ALL_SUBSCRIBED = {key: 1 for key in ('depth', 'camera_info', 'points', 'semantics',
                                     'semantics_color', 'confidence')}


class QuietLogger:
    def info(self, message):
        pass

    warning = error = info


def drive(core: NodeCore, types, image, info, rate_hz: float, seconds: float) -> dict:
    """Feed images at ``rate_hz`` (stamp = send time) while a worker runs process_next."""
    stop = threading.Event()
    latencies, overhead = [], []

    def work():
        while not stop.is_set():
            out = core.process_next(ALL_SUBSCRIBED, time.time_ns, timeout=0.05)
            if out:
                overhead.append(core.last_frame_ms - core.pipeline.last_timings['inference'])
                stamp = messages.stamp_to_ns(out['depth'].header.stamp)
                latencies.append((time.time_ns() - stamp) / 1e6)

    worker = threading.Thread(target=work)
    worker.start()
    period = 1.0 / rate_hz
    next_time = time.perf_counter()
    sent = 0
    end = next_time + seconds
    while next_time < end:
        stamp = time.time_ns()
        header = messages.make_header(types, stamp, image.header.frame_id)
        msg = types.Image(header=header, height=image.height, width=image.width,
                          encoding=image.encoding, is_bigendian=image.is_bigendian,
                          step=image.step, data=image.data)
        info.header = header
        core.on_camera_info(info)
        core.on_image(msg, stamp)
        sent += 1
        next_time += period
        time.sleep(max(0.0, next_time - time.perf_counter()))
    time.sleep(0.3)
    stop.set()
    worker.join()
    report = core.diagnostics()
    return {'sent': sent, 'processed': int(report.values['processed']),
            'dropped': int(report.values['dropped']), 'latency': np.asarray(latencies),
            'overhead': np.asarray(overhead), 'stats': core.stats.summary()}


def show(title: str, result: dict) -> None:
    print(f'\n== {title}: sent {result["sent"]}, processed {result["processed"]}, '
          f'dropped {result["dropped"]}')
    stats = result['stats']
    for stage in STAGES:
        median, p99 = stats[stage]
        print(f'  {stage:<12} median {median:7.2f} ms   p99 {p99:7.2f} ms')
    overhead = result['overhead']
    print(f'  all but inference (whole frame in NodeCore minus inference): median '
          f'{np.median(overhead):.2f} ms, p99 {np.percentile(overhead, 99):.2f} ms '
          '(budget 10 ms median)')
    latency = result['latency']
    print(f'  input-to-output latency: p50 {np.percentile(latency, 50):.1f} ms, p99 '
          f'{np.percentile(latency, 99):.1f} ms, max {latency.max():.1f} ms')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=6.0, help='length of each run')
    parser.add_argument('--fast-hz', type=float, default=200.0,
                        help='input rate of the second run')
    add_model_arguments(parser)
    args = parser.parse_args()
    model = model_path(args.model)
    types = messages.MessageTypes.rosbags('humble')
    image, info = kitti_like_messages(types)
    print(f'model {model}, input {WIDTH}x{HEIGHT} rgb8 + CameraInfo, onnxruntime CPU')
    for title, rate in (('10 Hz input', 10.0),
                        (f'{args.fast_hz:g} Hz input (faster than processing)', args.fast_hz)):
        config = NodeConfig.from_parameters({'model_path': str(model),
                                             'backend': 'onnxruntime', 'precision': 'fp32',
                                             'engine_cache_dir': args.engine_cache_dir or ''})
        core = NodeCore(types, config, logger=QuietLogger())
        if not core.load_model_if_needed():
            raise SystemExit(core.model_error)
        meta = core.pipeline.metadata
        print(f'network input {meta.input_width}x{meta.input_height}')
        show(title, drive(core, types, image, info, rate, args.seconds))


if __name__ == '__main__':
    main()
