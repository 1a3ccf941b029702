"""Cityscapes trainId convention used for every semantic output (19 classes, 255 = ignore)."""

import numpy as np

IGNORE_LABEL = 255

CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle',
)

# The official Cityscapes colours for the 19 trainIds (RGB).
CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

TRAIN_ID = {name: index for index, name in enumerate(CITYSCAPES_CLASSES)}


def colorize_labels(labels: np.ndarray, colors=CITYSCAPES_COLORS) -> np.ndarray:
    """Map an HxW trainId image to HxWx3 uint8 RGB; ignored/unknown labels become black."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colors)] = np.asarray(colors, dtype=np.uint8)
    return palette[np.asarray(labels, dtype=np.uint8)]
