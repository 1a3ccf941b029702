"""Training data sources: synthetic world, KITTI raw (Eigen split), Cityscapes, rosbags.

Every source yields samples ``{'rgb': HxWx3 uint8, 'depth': HxW float32 metres (0 = unknown),
'semantics': HxW uint8 trainIds (255 = ignore)}``; a depth-only source fills semantics with
255, a semantics-only source fills depth with 0. Depth samples also carry ``focal``: the
camera's focal length in pixels of the sample as stored (scaled by every resize).
``SampleDataset`` turns samples into tensors (with augmentation) for the trainer, with depth
converted to the canonical camera (:func:`to_canonical_depth`).

Expected layouts (split files are given as paths):

- KITTI raw: ``root/<date>/<date>_drive_<nnnn>_sync/image_02/data/<frame>.png`` and
  ``velodyne_points/data/<frame>.bin``, calibration in ``root/<date>/calib_*.txt``. The split
  file has one ``<date>/<drive>_sync <frame> l|r`` line per sample, the format of
  monodepth2's ``splits/eigen_full/train_files.txt`` and ``splits/eigen/test_files.txt``
  (Eigen et al. 2014's scenes; 697 test frames); BTS's ``eigen_*_files_with_gt.txt`` lines
  (first field ``<date>/<drive>_sync/image_02/data/<frame>.png``) are read too. Ground truth:
  KITTI's annotated depth maps when ``gt_root`` is set (the official data_depth_annotated
  layout ``gt_root/{train,val}/<drive>_sync/proj_depth/groundtruth/image_02/<frame>.png``),
  otherwise the projected velodyne scan.
- Cityscapes: ``root/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` and
  ``root/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png`` (made by the official
  cityscapesScripts ``createTrainIdLabelImgs``). ``split`` is ``train`` or ``val``.
- rosbag: a camera topic, its camera_info, a PointCloud2 LiDAR topic and ``/tf_static`` with
  the camera-LiDAR transform; each image is paired with the nearest LiDAR scan in time.

Unreadable or corrupt samples are skipped and counted (``skipped``); the trainer reports the
count at the end of each epoch.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from monodepth_ros.errors import DatasetError, MonodepthError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.framing import plan_framing
from monodepth_ros.model.metadata import IMAGENET_MEAN, IMAGENET_STD
from monodepth_ros.model.semantics import IGNORE_LABEL
from monodepth_ros.synthetic.world import KITTI_CY, KITTI_FX, KITTI_HEIGHT, KITTI_WIDTH
from monodepth_ros.training.augment import augment_sample, frame_sample

LOG = logging.getLogger(__name__)


def make_sample(rgb, depth=None, semantics=None, focal=None) -> dict:
    """A sample dict; ``focal``: the camera's focal length in pixels of this image."""
    height, width = rgb.shape[:2]
    if depth is None:
        depth = np.zeros((height, width), np.float32)
    depth = np.nan_to_num(np.asarray(depth, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if semantics is None:
        semantics = np.full((height, width), IGNORE_LABEL, np.uint8)
    sample = {'rgb': np.ascontiguousarray(rgb, dtype=np.uint8), 'depth': depth,
              'semantics': np.asarray(semantics, np.uint8)}
    if focal is not None:
        sample['focal'] = float(focal)
    return sample


def to_canonical_depth(sample: dict, canonical_focal: float) -> dict:
    """Depth as the canonical camera (focal ``canonical_focal`` px) would see this image.

    The network sees the image's pixels; an object that looks f / canonical times larger
    than the canonical camera would show it must be predicted f / canonical times closer:
    depth x canonical / f (ModelMetadata.canonical_focal). A sample without ``focal`` or a
    ``canonical_focal`` of 0 is returned unchanged.
    """
    focal = sample.get('focal')
    if not focal or canonical_focal <= 0 or abs(focal - canonical_focal) < 1e-9:
        return sample
    return dict(sample, depth=sample['depth'] * np.float32(canonical_focal / focal),
                focal=float(canonical_focal))


def normalize_image(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (3,H,W) float32 with ImageNet mean/std (the ModelMetadata default)."""
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image - mean) / std


# ------------------------------------------------------------------------------- synthetic

def render_synthetic(source, height: int, width: int, with_depth: bool = True,
                     with_semantics: bool = True, render_scale: float = 1.0,
                     desc: str = 'render') -> list[dict]:
    """Render frames of the synthetic drives ``source.seeds`` into memory.

    Frames ``0, stride, 2 stride, ...`` (``frames_per_seed`` of them) of every seed, rendered
    directly at ``render_scale`` x the network size (the renderer scales the intrinsics).
    With ``source.camera_sweep`` every drive gets its own mounting and every frame its own
    camera (:func:`sweep_camera`), framed to that size as the pipeline frames camera images.
    """
    from monodepth_ros.synthetic.world import DriveConfig, SyntheticDrive

    if not source.seeds:
        raise DatasetError('synthetic source: no seeds given (data.<source>.seeds: [..])')
    size = (int(round(width * render_scale)), int(round(height * render_scale)))
    jobs = [(seed, i * source.frame_stride) for seed in source.seeds
            for i in range(source.frames_per_seed)]
    if source.max_samples:
        jobs = jobs[:source.max_samples]
    samples, drives = [], {}
    for seed, index in tqdm(jobs, desc=desc, disable=None, leave=False):
        if seed not in drives:
            mounting = sweep_mounting(int(seed)) if source.camera_sweep else {}
            drives[seed] = SyntheticDrive(seed=int(seed), config=DriveConfig(
                variety=source.world_variety, junctions=source.junctions,
                yaw_deg=drive_heading(int(seed), source.heading_deg), **mounting))
        drive = drives[seed]
        if source.camera_sweep:
            camera, valid = sweep_camera(np.random.default_rng([int(seed), index, 17]), size)
            frame = drive.render(index, lidar=False, camera=camera)
            # Padding (a camera wider than the network input): black, no depth, ignored.
            frame.rgb[~valid] = 0
            frame.depth[~valid] = 0.0
            frame.semantics[~valid] = IGNORE_LABEL
        else:
            frame = drive.render(index, lidar=False, size=size)
        samples.append(make_sample(frame.rgb, frame.depth if with_depth else None,
                                   frame.semantics if with_semantics else None,
                                   focal=frame.camera.fx))
    return samples


# The camera sweep: the cameras robots carry, brought to the network input by the run-time
# framing. Focal lengths at the network input relative to KITTI's there (a wide lens at 0.5,
# a telephoto at 2.5), log-uniform; image aspect ratios KITTI's, 16:9, 4:3 and 16:10; mounting
# heights and pitches per drive.
SWEEP_FOCAL_RANGE = (0.5, 2.5)
SWEEP_ASPECTS = (KITTI_WIDTH / KITTI_HEIGHT, 16 / 9, 4 / 3, 16 / 10)
SWEEP_HEIGHT_RANGE = (1.2, 2.0)     # metres above the ground
SWEEP_PITCH_DEG = 4.0               # +- degrees, positive = nose down
SWEEP_PRINCIPAL_JITTER = 0.03       # +- fraction of the image height, principal point row


def drive_heading(seed: int, heading_deg: float) -> float:
    """Heading (degrees) of a synthetic training drive against its road, from its seed."""
    if heading_deg <= 0.0:
        return 0.0
    return float(np.random.default_rng([seed, 29]).uniform(-heading_deg, heading_deg))


def sweep_mounting(seed: int) -> dict:
    """DriveConfig mounting of a drive in the camera sweep (height, pitch), from its seed."""
    rng = np.random.default_rng([seed, 23])
    return {'camera_height': float(rng.uniform(*SWEEP_HEIGHT_RANGE)),
            'pitch_deg': float(rng.uniform(-SWEEP_PITCH_DEG, SWEEP_PITCH_DEG))}


def sweep_camera(rng: np.random.Generator, size) -> tuple:
    """(camera at the network input, valid mask) of one random camera of the sweep.

    The random camera is as wide as the network input ``size`` (width, height) with a random
    aspect ratio and focal length; :func:`plan_framing` frames it to ``size`` with fit-width, as
    the pipeline frames a camera image with ``framing: fit-width`` (the default canonical-fit
    frames a long lens smaller and pads its sides; the packaged model was trained before it),
    and the framed camera is what the world renders through (the same pixels as rendering the
    whole image then cropping it).
    """
    width, height = int(size[0]), int(size[1])
    aspect = float(SWEEP_ASPECTS[int(rng.integers(len(SWEEP_ASPECTS)))])
    low, high = np.log(SWEEP_FOCAL_RANGE[0]), np.log(SWEEP_FOCAL_RANGE[1])
    focal = KITTI_FX * width / KITTI_WIDTH * float(np.exp(rng.uniform(low, high)))
    source_height = max(8, int(round(width / aspect)))
    cy = (KITTI_CY + 0.5) / KITTI_HEIGHT * source_height - 0.5 if aspect > 3 else (
        (source_height - 1) / 2.0)
    cy += float(rng.uniform(-SWEEP_PRINCIPAL_JITTER, SWEEP_PRINCIPAL_JITTER)) * source_height
    source = CameraModel.from_intrinsics(focal, focal, (width - 1) / 2.0, cy, width,
                                         source_height)
    framing = plan_framing(width, source_height, (width, height), source)
    return framing.camera(source), framing.valid_mask()


# ----------------------------------------------------------------------------------- KITTI

SPLIT_FORMATS = ('"<date>/<drive>_sync <frame> l|r" (monodepth2\'s splits/eigen_full/'
                 'train_files.txt, splits/eigen/test_files.txt) or "<date>/<drive>_sync/'
                 'image_02/data/<frame>.png ..." (BTS\'s eigen_*_files_with_gt.txt)')
_BTS_IMAGE = re.compile(r'^(?P<drive>.+)/image_0(?P<cam>[23])/data/(?P<frame>\d+)\.(png|jpg)$')


def read_split_file(path, root: Path = None) -> list[tuple[str, int, str]]:
    """(``<date>/<drive>_sync``, frame, 'l'|'r') per line of a KITTI split file.

    Two formats are read: monodepth2's ``<date>/<drive>_sync <frame> l|r`` and BTS's lines
    whose first field is the image path ``<date>/<drive>_sync/image_0X/data/<frame>.png``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f'split file {path} not found (expected lines {SPLIT_FORMATS})')
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        bts = _BTS_IMAGE.match(parts[0])
        if bts:
            side = 'l' if bts['cam'] == '2' else 'r'
            entries.append((bts['drive'], int(bts['frame']), side))
            continue
        if len(parts) < 2 or not parts[1].isdigit() or (len(parts) > 2
                                                          and parts[2] not in ('l', 'r')):
            raise DatasetError(f'{path}:{number}: expected {SPLIT_FORMATS}, got {line!r}')
        side = parts[2] if len(parts) > 2 else 'l'
        entries.append((parts[0], int(parts[1]), side))
    if not entries:
        raise DatasetError(f'split file {path} lists no samples')
    return entries


KITTI_CALIBRATION_FILES = ('calib_cam_to_cam.txt', 'calib_velo_to_cam.txt')


class KittiEigenSource:
    """KITTI raw frames listed in an Eigen split file.

    Ground truth: KITTI's annotated depth maps when ``gt_root`` is given (the official
    ``data_depth_annotated`` release: ``gt_root/{train,val}/<drive>_sync/proj_depth/
    groundtruth/image_0X/<frame>.png``, uint16 metres x 256), otherwise the velodyne scan
    projected into the image. Every drive of the split is checked when the source is made.
    """

    def __init__(self, root, split_file, gt_root=''):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f'KITTI root {self.root} not found (expected '
                               'root/<date>/<date>_drive_<nnnn>_sync/image_02/data/*.png, '
                               'velodyne_points/data/*.bin and root/<date>/calib_*.txt)')
        self.gt_root = Path(gt_root) if gt_root else None
        if self.gt_root is not None and not self.gt_root.is_dir():
            raise DatasetError(f'annotated depth folder {self.gt_root} not found (expected '
                               'gt_root/{train,val}/<drive>_sync/proj_depth/groundtruth/'
                               "image_02/*.png, KITTI's data_depth_annotated)")
        self.entries = read_split_file(split_file, self.root)
        self._gt_dirs = {}
        self._check_drives(split_file)
        self._calibrations = {}

    def _annotated_dir(self, drive: str, cam: int) -> Path | None:
        name = Path(drive).name
        for parent in (self.gt_root / 'train', self.gt_root / 'val', self.gt_root):
            folder = parent / name / 'proj_depth' / 'groundtruth' / f'image_0{cam}'
            if folder.is_dir():
                return folder
        return None

    def _check_drives(self, split_file) -> None:
        """One error naming every missing folder, instead of skipping samples later."""
        missing = []
        for drive, side in sorted({(d, s) for d, _, s in self.entries}):
            cam = 2 if side == 'l' else 3
            drive_dir = self.root / drive
            images = drive_dir / f'image_0{cam}' / 'data'
            if not images.is_dir():
                missing.append(str(images))
            if self.gt_root is not None:
                folder = self._annotated_dir(drive, cam)
                if folder is None:
                    missing.append(f'{self.gt_root}/{{train,val}}/{Path(drive).name}/'
                                   f'proj_depth/groundtruth/image_0{cam}')
                self._gt_dirs[(drive, cam)] = folder
            else:
                scans = drive_dir / 'velodyne_points' / 'data'
                if not scans.is_dir():
                    missing.append(str(scans))
                missing.extend(str(drive_dir.parent / name) for name in KITTI_CALIBRATION_FILES
                               if not (drive_dir.parent / name).is_file())
        if missing:
            missing = list(dict.fromkeys(missing))
            shown = ', '.join(missing[:5]) + (f' and {len(missing) - 5} more'
                                             if len(missing) > 5 else '')
            raise DatasetError(f'split {split_file}: {len(missing)} folder(s)/file(s) missing '
                               f'under {self.root}: {shown}')

    def __len__(self):
        return len(self.entries)

    def load(self, i: int) -> dict:
        from monodepth_ros.io.kitti import read_velodyne
        from monodepth_ros.runtime.projection import kitti_eigen_depth_image

        drive, frame, side = self.entries[i]
        cam = 2 if side == 'l' else 3
        drive_dir = self.root / drive
        image_path = drive_dir / f'image_0{cam}' / 'data' / f'{frame:010d}.png'
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f'cannot read image {image_path}')
        rgb = bgr[:, :, ::-1]
        if self.gt_root is not None:
            annotated = self._gt_dirs[(drive, cam)] / f'{frame:010d}.png'
            raw = cv2.imread(str(annotated), cv2.IMREAD_UNCHANGED)
            if raw is None:   # the release leaves out the first and last frames of a drive
                raise DatasetError(f'cannot read annotated depth {annotated}')
            depth = raw.astype(np.float32) / 256.0   # KITTI depth PNG: uint16, metres x 256
        else:
            calib = self._calibration(drive_dir.parent)
            if calib is None:
                raise DatasetError(f'KITTI calibration files missing in {drive_dir.parent}')
            points = read_velodyne(drive_dir / 'velodyne_points' / 'data' / f'{frame:010d}.bin')
            depth = kitti_eigen_depth_image(points, calib.velo_to_image_matrix(cam),
                                            rgb.shape[1], rgb.shape[0], depth='camera_z')
        # fx of the camera; unknown (None) without calibration files (annotated-depth setups).
        calib = self._calibration(drive_dir.parent)
        focal = float(calib.P_rect[cam][0, 0]) if calib is not None else None
        return make_sample(rgb, depth, None, focal=focal)

    def _calibration(self, date_dir: Path):
        """The date folder's calibration, read once; None when its files are absent."""
        from monodepth_ros.io.kitti import read_calibration

        if date_dir not in self._calibrations:
            if not all((date_dir / name).is_file() for name in KITTI_CALIBRATION_FILES):
                return None
            self._calibrations[date_dir] = read_calibration(date_dir)
        return self._calibrations[date_dir]


