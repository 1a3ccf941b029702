"""Depth on any camera: the framing (uniform scale, crop or padding), its geometry everywhere.

Exact values of the framing (intrinsics, pixel round trips, padding), the point cloud of
cropped and padded frames against the depth_image_proc back-projection of the published depth
and CameraInfo, the training camera sweep, and the packaged default model on the same synthetic
scenes seen through five cameras (exact ground truth).
"""

import dataclasses

import numpy as np
import pytest
from conftest import TINY_NET_HEIGHT, TINY_NET_WIDTH

from monodepth_ros.errors import CalibrationError, ConfigError
from monodepth_ros.io import messages
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.framing import DEFAULT_ANCHOR, plan_framing, resize_image
from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

NET = (320, 96)
HD = CameraModel.from_intrinsics(1662.8, 1662.8, 959.5, 539.5, 1920, 1080)   # 60 deg wide


# -- the framing: exact values --------------------------------------------------------------
def test_fit_width_scales_uniformly_and_crops_rows_around_the_principal_point():
    framing = plan_framing(1920, 1080, NET, HD)
    # 1920 -> 320 is 1/6 on both axes: 320x180, then 96 rows.
    assert framing.scaled_size == (320, 180) and framing.scale == (1 / 6, 1 / 6)
    principal_row = 540.0 / 6 - 0.5                                # 89.5 in the scaled image
    assert framing.offset == (0, round(principal_row - (DEFAULT_ANCHOR * 96 - 0.5)))  # 46
    camera = framing.camera(HD)
    assert camera.size == NET
    assert camera.fx == pytest.approx(1662.8 / 6) and camera.fy == pytest.approx(1662.8 / 6)
    assert camera.cx == pytest.approx(960.0 / 6 - 0.5)
    assert camera.cy == pytest.approx(principal_row - 46)
    assert camera.cy == pytest.approx(DEFAULT_ANCHOR * 96 - 0.5, abs=0.5)


def test_wider_image_is_padded_and_padding_is_marked_invalid():
    camera = CameraModel.from_intrinsics(500.0, 500.0, 399.5, 29.5, 800, 60)
    framing = plan_framing(800, 60, NET, camera)
    assert framing.scaled_size == (320, 24)
    # The image (24 rows) is placed so its principal point row is as close to the anchor as
    # the padding allows: y0 = round(11.5 - 43.66) = -32.
    assert framing.offset == (0, -32)
    mask = framing.valid_mask()
    assert mask.sum() == 320 * 24 and mask[32:56].all() and not mask[:32].any()
    rgb = np.full((60, 800, 3), 200, np.uint8)
    framed = framing.apply(rgb)
    assert framed.shape == (96, 320, 3)
    assert (framed[~mask] == 0).all() and (framed[mask] == 200).all()
    assert framing.camera(camera).cy == pytest.approx(11.5 + 32)
    # Padding that starts at the top edge (offset 0) is still padding, not a crop.
    top = plan_framing(800, 60, NET, camera, anchor=0.0)
    assert top.offset == (0, 0) and top.padded and framing.padded
    assert top.apply(rgb).shape == (96, 320, 3) and top.valid_mask()[:24].all()
    assert not plan_framing(1920, 1080, NET, HD).padded


def test_canonical_focal_pads_a_telephoto_and_crops_a_wide_lens():
    tele = CameraModel.from_intrinsics(1000.0, 1000.0, 499.5, 299.5, 1000, 600)
    framing = plan_framing(1000, 600, NET, tele, mode='canonical-focal', canonical_focal=250.0)
    # Scaled to 250x150: narrower than the network input (padded), taller (cropped).
    assert framing.scaled_size == (250, 150) and framing.offset == (-35, 31)
    assert framing.camera(tele).fx == pytest.approx(250.0)
    wide = CameraModel.from_intrinsics(100.0, 100.0, 499.5, 149.5, 1000, 300)
    framing = plan_framing(1000, 300, NET, wide, mode='canonical-focal', canonical_focal=50.0)
    # Scaled to 500x150: wider and taller than the network input, cropped both ways.
    assert framing.scaled_size == (500, 150) and framing.offset == (90, 31)
    assert framing.camera(wide).fx == pytest.approx(50.0)


