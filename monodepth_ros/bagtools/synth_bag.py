"""Write a synthetic KITTI-like drive as a rosbag2, or as a dataset folder for training.

Bag mode (default) writes, all stamped with the frame's time (10 Hz):

  /kitti/camera_color_left/image_raw     sensor_msgs/Image rgb8        frame camera_color_left
  /kitti/camera_color_left/camera_info   sensor_msgs/CameraInfo        frame camera_color_left
  /kitti/velo/pointcloud                 sensor_msgs/PointCloud2       frame velo_link
        Velodyne driver fields: x, y, z, intensity (float32 at 0, 4, 8, 12), ring (uint16
        at 16), point_step 20
  /ground_truth/depth                    sensor_msgs/Image 32FC1, metres along the optical
                                         axis, NaN = sky               frame camera_color_left
  /ground_truth/semantics                sensor_msgs/Image mono8 Cityscapes trainIds
  /tf_static  base_link -> velo_link -> camera_color_left (once, at the first stamp)
  /tf         world -> base_link (the ego pose, every frame)

Dataset mode (--dataset) writes a folder instead; --storage and --distro choose the bag
format, so they do not apply (--storage is refused there):

  OUT/intrinsics.json       width, height, fx, fy, cx, cy, K (3x3), T_camera_from_lidar (4x4),
                            seed, frame_rate_hz, depth_format, depth_scale, class_names, frames
  OUT/rgb/NNNNNN.png        8-bit RGB
  OUT/depth/NNNNNN.png      16-bit, metres * 256 (KITTI depth convention), 0 = no depth (sky or
                            farther than 255.99 m); with --depth-format npy: depth/NNNNNN.npy
                            float32 metres, NaN = no depth
  OUT/semantics/NNNNNN.png  8-bit Cityscapes trainIds (255 = ignore)
  OUT/lidar/NNNNNN.npz      x, y, z, intensity (float32), ring (uint16), LiDAR frame
                            (only with --lidar)

NNNNNN is the frame index; read_dataset_frame() in this module reads one frame back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from monodepth_ros.bagtools.options import add_bag_format_arguments, resolved_storage
from monodepth_ros.errors import ConfigError, DatasetError
from monodepth_ros.io import topics
from monodepth_ros.model.semantics import CITYSCAPES_CLASSES
from monodepth_ros.options import non_negative_int, positive_int, seed_int

DEPTH_PNG_SCALE = 256.0
# The largest render: 4096x4096 pixels. Rendering holds about RENDER_BYTES_PER_PIXEL of
# intermediate arrays per pixel (measured: ~300 B at 1600x1200), so the limit keeps one frame
# near 7 GB; a bigger --size is refused before anything is rendered or written.
MAX_RENDER_PIXELS = 4096 * 4096
RENDER_BYTES_PER_PIXEL = 400
RENDER_BASE_BYTES = 200 * 2**20
# Bytes written per pixel and frame: rgb8 (3) + 32FC1 depth (4) + mono8 semantics (1); the LiDAR
# scan is at most 64 beams x 1800 steps x 20 bytes.
FRAME_BYTES_PER_PIXEL = 3 + 4 + 1
LIDAR_SCAN_BYTES = 64 * 1800 * 20


LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)


def add_arguments(parser) -> None:
    parser.add_argument('out', type=Path, help='bag directory (or dataset folder) to create')
    parser.add_argument('--frames', type=positive_int, default=100,
                        help='number of frames (10 Hz, >= 1; refused when the estimated output '
                        'does not fit the free disk)')
    parser.add_argument('--seed', type=seed_int, default=0,
                        help='world seed, 0..2^32-1 (same seed, same drive)')
    parser.add_argument('--start', type=non_negative_int, default=0,
                        help='index of the first frame (>= 0)')
    add_bag_format_arguments(parser, 'the bag')
    parser.add_argument('--size', default=None, metavar='WxH',
                        help='render size (intrinsics scaled); default 1242x375, at least 8x8 '
                        f'and at most {MAX_RENDER_PIXELS:,} pixels (4096x4096)')
    parser.add_argument('--dataset', action='store_true',
                        help='write a dataset folder of PNGs + intrinsics.json instead of a '
                        'bag (--storage and --distro do not apply)')
    parser.add_argument('--depth-format', choices=('png', 'npy'), default='png',
                        help='dataset depth files: 16-bit PNG (metres*256) or float32 .npy')
    parser.add_argument('--lidar', action='store_true',
                        help='dataset mode: also write the LiDAR scans (.npz)')


def run(args) -> int:
    size = None if args.size is None else _parse_size(args.size)
    if args.dataset:
        if args.storage is not None:
            raise ConfigError(f'--storage {args.storage} applies to bags only; drop it with '
                              '--dataset (which writes a folder of PNGs)')
        path = write_synthetic_dataset(args.out, args.frames, seed=args.seed, start=args.start,
                                       size=size, depth_format=args.depth_format,
                                       lidar=args.lidar, progress=not args.no_progress)
        print(f'wrote {args.frames} frames of seed {args.seed} to dataset folder {path}')
    else:
        path = write_synthetic_bag(args.out, args.frames, seed=args.seed, start=args.start,
                                   storage=args.storage, distro=args.distro, size=size,
                                   progress=not args.no_progress)
        print(f'wrote {args.frames} frames of seed {args.seed} to bag {path} '
              f'({resolved_storage(args.storage, args.distro)}, {args.distro})')
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise ConfigError(f'--size {text!r} is not WIDTHxHEIGHT (e.g. 416x128)') from None
    return width, height


def _available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes; None where the system does not say."""
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_render_budget(out, frames: int, width: int, height: int, lidar: bool) -> None:
    """Refuse, before anything is written, a size or frame count this machine cannot hold."""
    pixels = width * height
    if pixels > MAX_RENDER_PIXELS:
        raise ConfigError(f'--size {width}x{height} is {pixels:,} pixels; expected at most '
                          f'{MAX_RENDER_PIXELS:,} (4096x4096)')
    memory = RENDER_BASE_BYTES + RENDER_BYTES_PER_PIXEL * pixels
    available = _available_memory()
    if available is not None and memory > available:
        raise ConfigError(f'--size {width}x{height} needs about {memory / 2**30:.1f} GiB of '
                          f'memory to render; {available / 2**30:.1f} GiB is available')
    output = frames * (FRAME_BYTES_PER_PIXEL * pixels + (LIDAR_SCAN_BYTES if lidar else 0))
    folder = Path(out).absolute().parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if output > free:
        raise ConfigError(f'{frames} frame(s) of {width}x{height} need up to '
                          f'{output / 2**30:.1f} GiB; {folder} has {free / 2**30:.1f} GiB free')