# ------------------------------------------------------------------------------ Cityscapes

class CityscapesSource:
    """Cityscapes leftImg8bit + gtFine labelTrainIds (semantics only)."""

    def __init__(self, root, split: str = 'train'):
        self.root = Path(root)
        images = self.root / 'leftImg8bit' / (split or 'train')
        labels = self.root / 'gtFine' / (split or 'train')
        layout = ('root/leftImg8bit/<split>/<city>/*_leftImg8bit.png and '
                  'root/gtFine/<split>/<city>/*_gtFine_labelTrainIds.png')
        if not images.is_dir() or not labels.is_dir():
            missing = images if not images.is_dir() else labels
            raise DatasetError(f'Cityscapes folder {missing} not found (expected {layout})')
        self.pairs = []
        for image in sorted(images.glob('*/*_leftImg8bit.png')):
            name = image.name.replace('_leftImg8bit.png', '_gtFine_labelTrainIds.png')
            self.pairs.append((image, labels / image.parent.name / name))
        if not self.pairs:
            raise DatasetError(f'no *_leftImg8bit.png images under {images} (expected {layout})')

    def __len__(self):
        return len(self.pairs)

    def load(self, i: int) -> dict:
        image_path, label_path = self.pairs[i]
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if bgr is None or labels is None:
            raise DatasetError(f'cannot read {image_path if bgr is None else label_path}')
        return make_sample(bgr[:, :, ::-1], None, labels.astype(np.uint8))


