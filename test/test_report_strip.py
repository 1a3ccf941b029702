"""The evaluator's qualitative strip: captioned rows, colour bars at known places and colours."""

import numpy as np
import pytest
from matplotlib import colormaps

from monodepth_ros.evaluation.evaluator import QualitativeFrame
from monodepth_ros.evaluation.report import (
    STRIP_BAR_AREA,
    STRIP_BAR_MARGIN,
    STRIP_BAR_WIDTH,
    STRIP_CAPTION_HEIGHT,
    STRIP_ERROR_MAX,
    qualitative_strip,
)

HEIGHT, WIDTH = 41, 120      # odd height: the middle row of a colour bar is its middle value
MAX_DEPTH = 80.0             # depth colour scale: 0 to 40 m
BACKGROUND = (32, 32, 32)
BAR_COLUMN = WIDTH + STRIP_BAR_MARGIN + STRIP_BAR_WIDTH // 2


def colour(name: str, fraction: float) -> np.ndarray:
    """The colour map's RGB at ``fraction`` of its range, as the strip quantises it."""
    return (np.asarray(colormaps[name](fraction)[:3]) * 255).astype(np.uint8)


@pytest.fixture(scope='module')
def strip():
    rgb = np.arange(HEIGHT * WIDTH * 3, dtype=np.uint8).reshape(HEIGHT, WIDTH, 3)
    gt = np.zeros((HEIGHT, WIDTH), np.float32)
    gt[10, 10] = 20.0                        # one LiDAR point at 20 m
    pred = np.full((HEIGHT, WIDTH), 10.0, np.float32)
    pred[10, 10] = 23.0                      # relative error 0.15 there
    pred[0, 0] = np.nan
    return qualitative_strip(QualitativeFrame(0, rgb, gt, pred), MAX_DEPTH), rgb


def row_top(index: int) -> int:
    """First panel row of strip row ``index`` (0 image, 1 ground truth, 2 prediction, 3 error)."""
    return index * (HEIGHT + STRIP_CAPTION_HEIGHT) + STRIP_CAPTION_HEIGHT


def test_strip_grows_by_the_captions_and_the_colour_bar_column(strip):
    image, rgb = strip
    assert image.shape == (4 * (HEIGHT + STRIP_CAPTION_HEIGHT), WIDTH + STRIP_BAR_AREA, 3)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image[row_top(0):row_top(0) + HEIGHT, :WIDTH], rgb)


def test_every_row_has_a_caption_and_only_depth_and_error_rows_a_colour_bar(strip):
    image, _ = strip
    for index in range(4):
        band = image[row_top(index) - STRIP_CAPTION_HEIGHT:row_top(index)]
        assert (band != BACKGROUND).any(axis=2).sum() > 50, f'row {index} has no caption'
    image_bar = image[row_top(0):row_top(0) + HEIGHT, WIDTH:]
    assert (image_bar == BACKGROUND).all()


def test_depth_colour_bars_match_the_panels_colour_map_in_metres(strip):
    image, _ = strip
    for index in (1, 2):
        top = row_top(index)
        # Top: 40 m (far, fraction 1 of turbo_r), middle: 20 m, bottom: 0 m.
        np.testing.assert_array_equal(image[top, BAR_COLUMN], colour('turbo_r', 1.0))
        np.testing.assert_array_equal(image[top + HEIGHT // 2, BAR_COLUMN],
                                      colour('turbo_r', 0.5))
        np.testing.assert_array_equal(image[top + HEIGHT - 1, BAR_COLUMN],
                                      colour('turbo_r', 0.0))
    # The prediction panel uses the same scale: 10 m is a quarter of it; NaN is black.
    np.testing.assert_array_equal(image[row_top(2) + 5, 50], colour('turbo_r', 0.25))
    np.testing.assert_array_equal(image[row_top(2), 0], [0, 0, 0])
    # The LiDAR point at 20 m has the bar's middle colour (grown to 3x3 for visibility).
    np.testing.assert_array_equal(image[row_top(1) + 11, 11], colour('turbo_r', 0.5))
    np.testing.assert_array_equal(image[row_top(1) + 30, 50], [0, 0, 0])


def test_error_colour_bar_spans_zero_to_the_error_maximum(strip):
    image, _ = strip
    top = row_top(3)
    np.testing.assert_array_equal(image[top, BAR_COLUMN], colour('RdYlGn_r', 1.0))
    np.testing.assert_array_equal(image[top + HEIGHT // 2, BAR_COLUMN],
                                  colour('RdYlGn_r', 0.5))
    np.testing.assert_array_equal(image[top + HEIGHT - 1, BAR_COLUMN], colour('RdYlGn_r', 0.0))
    # |23 - 20| / 20 = 0.15, half of STRIP_ERROR_MAX: the bar's middle colour.
    assert STRIP_ERROR_MAX == pytest.approx(0.3)
    np.testing.assert_array_equal(image[top + 10, 10], colour('RdYlGn_r', 0.5))
