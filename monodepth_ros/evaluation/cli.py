"""Grade depth against LiDAR ground truth in a bag (rosbag2 mcap/sqlite3 or ROS 1).

The depth comes from a topic of the bag (--depth-topic, e.g. a recorded /monodepth/depth), from
running a model on the bag's images (--model), or from a baseline that never looks at the image
(--baseline row-prior: each image row's mean LiDAR depth over the other frames of the bag; a
depth network is only useful where it beats it). Each depth frame is matched to the LiDAR scan
nearest in time; the scan is projected into the depth image with its camera_info and the LiDAR
-> camera transform from /tf_static (or a KITTI calibration folder, --calib). Metrics at caps
80 m and 50 m. --protocol kitti-eigen grades at the full image size (the camera topic's
camera_info, or --calib), resizing predictions of another size. With --model, --scale turns
a relative or mis-scaled model's output into metres (lidar: fitted to the even-numbered points
of each scan and graded on the odd ones; ground: from --camera-height); the report gives the
scale, its residual and points, and for every depth source the scale flicker against the
LiDAR (frame-to-frame change of log(median(LiDAR / prediction))). Writes summary.json,
frames.csv, report.md, plots and qualitative strips into --out and prints a summary table. Exit
status 1 when no frame could be graded. The report appears at --out only when complete (an
interrupted run leaves nothing there); an existing --out must be empty or an earlier eval-bag
report, which is replaced.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monodepth_ros.engines import BACKENDS, PRECISIONS
from monodepth_ros.evaluation.evaluator import BASELINES
from monodepth_ros.evaluation.ground_truth import PROTOCOLS
from monodepth_ros.evaluation.metrics import CROPS
from monodepth_ros.io import topics
from monodepth_ros.model.cards import add_model_card_argument
from monodepth_ros.options import finite_float, non_negative_int
from monodepth_ros.runtime.infer import (
    add_framing_arguments,
    add_scale_arguments,
    scale_settings,
)

LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bag', type=Path, help='rosbag2 folder (mcap or sqlite3) or ROS 1 .bag')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--depth-topic', type=topics.topic_name,
                        help='depth image topic to grade (32FC1 m or 16UC1 mm)')
    source.add_argument('--model', type=Path,
                        help='model (.pt checkpoint or .onnx; TensorRT engines are built '
                             'and cached from it) to run on the camera images')
    source.add_argument('--baseline', choices=BASELINES,
                        help="row-prior: each image row's mean ground-truth depth over the "
                             'other frames of the bag (leave-one-out)')
    parser.add_argument('--backend', default='auto', choices=BACKENDS,
                        help='engine backend with --model (default: auto)')
    parser.add_argument('--precision', default='fp16', choices=PRECISIONS,
                        help='engine precision with --model (default: fp16)')
    add_model_card_argument(parser)
    add_framing_arguments(parser)
    add_scale_arguments(parser, lidar=True)
    parser.add_argument('--scale-fit-all', action='store_true',
                        help='with --scale lidar: fit to every LiDAR point and grade on the '
                        'same points (optimistic; default: fit to the even-numbered points, '
                        'grade on the odd ones)')
    parser.add_argument('--camera-topic', default=topics.CAMERA_IMAGE_TOPIC,
                        type=topics.topic_name,
                        help='camera image topic (model input, and the qualitative strips)')
    parser.add_argument('--camera-info-topic', default=None, type=topics.topic_name,
                        help='camera_info of the depth images (default: DEPTH/camera_info, '
                             'then the sibling camera_info, then the KITTI camera_info)')
    parser.add_argument('--lidar-topic', default=topics.LIDAR_TOPIC, type=topics.topic_name,
                        help='PointCloud2 topic of the LiDAR')
    parser.add_argument('--semantics-topic', default=None, type=topics.topic_name,
                        help='label image topic (trainIds, mono8) for the error by class; '
                             "without it, errors are grouped by the model's predicted classes")
    parser.add_argument('--calib', type=Path, default=None,
                        help='KITTI calibration folder (calib_*.txt) instead of /tf_static')
    parser.add_argument('--protocol', choices=PROTOCOLS, default='default',
                        help="default: camera-z ground truth in the depth image's own camera; "
                             'kitti-eigen: the published Eigen-split protocol')
    parser.add_argument('--crop', choices=CROPS, default=None,
                        help='evaluation crop (default: garg for kitti-eigen, else none)')
    parser.add_argument('--median-scaling', action='store_true',
                        help='scale each prediction by median(gt)/median(pred) (relative models)')
    parser.add_argument('--max-time-diff-ms', type=finite_float(0.0, 60_000.0), default=50.0,
                        help='largest |depth stamp - LiDAR stamp| accepted, 0..60000 '
                             '(default 50 ms)')
    parser.add_argument('--min-depth', type=finite_float(0.0, 50.0, low_open=True),
                        default=1e-3,
                        help='smallest ground-truth depth graded (m), > 0 and <= 50 '
                             '(default 0.001)')
    parser.add_argument('--no-occlusion-filter', action='store_true',
                        help='keep LiDAR points hidden from the camera by parallax (default '
                             'protocol; kitti-eigen never filters)')
    parser.add_argument('--qualitative', type=non_negative_int, default=4,
                        help='number of qualitative PNG strips, >= 0 (default 4)')
    parser.add_argument('--out', type=Path, required=True,
                        help='report folder: new, empty, or an earlier eval-bag report '
                             '(replaced); anything else is refused')


def run(args) -> int:
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig
    from monodepth_ros.evaluation.report import format_table, write_outputs
    from monodepth_ros.io.outputs import atomic_output

    config = EvaluationConfig(
        depth_topic=args.depth_topic, model=str(args.model) if args.model else None,
        model_card=args.model_card,
        baseline=args.baseline,
        backend=args.backend, precision=args.precision, camera_topic=args.camera_topic,
        camera_info_topic=args.camera_info_topic, lidar_topic=args.lidar_topic,
        calib_dir=str(args.calib) if args.calib else None, protocol=args.protocol,
        crop=args.crop, median_scaling=args.median_scaling,
        max_time_diff_ms=args.max_time_diff_ms, semantics_topic=args.semantics_topic,
        min_depth=args.min_depth, qualitative_frames=args.qualitative,
        occlusion_filter=not args.no_occlusion_filter,
        framing=args.framing, framing_anchor=args.framing_anchor,
        far_pass_focal=args.far_pass_focal, ground_contact=args.ground_contact,
        scale=scale_settings(args, lidar=True),
        scale_holdout=not args.scale_fit_all,
        progress=not args.no_progress)
    # The report appears at --out only once complete; an earlier eval-bag report there is
    # replaced, a folder holding anything else is refused before the evaluation starts.
    with atomic_output(args.out, 'folder', 'eval-bag', replace_own=True) as partial:
        result = BagEvaluator(config).evaluate(args.bag)
        summary = write_outputs(result, partial)
    print(format_table(summary))
    print(f'outputs in {args.out}')
    if result.error is not None:
        # The report keeps the frames graded before the failure; the error ends the command.
        raise result.error
    return 0 if result.frames_evaluated else 1