# --------------------------------------------------------------------------------- rosbag

def load_rosbag_samples(source, height: int, width: int) -> list[dict]:
    """Images of a bag paired with the nearest LiDAR scan; sparse depth by projection."""
    from monodepth_ros.io import topics
    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.messages import (
        camera_info_to_model,
        image_to_rgb,
        read_pointcloud2,
        stamp_to_ns,
    )
    from monodepth_ros.io.transforms import TransformBuffer
    from monodepth_ros.runtime.projection import lidar_depth_image

    path = Path(source.root)
    if not path.exists():
        raise DatasetError(f'rosbag {path} not found (expected a rosbag2 folder or file with '
                           f'{source.image_topic}, {source.camera_info_topic}, '
                           f'{source.lidar_topic} and /tf_static)')
    images, scans, camera, tf = [], [], None, TransformBuffer()
    with BagReader(path) as bag:
        wanted = [source.image_topic, source.camera_info_topic, source.lidar_topic]
        missing = [t for t in wanted if t not in bag.topics]
        if missing:
            raise DatasetError(f'rosbag {path} lacks topics {missing} (has {sorted(bag.topics)})')
        for topic, _stamp, msg in bag.messages(wanted + [topics.TF_STATIC_TOPIC]):
            if topic == topics.TF_STATIC_TOPIC:
                tf.add_message(msg, static=True)
            elif topic == source.camera_info_topic and camera is None:
                camera = camera_info_to_model(msg)
            elif topic == source.image_topic:
                images.append((stamp_to_ns(msg.header.stamp), msg))
            elif topic == source.lidar_topic:
                scans.append((stamp_to_ns(msg.header.stamp), msg.header.frame_id, msg))
    if camera is None or not images or not scans:
        raise DatasetError(f'rosbag {path}: needs camera_info, images and LiDAR scans')
    scan_stamps = np.array([s[0] for s in scans])
    samples = []
    for stamp, msg in images[:source.max_samples or None]:
        nearest = scans[int(np.argmin(np.abs(scan_stamps - stamp)))]
        T = tf.lookup(msg.header.frame_id, nearest[1])
        cloud = read_pointcloud2(nearest[2])
        points = np.stack([cloud['x'], cloud['y'], cloud['z']], axis=1)
        depth = lidar_depth_image(points[np.isfinite(points).all(axis=1)], T, camera)
        samples.append(frame_sample(make_sample(image_to_rgb(msg), depth, None,
                                                focal=camera.fx), height, width, camera))
    return samples


