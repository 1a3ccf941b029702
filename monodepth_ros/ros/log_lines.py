"""Log lines of the depth node that launch files and scripts match: plain strings, no imports.

``kitti.launch.py`` imports this module in the ``ros2 launch`` process, which may run another
Python than the node (without numpy or OpenCV), so it must stay import-free.
"""

# Start of the INFO line the node logs each time a model is loaded and it processes frames from
# then on; kitti.launch.py starts the bag playback on it. Keep it stable.
MODEL_LOADED_LINE = 'model loaded:'

# Appended to that line for the packaged default model (figures: monodepth_ros/models/README.md).
DEFAULT_MODEL_CAVEAT = (
    'packaged default model: its semantics were learnt from the synthetic world only '
    '(pixel accuracy 0.80 on the synthetic hold-out); on real roads it labels facades and '
    'pavement as car (per-class figures: monodepth_ros/models/README.md)')