def test_canonical_fit_clamps_the_canonical_scale_between_the_whole_image_and_fit_width():
    def scale(camera, canonical_focal=250.0, mode='canonical-fit'):
        framing = plan_framing(camera.width, camera.height, NET, camera, mode=mode,
                               canonical_focal=canonical_focal)
        return framing.scale[0]   # scaled width / width: the scale after rounding to pixels

    # A long lens of 1.59:1 (DDAD's shape): the canonical scale, between both bounds.
    long_lens = CameraModel.from_intrinsics(2000.0, 2000.0, 967.5, 607.5, 1936, 1216)
    assert scale(long_lens) == pytest.approx(250.0 / 2000.0, rel=3e-3)
    assert 96 / 1216 < 250.0 / 2000.0 < 320 / 1936
    # A telephoto of KITTI's shape: the canonical scale (160x48) would pad all round; the
    # whole image fitting the input is as small as it goes.
    tele = CameraModel.from_intrinsics(4000.0, 4000.0, 620.5, 187.0, 1242, 375)
    assert scale(tele) == pytest.approx(min(320 / 1242, 96 / 375), rel=3e-3)
    # A wide lens: the canonical scale would crop its sides; fit-width is as large as it goes.
    wide = CameraModel.from_intrinsics(300.0, 300.0, 639.5, 399.5, 1280, 800)
    assert scale(wide) == pytest.approx(320 / 1280) == scale(wide, mode='fit-width')
    # Without a calibration or a canonical focal length: fit-width.
    assert plan_framing(1936, 1216, NET, None, mode='canonical-fit',
                        canonical_focal=250.0).scale[0] == pytest.approx(320 / 1936)
    assert scale(long_lens, canonical_focal=0.0) == pytest.approx(320 / 1936)


def test_canonical_fit_leaves_a_foreign_card_at_fit_width():
    # A foreign card's canonical focal length may be its output's unit, not a camera.
    from monodepth_ros.model.cards import card_from_dict, plan_card_framing

    card = card_from_dict({'input': {'name': 'image', 'size': {'policy': 'fixed', 'height': 96,
                                                               'width': 320}},
                           'output': {'name': 'out', 'kind': 'canonical_focal_depth',
                                      'canonical_focal': 100}}, 'foreign.yaml')
    camera = CameraModel.from_intrinsics(2000.0, 2000.0, 967.5, 607.5, 1936, 1216)
    framing = plan_card_framing(card, 1936, 1216, camera, 'canonical-fit')
    assert framing.scale == plan_framing(1936, 1216, NET, camera).scale   # fit-width
    focal = plan_card_framing(card, 1936, 1216, camera, 'canonical-focal')
    assert focal.scale[0] == pytest.approx(100.0 / 2000.0, rel=1e-2)     # when asked for


def test_pixel_coordinates_round_trip_and_agree_with_the_framed_camera():
    framing = plan_framing(1920, 1080, NET, HD)
    u = np.array([0.0, 17.25, 959.5, 1919.0])
    v = np.array([0.0, 400.0, 539.5, 1079.0])
    back = framing.to_source(*framing.to_network(u, v))
    np.testing.assert_allclose(back, (u, v), atol=1e-9)
    # A 3D point projects through the framed camera where the framing moves its pixel.
    points = np.array([[1.0, 0.2, 10.0], [-3.0, -0.5, 25.0], [0.0, 1.4, 7.0]])
    np.testing.assert_allclose(framing.camera(HD).project(points),
                               framing.to_network(*HD.project(points)), atol=1e-9)