# ------------------------------------------------------------------------ torch datasets

class SampleDataset(torch.utils.data.Dataset):
    """Tensors for the trainer from in-memory samples or a lazy source (``.load(i)``).

    Item: ``image`` (3,H,W) normalised, ``depth`` (1,H,W) metres (0 unknown), ``semantics``
    (H,W) int64 (255 ignore). Lazy samples that fail to load are returned as None (the
    collate function drops them) and counted in ``skipped``.
    """

    def __init__(self, samples=None, source=None, height: int = 96, width: int = 320,
                 augment=None, seed: int = 0, load_size=None, canonical_focal: float = 0.0):
        self.samples = samples
        self.source = source
        self.height, self.width = height, width
        self.augment = augment
        self.seed = seed
        self.skipped = 0
        # Lazy sources are first resized to load_size (w, h) (then augmented/cropped).
        self.load_size = load_size
        # Depth targets refer to this focal length (network input pixels). Samples stored
        # larger than the network input (the crop margin) have a longer focal length there:
        # a crop of them shows objects larger, as if closer, and their depth shrinks to match.
        self.canonical_focal = float(canonical_focal)

    def __len__(self):
        return len(self.samples) if self.samples is not None else len(self.source)

    def __getitem__(self, index):
        # The sampler passes epoch * len + i: the epoch picks fresh augmentation without any
        # state that DataLoader workers or a resumed run could miss.
        epoch, i = divmod(int(index), len(self))
        if self.samples is not None:
            sample = self.samples[i]
        else:
            try:
                sample = self.source.load(i)
            except (MonodepthError, OSError, ValueError, cv2.error) as error:
                self.skipped += 1
                LOG.debug('skipping sample %d: %s', i, error)
                return None
            if self.load_size is not None:
                sample = frame_sample(sample, self.load_size[1], self.load_size[0])
        if 'focal' not in sample and self.canonical_focal > 0:
            # No calibration known: the source's camera is taken to be the canonical one at
            # the network size, so a sample stored larger has a proportionally longer focal.
            sample = dict(sample, focal=self.canonical_focal * sample['rgb'].shape[1]
                          / self.width)
        height, width = sample['rgb'].shape[:2]
        if self.augment is None or height < self.height or width < self.width:
            # Framed before the conversion, so the focal length is the one the network sees
            # (a crop keeps the focal length, a resize does not).
            sample = frame_sample(sample, self.height, self.width)
        sample = to_canonical_depth(sample, self.canonical_focal)
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, epoch, i))
            sample = augment_sample(sample, self.height, self.width, self.augment, rng)
        return {'image': normalize_image(sample['rgb']),
                'depth': torch.from_numpy(np.ascontiguousarray(sample['depth']))[None],
                'semantics': torch.from_numpy(sample['semantics'].astype(np.int64))}


