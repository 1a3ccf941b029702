"""Adapt a depth model to your own robot: fine-tune it on a rosbag of your camera.

The camera frames of the bag are split in time: the first part trains, the last --holdout
fraction is held out and graded before and after, against the LiDAR, with the evaluator of
eval-bag (so the figures are those eval-bag would print). The training targets are the LiDAR
ground truth exactly as the evaluator builds it (camera-z depth through the bag's camera_info
and /tf_static, occluded points removed). Training is the regression phase (L1 + scale-
invariant log + bin cross-entropy) on the whole network, within a time budget, with a progress
bar. --mode self-supervised needs no LiDAR: it learns from consecutive frames, synthesising
each from its neighbours with the predicted depth and the camera motion from /tf (photometric
loss); the figures then need a LiDAR in the bag. The adapted checkpoint is written only when
training has finished (to a temporary file moved into place), so an interrupted run leaves no
model behind; a report OUT.json holds the before/after metrics.

Examples:
  monodepth adapt my_robot.bag --out adapted.pt                  (from the default model)
  monodepth adapt drive --model model.pt --out adapted.pt --minutes 10 --holdout 0.2
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import tempfile
from pathlib import Path

from monodepth_ros.io import topics
from monodepth_ros.options import finite_float, positive_float, positive_int, seed_int
from monodepth_ros.runtime.infer import add_framing_arguments

LOG = logging.getLogger(__name__)
REPORTED = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'delta1', 'delta2', 'delta3')
CROP_MARGIN = 0.05        # LiDAR mode: training images are loaded 5 % larger, then cropped
MODES = ('lidar', 'self-supervised')


LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bag', type=Path, help='rosbag2 folder (mcap or sqlite3) or ROS 1 .bag '
                        'with camera images, their camera_info, /tf_static and a PointCloud2 '
                        'LiDAR topic (--mode self-supervised: /tf instead of the LiDAR)')
    parser.add_argument('--model', '-m', type=Path, default=None,
                        help='.pt checkpoint to start from (default: the packaged default model)')
    parser.add_argument('--out', type=Path, required=True, help='adapted checkpoint (.pt)')
    parser.add_argument('--mode', choices=MODES, default='lidar',
                        help='lidar: LiDAR-supervised (default); self-supervised: photometric '
                             'loss between consecutive frames with the ego-motion from /tf '
                             '(for bags without LiDAR; graded only when the bag has one)')
    parser.add_argument('--holdout', type=finite_float(), default=0.5,
                        help='fraction of the frames, at the end of the bag, kept out of '
                             'training and graded before and after, in (0, 1) (default 0.5)')
    parser.add_argument('--minutes', type=positive_float, default=5.0,
                        help='training time budget in minutes, > 0 (default 5)')
    parser.add_argument('--steps', type=positive_int, default=400,
                        help='most training steps, >= 1 (400)')
    parser.add_argument('--lr', type=finite_float(0.0, 1.0, low_open=True), default=2e-4,
                        help='learning rate, in (0, 1] (2e-4)')
    parser.add_argument('--batch-size', type=positive_int, default=4,
                        help='batch size, >= 1 (4)')
    parser.add_argument('--threads', type=positive_int, default=None,
                        help='torch CPU threads, >= 1 (default: torch decides)')
    parser.add_argument('--camera-topic', default=topics.CAMERA_IMAGE_TOPIC,
                        type=topics.topic_name,
                        help=f'camera image topic (default {topics.CAMERA_IMAGE_TOPIC})')
    parser.add_argument('--camera-info-topic', default=None, type=topics.topic_name,
                        help='its camera_info (default: the sibling camera_info topic)')
    parser.add_argument('--lidar-topic', default=topics.LIDAR_TOPIC, type=topics.topic_name,
                        help=f'PointCloud2 LiDAR topic (default {topics.LIDAR_TOPIC})')
    parser.add_argument('--protocol', choices=('default', 'kitti-eigen'), default='default',
                        help='grading protocol of the before/after figures (training always '
                             'uses camera-z ground truth)')
    parser.add_argument('--calib', type=Path, default=None,
                        help='KITTI calibration folder for --protocol kitti-eigen')
    parser.add_argument('--seed', type=seed_int, default=0,
                        help='data order and augmentation seed (0..2^32-1)')
    add_framing_arguments(parser)


def run(args) -> int:
    report = adapt(args)
    print(format_report(report))
    print(f'adapted model: {args.out}  (report: {report_path(args.out)})')
    return 0


def report_path(out: Path) -> Path:
    return out.with_name(out.name + '.json')


def _check_arguments(args) -> Path:
    from monodepth_ros.errors import ConfigError
    from monodepth_ros.model.files import default_model_path

    model = args.model if args.model is not None else default_model_path()
    if model.suffix != '.pt':
        raise ConfigError(f'adapt needs a .pt checkpoint to fine-tune, got {model} (an ONNX '
                          'file or engine holds no trainable weights; adapt the .pt it was '
                          'exported from)')
    if args.out.suffix != '.pt':
        raise ConfigError(f'--out {args.out}: expected a .pt file name')
    if args.out.resolve() == model.resolve():
        raise ConfigError(f'--out {args.out} is the input model; choose another file')
    if not 0.0 < args.holdout < 1.0:
        raise ConfigError(f'--holdout {args.holdout}: expected a fraction between 0 and 1')
    if args.minutes <= 0 or args.steps < 1 or args.batch_size < 1 or args.lr <= 0:
        raise ConfigError('--minutes, --steps, --batch-size and --lr must be positive')
    return model


def _frame_split(args) -> tuple[int, int, bool]:
    """(training frames, frames in all, LiDAR present) of the bag; BagError if unusable."""
    from monodepth_ros.errors import BagError, DatasetError
    from monodepth_ros.io.bagio import BagReader, describe_topics

    if not Path(args.bag).exists():
        raise BagError(f'bag {args.bag} not found (expected a rosbag2 folder or file)')
    with BagReader(args.bag) as bag:
        available = bag.topics
        if args.camera_topic not in available:
            raise BagError(f'bag {args.bag} has no camera topic {args.camera_topic!r}; '
                           f'{describe_topics(available)} (use --camera-topic)')
        count = bag.message_counts[args.camera_topic]
        has_lidar = args.lidar_topic in available
    if not has_lidar and args.mode == 'lidar':
        raise BagError(f'bag {args.bag} has no LiDAR topic {args.lidar_topic!r} (LiDAR point '
                       f'clouds, the training targets); {describe_topics(available)} (use '
                       '--lidar-topic, or --mode self-supervised for a bag without LiDAR)')
    held_out = math.ceil(count * args.holdout)
    if count < 2 or held_out >= count:
        raise DatasetError(f'bag {args.bag} has {count} camera frame(s) on '
                           f'{args.camera_topic}; adapt needs at least 2 (training frames '
                           f'and {args.holdout:g} of them held out)')
    return count - held_out, count, has_lidar


def _evaluation_config(args, **kwargs):
    from monodepth_ros.evaluation.evaluator import EvaluationConfig

    return EvaluationConfig(camera_topic=args.camera_topic,
                            camera_info_topic=args.camera_info_topic,
                            lidar_topic=args.lidar_topic, qualitative_frames=0,
                            framing=args.framing, framing_anchor=args.framing_anchor,
                            far_pass_focal=args.far_pass_focal,
                            ground_contact=args.ground_contact,
                            progress=not args.no_progress, **kwargs)


def collect_training_samples(args, train_frames: int, payload: dict) -> list[dict]:
    """Images of the training frames with their LiDAR ground truth, resized to load size."""
    from monodepth_ros.errors import DatasetError, MonodepthError
    from monodepth_ros.evaluation.evaluator import BagEvaluator
    from monodepth_ros.runtime.pipeline import decode_image
    from monodepth_ros.training.augment import frame_sample
    from monodepth_ros.training.datasets import make_sample

    meta = payload['metadata']
    width = round(meta['input_width'] * (1 + CROP_MARGIN))
    height = round(meta['input_height'] * (1 + CROP_MARGIN))
    # Loaded CROP_MARGIN larger (the canonical focal length with them, so that every
    # framing keeps its scale): the random crop then keeps that scale.
    canonical_focal = float(meta.get('canonical_focal') or 0.0) * (1 + CROP_MARGIN)
    samples, problems = [], []

    def keep(frame, gt, camera):
        try:
            rgb = decode_image(frame.msg)
        except MonodepthError as error:
            problems.append(f'frame {frame.index}: {error}')
            return
        if rgb.shape[:2] != (camera.height, camera.width):
            problems.append(f'frame {frame.index}: image {rgb.shape[1]}x{rgb.shape[0]} but '
                            f'camera_info {camera.width}x{camera.height}')
            return
        if not (gt > 0).any():
            problems.append(f'frame {frame.index}: no LiDAR point lands in the image')
            return
        samples.append(frame_sample(make_sample(rgb, gt, None, focal=camera.fx),
                                    height, width, camera, args.framing, args.framing_anchor,
                                    canonical_focal))

    evaluator = BagEvaluator(_evaluation_config(args, last_frame=train_frames))
    collected = evaluator.ground_truth_frames(args.bag, keep)
    if collected.error is not None:
        raise collected.error
    if not samples:
        reasons = problems + [f'{n} x {reason}' for reason, n in collected.skipped.items()]
        raise DatasetError(f'bag {args.bag}: none of the {train_frames} training frames has '
                           f'usable LiDAR ground truth ({"; ".join(reasons[:3]) or "no frames"})')
    if problems or collected.skipped:
        LOG.warning('%d of %d training frames skipped: %s', train_frames - len(samples),
                    train_frames, '; '.join(problems[:3] + list(collected.skipped)[:3]))
    return samples


def grade(args, model_path: Path, first_frame: int, cache_dir: Path) -> dict:
    """eval-bag's metrics of ``model_path`` on the held-out frames (summary dict)."""
    from monodepth_ros.engines import choose_backend
    from monodepth_ros.evaluation.evaluator import BagEvaluator

    # The fastest backend but TensorRT, whose build would take minutes for a model graded
    # once; its ONNX export goes to the run's own folder, not the user's engine cache.
    backend, _ = choose_backend(model_path, tensorrt_failed='not used to grade a candidate')
    config = _evaluation_config(args, model=str(model_path), first_frame=first_frame,
                                protocol=args.protocol,
                                calib_dir=str(args.calib) if args.calib else None,
                                backend=backend, engine_cache_dir=str(cache_dir))
    result = BagEvaluator(config).evaluate(args.bag)
    if result.error is not None:
        raise result.error
    return result.summary()


