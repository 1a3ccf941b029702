"""Topic names and frame ids shared by kitti2bag, synth-bag, the launch file and the evaluator.

They follow the conventional kitti2bag layout so that existing RViz configs and scripts work.
"""

import re

from monodepth_ros.errors import ConfigError
from monodepth_ros.options import checked_by

# A fully qualified ROS 2 topic name, as bags store them: '/' then tokens of letters, digits and
# underscores, none starting with a digit, no empty token ('//'), no trailing '/'.
_TOPIC_TOKEN = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')

CAMERA_IMAGE_TOPIC = '/kitti/camera_color_left/image_raw'
CAMERA_INFO_TOPIC = '/kitti/camera_color_left/camera_info'
LIDAR_TOPIC = '/kitti/velo/pointcloud'
TF_STATIC_TOPIC = '/tf_static'
TF_TOPIC = '/tf'
IMU_TOPIC = '/kitti/oxts/imu'
GPS_FIX_TOPIC = '/kitti/oxts/gps/fix'
# Ground truth written by synth-bag (dense, exact).
GT_DEPTH_TOPIC = '/ground_truth/depth'
GT_SEMANTICS_TOPIC = '/ground_truth/semantics'

CAMERA_FRAME = 'camera_color_left'      # optical frame: z forward, x right, y down
LIDAR_FRAME = 'velo_link'
BASE_FRAME = 'base_link'
IMU_FRAME = 'imu_link'
WORLD_FRAME = 'world'

# Outputs of the depth pipeline when written to a bag by infer-bag (node: ~/output/...).
OUTPUT_PREFIX = '/monodepth'
OUTPUT_SUFFIXES = {
    'depth': '/depth',
    'camera_info': '/depth/camera_info',
    'points': '/points',
    'semantics': '/semantics',
    'semantics_color': '/semantics/color',
    'confidence': '/confidence',
}


def validate_topic_name(name: str) -> str:
    """``name`` if it is a fully qualified ROS 2 topic name, else a one-line ConfigError."""
    rule = ("expected a ROS 2 topic name like '/camera/image_raw': '/' then tokens of letters, "
            "digits and '_' separated by '/', no token starting with a digit")
    if not name.startswith('/') or name == '/':
        raise ConfigError(f'topic name {name!r} is not fully qualified; {rule}')
    for token in name[1:].split('/'):
        if not _TOPIC_TOKEN.fullmatch(token):
            raise ConfigError(f'topic name {name!r} has an invalid token {token!r}; {rule}')
    return name


# The argparse type of every topic option.
topic_name = checked_by(validate_topic_name, 'topic_name')


# image_transport publishes a compressed image at IMAGE/<transport>; its camera_info is IMAGE's.
IMAGE_TRANSPORTS = ('compressed', 'compressedDepth', 'theora', 'zstd')


def sibling_camera_info_topic(image_topic: str) -> str:
    """``/cam/image_raw`` and ``/cam/image_raw/compressed`` -> ``/cam/camera_info``."""
    parent, _, last = image_topic.rpartition('/')
    if last in IMAGE_TRANSPORTS and parent:
        parent = parent.rpartition('/')[0]
    return f'{parent}/camera_info'


def camera_info_topic_for(image_topic: str, available) -> str:
    """The camera_info topic of an image topic (the first candidate in ``available``).

    Candidates: IMAGE/camera_info, the sibling camera_info (of the uncompressed topic for an
    image_transport topic like ``/cam/image_raw/compressed``), then the KITTI camera's; the
    first candidate when none is present.
    """
    candidates = [f'{image_topic}/camera_info', sibling_camera_info_topic(image_topic),
                  CAMERA_INFO_TOPIC]
    return next((c for c in candidates if c in available), candidates[0])