def _make_drive(seed: int, frames: int, start: int, size, out, lidar: bool):
    from monodepth_ros.synthetic.world import DriveConfig, SyntheticDrive

    if frames < 1:
        raise ConfigError(f'--frames {frames} must be at least 1')
    if start < 0:
        raise ConfigError(f'--start {start} must be >= 0')
    config = DriveConfig() if size is None else DriveConfig(width=size[0], height=size[1])
    check_render_budget(out, frames, config.width, config.height, lidar)
    return SyntheticDrive(seed=seed, config=config)


def _progress(iterable, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(iterable, desc=description, unit='frame', disable=None if enabled else True)


def velodyne_pointcloud2(types, header, scan: dict):
    """A PointCloud2 with the Velodyne driver's fields: x, y, z, intensity, ring (uint16)."""
    from monodepth_ros.io.messages import make_pointcloud2

    xyz = np.stack([scan['x'], scan['y'], scan['z']], axis=-1)
    return make_pointcloud2(types, header, xyz,
                            fields={'intensity': scan['intensity'], 'ring': scan['ring']},
                            field_dtypes={'ring': np.uint16})


def write_synthetic_bag(out, frames: int, seed: int = 0, start: int = 0,
                        storage: str | None = None, distro: str = 'humble', size=None,
                        lidar: bool = True, progress: bool = True) -> Path:
    """Render ``frames`` frames of drive ``seed`` into a new rosbag2 at ``out``.

    ``storage`` None: the distro's default (sqlite3 for humble, mcap for jazzy).
    """
    from monodepth_ros.io.bagio import BagWriter
    from monodepth_ros.io.messages import (
        array_to_image,
        depth_to_image,
        make_header,
        make_tf_message,
        model_to_camera_info,
    )
    from monodepth_ros.io.outputs import atomic_output

    drive = _make_drive(seed, frames, start, size, out, lidar)
    out = Path(out)
    with atomic_output(out, 'bag', 'synth-bag') as partial, \
            BagWriter(partial, storage=storage, distro=distro) as bag:
        types = bag.types
        for index in _progress(range(start, start + frames), f'synth-bag seed {seed}',
                               progress):
            frame = drive.render(index, lidar=lidar)
            stamp = frame.stamp_ns
            if index == start:
                bag.write(topics.TF_STATIC_TOPIC, make_tf_message(types, [
                    (topics.BASE_FRAME, topics.LIDAR_FRAME, drive.T_base_from_lidar, stamp),
                    (topics.LIDAR_FRAME, topics.CAMERA_FRAME,
                     np.linalg.inv(drive.T_camera_from_lidar), stamp)]), stamp)
            bag.write(topics.TF_TOPIC, make_tf_message(types, [
                (topics.WORLD_FRAME, topics.BASE_FRAME, drive.T_world_from_base(index),
                 stamp)]), stamp)
            camera_header = make_header(types, stamp, topics.CAMERA_FRAME)
            bag.write(topics.CAMERA_INFO_TOPIC,
                      model_to_camera_info(types, frame.camera, camera_header), stamp)
            bag.write(topics.CAMERA_IMAGE_TOPIC,
                      array_to_image(types, frame.rgb, 'rgb8', camera_header), stamp)
            if frame.lidar is not None:
                bag.write(topics.LIDAR_TOPIC, velodyne_pointcloud2(
                    types, make_header(types, stamp, topics.LIDAR_FRAME), frame.lidar), stamp)
            bag.write(topics.GT_DEPTH_TOPIC,
                      depth_to_image(types, frame.depth, camera_header, '32FC1'), stamp)
            bag.write(topics.GT_SEMANTICS_TOPIC,
                      array_to_image(types, frame.semantics, 'mono8', camera_header), stamp)
    return out


def write_synthetic_dataset(out, frames: int, seed: int = 0, start: int = 0, size=None,
                            depth_format: str = 'png', lidar: bool = False,
                            progress: bool = True) -> Path:
    """Render ``frames`` frames of drive ``seed`` into a dataset folder (layout above)."""
    from monodepth_ros.io.outputs import atomic_output

    if depth_format not in ('png', 'npy'):
        raise ConfigError(f'depth format {depth_format!r} unknown, expected png or npy')
    drive = _make_drive(seed, frames, start, size, out, lidar)
    out = Path(out)
    with atomic_output(out, 'folder', 'synth-bag') as partial:
        _write_dataset_files(partial, drive, frames, seed, start, depth_format, lidar, progress)
    return out


def _write_dataset_files(out: Path, drive, frames: int, seed: int, start: int,
                         depth_format: str, lidar: bool, progress: bool) -> None:
    from monodepth_ros.io.outputs import write_image

    folders = ['rgb', 'depth', 'semantics'] + (['lidar'] if lidar else [])
    for name in folders:
        (out / name).mkdir(parents=True, exist_ok=True)
    camera = drive.camera
    info = {
        'width': camera.width, 'height': camera.height, 'fx': camera.fx, 'fy': camera.fy,
        'cx': camera.cx, 'cy': camera.cy, 'K': camera.projection.tolist(),
        'T_camera_from_lidar': drive.T_camera_from_lidar.tolist(), 'seed': seed,
        'frame_rate_hz': drive.frame_rate_hz, 'depth_format': depth_format,
        'depth_scale': DEPTH_PNG_SCALE if depth_format == 'png' else 1.0,
        'class_names': list(CITYSCAPES_CLASSES),
        'frames': list(range(start, start + frames)),
    }
    for index in _progress(range(start, start + frames), f'synth dataset seed {seed}',
                           progress):
        frame = drive.render(index, lidar=lidar)
        name = f'{index:06d}'
        write_image(out / 'rgb' / f'{name}.png', frame.rgb[:, :, ::-1])
        write_image(out / 'semantics' / f'{name}.png', frame.semantics)
        if depth_format == 'png':
            scaled = np.where(np.isfinite(frame.depth), np.rint(frame.depth * DEPTH_PNG_SCALE), 0)
            scaled[scaled > 65535] = 0          # farther than 255.99 m: no depth
            write_image(out / 'depth' / f'{name}.png', scaled.astype(np.uint16))
        else:
            np.save(out / 'depth' / f'{name}.npy', frame.depth)
        if lidar:
            np.savez(out / 'lidar' / f'{name}.npz', **frame.lidar)
    (out / 'intrinsics.json').write_text(json.dumps(info, indent=2))


def read_dataset_frame(folder, index: int) -> dict:
    """Read one frame of a dataset folder written by :func:`write_synthetic_dataset`.

    Returns a dict: rgb (HxWx3 uint8), depth (HxW float32 metres, NaN invalid), semantics
    (HxW uint8 trainIds), camera (CameraModel), T_camera_from_lidar, and lidar when written.
    """
    import cv2

    from monodepth_ros.io.camera import CameraModel

    folder = Path(folder)
    info_path = folder / 'intrinsics.json'
    if not info_path.is_file():
        raise DatasetError(f'{folder} has no intrinsics.json; is it a synth-bag --dataset folder?')
    info = json.loads(info_path.read_text())
    name = f'{int(index):06d}'
    rgb = cv2.imread(str(folder / 'rgb' / f'{name}.png'), cv2.IMREAD_COLOR)
    semantics = cv2.imread(str(folder / 'semantics' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
    if rgb is None or semantics is None:
        raise DatasetError(f'frame {name} is missing from {folder} (rgb/ or semantics/)')
    if info['depth_format'] == 'png':
        raw = cv2.imread(str(folder / 'depth' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f'depth/{name}.png is missing from {folder}')
        depth = np.where(raw > 0, raw / np.float32(info['depth_scale']), np.nan).astype(
            np.float32)
    else:
        path = folder / 'depth' / f'{name}.npy'
        if not path.is_file():
            raise DatasetError(f'depth/{name}.npy is missing from {folder}')
        depth = np.load(path)
    camera = CameraModel.from_intrinsics(info['fx'], info['fy'], info['cx'], info['cy'],
                                         info['width'], info['height'])
    frame = {'rgb': rgb[:, :, ::-1].copy(), 'depth': depth, 'semantics': semantics,
             'camera': camera, 'T_camera_from_lidar': np.asarray(info['T_camera_from_lidar'])}
    lidar_path = folder / 'lidar' / f'{name}.npz'
    if lidar_path.is_file():
        with np.load(lidar_path) as scan:
            frame['lidar'] = {key: scan[key] for key in scan.files}
    return frame
