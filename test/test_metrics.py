"""Depth metrics against values computed by hand (see the comments of each case)."""

import math

import numpy as np
import pytest

from monodepth_ros.errors import ConfigError
from monodepth_ros.evaluation.metrics import (
    GroupedErrors,
    RunningMean,
    average_metrics,
    compute_depth_metrics,
    compute_depth_metrics_caps,
    crop_bounds,
    error_by_class,
    error_by_distance,
    evaluated_indices,
    evaluation_mask,
)

LN2 = math.log(2.0)
LN15 = math.log(1.5)


def test_three_pixel_case_with_invalid_pixels_ignored():
    # Valid pixels: gt = 2, 3, 4 against pred = 1, 2, 6. The other three are ignored:
    # gt 0 (no LiDAR point), gt NaN, gt 90 >= cap 80.
    gt = np.array([[2.0, 3.0, 4.0], [0.0, np.nan, 90.0]], dtype=np.float32)
    pred = np.array([[1.0, 2.0, 6.0], [5.0, 5.0, 5.0]], dtype=np.float32)
    m = compute_depth_metrics(gt, pred)
    # g - p = 1, 1, -2
    assert m['n_pixels'] == 3
    assert m['abs_rel'] == pytest.approx((1 / 2 + 1 / 3 + 2 / 4) / 3)        # 4/9
    assert m['sq_rel'] == pytest.approx((1 / 2 + 1 / 3 + 4 / 4) / 3)         # 11/18
    assert m['sq_rel_devkit'] == pytest.approx((1 / 4 + 1 / 9 + 4 / 16) / 3)  # 11/54
    assert m['rmse'] == pytest.approx(math.sqrt((1 + 1 + 4) / 3))            # sqrt(2)
    # e = ln p - ln g = -ln 2, -ln 1.5, +ln 1.5
    mean_sq = (LN2 ** 2 + 2 * LN15 ** 2) / 3
    assert m['rmse_log'] == pytest.approx(math.sqrt(mean_sq))
    assert m['log10'] == pytest.approx((math.log10(2) + 2 * math.log10(1.5)) / 3)
    assert m['silog'] == pytest.approx(math.sqrt(mean_sq - (LN2 / 3) ** 2))
    # max(g/p, p/g) = 2, 1.5, 1.5: 1.5 < 1.25^2 = 1.5625 but 2 > 1.25^3 = 1.953125
    assert m['delta1'] == 0.0
    assert m['delta2'] == pytest.approx(2 / 3)
    assert m['delta3'] == pytest.approx(2 / 3)
    # 1000/g - 1000/p (1/km) = -500, -500/3, 250/3 -> mean square = 2562500/27
    assert m['irmse'] == pytest.approx(math.sqrt(2562500 / 27))
    assert m['coverage'] == 1.0


def test_perfect_prediction():
    gt = np.array([[1.0, 10.0, 50.0]])
    m = compute_depth_metrics(gt, gt.copy())
    for name in ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'log10', 'silog', 'irmse'):
        assert m[name] == pytest.approx(0.0, abs=1e-12)
    assert m['delta1'] == 1.0


def test_silog_ignores_a_global_scale():
    # p = 2 g everywhere: every e = ln 2, so silog = sqrt(ln2^2 - ln2^2) = 0, rmse_log = ln 2.
    gt = np.array([[1.0, 5.0, 20.0]])
    m = compute_depth_metrics(gt, 2 * gt)
    assert m['silog'] == pytest.approx(0.0, abs=1e-7)
    assert m['rmse_log'] == pytest.approx(LN2)


def test_median_scaling_happens_before_clamping():
    # gt = 2, 4, 6; pred = 1, 2, 30: scale = median(gt)/median(pred) = 4/2 = 2,
    # scaled pred = 2, 4, 60, clamped to the 50 m cap = 2, 4, 50.
    # abs_rel = (0 + 0 + 44/6)/3 = 22/9. (Clamping first would give 2, 4, 60 -> 3.)
    gt = np.array([[2.0, 4.0, 6.0]])
    pred = np.array([[1.0, 2.0, 30.0]])
    m = compute_depth_metrics(gt, pred, max_depth=50.0, median_scaling=True)
    assert m['scale'] == pytest.approx(2.0)
    assert m['abs_rel'] == pytest.approx(22 / 9)
    unscaled = compute_depth_metrics(gt, pred, max_depth=50.0)
    assert 'scale' not in unscaled
    # No scaling: pred 1, 2, 30 -> |g-p|/g = 1/2, 1/2, 4 -> mean 5/3.
    assert unscaled['abs_rel'] == pytest.approx(5 / 3)


