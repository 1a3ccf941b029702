"""Topic names and frame ids shared by kitti2bag, synth-bag, the launch file and the evaluator.

They follow the conventional kitti2bag layout so that existing RViz configs and scripts work.
"""

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
