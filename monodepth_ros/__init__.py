"""monodepth_ros: monocular metric depth estimation for ROS 2 (ROS-free core + thin node)."""

__version__ = '0.1.0'
