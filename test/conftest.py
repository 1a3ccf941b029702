"""Shared test fixtures: where the real KITTI excerpt lives."""

import os
from pathlib import Path

import pytest

from monodepth_ros.engines.base import DepthEngine

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('MONODEPTH_SHARED_DATA', REPO_ROOT.parent / 'shared' / 'data'))
KITTI_RAW = SHARED_DATA / 'kitti_raw'
KITTI_DATE_DIR = KITTI_RAW / '2011_09_26'
KITTI_DRIVE_DIR = KITTI_DATE_DIR / '2011_09_26_drive_0009_sync'
EIGEN_REFERENCE = KITTI_RAW / 'eigen_gt_2011_09_26_drive_0009_frame0.npz'


@pytest.fixture(scope='session')
def kitti_drive_dir() -> Path:
    if not KITTI_DRIVE_DIR.is_dir():
        pytest.skip(f'KITTI excerpt not found at {KITTI_DRIVE_DIR} '
                    '(set MONODEPTH_SHARED_DATA to the folder holding kitti_raw/)')
    return KITTI_DRIVE_DIR


@pytest.fixture(scope='session')
def kitti_frame(kitti_drive_dir):
    """The first KITTI frame of the excerpt (1242x375 RGB) and its rectified camera."""
    import cv2

    from monodepth_ros.io.kitti import read_calibration

    bgr = cv2.imread(str(kitti_drive_dir / 'image_02' / 'data' / '0000000000.png'))
    camera = read_calibration(kitti_drive_dir.parent).camera_model(2)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), camera


class ConstantEngine(DepthEngine):
    """Stand-in engine (no network): the same depth everywhere, its calls counted.

    Both passes of a far pass are counted (the base class runs them one after the other).
    """

    def __init__(self, metadata, depth: float = 10.0):
        super().__init__('constant', 'fp32', metadata)
        self.depth = depth
        self.calls = 0

    def infer(self, batch):
        import numpy as np

        from monodepth_ros.engines.base import EngineOutput

        self.calls += 1
        h, w = batch.shape[2:]
        return EngineOutput(depth=np.full((h, w), self.depth, np.float32),
                            semantics=np.zeros((h, w), np.uint8),
                            confidence=np.ones((h, w), np.float32))


# The tiny network the pipeline, node, infer and evaluator tests run: the real architecture
# with random weights and a 128x64 input, exported to ONNX once per test run.
TINY_NET_WIDTH, TINY_NET_HEIGHT = 128, 64


def camera_frames_by_stamp(bag):
    """A bag's camera image, CameraInfo and LiDAR messages by stamp, and its /tf_static.

    Returns ({stamp_ns: {topic: message}}, TransformBuffer): what tests rebuild the
    evaluator's figures from, frame by frame.
    """
    from monodepth_ros.io import topics
    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.messages import stamp_to_ns
    from monodepth_ros.io.transforms import TransformBuffer

    frames, transforms = {}, TransformBuffer()
    with BagReader(bag) as reader:
        for topic, _, msg in reader.messages([topics.TF_STATIC_TOPIC, topics.CAMERA_IMAGE_TOPIC,
                                              topics.CAMERA_INFO_TOPIC, topics.LIDAR_TOPIC]):
            if topic == topics.TF_STATIC_TOPIC:
                transforms.add_message(msg, static=True)
            else:
                frames.setdefault(stamp_to_ns(msg.header.stamp), {})[topic] = msg
    return frames, transforms


def make_tiny_onnx(path, canonical_focal: float = 0.0) -> Path:
    """Export a small randomly initialised network (the real architecture) to ``path``.

    ``canonical_focal`` > 0 makes it camera-aware (its depth scales with the focal length).
    """
    import torch

    from monodepth_ros.model.export import export_model
    from monodepth_ros.model.metadata import ModelMetadata
    from monodepth_ros.model.network import NetworkConfig, build_network

    torch.manual_seed(0)
    config = NetworkConfig(encoder='tiny', num_bins=16, aspp_channels=8, aspp_dilations=(1, 2),
                           decoder_channels=(8, 8, 8, 8, 8), tiny_channels=(8, 8, 8, 8, 8))
    metadata = ModelMetadata(input_height=TINY_NET_HEIGHT, input_width=TINY_NET_WIDTH,
                             num_bins=16, canonical_focal=canonical_focal,
                             network=config.to_dict())
    export_model(build_network(config), metadata, path, verify=False)
    return Path(path)


@pytest.fixture(scope='session')
def tiny_onnx(tmp_path_factory) -> Path:
    """Path of the tiny ONNX model, shared read-only by every test that runs a model."""
    return make_tiny_onnx(tmp_path_factory.mktemp('tiny_model') / 'tiny.onnx')


# Checkpoints for the engine, export and TensorRT tests. The small configuration keeps CPU
# exports fast; tests that need the architecture at its real width pass
# ``NetworkConfig(encoder='tiny')`` (80 bins, 64 ASPP channels).
CHECKPOINT_HEIGHT, CHECKPOINT_WIDTH = 64, 160   # multiples of the network stride 32


def small_network_config():
    """The real 'tiny' architecture, narrow: 16 bins, 8 channels everywhere."""
    from monodepth_ros.model.network import NetworkConfig

    return NetworkConfig(encoder='tiny', num_bins=16, aspp_channels=8, aspp_dilations=(1, 2),
                         decoder_channels=(8, 8, 8, 8, 8), tiny_channels=(8, 8, 8, 8, 8))


def save_tiny_checkpoint(path, height: int = CHECKPOINT_HEIGHT, width: int = CHECKPOINT_WIDTH,
                         seed: int = 0, config=None) -> Path:
    """Save a checkpoint of the 'tiny' network (random weights, fixed seed) at ``path``.

    ``config`` defaults to ``small_network_config()``.
    """
    import torch

    from monodepth_ros.model.checkpoint import save_checkpoint
    from monodepth_ros.model.metadata import ModelMetadata
    from monodepth_ros.model.network import build_network

    config = config or small_network_config()
    torch.manual_seed(seed)
    network = build_network(config).eval()
    metadata = ModelMetadata(input_height=height, input_width=width, depth_min=config.depth_min,
                             depth_max=config.depth_max, num_bins=config.num_bins,
                             network=config.to_dict())
    save_checkpoint(path, network, config, metadata)
    return Path(path)


@pytest.fixture(scope='session')
def kitti_bag(kitti_drive_dir, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The KITTI excerpt converted once by kitti2bag (mcap): (bag path, messages per topic).

    Shared read-only by the kitti2bag and evaluator tests.
    """
    from monodepth_ros.bagtools.kitti2bag import convert

    out = tmp_path_factory.mktemp('kitti') / 'drive_0009'
    counts = convert(kitti_drive_dir, out, storage='mcap', progress=False)
    return out, counts


def pytest_collection_modifyitems(config, items):
    """test_launch.py runs under launch_testing's runner (test/run_launch_test.py).

    Its pytest plugin does not load on pytest >= 8, and without it the launch test's cases
    cannot run, so under pytest they are skipped with the way to run them.
    """
    if config.pluginmanager.has_plugin('launch_testing'):
        return
    skip = pytest.mark.skip(reason='the launch test runs under launch_testing: `python '
                            'test/run_launch_test.py` (make test runs it)')
    for item in items:
        if item.nodeid.split('::')[0].endswith('test_launch.py'):
            item.add_marker(skip)