def collate_skip_none(items):
    items = [item for item in items if item is not None]
    if not items:
        return None
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


# ------------------------------------------------------------------------- from a config

def _source_dataset(source, config, role: str, augment):
    """A SampleDataset for one configured source (``role``: 'depth' or 'semantic')."""
    data = config.data
    height, width = data.height, data.width
    with_depth, with_semantics = role == 'depth', role == 'semantic'
    canonical = canonical_focal(config)
    # Loaded a little larger than the network input so augmentation can crop; the larger
    # focal length of the enlarged samples is taken into account by to_canonical_depth.
    scale = 1.0 if augment is None or not augment.enabled else 1.0 + augment.crop_margin
    if source.kind == 'synthetic':
        samples = render_synthetic(source, height, width, with_depth, with_semantics,
                                   render_scale=scale, desc=f'render {role}')
        return SampleDataset(samples=samples, height=height, width=width, augment=augment,
                             seed=config.seed, canonical_focal=canonical)
    if source.kind == 'rosbag':
        samples = load_rosbag_samples(source, round(height * scale), round(width * scale))
        return SampleDataset(samples=samples, height=height, width=width, augment=augment,
                             seed=config.seed, canonical_focal=canonical)
    if source.kind == 'kitti':
        lazy = KittiEigenSource(source.root, source.split, source.gt_root)
    elif source.kind == 'cityscapes':
        lazy = CityscapesSource(source.root, source.split or 'train')
    else:
        raise DatasetError(f'unknown data source kind {source.kind!r}')
    load_size = (round(width * scale), round(height * scale))
    return SampleDataset(source=lazy, height=height, width=width, augment=augment,
                         seed=config.seed, load_size=load_size, canonical_focal=canonical)