def test_prediction_clamped_to_min_depth_and_nan_prediction_excluded():
    # pred 0 is clamped to min_depth 0.5: |2 - 0.5|/2 = 0.75. The NaN prediction is left out
    # and lowers coverage to 1/2.
    gt = np.array([[2.0, 2.0]])
    pred = np.array([[0.0, np.nan]])
    m = compute_depth_metrics(gt, pred, min_depth=0.5)
    assert m['n_pixels'] == 1
    assert m['coverage'] == 0.5
    assert m['abs_rel'] == pytest.approx(0.75)


def test_crop_bounds_on_kitti_size():
    # int(0.40810811*375)=153, int(0.99189189*375)=371, int(0.03594771*1242)=44,
    # int(0.96405229*1242)=1197; Eigen: int(0.3324324*375)=124, int(0.91351351*375)=342.
    assert crop_bounds(375, 1242, 'garg') == (153, 371, 44, 1197)
    assert crop_bounds(375, 1242, 'eigen') == (124, 342, 44, 1197)
    assert crop_bounds(375, 1242, None) == (0, 375, 0, 1242)
    with pytest.raises(ConfigError, match='unknown crop'):
        crop_bounds(375, 1242, 'middle')


def test_garg_crop_selects_pixels():
    gt = np.zeros((375, 1242), dtype=np.float32)
    pred = np.ones_like(gt)
    gt[153, 44] = 1.0      # first pixel inside the crop: exact
    gt[152, 44] = 4.0      # one row above: outside, would add error
    gt[153, 1197] = 4.0    # first column past the crop
    gt[371, 44] = 4.0      # first row past the crop
    m = compute_depth_metrics(gt, pred, crop='garg')
    assert m['n_pixels'] == 1 and m['abs_rel'] == 0.0
    assert compute_depth_metrics(gt, pred)['n_pixels'] == 4


def test_no_valid_pixel_gives_nan_and_is_left_out_of_the_average():
    gt = np.zeros((2, 2))
    m = compute_depth_metrics(gt, np.ones((2, 2)))
    assert m['n_pixels'] == 0 and math.isnan(m['abs_rel'])
    good = compute_depth_metrics(np.array([[2.0]]), np.array([[1.0]]))   # abs_rel 0.5
    good2 = compute_depth_metrics(np.array([[4.0]]), np.array([[4.0]]))  # abs_rel 0
    mean = average_metrics([m, good, good2])
    assert mean['frames'] == 2
    assert mean['abs_rel'] == pytest.approx(0.25)   # per image, then over images
    running = RunningMean()
    for item in (m, good, good2):
        running.add(item)
    assert running.result()['abs_rel'] == pytest.approx(0.25)
    assert running.result()['frames'] == 2


def test_shape_mismatch_rejected():
    with pytest.raises(ConfigError, match='one shape'):
        compute_depth_metrics(np.ones((2, 3)), np.ones((3, 2)))


def test_error_by_distance_bands():
    # gt 5 (band 0-10) vs 6: abs_rel 0.2, rmse 1, signed +1.
    # gt 15, 15 (band 10-20) vs 15, 12: abs_rel (0 + 3/15)/2 = 0.1, rmse sqrt(9/2), signed -1.5.
    gt = np.array([[5.0, 15.0, 15.0]])
    pred = np.array([[6.0, 15.0, 12.0]])
    rows = error_by_distance(gt, pred, max_depth=30.0, step=10.0)
    assert [r['group'] for r in rows] == ['0-10', '10-20', '20-30']
    assert rows[0]['n_pixels'] == 1 and rows[0]['abs_rel'] == pytest.approx(0.2)
    assert rows[0]['rmse'] == pytest.approx(1.0) and rows[0]['mean_error'] == pytest.approx(1.0)
    assert rows[1]['n_pixels'] == 2 and rows[1]['abs_rel'] == pytest.approx(0.1)
    assert rows[1]['rmse'] == pytest.approx(math.sqrt(4.5))
    assert rows[1]['mean_error'] == pytest.approx(-1.5)
    # 15/15 = 1 counts; 15/12 = 1.25 exactly is not < 1.25.
    assert rows[1]['delta1'] == pytest.approx(0.5)
    assert rows[2]['n_pixels'] == 0


def test_error_by_class_ignores_unknown_labels():
    # class 0: gt 2 vs 1 (abs_rel 0.5, ratio 2); class 1: gt 4 vs 4; label 255 ignored.
    gt = np.array([[2.0, 4.0, 8.0]])
    pred = np.array([[1.0, 4.0, 1.0]])
    labels = np.array([[0, 1, 255]], dtype=np.uint8)
    rows = error_by_class(gt, pred, labels, ['road', 'car'])
    assert rows[0]['abs_rel'] == pytest.approx(0.5) and rows[0]['delta1'] == 0.0
    assert rows[1]['abs_rel'] == 0.0 and rows[1]['delta1'] == 1.0
    assert sum(r['n_pixels'] for r in rows) == 2


