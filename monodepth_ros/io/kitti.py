"""Readers for the KITTI raw dataset layout (numpy only).

A drive lives in ``<date>/<date>_drive_<nnnn>_sync/`` with the day's calibration one level up:
``calib_cam_to_cam.txt``, ``calib_velo_to_cam.txt``, ``calib_imu_to_velo.txt``. Each sensor
folder (``image_0x``, ``velodyne_points``, ``oxts``) holds ``data/<index>.<ext>`` and a
``timestamps.txt`` with one line per frame, in the order of the sorted file names.

Frames (KITTI convention): cam0 is the reference camera; ``R_rect_00`` rotates cam0 into the
rectified frame shared by all cameras; ``P_rect_0x`` projects rectified-cam0 points into camera
x's rectified image, so its last column holds that camera's offset from cam0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from monodepth_ros.errors import CalibrationError, DatasetError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.geometry import make_transform

CAM_TO_CAM = 'calib_cam_to_cam.txt'
VELO_TO_CAM = 'calib_velo_to_cam.txt'
IMU_TO_VELO = 'calib_imu_to_velo.txt'

# Names of the 30 values of an oxts packet, in file order (oxts/dataformat.txt).
OXTS_FIELDS = ('lat', 'lon', 'alt', 'roll', 'pitch', 'yaw', 'vn', 've', 'vf', 'vl', 'vu',
               'ax', 'ay', 'az', 'af', 'al', 'au', 'wx', 'wy', 'wz', 'wf', 'wl', 'wu',
               'pos_accuracy', 'vel_accuracy', 'navstat', 'numsats', 'posmode', 'velmode',
               'orimode')

CAMERA_FOLDERS = {0: 'image_00', 1: 'image_01', 2: 'image_02', 3: 'image_03'}


def read_calib_file(path: Path) -> dict[str, np.ndarray]:
    """Parse a KITTI ``key: v1 v2 ...`` calibration file into float arrays (text keys skipped)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f'calibration file {path} not found')
    values = {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if ':' not in line:
            continue
        key, text = line.split(':', 1)
        try:
            values[key.strip()] = np.array([float(x) for x in text.split()], dtype=np.float64)
        except ValueError:
            # calib_time holds a date, not numbers; any other key must be numeric.
            if key.strip() != 'calib_time':
                raise CalibrationError(
                    f'{path}:{line_number}: key {key.strip()!r} is not a list of numbers'
                ) from None
    return values


def _take(values: dict, key: str, size: int, path: Path) -> np.ndarray:
    if key not in values:
        raise CalibrationError(f'{path} has no {key!r} entry (expected {size} numbers)')
    if values[key].size != size:
        raise CalibrationError(
            f'{path}: {key!r} has {values[key].size} numbers, expected {size}')
    return values[key]


@dataclass(frozen=True, eq=False)
class KittiCalibration:
    """Calibration of one KITTI recording day.

    P_rect[i] 3x4, S_rect[i] (width, height) for cameras 0-3; R_rect_00 3x3;
    T_cam0_from_velo and T_velo_from_imu 4x4 rigid transforms (unrectified cam0 frame).
    """

    P_rect: dict[int, np.ndarray]
    S_rect: dict[int, tuple[int, int]]
    R_rect_00: np.ndarray
    T_cam0_from_velo: np.ndarray
    T_velo_from_imu: np.ndarray

    @property
    def R_rect_00_4x4(self) -> np.ndarray:
        R = np.eye(4)
        R[:3, :3] = self.R_rect_00
        return R

    def _check_camera(self, cam: int) -> None:
        if cam not in self.P_rect:
            raise CalibrationError(
                f'camera {cam} is not in the calibration (cameras: {sorted(self.P_rect)})')

    def T_rect_cam_from_rect_cam0(self, cam: int) -> np.ndarray:
        """Translation from rectified cam0 to rectified camera ``cam``, read from P_rect."""
        self._check_camera(cam)
        P = self.P_rect[cam]
        fx, fy, cx, cy = P[0, 0], P[1, 1], P[0, 2], P[1, 2]
        tz = P[2, 3]
        # P[:, 3] = K @ t, K upper triangular without skew.
        t = np.array([(P[0, 3] - cx * tz) / fx, (P[1, 3] - cy * tz) / fy, tz])
        return make_transform(t=t)

    def T_cam_from_velo(self, cam: int = 2) -> np.ndarray:
        """Velodyne -> rectified camera ``cam`` optical frame (baseline offset included)."""
        return self.T_rect_cam_from_rect_cam0(cam) @ self.R_rect_00_4x4 @ self.T_cam0_from_velo

    @property
    def T_cam2_from_velo(self) -> np.ndarray:
        return self.T_cam_from_velo(2)

    def camera_model(self, cam: int = 2) -> CameraModel:
        """Rectified camera ``cam`` in its own optical frame: P = [K | 0], no distortion."""
        self._check_camera(cam)
        K = self.P_rect[cam][:, :3].copy()
        width, height = self.S_rect[cam]
        return CameraModel(width=width, height=height, K=K, P=np.hstack([K, np.zeros((3, 1))]),
                           D=np.zeros(5), R=np.eye(3))

    def velo_to_image_matrix(self, cam: int = 2) -> np.ndarray:
        """The 3x4 matrix P_rect_0x @ R_rect_00 @ [R|T]_velo_to_cam of the Eigen protocol."""
        self._check_camera(cam)
        return self.P_rect[cam] @ self.R_rect_00_4x4 @ self.T_cam0_from_velo


def read_calibration(date_dir: str | Path) -> KittiCalibration:
    """Read the three calibration files of a KITTI day folder (``.../2011_09_26``)."""
    date_dir = Path(date_dir)
    if not date_dir.is_dir():
        raise CalibrationError(f'KITTI calibration folder {date_dir} not found')
    cam_path = date_dir / CAM_TO_CAM
    cam = read_calib_file(cam_path)
    P_rect, S_rect = {}, {}
    for index in range(4):
        key = f'P_rect_0{index}'
        if key not in cam:
            continue
        P_rect[index] = _take(cam, key, 12, cam_path).reshape(3, 4)
        size = _take(cam, f'S_rect_0{index}', 2, cam_path)
        S_rect[index] = (int(round(size[0])), int(round(size[1])))
    if not P_rect:
        raise CalibrationError(f'{cam_path} has no P_rect_0x entries (expected 12 numbers each)')
    R_rect_00 = _take(cam, 'R_rect_00', 9, cam_path).reshape(3, 3)

    velo_path = date_dir / VELO_TO_CAM
    velo = read_calib_file(velo_path)
    T_cam0_from_velo = make_transform(_take(velo, 'R', 9, velo_path).reshape(3, 3),
                                      _take(velo, 'T', 3, velo_path))
    imu_path = date_dir / IMU_TO_VELO
    if imu_path.is_file():
        imu = read_calib_file(imu_path)
        T_velo_from_imu = make_transform(_take(imu, 'R', 9, imu_path).reshape(3, 3),
                                         _take(imu, 'T', 3, imu_path))
    else:
        raise CalibrationError(f'calibration file {imu_path} not found (R: 9 numbers, T: 3)')
    return KittiCalibration(P_rect=P_rect, S_rect=S_rect, R_rect_00=R_rect_00,
                            T_cam0_from_velo=T_cam0_from_velo, T_velo_from_imu=T_velo_from_imu)


# -- drive folders ----------------------------------------------------------------------------

_TIMESTAMP = re.compile(r'^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$')


def parse_timestamp(text: str) -> int:
    """KITTI ``YYYY-MM-DD hh:mm:ss.fffffffff`` (UTC) -> integer nanoseconds since the epoch."""
    match = _TIMESTAMP.match(text.strip())
    if not match:
        raise DatasetError(
            f'timestamp {text.strip()!r} is not in the form YYYY-MM-DD hh:mm:ss.fffffffff')
    year, month, day, hour, minute, second, fraction = match.groups()
    whole = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                     tzinfo=timezone.utc)
    # Integer arithmetic: nanosecond digits must not pass through a float.
    nanoseconds = int((fraction or '0').ljust(9, '0'))
    return int(whole.timestamp()) * 1_000_000_000 + nanoseconds