def canonical_focal(config) -> float:
    """The canonical focal length (network input pixels) of a training config.

    ``data.canonical_focal`` when set, else KITTI's left colour camera (fx 721.5377 px at
    1242 px wide) scaled to the network width: the camera of the synthetic world and of
    KITTI, so models trained on either need no rescaling on that camera.
    """
    if config.data.canonical_focal > 0:
        return float(config.data.canonical_focal)
    return KITTI_FX * config.data.width / KITTI_WIDTH


def load_validation_samples(source, config, limit: int) -> list[dict]:
    """Validation samples at network size, without augmentation (depth-labelled)."""
    if not source.kind:
        return []
    dataset = _source_dataset(source, config, 'depth', None)
    count = min(len(dataset), limit) if limit else len(dataset)
    canonical = canonical_focal(config)
    if dataset.samples is not None:
        return [to_canonical_depth(frame_sample(s, config.data.height, config.data.width),
                                   canonical) for s in dataset.samples[:count]]
    samples = []
    for i in range(count):
        try:
            sample = dataset.source.load(i)
        except (MonodepthError, OSError, ValueError, cv2.error) as error:
            LOG.warning('validation sample %d skipped: %s', i, error)
            continue
        samples.append(to_canonical_depth(
            frame_sample(sample, config.data.height, config.data.width), canonical))
    return samples


def build_datasets(config) -> dict:
    """{'depth': SampleDataset, 'semantic': SampleDataset | None, 'val': [samples]}."""
    data = config.data
    augment = data.augment
    result = {'depth': _source_dataset(data.depth, config, 'depth', augment),
              'semantic': None, 'val': []}
    if data.semantic.kind:
        result['semantic'] = _source_dataset(data.semantic, config, 'semantic', augment)
    result['val'] = load_validation_samples(data.val, config, config.val_frames)
    return result
