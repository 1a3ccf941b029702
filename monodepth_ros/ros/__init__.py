"""The ROS 2 front door: the rclpy node (node.py), its ROS-free core, parameters, diagnostics."""