def read_timestamps(path: str | Path) -> list[int]:
    """The stamps of a ``timestamps.txt``; they must not go backwards (frames pair by time)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f'timestamp file {path} not found')
    stamps = []
    previous_line = 0
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            stamp = parse_timestamp(line)
        except DatasetError as error:
            raise DatasetError(f'{path}:{line_number}: {error}') from None
        if stamps and stamp < stamps[-1]:
            raise DatasetError(
                f'{path}:{line_number}: timestamp {line.strip()!r} is earlier than line '
                f'{previous_line}; expected timestamps that never go backwards')
        stamps.append(stamp)
        previous_line = line_number
    return stamps


def frame_index(path: Path) -> int:
    """Frame number from a file name like ``0000000042.png``."""
    try:
        return int(Path(path).stem)
    except ValueError:
        raise DatasetError(
            f'file name {Path(path).name!r} is not a frame number (expected e.g. 0000000042.png)'
        ) from None


@dataclass(frozen=True)
class SensorFrames:
    """Data files of one sensor folder with their frame indices and timestamps."""

    folder: Path
    indices: list[int]
    files: list[Path]
    stamps_ns: list[int]

    def __len__(self) -> int:
        return len(self.files)


def sensor_frames(folder: str | Path, extension: str) -> SensorFrames:
    """List ``folder/data/*.<extension>`` sorted by frame number, with ``timestamps.txt``.

    Line i of ``timestamps.txt`` belongs to the i-th file when both counts agree (an excerpt
    renumbered or not); when the file lists more lines, line n belongs to frame number n (a
    subset of a full drive's frames).
    """
    folder = Path(folder)
    data = folder / 'data'
    if not data.is_dir():
        raise DatasetError(f'{data} not found (expected {folder.name}/data/*.{extension})')
    files = sorted(data.glob(f'*.{extension}'), key=frame_index)
    if not files:
        raise DatasetError(f'{data} holds no *.{extension} files')
    stamps_path = folder / 'timestamps.txt'
    stamps = read_timestamps(stamps_path)
    indices = [frame_index(f) for f in files]
    if len(stamps) == len(files):
        lines = list(range(len(files)))
    elif len(stamps) > indices[-1]:
        lines = indices
    else:
        raise DatasetError(
            f'{stamps_path} has {len(stamps)} lines for {len(files)} files numbered '
            f'{indices[0]}..{indices[-1]} in {data} (expected one line per file, or one per '
            'frame number)')
    return SensorFrames(folder, indices, files, [stamps[line] for line in lines])


@dataclass(frozen=True)
class KittiDrive:
    """A KITTI raw ``*_sync`` drive folder and its day's calibration."""

    drive_dir: Path
    calibration: KittiCalibration

    @classmethod
    def open(cls, drive_dir: str | Path, calib_dir: str | Path | None = None) -> KittiDrive:
        drive_dir = Path(drive_dir)
        if not drive_dir.is_dir():
            raise DatasetError(f'KITTI drive folder {drive_dir} not found')
        calib_dir = Path(calib_dir) if calib_dir else drive_dir.parent
        return cls(drive_dir, read_calibration(calib_dir))

    def camera(self, cam: int = 2) -> SensorFrames:
        return sensor_frames(self.drive_dir / CAMERA_FOLDERS[cam], 'png')

    def velodyne(self) -> SensorFrames:
        return sensor_frames(self.drive_dir / 'velodyne_points', 'bin')

    def oxts(self) -> SensorFrames:
        return sensor_frames(self.drive_dir / 'oxts', 'txt')

    def has(self, folder: str) -> bool:
        return (self.drive_dir / folder / 'data').is_dir()


def read_velodyne(path: str | Path) -> np.ndarray:
    """Read a velodyne ``.bin`` scan: Nx4 float32 (x, y, z, reflectance)."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype='<f4')
    except OSError as error:
        raise DatasetError(f'cannot read velodyne scan {path}: {error}') from None
    if raw.size % 4:
        raise DatasetError(
            f'velodyne scan {path} has {raw.size * 4} bytes, not a multiple of 16 '
            '(expected float32 x, y, z, reflectance per point)')
    return raw.reshape(-1, 4)


def read_oxts(path: str | Path) -> dict[str, float]:
    """Read one oxts packet (30 numbers on one line) into a dict named by OXTS_FIELDS."""
    path = Path(path)
    try:
        values = [float(x) for x in path.read_text().split()]
    except (OSError, ValueError) as error:
        raise DatasetError(f'cannot read oxts packet {path}: {error}') from None
    if len(values) != len(OXTS_FIELDS):
        raise DatasetError(
            f'oxts packet {path} has {len(values)} values, expected {len(OXTS_FIELDS)} '
            '(see oxts/dataformat.txt)')
    return dict(zip(OXTS_FIELDS, values))


EARTH_RADIUS_M = 6378137.0


def mercator_scale(lat0_deg: float) -> float:
    return float(np.cos(np.radians(lat0_deg)))


def oxts_pose(packet: dict[str, float], scale: float) -> np.ndarray:
    """4x4 pose of the IMU in a Mercator map frame (x east, y north, z up), KITTI devkit way.

    scale = cos(latitude of the first packet). Rotation = Rz(yaw) Ry(pitch) Rx(roll).
    """
    lat, lon, alt = packet['lat'], packet['lon'], packet['alt']
    x = scale * EARTH_RADIUS_M * np.radians(lon)
    y = scale * EARTH_RADIUS_M * np.log(np.tan(np.radians(90.0 + lat) / 2.0))
    return make_transform(oxts_rotation(packet), [x, y, alt])


def oxts_rotation(packet: dict[str, float]) -> np.ndarray:
    """3x3 orientation of the oxts body (x forward, y left, z up): Rz(yaw) Ry(pitch) Rx(roll)."""
    roll, pitch, yaw = packet['roll'], packet['pitch'], packet['yaw']
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx
