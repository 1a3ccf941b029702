"""eval-bag with a scale mode, the flicker metric and `monodepth compare` on real rosbag2 files."""

import json
import math

import cv2
import numpy as np
import pytest
from conftest import camera_frames_by_stamp

from monodepth_ros.cli import main
from monodepth_ros.evaluation.metrics import log_scale_to_lidar, scale_stability
from monodepth_ros.runtime.scale import ScaleSettings

SIZE = (416, 128)


@pytest.fixture(scope='module')
def synthetic_bag(tmp_path_factory):
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag

    return write_synthetic_bag(tmp_path_factory.mktemp('synth') / 'drive', frames=4, seed=2,
                               size=SIZE, progress=False)


def test_flicker_metric_by_hand():
    # Ratios g / p of 2, 2, 3: median 2.
    assert log_scale_to_lidar(np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 2.0])) == \
        pytest.approx(math.log(2.0))
    assert math.isnan(log_scale_to_lidar(np.array([2.0]), np.array([np.nan])))
    # Frames without a value are left out; steps 0.1, 0.2, -0.1 have std sqrt(0.014/0.9).
    stability = scale_stability([0.0, 0.1, 0.3, math.nan, 0.2])
    assert stability['frames'] == 4
    assert stability['flicker'] == pytest.approx(np.std([0.1, 0.2, -0.1]), abs=1e-12)
    assert stability['flicker'] == pytest.approx(0.124722, abs=1e-6)
    assert stability['drift'] == pytest.approx(np.std([0.0, 0.1, 0.3, 0.2]), abs=1e-12)
    assert math.isnan(scale_stability([0.1, 0.2])['flicker'])


def _evaluate(bag, model, **options):
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig

    config = EvaluationConfig(model=str(model), backend='onnxruntime', precision='fp32',
                              qualitative_frames=0, progress=False, **options)
    result = BagEvaluator(config).evaluate(bag)
    assert result.error is None
    return result


def test_eval_bag_scales_to_a_holdout_half_of_the_lidar(synthetic_bag, tiny_onnx):
    plain = _evaluate(synthetic_bag, tiny_onnx, scale=ScaleSettings('none'))
    fitted = _evaluate(synthetic_bag, tiny_onnx,
                       scale=ScaleSettings('lidar', smoothing=False))
    assert plain.frames_evaluated == fitted.frames_evaluated == 4
    summary = fitted.summary()
    assert summary['scale']['mode'] == 'lidar'
    assert summary['scale']['frames_fitted'] == 4 and summary['scale']['points_median'] > 100
    assert 'graded on the odd ones' in summary['depth_source']
    for row in fitted.rows:
        assert row['scale_points'] > 100 and row['scale_held'] == 0
    # Each frame's scale is the fit of the network-size depth to the even-numbered points of
    # its scan, rebuilt here from the bag's messages.
    from monodepth_ros.engines import create_engine
    from monodepth_ros.io import topics
    from monodepth_ros.io.messages import (
        camera_info_to_model,
        image_to_rgb,
        pointcloud2_to_xyz,
    )
    from monodepth_ros.runtime.pipeline import DepthPipeline
    from monodepth_ros.runtime.scale import fit_to_lidar

    pipeline = DepthPipeline(create_engine(str(tiny_onnx), backend='onnxruntime',
                                           precision='fp32'))
    frames, transforms = camera_frames_by_stamp(synthetic_bag)
    for row in fitted.rows:
        frame = frames[row['stamp_ns']]
        network = pipeline.process_arrays(image_to_rgb(frame[topics.CAMERA_IMAGE_TOPIC]),
                                          camera_info_to_model(frame[topics.CAMERA_INFO_TOPIC]),
                                          outputs={'depth'})
        cloud = frame[topics.LIDAR_TOPIC]
        T = transforms.lookup(topics.CAMERA_FRAME, str(cloud.header.frame_id))
        fit = fit_to_lidar(network.depth, 'metric', network.camera,
                           pointcloud2_to_xyz(cloud, drop_invalid=True)[0::2], T)
        assert row['scale'] == pytest.approx(fit.scale, rel=1e-6)
        assert row['scale_points'] == fit.points
    # Graded on the odd points only: half the LiDAR pixels (give or take the occlusion filter).
    ratio = fitted.rows[0]['n_pixels'] / plain.rows[0]['n_pixels']
    assert 0.35 < ratio < 0.65
    # Every run reports its flicker, the metric model's unscaled one included.
    assert plain.summary()['scale_stability']['frames'] == 4
    assert math.isfinite(plain.summary()['scale_stability']['flicker'])