@pytest.mark.parametrize('size, steps', [
    # Whole ratios: only the 96 rows' worth of source rows under the window are resized.
    ((1920, 1080), [(960, 288), (320, 96)]),                # 1/6: halved, then a whole 1/3
    ((1280, 960), [(640, 192), (320, 96)]),                 # 1/4: halved twice
    ((1936, 1216), [(968, 608), (484, 304), (320, 201)]),   # DDAD: halved twice, then ~2/3
    ((1242, 376), [(621, 188), (320, 97)]),                 # halved, then odd: one step
    ((1241, 375), [(320, 97)]),                             # odd: one step
])
def test_large_shrinks_halve_first_and_keep_the_geometry(monkeypatch, size, steps):
    import cv2

    width, height = size
    framing = plan_framing(width, height, NET)
    resizes = []
    resize = cv2.resize

    def spy(image, dsize, **kwargs):
        resizes.append((tuple(dsize), kwargs['interpolation']))
        return resize(image, dsize, **kwargs)

    monkeypatch.setattr(cv2, 'resize', spy)
    # The source's column and row numbers as an image: each network pixel's box average
    # must be where to_source puts that pixel (exactly for whole ratios; the box of a
    # fractional one weighs its edge pixels in part: a fraction of a pixel, none on average).
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    framed = framing.apply(np.dstack([u, v]))
    assert resizes == [(step, cv2.INTER_AREA) for step in steps]
    net_v, net_u = np.mgrid[0:96, 0:320].astype(np.float64)
    error = np.moveaxis(framed, 2, 0) - np.stack(framing.to_source(net_u, net_v))
    # Away from the image border, where the box is clipped.
    inside = np.all((framed > 8) & (framed < np.array([width, height]) - 9), axis=2)
    whole = width % framing.scaled_size[0] == 0 and height % framing.scaled_size[1] == 0
    halvings = len(steps) - 1
    assert np.abs(error[:, inside]).max() <= (1e-3 if whole else 2 ** halvings / 8)
    assert np.abs(error[:, inside].mean(axis=1)).max() < 0.01


@pytest.mark.parametrize('size, mode, focal, fx, cx', [
    ((1920, 1080), 'fit-width', 0.0, 960.0, 959.5),          # rows cropped, whole 1/6
    ((1280, 720), 'fit-width', 0.0, 640.0, 639.5),           # rows cropped, whole 1/4
    ((1920, 1080), 'canonical-focal', 240.0, 960.0, 959.5),  # both axes cropped, whole 1/4
    ((960, 540), 'canonical-focal', 240.0, 240.0, 479.5),    # 1/1 scale: a plain crop
    # 1/3 across (the window starts at column 483, odd), 1082/3 rows not whole: the halvings
    # of the whole image would pair other columns than those of a crop, so none is made.
    ((1920, 1082), 'canonical-focal', 240.0, 720.0, 962.5),
])
def test_window_of_a_whole_ratio_shrink_equals_resizing_the_whole_image(size, mode, focal,
                                                                        fx, cx):
    import cv2

    width, height = size
    camera = CameraModel.from_intrinsics(fx, fx, cx, height / 2 - 0.5, width, height)
    framing = plan_framing(width, height, NET, camera, mode=mode, canonical_focal=focal)
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    labels = rng.integers(0, 19, size=(height, width), dtype=np.uint8)
    (x0, y0), (net_w, net_h) = framing.offset, NET
    window = np.s_[y0:y0 + net_h, x0:x0 + net_w]
    whole = resize_image(rgb, *framing.scaled_size)   # the same halvings, whole image
    np.testing.assert_array_equal(framing.apply(rgb), whole[window])
    whole = cv2.resize(labels, framing.scaled_size, interpolation=cv2.INTER_NEAREST_EXACT)
    np.testing.assert_array_equal(framing.apply(labels, nearest=True), whole[window])


def test_unframe_places_outputs_back_with_nan_outside_the_window():
    framing = plan_framing(1920, 1080, NET, HD)
    depth = np.arange(96 * 320, dtype=np.float32).reshape(96, 320)
    placed = framing.unframe(depth, np.nan)
    assert placed.shape == (180, 320)
    np.testing.assert_array_equal(placed[46:142], depth)
    assert np.isnan(placed[:46]).all() and np.isnan(placed[142:]).all()


@pytest.mark.parametrize('kwargs, message', [
    ({'mode': 'stretch'}, "framing mode 'stretch' is unknown"),
    ({'anchor': 1.5}, 'framing anchor 1.5 is outside [0, 1]'),
    ({'mode': 'canonical-focal'}, "'canonical-focal' needs the camera calibration"),
])
def test_bad_framing_settings_are_rejected_with_one_line(kwargs, message):
    with pytest.raises(ConfigError) as error:
        plan_framing(640, 480, NET, None, **kwargs)
    assert message in str(error.value) and '\n' not in str(error.value)


def test_framed_camera_of_another_image_size_is_rejected():
    with pytest.raises(CalibrationError, match='framing was planned for 640x480'):
        plan_framing(640, 480, NET).camera(HD)


def test_pipeline_config_rejects_a_bad_framing():
    with pytest.raises(ConfigError, match='framing must be one of'):
        PipelineConfig(framing='stretch')
    with pytest.raises(ConfigError, match='framing_anchor must lie in'):
        PipelineConfig(framing_anchor=-0.1)