def test_several_caps_at_once_equal_separate_calls():
    # gt 2, 30, 60 (and an empty pixel) vs pred 1, NaN, 66: cap 50 keeps gt 2 and 30 (30 has
    # no prediction: coverage 1/2); cap 80 keeps all three (coverage 2/3).
    gt = np.array([[2.0, 30.0, 60.0, 0.0]])
    pred = np.array([[1.0, np.nan, 66.0, 3.0]])
    both = compute_depth_metrics_caps(gt, pred, caps=(80.0, 50.0))
    for cap in (80.0, 50.0):
        assert both[cap] == compute_depth_metrics(gt, pred, max_depth=cap)
    assert both[50.0]['coverage'] == 0.5 and both[50.0]['abs_rel'] == 0.5
    assert both[80.0]['coverage'] == pytest.approx(2 / 3)
    assert both[80.0]['abs_rel'] == pytest.approx((0.5 + 0.1) / 2)


@pytest.mark.parametrize('crop', [None, 'garg', 'eigen'])
def test_sparse_selection_equals_the_dense_mask(crop):
    rng = np.random.default_rng(0)
    gt = np.where(rng.random((60, 90)) < 0.1, rng.uniform(0.0, 100.0, (60, 90)), 0.0)
    gt[0, 0] = np.nan
    mask = rng.random((60, 90)) < 0.8
    dense = evaluation_mask(gt, 1e-3, 80.0, crop, mask)
    np.testing.assert_array_equal(evaluated_indices(gt, 1e-3, 80.0, crop, mask),
                                  np.flatnonzero(dense))


def test_one_invalid_prediction_rule_at_every_cap():
    # gt [2, 4, 60] m, pred [0, NaN, 60]: only NaN is invalid. 0 is clamped to 1e-3 and graded.
    # Cap 80: pixels 2 and 60 graded, coverage 2/3, abs_rel = mean(1.999/2, 0) = 0.49975.
    # Cap 50: pixels 2 and 4 in the cap, only 2 graded: coverage 1/2, abs_rel = 0.9995.
    from monodepth_ros.evaluation.metrics import metrics_at_caps, valid_prediction

    gt = np.array([2.0, 4.0, 60.0])
    pred = np.array([0.0, np.nan, 60.0])
    np.testing.assert_array_equal(valid_prediction(np.array([0.0, -1.0, np.nan, np.inf])),
                                  [True, True, False, False])
    results = metrics_at_caps(gt, pred, caps=(80.0, 50.0))
    assert results[80.0]['n_pixels'] == 2 and results[80.0]['coverage'] == pytest.approx(2 / 3)
    assert results[80.0]['abs_rel'] == pytest.approx(0.49975)
    assert results[50.0]['n_pixels'] == 1 and results[50.0]['coverage'] == 0.5
    assert results[50.0]['abs_rel'] == pytest.approx(0.9995)
    # The image functions apply the same rule.
    image = compute_depth_metrics(gt.reshape(1, 3), pred.reshape(1, 3))
    assert image['abs_rel'] == results[80.0]['abs_rel']
    assert image['coverage'] == results[80.0]['coverage']
    caps = compute_depth_metrics_caps(gt.reshape(1, 3), pred.reshape(1, 3))
    assert caps[50.0]['abs_rel'] == results[50.0]['abs_rel']


def test_grouped_errors_pooled_from_rows_equal_the_pixels_added_at_once():
    rng = np.random.default_rng(3)
    gt = rng.uniform(1.0, 40.0, 600)
    pred = gt * rng.uniform(0.7, 1.4, 600)
    group = rng.integers(0, 3, 600)
    labels = ['near', 'mid', 'far']
    first, second, together = GroupedErrors(labels), GroupedErrors(labels), GroupedErrors(labels)
    first.add(group[:250], gt[:250], pred[:250])
    second.add(group[250:], gt[250:], pred[250:])
    together.add(group, gt, pred)
    pooled = GroupedErrors(labels)
    pooled.add_rows(first.rows())
    pooled.add_rows(second.rows() + [{'group': 'unknown', 'n_pixels': 5, 'abs_rel': 1.0,
                                      'rmse': 1.0, 'delta1': 1.0, 'mean_error': 1.0}])
    for row, expected in zip(pooled.rows(), together.rows()):
        assert row['n_pixels'] == expected['n_pixels'] > 0
        for key in ('abs_rel', 'rmse', 'delta1', 'mean_error'):
            assert row[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12)