def test_compare_two_models_round_trip(synthetic_bag, tiny_onnx, tmp_path, capsys):
    out = tmp_path / 'compare'
    argv = ['compare', str(synthetic_bag), '--model', str(tiny_onnx), '--model', str(tiny_onnx),
            '--backend', 'onnxruntime', '--precision', 'fp32', '--scale', 'lidar',
            '--qualitative', '2', '--out', str(out), '--no-progress']
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert '| 1-tiny |' in printed and '| 2-tiny |' in printed
    summary = json.loads((out / 'summary.json').read_text())
    first, second = summary['models']
    # The same model on the same frames: the same figures.
    for key in ('abs_rel', 'rmse', 'delta1', 'flicker', 'scale_median'):
        assert first[key] == pytest.approx(second[key])
    assert first['frames'] == 4 and first['scale_mode'] == 'lidar'
    assert first['inference_ms'] > 0
    report = (out / 'report.md').read_text()
    for text in ('## Metrics', 'flicker', '## abs_rel by ground-truth distance',
                 '![comparison](comparison.png)', '1-tiny/report.md'):
        assert text in report
    strips = sorted(out.glob('strip_*.png'))
    assert len(strips) == 2
    # image, LiDAR, then depth and error of each model: 6 captioned rows.
    from monodepth_ros.evaluation.report import STRIP_BAR_AREA, STRIP_CAPTION_HEIGHT

    strip = cv2.imread(str(strips[0]))
    assert strip.shape == (6 * (SIZE[1] + STRIP_CAPTION_HEIGHT), SIZE[0] + STRIP_BAR_AREA, 3)
    assert (out / '1-tiny' / 'report.md').is_file() and (out / '2-tiny' / 'frames.csv').is_file()
    # A second run replaces its own report.
    assert main(argv) == 0
    assert len(sorted(out.glob('strip_*.png'))) == 2


@pytest.mark.parametrize('argv, message', [
    (['compare', 'BAG', '--model-card', 'card.yaml', '--model', 'MODEL', '--out', 'OUT'],
     '--model-card must follow the --model it belongs to'),
    (['eval-bag', 'BAG', '--model', 'MODEL', '--scale', 'ground', '--out', 'OUT'],
     "scale mode 'ground' needs the camera's mounting height"),
    (['compare', 'BAG', '--model', 'MODEL', '--scale', 'none', '--camera-height', '-1',
      '--out', 'OUT'], 'argument --camera-height'),
    (['eval-bag', 'BAG', '--depth-topic', '/kitti/camera_color_left/image_raw', '--scale',
      'lidar', '--out', 'OUT'], '--scale lidar applies to a model (--model)'),
])
def test_bad_scale_options_are_one_line_errors(argv, message, synthetic_bag, tiny_onnx,
                                               tmp_path, capsys):
    argv = [str(synthetic_bag) if item == 'BAG' else str(tiny_onnx) if item == 'MODEL'
            else str(tmp_path / 'out') if item == 'OUT' else item for item in argv]
    assert main(argv + ['--backend', 'onnxruntime', '--no-progress']) == 2
    error = capsys.readouterr().err.strip()
    assert message in error
    assert len(error.splitlines()) == 1 or error.splitlines()[-1].count(message) == 1
    assert not (tmp_path / 'out').exists()