# -- the pipeline: published CameraInfo, depth and cloud follow the framing ----------------
class CanonicalEngine:
    """The tiny engine, told it is camera-aware (canonical focal 60 px at its input)."""

    def __init__(self, engine):
        self.engine = engine
        self.metadata = dataclasses.replace(engine.metadata, canonical_focal=60.0)

    def infer(self, batch):
        return self.engine.infer(batch)

    def infer_pair(self, batch, far_batch):
        return self.engine.infer_pair(batch, far_batch)


@pytest.fixture(scope='module')
def tiny_engine(tiny_onnx):
    from monodepth_ros.engines import create_engine
    return CanonicalEngine(create_engine(str(tiny_onnx), backend='onnxruntime',
                                         precision='fp32'))


@pytest.fixture(scope='module')
def types():
    return messages.MessageTypes.rosbags('humble')


def textured(width, height):
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    return np.stack([u * 7 % 256, v * 3 % 256, (u * v) % 256], axis=-1).astype(np.uint8)


def backproject_like_depth_image_proc(depth, info):
    """depth_image_proc's point_cloud_xyz: x = (u - cx) z / fx, y = (v - cy) z / fy."""
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]]
    return np.stack([(u - k[0, 2]) * depth / k[0, 0], (v - k[1, 2]) * depth / k[1, 1], depth],
                    axis=-1)


@pytest.mark.parametrize('resolution', ['network', 'camera'])
@pytest.mark.parametrize('framing, size, intrinsics', [
    ('fit-width', (256, 192), (150.0, 150.0, 120.0, 100.0)),        # 4:3: rows cropped
    ('fit-width', (400, 100), (300.0, 300.0, 210.0, 40.0)),         # 4:1: rows padded
    ('canonical-focal', (300, 200), (240.0, 240.0, 150.0, 95.0)),   # telephoto: padded
    ('canonical-focal', (200, 100), (30.0, 30.0, 99.5, 49.5)),      # wide lens: cropped
])
def test_cloud_equals_the_back_projection_of_the_published_depth_and_camera_info(
        tiny_engine, types, resolution, framing, size, intrinsics):
    camera = CameraModel.from_intrinsics(*intrinsics, *size)
    pipeline = DepthPipeline(tiny_engine, PipelineConfig(output_resolution=resolution,
                                                         framing=framing, cloud_max_range=1e9))
    header = messages.make_header(types, 5, 'cam')
    out = pipeline.process_messages(
        types, messages.array_to_image(types, textured(*size), 'rgb8', header),
        messages.model_to_camera_info(types, camera, header), {'depth', 'camera_info', 'points'})
    depth = messages.depth_image_to_metres(out['depth'])
    info = out['camera_info']
    expected_size = size if resolution == 'camera' else (TINY_NET_WIDTH, TINY_NET_HEIGHT)
    assert (info.width, info.height) == expected_size == depth.shape[::-1]
    plan = plan_framing(*size, (TINY_NET_WIDTH, TINY_NET_HEIGHT), camera, framing,
                        canonical_focal=60.0)
    if resolution == 'network':
        np.testing.assert_allclose(info.k, plan.camera(camera).K.ravel())
        assert np.isnan(depth[~plan.valid_mask()]).all()
        assert np.isfinite(depth[plan.valid_mask()]).all()
    else:
        np.testing.assert_allclose(info.k, camera.K.ravel())
        # Pixels the network did not see are NaN at camera resolution.
        u, v = plan.to_network(*np.meshgrid(np.arange(size[0]), np.arange(size[1])))
        outside = ((u < -0.5) | (u > TINY_NET_WIDTH - 0.5) | (v < -0.5)
                   | (v > TINY_NET_HEIGHT - 0.5))
        cropped = (plan.scaled_size[0] > TINY_NET_WIDTH or plan.scaled_size[1] > TINY_NET_HEIGHT)
        assert outside.any() == cropped
        assert np.isnan(depth[outside]).all()
    fields = messages.read_pointcloud2(out['points'], ('x', 'y', 'z'))
    xyz = np.stack([fields[name].reshape(depth.shape) for name in 'xyz'], axis=-1)
    np.testing.assert_allclose(xyz, backproject_like_depth_image_proc(depth, info),
                               rtol=1e-5, atol=1e-5)
    assert np.isfinite(xyz).all(axis=-1).sum() == np.isfinite(depth).sum() > 0