def grade_if_possible(args, model_path: Path, first_frame: int, cache_dir: Path,
                      has_lidar: bool) -> dict | None:
    """grade(); in self-supervised mode a bag whose LiDAR cannot be graded gives None."""
    from monodepth_ros.errors import MonodepthError

    if not has_lidar:
        return None
    try:
        return grade(args, model_path, first_frame, cache_dir)
    except MonodepthError as error:
        if args.mode != 'self-supervised':
            raise
        LOG.warning('held-out frames not graded: %s', error)
        return None


def train_config(args, payload: dict, samples: list[dict]):
    """The fine-tuning TrainConfig: the model's network and input size, regression phase."""
    from monodepth_ros.model.metadata import ModelMetadata
    from monodepth_ros.training.config import config_from_dict

    metadata = ModelMetadata.from_dict(dict(payload['metadata']))
    # Camera-aware models keep their canonical focal length; older ones predict for the
    # training camera: targets stay as they are (canonical = the bag camera's own focal).
    canonical = metadata.canonical_focal or samples[0]['focal'] * (
        metadata.input_width / samples[0]['rgb'].shape[1])
    config = config_from_dict({
        'network': dict(payload['network'], pretrained=False),   # the checkpoint has weights
        'data': {'height': metadata.input_height, 'width': metadata.input_width,
                 'batch_size': min(args.batch_size, len(samples)),
                 'canonical_focal': float(canonical),
                 # Mild augmentation: the camera is the one the model will run on.
                 'augment': {'scale_min': 0.95, 'scale_max': 1.05, 'rotation_deg': 1.0,
                             'crop_margin': CROP_MARGIN, 'flip': True, 'color_jitter': 0.1}},
        'optim': {'lr': args.lr, 'warmup_steps': 10},
        'steps': args.steps, 'phase2_steps': args.steps, 'semantic_every': 0, 'val_every': 0,
        'checkpoint_every': 0, 'log_every': 10, 'max_minutes': args.minutes,
        'threads': args.threads or 0, 'seed': args.seed, 'description': metadata.description})
    return config, metadata



