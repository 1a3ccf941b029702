"""The synthetic camera sweep: the same scenes through several cameras, exact ground truth.

A depth model that holds on any camera gives the same error on each (the pipeline frames
every image to the network input, :mod:`monodepth_ros.io.framing`, and a camera-aware model
rescales by the focal length). ``benchmarks/bench_cameras.py`` prints the table and
``test/test_any_camera.py`` checks the packaged default model against it.

Each camera is rendered at ``render_width`` pixels wide (the same camera scaled, so ray
casting stays cheap); the pipeline brings it to the network width either way.
"""

from __future__ import annotations

import math

import numpy as np

from monodepth_ros.evaluation.metrics import metrics_for_values, select_pixels
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.synthetic.world import (
    KITTI_CX,
    KITTI_CY,
    KITTI_FX,
    KITTI_HEIGHT,
    KITTI_WIDTH,
    SyntheticDrive,
)


def camera_with_field_of_view(width: int, height: int, degrees: float) -> CameraModel:
    """A centred pinhole camera whose image is ``degrees`` wide."""
    focal = (width / 2.0) / math.tan(math.radians(degrees) / 2.0)
    return CameraModel.from_intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0,
                                       width, height)


SWEEP_CAMERAS = {
    'KITTI 1242x375': CameraModel.from_intrinsics(KITTI_FX, KITTI_FX, KITTI_CX, KITTI_CY,
                                                  KITTI_WIDTH, KITTI_HEIGHT),
    '1920x1080, 60 deg': camera_with_field_of_view(1920, 1080, 60.0),
    '1280x960, 70 deg': camera_with_field_of_view(1280, 960, 70.0),
    'telephoto 1242x375, 2x focal': CameraModel.from_intrinsics(
        2 * KITTI_FX, 2 * KITTI_FX, KITTI_CX, KITTI_CY, KITTI_WIDTH, KITTI_HEIGHT),
    'wide 1280x800, 100 deg': camera_with_field_of_view(1280, 800, 100.0),
}
# Hold-out drives of the synthetic figures (bench_training.py; no recipe trains on them).
SWEEP_SCENES = ((950, 0), (951, 30), (952, 60), (953, 90))


def camera_sweep_metrics(pipeline, camera: CameraModel, scenes=SWEEP_SCENES,
                         render_width: int = 640, max_depth: float = 80.0) -> dict:
    """Metrics of ``pipeline`` (output at camera resolution) on ``scenes`` through ``camera``.

    All scenes' pixels pooled; adds ``median_ratio`` (median of prediction / ground truth)
    and ``coverage`` (the share of ground-truth pixels with a prediction: the framing crops).
    """
    render_height = max(8, round(camera.height * render_width / camera.width))
    rendered = camera.scaled(render_width, render_height)
    gts, preds, total = [], [], 0
    for seed, index in scenes:
        frame = SyntheticDrive(seed=seed).render(index, lidar=False, camera=rendered)
        depth = pipeline.process_arrays(frame.rgb, rendered, outputs={'depth'}).depth
        gt_values, pred_values, n_gt = select_pixels(frame.depth, depth, max_depth=max_depth)
        gts.append(gt_values)
        preds.append(pred_values)
        total += n_gt
    gt_values, pred_values = np.concatenate(gts), np.concatenate(preds)
    metrics = metrics_for_values(gt_values, pred_values, total, max_depth=max_depth)
    metrics['median_ratio'] = float(np.median(pred_values / gt_values))
    return metrics