def test_canonical_focal_framing_needs_a_camera_aware_model(tiny_onnx):
    from monodepth_ros.engines import create_engine

    engine = create_engine(str(tiny_onnx), backend='onnxruntime', precision='fp32')
    with pytest.raises(ConfigError,
                       match="needs a camera-aware model.*use 'canonical-fit' or 'fit-width'"):
        DepthPipeline(engine, PipelineConfig(framing='canonical-focal'))


# -- the commands: --framing and --framing-anchor reach the pipeline -----------------------
COMMAND_ARGUMENTS = {'infer': ['image.png', '--out', 'out'], 'infer-bag': ['in', 'out'],
                     'eval-bag': ['bag', '--model', 'm.onnx', '--out', 'out'],
                     'adapt': ['bag', '--out', 'adapted.pt']}


@pytest.mark.parametrize('command', sorted(COMMAND_ARGUMENTS))
def test_every_command_that_frames_images_takes_the_framing_options(command, capsys):
    from monodepth_ros.cli import build_parser

    parser, _ = build_parser(command)
    args = parser.parse_args(COMMAND_ARGUMENTS[command])
    assert (args.framing, args.framing_anchor) == ('canonical-fit', DEFAULT_ANCHOR)
    args = parser.parse_args(COMMAND_ARGUMENTS[command]
                             + ['--framing', 'canonical-focal', '--framing-anchor', '0.25'])
    assert (args.framing, args.framing_anchor) == ('canonical-focal', 0.25)
    for bad in (['--framing-anchor', '1.5'], ['--framing-anchor', 'nan'],
                ['--framing', 'stretch']):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(COMMAND_ARGUMENTS[command] + bad)
        assert exit_info.value.code == 2
        assert 'argument --framing' in capsys.readouterr().err


def write_tall_bag(path, types_distro='humble'):
    """One 4:3 frame (256x192, rows cropped by fit-width to 128x64) with its CameraInfo."""
    from monodepth_ros.io.bagio import BagWriter
    from monodepth_ros.io.topics import CAMERA_IMAGE_TOPIC, CAMERA_INFO_TOPIC

    camera = CameraModel.from_intrinsics(150.0, 150.0, 127.5, 90.0, 256, 192)
    with BagWriter(path, distro=types_distro) as bag:
        header = messages.make_header(bag.types, 1_000_000_000, 'cam')
        bag.write(CAMERA_INFO_TOPIC, messages.model_to_camera_info(bag.types, camera, header), 1)
        bag.write(CAMERA_IMAGE_TOPIC,
                  messages.array_to_image(bag.types, textured(256, 192), 'rgb8', header), 2)
    return camera


