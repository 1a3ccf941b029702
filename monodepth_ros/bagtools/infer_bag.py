"""Run the depth pipeline on every image of a bag; write the outputs to a new rosbag2.

Output topics (headers copied from each input image): /monodepth/depth (32FC1, NaN invalid),
/monodepth/depth/camera_info, /monodepth/points (organized PointCloud2), /monodepth/semantics
(mono8 trainIds), /monodepth/semantics/color (rgb8), /monodepth/confidence (32FC1); a model
without semantics or confidence outputs (a foreign one, --model-card) writes none of those.
Each is written at the receive time of its input image, so with --copy-input the new bag replays in
RViz or Foxglove with the inputs alongside. CameraInfo is matched to each image with the
node's rule (:func:`monodepth_ros.runtime.sync.match_stamp`: the closest stamp within 1 ms, else
the newest one stamped at or before the image); without a usable one (none in the bag, or of
another size than the image), depth, semantics and confidence are written but not points and
depth camera_info. An image the pipeline rejects is skipped and counted; the bag appears at
OUTPUT only when complete, so an error (a corrupt input message, a full disk), Ctrl-C, or a
bag without a single usable image leaves nothing there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from monodepth_ros.errors import BagError, CalibrationError, MessageError, TransformError
from monodepth_ros.io import topics

LOGGER = logging.getLogger(__name__)

LIDAR_TOLERANCE_S = 0.05   # largest |image - scan| stamp difference (the node's default)
LIDAR_SCANS_KEPT = 5        # recent scans kept for matching (about 0.5 s at 10 Hz)
MAX_WAITING = 20            # images waiting for a later scan (bounded memory)

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage',
               'sensor_msgs/Image', 'sensor_msgs/CompressedImage')


@dataclass
class InferBagSummary:
    out_path: Path
    frames: int = 0
    errors: int = 0
    frames_without_camera_info: int = 0
    camera_info_rejected: int = 0      # a CameraInfo was there but did not fit the image
    copied_messages: int = 0
    frames_without_lidar: int = 0      # --scale lidar: no usable scan near the image
    topics: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)   # median per stage


def output_topic(key: str, prefix: str = topics.OUTPUT_PREFIX) -> str:
    return prefix + topics.OUTPUT_SUFFIXES[key]


def infer_bag(in_path, out_path, pipeline, camera_topic: str = topics.CAMERA_IMAGE_TOPIC,
              camera_info_topic: str | None = None, copy_input: bool = False,
              storage: str | None = None, distro: str = 'humble', outputs=None,
              prefix: str = topics.OUTPUT_PREFIX, progress: bool = True,
              lidar_topic: str = topics.LIDAR_TOPIC,
              lidar_tolerance_s: float = LIDAR_TOLERANCE_S) -> InferBagSummary:
    """Run ``pipeline`` on every image of ``camera_topic`` in ``in_path``; write ``out_path``.

    A frame the pipeline rejects (bad encoding, empty image...) is logged, counted in
    ``errors`` and skipped; a frame whose CameraInfo does not fit is written without points
    and camera_info and counted in ``camera_info_rejected``. ``storage`` None: the distro's
    default (sqlite3 for humble, mcap for jazzy).

    When the pipeline's scale mode is 'lidar', each image is scaled to the scan on
    ``lidar_topic`` nearest to its stamp (within ``lidar_tolerance_s``), moved into the camera
    frame with the bag's /tf_static; an image waits for the first scan stamped at or after it
    (at most MAX_WAITING images wait), so a scan recorded just after its image is found.
    """
    from collections import deque

    import numpy as np
    from tqdm import tqdm

    from monodepth_ros.evaluation.ground_truth import lidar_scale_reference
    from monodepth_ros.io.bagio import BagReader, BagWriter, describe_topics
    from monodepth_ros.io.messages import check_topic_type, stamp_to_ns
    from monodepth_ros.io.outputs import atomic_output
    from monodepth_ros.io.transforms import TransformBuffer
    from monodepth_ros.runtime.pipeline import ALL_OUTPUTS
    from monodepth_ros.runtime.scale import ScaleReference
    from monodepth_ros.runtime.sync import STAMP_TOLERANCE_S, CameraInfoCache

    outputs = set(outputs or ALL_OUTPUTS)
    unavailable = outputs - getattr(pipeline, 'available_outputs', ALL_OUTPUTS)
    if unavailable:   # a foreign model without semantics or confidence
        LOGGER.info('the model has no %s output: those topics are not written',
                    ', '.join(sorted(unavailable)))
        outputs -= unavailable
    summary = InferBagSummary(out_path=Path(out_path))
    stage_times: dict[str, list[float]] = {}
    with BagReader(in_path) as reader:
        bag_topics = reader.topics
        camera_info_topic = camera_info_topic or topics.camera_info_topic_for(camera_topic,
                                                                              bag_topics)
        if camera_topic not in bag_topics:
            images = sorted(t for t, kind in bag_topics.items() if kind in IMAGE_TYPES)
            raise BagError(f'bag {in_path} has no topic {camera_topic}; its image topics: '
                           f'{images or "none"} (choose one with --camera-topic)')
        if bag_topics[camera_topic] not in IMAGE_TYPES:
            raise BagError(f'{camera_topic} in {in_path} carries {bag_topics[camera_topic]}, '
                           'expected sensor_msgs/Image or CompressedImage')
        has_info = camera_info_topic in bag_topics
        if has_info:
            check_topic_type(camera_info_topic, bag_topics[camera_info_topic], 'CameraInfo',
                             in_path)
        else:
            LOGGER.warning('bag %s has no %s: writing depth without points and camera_info',
                           in_path, camera_info_topic)
        # CameraInfo is small: read it all first so that each image finds the one with its
        # stamp even when the driver wrote it after the image.
        infos = CameraInfoCache(size=None)
        if has_info:
            for _, _, msg in reader.messages([camera_info_topic]):
                infos.add(msg, stamp_to_ns(msg.header.stamp))
        tolerance_ns = int(STAMP_TOLERANCE_S * 1e9)
        lidar = pipeline.resolved_scale_mode() == 'lidar'
        transforms = TransformBuffer()
        if lidar:
            if lidar_topic not in bag_topics:
                raise BagError(f'--scale lidar: bag {in_path} has no topic {lidar_topic} '
                               f'({describe_topics(bag_topics)}; choose one with '
                               '--lidar-topic)')
            check_topic_type(lidar_topic, bag_topics[lidar_topic], 'PointCloud2', in_path)
            if topics.TF_STATIC_TOPIC in bag_topics:
                for _, _, msg in reader.messages([topics.TF_STATIC_TOPIC]):
                    transforms.add_message(msg, static=True)
        scans = CameraInfoCache(size=LIDAR_SCANS_KEPT)
        lidar_tolerance_ns = int(lidar_tolerance_s * 1e9)
        waiting: deque = deque()    # (bag_ns, image message, stamp) waiting for a later scan
        read_topics = None if copy_input else [camera_topic] + ([lidar_topic] if lidar else [])
        total = reader.message_count(read_topics)

        def reference_for(msg, stamp: int):
            if not lidar:
                return None
            scan = scans.match(stamp, lidar_tolerance_ns, False)
            problem = f'no scan on {lidar_topic} within {lidar_tolerance_s:g} s of the image'
            if scan is not None:
                try:
                    return lidar_scale_reference(scan, str(msg.header.frame_id),
                                                 transforms.lookup)
                except (MessageError, TransformError) as error:
                    problem = str(error)
            if not summary.frames_without_lidar:
                LOGGER.warning('%s frame %d ns: no LiDAR scale (%s); the scale stage holds its '
                               'last one', camera_topic, stamp, problem)
            summary.frames_without_lidar += 1
            return ScaleReference()

        def process(writer, bag_ns: int, msg, stamp: int) -> None:
            info = infos.match(stamp, tolerance_ns, use_latest=True)
            if info is None:
                summary.frames_without_camera_info += 1
            try:
                out = pipeline.process_messages(writer.types, msg, info, outputs,
                                                reference_for(msg, stamp))
            except (MessageError, CalibrationError) as error:
                summary.errors += 1
                LOGGER.error('%s frame %d ns skipped: %s', camera_topic, stamp, error)
                return
            if pipeline.last_camera_info_problem is not None:
                if not summary.camera_info_rejected:
                    LOGGER.warning('%s frame %d ns written without points/camera_info: %s',
                                   camera_topic, stamp, pipeline.last_camera_info_problem)
                summary.camera_info_rejected += 1
            for key, out_msg in out.items():
                writer.write(output_topic(key, prefix), out_msg, bag_ns)
            for stage, milliseconds in pipeline.last_timings.items():
                stage_times.setdefault(stage, []).append(milliseconds)
            summary.frames += 1

        with atomic_output(out_path, 'bag', 'infer-bag') as partial, \
                BagWriter(partial, storage=storage, distro=distro) as writer:
            for topic, bag_ns, msg in tqdm(reader.messages(read_topics), total=total,
                                           desc='infer-bag', unit='msg', disable=None
                                           if progress else True):
                if copy_input:
                    writer.write(topic, msg, bag_ns)
                    summary.copied_messages += 1
                if lidar and topic == lidar_topic:
                    scan_stamp = stamp_to_ns(msg.header.stamp)
                    scans.add(msg, scan_stamp)
                    while waiting and waiting[0][2] <= scan_stamp:
                        process(writer, *waiting.popleft())
                elif topic == camera_topic:
                    waiting.append((bag_ns, msg, stamp_to_ns(msg.header.stamp)))
                    if not lidar or len(waiting) > MAX_WAITING:
                        process(writer, *waiting.popleft())
            while waiting:
                process(writer, *waiting.popleft())
            if not summary.frames:   # an empty output bag would look like a finished run
                raise BagError(_no_frames_message(in_path, out_path, camera_topic, summary))
    summary.topics = sorted(output_topic(key, prefix) for key in outputs
                            if not (key in ('points', 'camera_info') and not has_info))
    summary.timings_ms = {stage: float(np.median(values))
                          for stage, values in stage_times.items()}
    return summary


def _no_frames_message(in_path, out_path, camera_topic: str,
                       summary: InferBagSummary) -> str:
    if summary.errors:
        return (f'none of the {summary.errors} image(s) on {camera_topic} in {in_path} could '
                f'be processed (see the log); no bag written to {out_path}')
    return f'bag {in_path} has no messages on {camera_topic}; no bag written to {out_path}'


LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)


def add_arguments(parser) -> None:
    from monodepth_ros.bagtools.options import add_bag_format_arguments
    from monodepth_ros.options import finite_float, positive_float, positive_int
    from monodepth_ros.runtime.infer import (
        add_framing_arguments,
        add_model_arguments,
        add_scale_arguments,
    )

    parser.add_argument('input', help='input bag (rosbag2 folder, .mcap/.db3, or ROS 1 .bag)')
    parser.add_argument('output', help='output rosbag2 folder (new or empty; a name ending in '
                        '.bag, .mcap or .db3 is refused: a rosbag2 is a folder)')
    add_model_arguments(parser)
    parser.add_argument('--camera-topic', default=topics.CAMERA_IMAGE_TOPIC,
                        type=topics.topic_name,
                        help=f'image topic (Image or CompressedImage; default '
                        f'{topics.CAMERA_IMAGE_TOPIC})')
    parser.add_argument('--camera-info-topic', default=None, type=topics.topic_name,
                        help='CameraInfo topic (default: IMAGE/camera_info, else the sibling '
                        'camera_info, of image_raw for image_raw/compressed)')
    parser.add_argument('--copy-input', action='store_true',
                        help='also copy every input topic into the output bag')
    add_bag_format_arguments(parser, 'the output bag')
    parser.add_argument('--prefix', default=topics.OUTPUT_PREFIX, type=topics.topic_name,
                        help=f'prefix of the output topics (default {topics.OUTPUT_PREFIX})')
    parser.add_argument('--output-resolution', choices=('network', 'camera'),
                        default='network', help='resolution of the outputs (default network)')
    parser.add_argument('--depth-upsampling', choices=('nearest', 'bilinear'),
                        default='nearest', help='depth resize at camera resolution')
    parser.add_argument('--cloud-stride', type=positive_int, default=1,
                        help='keep every n-th pixel in the cloud, >= 1 (default 1)')
    parser.add_argument('--cloud-max-range', type=positive_float, default=80.0,
                        help='points deeper than this (m, > 0) are NaN (default 80)')
    parser.add_argument('--confidence-threshold', type=finite_float(0.0, 1.0), default=0.0,
                        help='points with lower confidence (0..1) are NaN (default 0)')
    add_framing_arguments(parser)
    add_scale_arguments(parser, lidar=True)
    parser.add_argument('--lidar-topic', default=topics.LIDAR_TOPIC, type=topics.topic_name,
                        help='with --scale lidar (or auto, an affine model and a bag that has '
                        f'this topic): the PointCloud2 to fit to (default {topics.LIDAR_TOPIC}; '
                        "the bag's /tf_static connects it to the camera)")
    parser.add_argument('--lidar-tolerance', type=finite_float(0.0, 10.0),
                        default=LIDAR_TOLERANCE_S,
                        help='largest |image - scan| stamp difference in seconds '
                        f'(default {LIDAR_TOLERANCE_S:g})')
    parser.add_argument('--outputs', default=','.join(topics.OUTPUT_SUFFIXES),
                        help='comma-separated outputs to write (default: all of '
                        f'{",".join(topics.OUTPUT_SUFFIXES)})')


def run(args) -> int:
    from monodepth_ros.errors import ConfigError
    from monodepth_ros.io.outputs import check_output
    from monodepth_ros.runtime.infer import load_engine, scale_settings
    from monodepth_ros.runtime.pipeline import OUTPUTS, DepthPipeline, PipelineConfig

    outputs = {name.strip() for name in args.outputs.split(',') if name.strip()}
    unknown = outputs - set(OUTPUTS)
    if unknown or not outputs:
        raise ConfigError(f'--outputs {args.outputs!r}: expected a comma-separated subset of '
                          f'{",".join(OUTPUTS)}')
    check_output(args.output, 'bag', 'infer-bag')   # before a model load that may take long
    from monodepth_ros.io.bagio import BagReader

    with BagReader(args.input) as reader:   # 'auto' scales an affine model to a LiDAR if any
        has_lidar = args.lidar_topic in reader.topics
    config = PipelineConfig(output_resolution=args.output_resolution,
                            depth_upsampling=args.depth_upsampling,
                            cloud_stride=args.cloud_stride, cloud_max_range=args.cloud_max_range,
                            confidence_threshold=args.confidence_threshold,
                            framing=args.framing, framing_anchor=args.framing_anchor,
                            far_pass_focal=args.far_pass_focal,
                            ground_contact=args.ground_contact,
                            # --scale lidar on a bag without the topic: infer_bag says which
                            # topics it has
                            scale=scale_settings(args, lidar=has_lidar or args.scale == 'lidar'))
    engine = load_engine(args.model, args.backend, args.precision, args.engine_cache_dir,
                         args.model_card)
    pipeline = DepthPipeline(engine, config)
    pipeline.resolved_scale_mode()   # an affine model with no way to metres: one line, now
    summary = infer_bag(args.input, args.output, pipeline,
                        camera_topic=args.camera_topic,
                        camera_info_topic=args.camera_info_topic, copy_input=args.copy_input,
                        storage=args.storage, distro=args.distro, outputs=outputs,
                        prefix=args.prefix, progress=not args.no_progress,
                        lidar_topic=args.lidar_topic, lidar_tolerance_s=args.lidar_tolerance)
    print(format_summary(summary, engine))
    return 0


def format_summary(summary: InferBagSummary, engine) -> str:
    lines = [f'wrote {summary.out_path}: {summary.frames} frame(s) through {engine.name} '
             f'({engine.precision}), topics {", ".join(summary.topics)}']
    if summary.copied_messages:
        lines.append(f'  copied {summary.copied_messages} input message(s)')
    if summary.errors:
        lines.append(f'  {summary.errors} frame(s) skipped (see the log)')
    if summary.frames_without_camera_info:
        lines.append(f'  {summary.frames_without_camera_info} frame(s) without CameraInfo')
    if summary.frames_without_lidar:
        lines.append(f'  {summary.frames_without_lidar} frame(s) without a usable LiDAR scan '
                     '(scale held from earlier frames; see the log)')
    if summary.camera_info_rejected:
        lines.append(f'  {summary.camera_info_rejected} frame(s) whose CameraInfo did not fit '
                     'the image (no points/camera_info; see the log)')
    if summary.timings_ms:
        lines.append('  median ms per stage: ' + ', '.join(
            f'{stage} {value:.1f}' for stage, value in summary.timings_ms.items()))
    return '\n'.join(lines)
