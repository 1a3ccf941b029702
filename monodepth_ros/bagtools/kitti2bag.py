"""Convert a KITTI raw drive (``<date>/<date>_drive_<n>_sync``) to a rosbag2.

Topics (the conventional kitti2bag layout):
  /kitti/camera_color_left/image_raw + camera_info   rectified camera 2, rgb8
  /kitti/camera_gray_left|gray_right|color_right/... cameras 0, 1, 3 with --cameras
  /kitti/velo/pointcloud   x, y, z, intensity (float32), velodyne timestamps, frame velo_link
  /tf_static               base_link = imu_link -> velo_link -> camera frames (calibration)
  /tf                      world -> base_link from the oxts poses (first pose = origin)
  /kitti/oxts/gps/fix, /kitti/oxts/imu   NavSatFix and Imu from the oxts packets

Messages are stamped (header and bag time) with the KITTI timestamps of their sensor. The
calibration files are read from the folder above the drive unless --calib names another.

Frame numbers need not start at 0. KITTI's timestamps.txt is line-indexed: the data files of a
sensor are sorted by number and line i stamps the i-th file (a folder renumbered from 5 keeps
its timestamps file as is). Only when timestamps.txt has more lines than there are files (a
subset of a full drive's files) does line n stamp frame number n (``kitti.sensor_frames``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from monodepth_ros.bagtools.options import add_bag_format_arguments, resolved_storage
from monodepth_ros.errors import DatasetError
from monodepth_ros.io import topics
from monodepth_ros.io.geometry import matrix_to_quaternion
from monodepth_ros.io.kitti import (
    CAMERA_FOLDERS,
    KittiDrive,
    mercator_scale,
    oxts_pose,
    oxts_rotation,
    read_oxts,
    read_velodyne,
)

LOG = logging.getLogger(__name__)

# camera index -> (topic namespace, optical frame id, encoding)
CAMERAS = {
    0: ('/kitti/camera_gray_left', 'camera_gray_left', 'mono8'),
    1: ('/kitti/camera_gray_right', 'camera_gray_right', 'mono8'),
    2: (topics.CAMERA_IMAGE_TOPIC.rsplit('/', 1)[0], topics.CAMERA_FRAME, 'rgb8'),
    3: ('/kitti/camera_color_right', 'camera_color_right', 'rgb8'),
}


LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('drive_dir', type=Path,
                        help='KITTI raw drive folder, e.g. 2011_09_26/2011_09_26_drive_0009_sync')
    parser.add_argument('out', type=Path, help='output rosbag2 folder (new or empty)')
    parser.add_argument('--cameras', type=int, nargs='+', default=[2], choices=sorted(CAMERAS),
                        help='KITTI cameras to write (default: 2, the left colour camera)')
    add_bag_format_arguments(parser, 'the bag')
    parser.add_argument('--calib', type=Path, default=None,
                        help='folder with calib_*.txt (default: the folder above the drive)')


def _camera_tf(drive: KittiDrive, cam: int) -> np.ndarray:
    """T_velo_from_camera for camera ``cam`` (its rectified optical frame)."""
    return np.linalg.inv(drive.calibration.T_cam_from_velo(cam))


def static_transforms(drive: KittiDrive, cameras: list[int]) -> list[tuple[str, str, np.ndarray]]:
    """(parent, child, T_parent_child) of the static tree base -> imu -> velo -> cameras."""
    calibration = drive.calibration
    chain = [(topics.BASE_FRAME, topics.IMU_FRAME, np.eye(4)),
             (topics.IMU_FRAME, topics.LIDAR_FRAME, np.linalg.inv(calibration.T_velo_from_imu))]
    for cam in cameras:
        chain.append((topics.LIDAR_FRAME, CAMERAS[cam][1], _camera_tf(drive, cam)))
    return chain


def _read_image(path: Path, encoding: str) -> np.ndarray:
    import cv2

    flag = cv2.IMREAD_GRAYSCALE if encoding == 'mono8' else cv2.IMREAD_COLOR
    image = cv2.imread(str(path), flag)
    if image is None:
        raise DatasetError(f'cannot read image {path} (expected an 8-bit PNG)')
    if encoding == 'rgb8':
        image = np.ascontiguousarray(image[:, :, ::-1])
    return image


def _imu_message(types, header, packet: dict):
    x, y, z, w = matrix_to_quaternion(oxts_rotation(packet))
    # The oxts body frame is x forward, y left, z up (the imu_link axes).
    return types.Imu(
        header=header,
        orientation=types.Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)),
        orientation_covariance=types.float64_array(np.zeros(9), 9),
        angular_velocity=types.Vector3(x=packet['wf'], y=packet['wl'], z=packet['wu']),
        angular_velocity_covariance=types.float64_array(np.zeros(9), 9),
        linear_acceleration=types.Vector3(x=packet['af'], y=packet['al'], z=packet['au']),
        linear_acceleration_covariance=types.float64_array(np.zeros(9), 9))


def _navsat_message(types, header, packet: dict):
    # Status FIX (0) with the GPS service (1); covariance unknown (type 0).
    status = types.NavSatStatus(status=0, service=1)
    return types.NavSatFix(
        header=header, status=status, latitude=packet['lat'], longitude=packet['lon'],
        altitude=packet['alt'], position_covariance=types.float64_array(np.zeros(9), 9),
        position_covariance_type=0)


def convert(drive_dir, out, storage: str | None = None, cameras=(2,), distro: str = 'humble',
            calib_dir=None, progress: bool = True) -> dict[str, int]:
    """Write the drive to a rosbag2 at ``out``; returns message counts per topic.

    ``storage`` None: the distro's default (sqlite3 for humble, mcap for jazzy).
    """
    from tqdm import tqdm

    from monodepth_ros.io.bagio import BagWriter
    from monodepth_ros.io.messages import (
        array_to_image,
        make_header,
        make_pointcloud2,
        make_tf_message,
        model_to_camera_info,
    )
    from monodepth_ros.io.outputs import atomic_output

    drive = KittiDrive.open(drive_dir, calib_dir)
    cameras = sorted(set(cameras))
    # Events (stamp, order, kind, key, index) merged into one time-ordered stream.
    events = []
    camera_frames = {}
    for cam in cameras:
        if not drive.has(CAMERA_FOLDERS[cam]):
            folder = drive.drive_dir / CAMERA_FOLDERS[cam] / 'data'
            raise DatasetError(f'camera {cam} requested but {folder} does not exist')
        frames = camera_frames[cam] = drive.camera(cam)
        events += [(stamp, 0, 'camera', cam, i) for i, stamp in enumerate(frames.stamps_ns)]
    velodyne = drive.velodyne() if drive.has('velodyne_points') else None
    if velodyne is not None:
        events += [(stamp, 1, 'velo', 0, i) for i, stamp in enumerate(velodyne.stamps_ns)]
    else:
        LOG.warning('no velodyne_points in %s: no point clouds written', drive.drive_dir)
    oxts = drive.oxts() if drive.has('oxts') else None
    if oxts is not None:
        events += [(stamp, 2, 'oxts', 0, i) for i, stamp in enumerate(oxts.stamps_ns)]
    else:
        LOG.warning('no oxts in %s: no /tf, GPS or IMU written', drive.drive_dir)
    events.sort()
    first_stamp = events[0][0]

    counts: dict[str, int] = {}
    origin = None
    scale = None
    with atomic_output(out, 'bag', 'kitti2bag') as partial, \
            BagWriter(partial, storage=storage, distro=distro) as bag:
        types = bag.types

        def write(topic, msg, stamp):
            bag.write(topic, msg, stamp)
            counts[topic] = counts.get(topic, 0) + 1

        write(topics.TF_STATIC_TOPIC, make_tf_message(
            types, [(parent, child, T, first_stamp)
                    for parent, child, T in static_transforms(drive, cameras)]), first_stamp)
        camera_infos = {cam: drive.calibration.camera_model(cam) for cam in cameras}
        for stamp, _, kind, key, index in tqdm(events, desc='kitti2bag', unit='msg',
                                               disable=None if progress else True):
            if kind == 'camera':
                namespace, frame_id, encoding = CAMERAS[key]
                header = make_header(types, stamp, frame_id)
                image = _read_image(camera_frames[key].files[index], encoding)
                write(f'{namespace}/image_raw', array_to_image(types, image, encoding, header),
                      stamp)
                write(f'{namespace}/camera_info',
                      model_to_camera_info(types, camera_infos[key], header), stamp)
            elif kind == 'velo':
                scan = read_velodyne(velodyne.files[index])
                header = make_header(types, stamp, topics.LIDAR_FRAME)
                write(topics.LIDAR_TOPIC, make_pointcloud2(
                    types, header, scan[:, :3], fields={'intensity': scan[:, 3]}), stamp)
            else:
                packet = read_oxts(oxts.files[index])
                if origin is None:
                    scale = mercator_scale(packet['lat'])
                    origin = np.linalg.inv(oxts_pose(packet, scale))
                pose = origin @ oxts_pose(packet, scale)
                write(topics.TF_TOPIC, make_tf_message(
                    types, [(topics.WORLD_FRAME, topics.BASE_FRAME, pose, stamp)]), stamp)
                header = make_header(types, stamp, topics.IMU_FRAME)
                write(topics.GPS_FIX_TOPIC, _navsat_message(types, header, packet), stamp)
                write(topics.IMU_TOPIC, _imu_message(types, header, packet), stamp)
    return counts


def run(args) -> int:
    counts = convert(args.drive_dir, args.out, storage=args.storage, cameras=args.cameras,
                     distro=args.distro, calib_dir=args.calib, progress=not args.no_progress)
    print(f'wrote {args.out} ({resolved_storage(args.storage, args.distro)}, {args.distro}):')
    for topic, count in sorted(counts.items()):
        print(f'  {topic:<45} {count:>6} messages')
    return 0