def test_infer_bag_camera_info_follows_the_framing_anchor(tmp_path, tiny_onnx, capsys):
    from monodepth_ros import cli
    from monodepth_ros.io.bagio import BagReader

    camera = write_tall_bag(tmp_path / 'in')
    offsets = {}
    for anchor in (0.2, 0.8):
        out = tmp_path / f'out{anchor}'
        assert cli.main(['infer-bag', str(tmp_path / 'in'), str(out), '--model', str(tiny_onnx),
                         '--backend', 'onnxruntime', '--framing-anchor', str(anchor)]) == 0
        with BagReader(out) as reader:
            (info,) = [msg for _, _, msg in reader.messages(['/monodepth/depth/camera_info'])]
        plan = plan_framing(256, 192, (TINY_NET_WIDTH, TINY_NET_HEIGHT), camera, anchor=anchor)
        np.testing.assert_allclose(info.k, plan.camera(camera).K.ravel())
        offsets[anchor] = plan.offset[1]
    # 192 rows scale to 96 and 64 are kept: the band moves with the anchor (cy 44.75 -> 44
    # rows down from the top of the network window at 0.2, 6 at 0.8).
    assert offsets == {0.2: 32, 0.8: 0}
    assert cli.main(['infer-bag', str(tmp_path / 'in'), str(tmp_path / 'refused'), '--model',
                     str(tiny_onnx), '--backend', 'onnxruntime', '--framing',
                     'canonical-focal']) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and 'needs a camera-aware model' in error[0]
    assert not (tmp_path / 'refused').exists()
    # eval-bag hands the framing to its pipeline too: refused before the bag is read.
    assert cli.main(['eval-bag', str(tmp_path / 'in'), '--model', str(tiny_onnx), '--backend',
                     'onnxruntime', '--framing', 'canonical-focal', '--out',
                     str(tmp_path / 'report')]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and 'needs a camera-aware model' in error[0]


def test_infer_pads_where_the_framing_anchor_puts_a_wide_image(tmp_path, tiny_onnx):
    import cv2

    from monodepth_ros import cli

    image = tmp_path / 'wide.png'
    cv2.imwrite(str(image), textured(512, 64))      # 4x wider than tall: 128x16 at the input
    rows = {}
    for anchor in ('0', '1'):
        out = tmp_path / anchor
        assert cli.main(['infer', str(image), '--model', str(tiny_onnx), '--out', str(out),
                         '--backend', 'onnxruntime', '--output-resolution', 'network',
                         '--framing-anchor', anchor]) == 0
        depth = np.load(out / 'wide_depth.npy')
        rows[anchor] = np.flatnonzero(np.isfinite(depth).all(axis=1)).tolist()
        assert np.isnan(depth[[r for r in range(TINY_NET_HEIGHT) if r not in rows[anchor]]]).all()
    # The image centre row goes as high (anchor 0) or as low (1) as the padding allows.
    assert rows == {'0': list(range(16)), '1': list(range(48, 64))}


# -- training: the camera sweep ---------------------------------------------------------------
def test_sweep_cameras_are_framed_like_the_pipeline_and_cover_the_focal_range():
    from monodepth_ros.training.datasets import SWEEP_FOCAL_RANGE, sweep_camera

    rng = np.random.default_rng(3)
    kitti_focal = 721.5377 * 352 / 1242
    focals = []
    for _ in range(200):
        camera, valid = sweep_camera(rng, (352, 106))
        assert camera.size == (352, 106) and valid.shape == (106, 352)
        assert camera.fx == pytest.approx(camera.fy)
        focals.append(camera.fx / kitti_focal)
        # The principal point lands at the anchor row unless the crop reached an image edge.
        assert camera.cy == pytest.approx(DEFAULT_ANCHOR * 106 - 0.5, abs=4.0)
    assert SWEEP_FOCAL_RANGE[0] <= min(focals) < 0.6 and 2.2 < max(focals) <= SWEEP_FOCAL_RANGE[1]


def test_frame_sample_keeps_depth_and_scales_the_focal_length_uniformly():
    from monodepth_ros.training.augment import frame_sample
    from monodepth_ros.training.datasets import make_sample

    depth = np.tile(np.arange(480, dtype=np.float32)[:, None], (1, 640))
    sample = frame_sample(make_sample(textured(640, 480), depth, None, focal=500.0), 96, 320)
    assert sample['rgb'].shape == (96, 320, 3) and sample['focal'] == pytest.approx(250.0)
    framing = plan_framing(640, 480, NET)
    # Nearest-neighbour rows: row r of the window (centre at source row 2 (r + y0) + 0.5, a
    # tie) is source row 2 (r + y0) + 1.
    np.testing.assert_array_equal(sample['depth'][:, 0],
                                  2.0 * (np.arange(96) + framing.offset[1]) + 1.0)


# -- the packaged default model through five cameras (exact synthetic ground truth) --------
@pytest.fixture(scope='module')
def default_pipeline(tmp_path_factory):
    from monodepth_ros.runtime.infer import load_engine

    engine = load_engine(None, backend='onnxruntime',
                         cache_dir=str(tmp_path_factory.mktemp('engines')))
    return DepthPipeline(engine, PipelineConfig(output_resolution='camera'))


def test_default_model_holds_on_every_camera_of_the_synthetic_sweep(default_pipeline):
    from monodepth_ros.evaluation.cameras import (
        SWEEP_CAMERAS,
        SWEEP_SCENES,
        camera_sweep_metrics,
    )

    scenes = SWEEP_SCENES[:2]   # the same two hold-out scenes through every camera
    kitti = camera_sweep_metrics(default_pipeline, SWEEP_CAMERAS['KITTI 1242x375'], scenes)
    for name, camera in SWEEP_CAMERAS.items():
        metrics = camera_sweep_metrics(default_pipeline, camera, scenes)
        assert metrics['abs_rel'] <= 1.25 * kitti['abs_rel'], (name, metrics['abs_rel'],
                                                               kitti['abs_rel'])
        assert abs(metrics['median_ratio'] - 1.0) <= 0.10, (name, metrics['median_ratio'])
        assert metrics['coverage'] > 0.25, name