def adapt(args) -> dict:
    """Fine-tune and grade; returns the report (also written to OUT.json)."""
    from monodepth_ros.io.outputs import atomic_output, check_output
    from monodepth_ros.model.checkpoint import read_checkpoint

    model_path = _check_arguments(args)
    check_output(args.out, 'file', 'adapt')
    payload = read_checkpoint(model_path)
    train_frames, total, has_lidar = _frame_split(args)
    if args.mode == 'self-supervised':
        sequence = collect_sequence(args, train_frames, payload)
        used = len(sequence['images'])
    else:
        samples = collect_training_samples(args, train_frames, payload)
        used = len(samples)
    LOG.info('training on frames 0-%d (%d usable), grading on frames %d-%d of %s',
             train_frames - 1, used, train_frames, total - 1, args.bag)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix='.adapt-', dir=args.out.parent))
    try:
        before = grade_if_possible(args, model_path, train_frames, work / 'cache', has_lidar)
        if args.mode == 'self-supervised':
            candidate, steps, seconds = train_self_supervised(args, payload, model_path,
                                                              sequence, work)
        else:
            candidate, steps, seconds = train_lidar_supervised(args, payload, model_path,
                                                               samples, work)
        after = (grade_if_possible(args, candidate, train_frames, work / 'cache', has_lidar)
                 if before is not None else None)
        report = {'bag': str(args.bag), 'model': str(model_path), 'out': str(args.out),
                  'mode': args.mode, 'training_frames': [0, train_frames - 1],
                  'training_samples': used, 'held_out_frames': [train_frames, total - 1],
                  'steps': steps, 'minutes': round(seconds / 60.0, 2),
                  'protocol': args.protocol,
                  'before': _metrics(before) if before else None,
                  'after': _metrics(after) if after else None}
        # Moved into place only now: an interrupted run never leaves a model at --out.
        with atomic_output(args.out, 'file', 'adapt') as partial_model, \
                atomic_output(report_path(args.out), 'file', 'adapt') as partial_report:
            candidate.replace(partial_model)
            partial_report.write_text(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _describe(metadata, what: str) -> None:
    metadata.description = f'{metadata.description} {what}'.strip()


def train_lidar_supervised(args, payload, model_path, samples, work: Path):
    """The regression phase on LiDAR ground truth; (checkpoint in work, steps, seconds)."""
    from monodepth_ros.model.checkpoint import load_state_checked, save_checkpoint
    from monodepth_ros.training.datasets import SampleDataset
    from monodepth_ros.training.trainer import Trainer

    config, metadata = train_config(args, payload, samples)
    dataset = SampleDataset(samples=samples, height=config.data.height,
                            width=config.data.width, augment=config.data.augment,
                            seed=config.seed, canonical_focal=config.data.canonical_focal)
    trainer = Trainer(config, {'depth': dataset, 'semantic': None, 'val': []},
                      output_dir=work / 'run', show_progress=not args.no_progress)
    load_state_checked(trainer.module, payload['model'], f'checkpoint {model_path}')
    trainer.run()
    _describe(metadata, f'adapted on {Path(args.bag).name} ({len(samples)} frames, LiDAR, '
                        f'{trainer.step} steps)')
    candidate = save_checkpoint(work / 'adapted.pt', trainer.module.cpu(), config.network,
                                metadata)
    return candidate, trainer.step, trainer.elapsed_s

def _metrics(summary: dict) -> dict:
    cap = summary.get('cap_80') or {}
    return {'frames': summary['frames_evaluated'],
            **{name: round(float(cap[name]), 4) for name in REPORTED if name in cap}}


def format_report(report: dict) -> str:
    trained = (f'{report["mode"]}: trained {report["steps"]} steps in {report["minutes"]} min '
               f'on {report["training_samples"]} frames')
    if report['before'] is None:
        return f'{trained}; the bag has no LiDAR, so no before/after figures'
    lines = [f'{trained}; held-out frames {report["held_out_frames"][0]}-'
             f'{report["held_out_frames"][1]} ({report["protocol"]} protocol, cap 80 m)',
             f'{"":8}' + ''.join(f'{name:>10}' for name in REPORTED)]
    for key in ('before', 'after'):
        lines.append(f'{key:8}' + ''.join(f'{report[key].get(name, float("nan")):>10.4f}'
                                          for name in REPORTED))
    return '\n'.join(lines)


# -- self-supervised mode -----------------------------------------------------------------------
def collect_sequence(args, train_frames: int, payload: dict) -> dict:
    """Training frames at network size with the camera at that size and poses from /tf.

    Frames are decoded and shrunk as they are read (memory stays small for long bags); one
    that cannot be decoded is skipped. Returns {'images': [HxWx3 uint8], 'poses': [4x4
    T_root_camera], 'camera': CameraModel at network size}.
    """
    from monodepth_ros.errors import BagError, DatasetError, MonodepthError, TransformError
    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.framing import plan_framing
    from monodepth_ros.io.messages import camera_info_to_model, check_topic_type, stamp_to_ns
    from monodepth_ros.io.transforms import TransformBuffer
    from monodepth_ros.runtime.pipeline import decode_image
    from monodepth_ros.runtime.sync import match_stamp

    meta = payload['metadata']
    width, height = int(meta['input_width']), int(meta['input_height'])
    transforms = TransformBuffer()
    frames, infos, skipped = [], [], []   # frames: (stamp, frame_id, framing, small image)
    with BagReader(args.bag) as bag:
        available = bag.topics
        info_topic = (args.camera_info_topic
                      or topics.camera_info_topic_for(args.camera_topic, available))
        for topic, what in ((info_topic, 'camera_info of the images'),
                            (topics.TF_TOPIC, 'the ego-motion that self-supervised mode '
                                              'learns from')):
            if topic not in available:
                raise BagError(f'bag {args.bag} has no topic {topic!r} ({what}); its topics '
                               f'are: {", ".join(sorted(available))}')
        check_topic_type(info_topic, available[info_topic], 'CameraInfo', args.bag)
        wanted = [args.camera_topic, info_topic, topics.TF_TOPIC]
        if topics.TF_STATIC_TOPIC in available:
            wanted.append(topics.TF_STATIC_TOPIC)
        seen = 0
        waiting = []   # (stamp, frame_id, rgb) read before any CameraInfo

        def frame_waiting(latest):
            for stamp, frame_id, rgb in waiting:
                calibration = latest if latest is not None and latest.size == (
                    rgb.shape[1], rgb.shape[0]) else None
                framing = plan_framing(rgb.shape[1], rgb.shape[0], (width, height),
                                       calibration, args.framing, args.framing_anchor,
                                       float(meta.get('canonical_focal') or 0.0))
                frames.append((stamp, frame_id, framing, framing.apply(rgb)))
            waiting.clear()

        for topic, _, msg in bag.messages(wanted):
            if topic == args.camera_topic:
                seen += 1
                if seen > train_frames:
                    continue
                try:
                    rgb = decode_image(msg)
                except MonodepthError as error:
                    skipped.append(f'frame {seen - 1}: {error}')
                    continue
                # Framed as the pipeline frames it, with the calibration read so far; frames
                # before the first CameraInfo wait for it (the framing's scale can depend on
                # the focal length: one scale for every frame). Intrinsics follow below.
                waiting.append((stamp_to_ns(msg.header.stamp), str(msg.header.frame_id), rgb))
                if infos:
                    frame_waiting(camera_info_to_model(infos[-1][1]))
            elif topic == info_topic:
                infos.append((stamp_to_ns(msg.header.stamp), msg))
                frame_waiting(camera_info_to_model(msg))
            else:
                transforms.add_message(msg, static=topic == topics.TF_STATIC_TOPIC)
    frame_waiting(None)   # no CameraInfo at all: reported below
    if skipped:
        LOG.warning('%d training frame(s) skipped: %s', len(skipped), '; '.join(skipped[:3]))
    if len(frames) < 3:
        raise DatasetError(f'self-supervised mode needs at least 3 consecutive training frames '
                           f'(a frame and its two neighbours); {args.bag} gives {len(frames)}')
    infos.sort(key=lambda item: item[0])
    info_stamps = [stamp for stamp, _ in infos]
    images, poses, camera = [], [], None
    for stamp, frame_id, framing, image in frames:
        size = framing.source_size
        index = match_stamp(info_stamps, stamp, 0, use_latest=True)
        if index is None:
            raise DatasetError(f'bag {args.bag}: no CameraInfo on {info_topic}')
        info = infos[index][1]
        full = camera_info_to_model(info)
        if (full.width, full.height) != size:
            raise DatasetError(f'bag {args.bag}: image {size[0]}x{size[1]} but camera_info '
                               f'{full.width}x{full.height}')
        frame_id = frame_id or str(info.header.frame_id)
        root, moving = transforms.root_of(frame_id)
        if not moving:
            raise TransformError(f'bag {args.bag}: no transform on /tf moves camera frame '
                                 f'{frame_id!r} (its tree ends at {root!r}); self-supervised '
                                 'mode needs the ego-motion')
        poses.append(transforms.lookup(root, frame_id, stamp))
        images.append(image)
        camera = framing.camera(full)
    return {'images': images, 'poses': poses, 'camera': camera}


def train_self_supervised(args, payload, model_path, sequence: dict, work: Path):
    """Photometric fine-tuning (training/photometric.py); (checkpoint, steps, seconds)."""
    import time

    import numpy as np
    import torch
    from tqdm import tqdm

    from monodepth_ros.model.checkpoint import load_model, save_checkpoint
    from monodepth_ros.model.network import NetworkConfig
    from monodepth_ros.training.datasets import normalize_image
    from monodepth_ros.training.photometric import view_synthesis_loss

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, metadata = load_model(model_path)
    model.train()
    for module in model.modules():   # a few frames per batch: keep the BatchNorm statistics
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    camera = sequence['camera']
    scale = metadata.depth_scale(camera)
    K = torch.tensor(camera.K, dtype=torch.float32)
    images = torch.stack([torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
                          for rgb in sequence['images']]).float() / 255.0
    inputs = torch.stack([normalize_image(rgb) for rgb in sequence['images']])
    poses = [np.asarray(T) for T in sequence['poses']]

    def motion(source: int, target: int) -> torch.Tensor:
        return torch.tensor(np.linalg.inv(poses[source]) @ poses[target], dtype=torch.float32)

    targets = list(range(1, len(poses) - 1))
    batch = min(args.batch_size, len(targets))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    started, steps = time.monotonic(), 0
    bar = tqdm(total=args.steps, desc='adapt (self-supervised)',
               disable=True if args.no_progress else None)
    try:
        while steps < args.steps and time.monotonic() - started < 60.0 * args.minutes:
            chosen = rng.choice(targets, size=batch, replace=False)
            depth = model(inputs[chosen], heads=('depth',))['depth'] * scale
            terms = view_synthesis_loss(
                images[chosen], [images[chosen - 1], images[chosen + 1]], depth,
                K.expand(batch, 3, 3),
                [torch.stack([motion(t - 1, t) for t in chosen]),
                 torch.stack([motion(t + 1, t) for t in chosen])])
            optimizer.zero_grad(set_to_none=True)
            terms['total'].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            steps += 1
            bar.update(1)
            bar.set_postfix(loss=f'{terms["total"].item():.4f}',
                            kept=f'{terms["kept_fraction"].item():.2f}')
    finally:
        bar.close()
    network = NetworkConfig.from_dict(dict(payload['network'], pretrained=False))
    _describe(metadata, f'adapted on {Path(args.bag).name} ({len(poses)} frames, '
                        f'self-supervised, {steps} steps)')
    candidate = save_checkpoint(work / 'adapted.pt', model.eval(), network, metadata)
    return candidate, steps, time.monotonic() - started
