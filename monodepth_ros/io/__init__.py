"""Message formats and files: camera model, geometry, messages, tf, bags, KITTI, topic names."""
