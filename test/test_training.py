"""Tests of the training module: losses, config, data, gradient flow, resume, DDP, CLI."""

import math
import os

import cv2
import numpy as np
import pytest
import torch

from monodepth_ros.errors import ConfigError, DatasetError
from monodepth_ros.model.checkpoint import read_checkpoint
from monodepth_ros.training import losses as L
from monodepth_ros.training.augment import augment_sample
from monodepth_ros.training.config import AugmentConfig, config_from_dict, load_config, validate
from monodepth_ros.training.datasets import (
    CityscapesSource,
    KittiEigenSource,
    SampleDataset,
    collate_skip_none,
    make_sample,
    read_split_file,
)
from monodepth_ros.training.evaluate import row_mean_depth
from monodepth_ros.training.trainer import BatchStream, LRSchedule, Trainer, TrainingDiverged

SMALL_NETWORK = {'encoder': 'tiny', 'num_bins': 16, 'tiny_channels': [8, 8, 16, 16, 16],
                 'decoder_channels': [16, 16, 8, 8, 8], 'aspp_channels': 16,
                 'aspp_dilations': [1, 2]}


# ------------------------------------------------------------------------------- losses

def test_depth_to_bins_hand_computed():
    # a=1, b=16, K=4: edges 1, 2, 4, 8, 16
    depth = torch.tensor([1.0, 1.99, 2.0, 3.0, 15.9, 16.0, 0.0, 17.0, float('nan')])
    bins = L.depth_to_bins(depth, 1.0, 16.0, 4)
    assert bins.tolist() == [0, 0, 1, 1, 3, 3, -1, -1, -1]


def test_far_depth_as_max_teaches_the_last_bin_and_keeps_missing_depth_missing():
    depth = torch.tensor([0.0, 3.0, 16.0, 17.0, 250.0, float('nan'), float('inf')])
    clamped = L.far_depth_as_max(depth, 16.0)
    assert clamped[:5].tolist() == [0.0, 3.0, 16.0, 16.0, 16.0]
    assert math.isnan(clamped[5]) and math.isinf(clamped[6])
    assert L.depth_to_bins(clamped, 1.0, 16.0, 4).tolist() == [-1, 1, 3, 3, 3, -1, -1]
    # The loss of a far pixel: ignored by default, the last bin's cross-entropy when clamped.
    logits = torch.zeros(1, 4, 1, 2)
    logits[0, 3, 0, 1] = math.log(3.0)     # pixel 1: p(last bin) = 3 / 6; pixel 0: 1 / 4
    gt = torch.tensor([[[[3.0, 40.0]]]])
    assert float(L.bin_cross_entropy(logits, gt, 1.0, 16.0)) == pytest.approx(math.log(4.0))
    both = L.bin_cross_entropy(logits, L.far_depth_as_max(gt, 16.0), 1.0, 16.0)
    assert float(both) == pytest.approx((math.log(4.0) + math.log(2.0)) / 2)


def test_bin_cross_entropy_only_valid_pixels():
    logits = torch.zeros(1, 4, 1, 2)
    logits[0, 1, 0, 0] = math.log(3.0)     # pixel 0: p(bin 1) = 3 / 6
    gt = torch.tensor([[[[3.0, 0.0]]]])    # pixel 1 has no ground truth
    loss = L.bin_cross_entropy(logits, gt, 1.0, 16.0)
    assert float(loss) == pytest.approx(-math.log(0.5))
    empty = L.bin_cross_entropy(logits.requires_grad_(), torch.zeros(1, 1, 1, 2), 1.0, 16.0)
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_downsample_depth_means_valid_log_depth():
    gt = torch.tensor([[[[2.0, 8.0], [0.0, 0.0]]]])
    down = L.downsample_depth(gt, (1, 1), 1.0, 80.0)
    assert float(down) == pytest.approx(4.0)
    assert float(L.downsample_depth(torch.zeros(1, 1, 2, 2), (1, 1), 1.0, 80.0)) == 0.0


def test_semantic_cross_entropy_ignores_255():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 2, 0, 0] = math.log(2.0)   # p(class 2) = 2 / 4 at pixel 0
    labels = torch.tensor([[[2, 255]]])
    assert float(L.semantic_cross_entropy(logits, labels)) == pytest.approx(math.log(2.0))


def test_scale_invariant_and_l1_hand_computed():
    gt = torch.tensor([[[[2.0, 4.0, 0.0]]]])
    pred = torch.tensor([[[[4.0, 8.0, 5.0]]]])    # twice the ground truth; pixel 3 invalid
    log2 = math.log(2.0)
    # e = log 2 everywhere: mean(e^2) - 0.85 mean(e)^2 = 0.15 (log 2)^2
    assert float(L.scale_invariant_log(pred, gt, 1.0, 80.0, 0.85)) == pytest.approx(
        0.15 * log2 ** 2)
    assert float(L.l1_depth(pred, gt, 1.0, 80.0)) == pytest.approx(3.0)
    assert float(L.log_l1(torch.log(pred), gt, 1.0, 80.0)) == pytest.approx(log2)
    # two pixels with e = 0 and e = log 2: (log2^2 / 2) - 0.85 (log2 / 2)^2
    mixed = torch.tensor([[[[2.0, 8.0, 5.0]]]])
    assert float(L.scale_invariant_log(mixed, gt, 1.0, 80.0, 0.85)) == pytest.approx(
        log2 ** 2 / 2 - 0.85 * (log2 / 2) ** 2)


# ------------------------------------------------------------------------------- config

def test_config_overrides_and_errors(tmp_path):
    recipe = tmp_path / 'r.yaml'
    recipe.write_text('network: {encoder: tiny}\nsteps: 10\n')
    config = load_config(recipe, ['optim.lr=1e-4', 'data.depth.seeds=[3, 4]',
                                  'network.aspp_dilations=[1,2]'])
    assert config.optim.lr == pytest.approx(1e-4)
    assert config.data.depth.seeds == [3, 4] and config.network.aspp_dilations == (1, 2)
    with pytest.raises(ConfigError, match=r"optim: unknown keys \['lrr'\]"):
        load_config(recipe, ['optim.lrr=1'])
    with pytest.raises(ConfigError, match='steps: expected an integer'):
        load_config(recipe, ['steps=many'])
    with pytest.raises(ConfigError, match='divisible by the network stride'):
        load_config(recipe, ['data.height=100'])
    with pytest.raises(ConfigError, match='not found'):
        load_config(tmp_path / 'missing.yaml')


def test_shipped_recipes_load():
    root = os.path.join(os.path.dirname(__file__), '..', 'training', 'configs')
    for name in ('synthetic_default.yaml', 'synthetic_quality.yaml', 'synthetic_quick.yaml',
                 'kitti_cityscapes.yaml', 'synthetic_far.yaml', 'synthetic_lite0.yaml'):
        config = load_config(os.path.join(root, name))
        assert config.steps > config.phase2_steps > 0
    # The default model's recipe: 96x320 (the floor), ImageNet encoder kept close, one
    # thread for 100 minutes as the packaged model was trained; the earlier one: 13 minutes.
    default = load_config(os.path.join(root, 'synthetic_default.yaml'))
    assert (default.data.height, default.data.width) == (96, 320)
    assert default.network.encoder == 'efficientnet_lite2' and default.network.pretrained
    assert default.optim.freeze_encoder_bn and default.optim.encoder_lr_scale == 0.1
    assert (default.threads, default.max_minutes, default.loss.l1) == (1, 100.0, 0.5)
    depth_seeds = set(default.data.depth.seeds)
    assert len(depth_seeds) == 96
    assert not depth_seeds & (set(default.data.semantic.seeds) | set(default.data.val.seeds))
    quick = load_config(os.path.join(root, 'synthetic_lite0.yaml'))
    assert quick.network.encoder == 'efficientnet_lite0' and quick.max_minutes == 13.0
    quality = load_config(os.path.join(root, 'synthetic_quality.yaml'))
    assert (quality.data.height, quality.data.width) == (192, 640)


# --------------------------------------------------------------------------------- data

def test_augmentation_divides_depth_by_scale():
    rng = np.random.default_rng(0)
    depth = np.full((41, 61), 10.0, np.float32)
    sample = make_sample(rng.integers(0, 255, (41, 61, 3), dtype=np.uint8), depth,
                         np.zeros((41, 61), np.uint8))
    config = AugmentConfig(scale_min=1.25, scale_max=1.25, rotation_deg=0.0, flip=False,
                           color_jitter=0.0)
    out = augment_sample(sample, 32, 48, config, rng)
    assert out['depth'].shape == (32, 48) and out['rgb'].shape == (32, 48, 3)
    assert np.allclose(out['depth'], 8.0)
    zoom_out = AugmentConfig(scale_min=0.8, scale_max=0.8, rotation_deg=0.0, flip=False,
                             color_jitter=0.0)
    out = augment_sample(sample, 41, 61, zoom_out, rng)
    # Zooming out leaves a border with no ground truth (0) and ignored semantics (255).
    assert out['depth'][0, 0] == 0.0 and out['semantics'][0, 0] == 255
    assert out['depth'][20, 30] == pytest.approx(12.5)


class BoxSource:
    """A 'KITTI' frame of 128x192 pixels: an 80-pixel-wide box at 10 m before a wall at 50 m."""

    def __init__(self, *args):
        pass

    def __len__(self):
        return 1

    def load(self, i):
        depth = np.full((128, 192), 50.0, np.float32)
        depth[24:104, 56:136] = 10.0
        rgb = np.where(depth[..., None] < 20, 200, 30).astype(np.uint8).repeat(3, axis=2)
        return make_sample(rgb, depth, None)


def box_width_times_depth(depth: np.ndarray) -> float:
    row = depth[depth.shape[0] // 2]
    box = (row > 0) & (row < 20)
    return float(box.sum() * np.median(row[box]))


def test_crop_margin_keeps_metric_depth(monkeypatch):
    """Pixel width x depth of an object agrees between training and validation.

    That product is focal length x the object's metric width: the training path (enlarged by
    1 + crop_margin, then cropped) must not change the focal length the depth implies.
    """
    from monodepth_ros.training import datasets

    monkeypatch.setattr(datasets, 'KittiEigenSource', BoxSource)
    config = config_from_dict({
        'network': SMALL_NETWORK,
        'data': {'height': 64, 'width': 96, 'depth': {'kind': 'kitti', 'root': 'r'},
                 'val': {'kind': 'kitti', 'root': 'r'},
                 'augment': {'scale_min': 1.0, 'scale_max': 1.0, 'rotation_deg': 0.0,
                             'flip': False, 'color_jitter': 0.0, 'crop_margin': 0.25}}})
    validation = datasets.load_validation_samples(config.data.val, config, 0)[0]
    expected = box_width_times_depth(validation['depth'])
    assert expected == pytest.approx(40 * 10.0)           # 80 px / 2 at 10 m
    dataset = datasets._source_dataset(config.data.depth, config, 'depth', config.data.augment)
    for index in range(4):                                 # several random crops
        item = dataset[index]['depth'][0].numpy()
        assert item.shape == (64, 96)
        # 80 px x 96/192 x 1.25 = 50 px wide at 10 / 1.25 = 8 m; +-1 px of rounding
        assert box_width_times_depth(item) == pytest.approx(expected, rel=0.03)


def asymmetric_sample(height=32, width=48, seed=0):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(2.0, 60.0, (height, width)).astype(np.float32)   # all values distinct
    return make_sample(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), depth,
                       rng.integers(0, 19, (height, width)).astype(np.uint8))


def only(**changes):
    """Augmentation that does nothing but ``changes``."""
    return AugmentConfig(**{'scale_min': 1.0, 'scale_max': 1.0, 'rotation_deg': 0.0,
                            'flip': False, 'color_jitter': 0.0, **changes})


def test_flip_mirrors_rgb_depth_and_semantics_together():
    sample = asymmetric_sample()
    flipped = kept = 0
    for seed in range(16):
        out = augment_sample(sample, 32, 48, only(flip=True), np.random.default_rng(seed))
        mirrored = [np.array_equal(out[k], sample[k][:, ::-1]) for k in sample]
        same = [np.array_equal(out[k], sample[k]) for k in sample]
        assert all(mirrored) or all(same), seed
        flipped += all(mirrored)
        kept += all(same)
    assert flipped > 0 and kept > 0


def test_rotation_keeps_depth_values():
    sample = asymmetric_sample()
    out = augment_sample(sample, 32, 48, only(rotation_deg=10.0), np.random.default_rng(1))
    assert not np.array_equal(out['depth'], sample['depth'])             # it did rotate
    valid = out['depth'] > 0
    assert valid.mean() > 0.7
    # Nearest sampling, no scaling: every depth is one of the input's, unchanged.
    assert np.isin(out['depth'][valid], sample['depth']).all()
    assert np.isin(out['semantics'][out['semantics'] != 255], sample['semantics']).all()


def test_colour_jitter_touches_rgb_only():
    sample = asymmetric_sample()
    out = augment_sample(sample, 32, 48, only(color_jitter=0.3), np.random.default_rng(2))
    assert np.array_equal(out['depth'], sample['depth'])
    assert np.array_equal(out['semantics'], sample['semantics'])
    assert not np.array_equal(out['rgb'], sample['rgb'])


def test_validation_skips_samples_opencv_cannot_read(monkeypatch, caplog):
    from monodepth_ros.training import datasets

    class HalfBroken(BoxSource):
        def __len__(self):
            return 2

        def load(self, i):
            if i == 0:
                raise cv2.error('OpenCV(4) imdecode: corrupt image')
            return super().load(i)

    monkeypatch.setattr(datasets, 'KittiEigenSource', HalfBroken)
    config = config_from_dict({'network': SMALL_NETWORK,
                               'data': {'height': 64, 'width': 96,
                                        'val': {'kind': 'kitti', 'root': 'r'}}})
    with caplog.at_level('WARNING', logger='monodepth_ros.training.datasets'):
        samples = datasets.load_validation_samples(config.data.val, config, 0)
    assert len(samples) == 1 and samples[0]['depth'].shape == (64, 96)
    assert 'validation sample 0 skipped' in caplog.text


def test_missing_dataset_folders_named(tmp_path):
    with pytest.raises(DatasetError, match=r'KITTI root .*nowhere.*image_02/data'):
        KittiEigenSource(tmp_path / 'nowhere', tmp_path / 'split.txt')
    with pytest.raises(DatasetError, match=r'Cityscapes folder .*leftImg8bit.*labelTrainIds'):
        CityscapesSource(tmp_path, 'train')
    split = tmp_path / 'split.txt'
    split.write_text('2011_09_26/2011_09_26_drive_0002_sync 0000000069 l\nbroken line\n')
    with pytest.raises(DatasetError, match=r'split.txt:2: expected'):
        read_split_file(split, tmp_path)


def test_corrupt_cityscapes_sample_skipped_and_counted(tmp_path):
    images = tmp_path / 'leftImg8bit' / 'train' / 'aachen'
    labels = tmp_path / 'gtFine' / 'train' / 'aachen'
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for name in ('a', 'b'):
        cv2.imwrite(str(images / f'{name}_leftImg8bit.png'), np.zeros((40, 80, 3), np.uint8))
        cv2.imwrite(str(labels / f'{name}_gtFine_labelTrainIds.png'),
                    np.full((40, 80), 7, np.uint8))
    (images / 'b_leftImg8bit.png').write_bytes(b'not a png')
    dataset = SampleDataset(source=CityscapesSource(tmp_path, 'train'), height=32, width=64)
    items = [dataset[0], dataset[1]]
    assert items[1] is None and dataset.skipped == 1
    batch = collate_skip_none(items)
    assert batch['semantics'].shape == (1, 32, 64) and int(batch['semantics'][0, 0, 0]) == 7
    assert float(batch['depth'].abs().max()) == 0.0


def test_kitti_eigen_source_on_excerpt(kitti_drive_dir, tmp_path):
    from monodepth_ros.io.kitti import read_calibration, read_velodyne
    from monodepth_ros.runtime.projection import kitti_eigen_depth_image

    root = kitti_drive_dir.parent.parent
    frame = sorted((kitti_drive_dir / 'image_02' / 'data').glob('*.png'))[0]
    split = tmp_path / 'split.txt'
    split.write_text(f'{kitti_drive_dir.parent.name}/{kitti_drive_dir.name} '
                     f'{int(frame.stem)} l\n')
    sample = KittiEigenSource(root, split).load(0)
    assert sample['rgb'].shape[:2] == sample['depth'].shape
    # Exactly the Eigen-protocol projection of the same scan, as camera z (projective depth).
    points = read_velodyne(kitti_drive_dir / 'velodyne_points' / 'data' / f'{frame.stem}.bin')
    matrix = read_calibration(kitti_drive_dir.parent).velo_to_image_matrix(2)
    height, width = sample['depth'].shape
    expected = kitti_eigen_depth_image(points, matrix, width, height, depth='camera_z')
    assert np.array_equal(sample['depth'], expected)
    lidar_x = kitti_eigen_depth_image(points, matrix, width, height, depth='lidar_x')
    assert not np.array_equal(sample['depth'], lidar_x)


def write_kitti_layout(root, drives=('2011_09_26_drive_0001_sync',), velodyne=True):
    date = root / '2011_09_26'
    for drive in drives:
        images = date / drive / 'image_02' / 'data'
        images.mkdir(parents=True)
        for frame in (5, 6):
            cv2.imwrite(str(images / f'{frame:010d}.png'), np.full((40, 80, 3), 90, np.uint8))
        if velodyne:
            (date / drive / 'velodyne_points' / 'data').mkdir(parents=True)
    return date


def test_kitti_split_drives_checked_up_front(tmp_path):
    date = write_kitti_layout(tmp_path / 'raw', velodyne=False)
    (date / 'calib_cam_to_cam.txt').write_text('')
    split = tmp_path / 'split.txt'
    split.write_text('2011_09_26/2011_09_26_drive_0001_sync 5 l\n'
                     '2011_09_26/2011_09_26_drive_0001_sync 6 l\n'
                     '2011_09_26/2011_09_26_drive_0002_sync 7 r\n')
    with pytest.raises(DatasetError) as error:
        KittiEigenSource(tmp_path / 'raw', split)
    message = str(error.value)
    assert message.startswith(f'split {split}: 4 folder(s)/file(s) missing')
    for missing in ('drive_0001_sync/velodyne_points/data', 'calib_velo_to_cam.txt',
                    'drive_0002_sync/image_03/data', 'drive_0002_sync/velodyne_points/data'):
        assert missing in message
    assert 'drive_0001_sync/image_02' not in message and 'calib_cam_to_cam' not in message


def test_kitti_annotated_depth_and_bts_split(tmp_path):
    write_kitti_layout(tmp_path / 'raw')
    drive = '2011_09_26_drive_0001_sync'
    annotated = tmp_path / 'annotated' / 'train' / drive / 'proj_depth' / 'groundtruth'
    (annotated / 'image_02').mkdir(parents=True)
    depth = np.zeros((40, 80), np.uint16)
    depth[10, 20] = round(12.5 * 256)
    cv2.imwrite(str(annotated / 'image_02' / '0000000005.png'), depth)
    split = tmp_path / 'bts.txt'
    split.write_text(f'2011_09_26/{drive}/image_02/data/0000000005.png '
                     f'{drive}/proj_depth/groundtruth/image_02/0000000005.png 721.5377\n'
                     f'2011_09_26/{drive}/image_02/data/0000000006.png None 721.5377\n')
    assert read_split_file(split) == [(f'2011_09_26/{drive}', 5, 'l'),
                                      (f'2011_09_26/{drive}', 6, 'l')]
    source = KittiEigenSource(tmp_path / 'raw', split, gt_root=tmp_path / 'annotated')
    sample = source.load(0)
    assert sample['depth'][10, 20] == 12.5 and np.count_nonzero(sample['depth']) == 1
    with pytest.raises(DatasetError, match=r'cannot read annotated depth .*0000000006\.png'):
        source.load(1)   # the release has no map for this frame
    with pytest.raises(DatasetError, match=r'missing .*nowhere/\{train,val\}/'
                       r'2011_09_26_drive_0001_sync/proj_depth'):
        (tmp_path / 'nowhere').mkdir()
        KittiEigenSource(tmp_path / 'raw', split, gt_root=tmp_path / 'nowhere')


class ConstantDepth(torch.nn.Module):
    """A 'network' that predicts 4 m everywhere."""

    def forward(self, image, heads=('depth', 'semantic')):
        return {'depth': torch.full((image.shape[0], 1, *image.shape[-2:]), 4.0)}


def test_evaluate_samples_hand_computed():
    from monodepth_ros.training.evaluate import evaluate_samples, predict_depth

    a = make_sample(np.zeros((2, 2, 3), np.uint8), np.array([[2, 4], [0, 100]], np.float32))
    b = make_sample(np.zeros((2, 2, 3), np.uint8), np.array([[10, 60], [0, 0]], np.float32))
    model = ConstantDepth().train()
    predictions = predict_depth(model, [a, b], 'cpu', batch_size=1)
    assert not model.training
    assert [p.tolist() for p in predictions] == [[[4.0, 4.0], [4.0, 4.0]]] * 2
    metrics = evaluate_samples(model, [a, b], 'cpu', caps=(50.0, 80.0))
    # Image a: gt 2 and 4 (100 is beyond both caps): abs_rel (1 + 0) / 2, rmse sqrt(4 / 2),
    # sq_rel (4/2 + 0) / 2, rmse_log sqrt(log(2)^2 / 2), delta1 1 of 2.
    # Image b: cap 50 keeps gt 10 only; cap 80 keeps 10 and 60.
    log2 = math.log(2.0)
    assert metrics['abs_rel@50'] == pytest.approx((0.5 + 0.6) / 2)
    assert metrics['abs_rel@80'] == pytest.approx((0.5 + (0.6 + 56 / 60) / 2) / 2)
    assert metrics['rmse@50'] == pytest.approx((math.sqrt(2.0) + 6.0) / 2)
    assert metrics['rmse@80'] == pytest.approx((math.sqrt(2.0) + math.sqrt((36 + 56 ** 2) / 2))
                                               / 2)
    assert metrics['sq_rel@50'] == pytest.approx((1.0 + 3.6) / 2)
    assert metrics['rmse_log@50'] == pytest.approx(
        (log2 / math.sqrt(2.0) + abs(math.log(0.4))) / 2)
    assert metrics['delta1@50'] == pytest.approx((0.5 + 0.0) / 2)
    assert metrics['delta1@80'] == pytest.approx(0.25)


def test_lr_schedule_factors_hand_computed():
    from monodepth_ros.training.config import OptimConfig

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cosine = LRSchedule(optimizer, OptimConfig(lr=0.01, warmup_steps=4, min_lr_ratio=0.1,
                                               schedule='cosine'))
    assert cosine.factor(10, 0.0) == pytest.approx(1.0)
    assert cosine.factor(10, 0.5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cosine.factor(10, 1.0) == pytest.approx(0.1)
    assert cosine.factor(10, 1.7) == pytest.approx(0.1)                 # progress clamped
    assert cosine.factor(1, 0.5) == pytest.approx(0.5 * (0.1 + 0.9 * 0.5))  # warm-up 2/4
    assert cosine.factor(0, 0.0) == pytest.approx(0.25)
    assert cosine.apply(1, 0.5) == pytest.approx(0.01 * 0.275)
    assert optimizer.param_groups[0]['lr'] == pytest.approx(0.01 * 0.275)
    poly = LRSchedule(optimizer, OptimConfig(lr=0.01, warmup_steps=0, min_lr_ratio=0.1,
                                             schedule='poly', poly_power=2.0))
    assert poly.factor(0, 0.5) == pytest.approx(0.1 + 0.9 * 0.25)
    assert poly.factor(0, 0.75) == pytest.approx(0.1 + 0.9 * 0.0625)


def test_row_mean_baseline():
    a = make_sample(np.zeros((2, 2, 3), np.uint8), np.array([[2, 4], [0, 6]], np.float32))
    b = make_sample(np.zeros((2, 2, 3), np.uint8), np.array([[6, 0], [0, 0]], np.float32))
    assert row_mean_depth([a, b]).tolist() == pytest.approx([4.0, 6.0])


# ------------------------------------------------------------------------------ trainer

def fake_samples(count, seed=0, height=64, width=96):
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        rows = np.linspace(40.0, 3.0, height, dtype=np.float32)[:, None]
        depth = np.repeat(rows, width, axis=1) * rng.uniform(0.8, 1.2)
        semantics = rng.integers(0, 19, (height, width)).astype(np.uint8)
        samples.append(make_sample(rgb, depth.astype(np.float32), semantics))
    return samples


def small_config(tmp_path, **changes):
    data = {'network': SMALL_NETWORK, 'data': {'height': 64, 'width': 96, 'batch_size': 2,
                                               'augment': {'enabled': False}},
            'optim': {'warmup_steps': 0}, 'steps': 4, 'phase2_steps': 0, 'val_every': 0,
            'checkpoint_every': 0, 'log_every': 1000, 'threads': 1,
            'output_dir': str(tmp_path / 'run')}
    data.update(changes)
    return config_from_dict(data)


class RecordingDataset(SampleDataset):
    """A SampleDataset that remembers which indices were drawn (num_workers=0)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.drawn = []

    def __getitem__(self, index):
        self.drawn.append(int(index))
        return super().__getitem__(index)


def make_trainer(config, resume=None, semantic=True, augment=None, rank=0, world_size=1):
    height, width = config.data.height, config.data.width
    depth_samples = [make_sample(s['rgb'], s['depth'], None)
                     for s in fake_samples(6, 0, height, width)]
    semantic_samples = [make_sample(s['rgb'], None, s['semantics'])
                        for s in fake_samples(6, 1, height, width)]
    datasets = {'depth': RecordingDataset(samples=depth_samples, height=height, width=width,
                                          augment=augment),
                'semantic': (RecordingDataset(samples=semantic_samples, height=height,
                                              width=width, augment=augment)
                             if semantic else None),
                'val': fake_samples(2, 2, height, width)}
    return Trainer(config, datasets, resume=resume, rank=rank, world_size=world_size,
                   show_progress=False)


def grads(parameters):
    return [p.grad for p in parameters]


def test_conditional_gradient_flow(tmp_path):
    trainer = make_trainer(small_config(tmp_path, steps=10, phase2_steps=5))
    heads = trainer.module.head_parameters()
    shared = list(trainer.module.encoder.parameters())

    values = trainer.train_step()   # step 0: depth batch, phase 1
    assert values['kind'] == 'depth' and values['phase'] == 1
    assert all(g is not None and g.abs().sum() > 0 for g in grads(heads['depth']))
    assert all(g is None for g in grads(heads['semantic']))
    assert all(g is None for g in grads(heads['regression']))
    assert any(g is not None and g.abs().sum() > 0 for g in grads(shared))

    semantic_before = [p.detach().clone() for p in heads['semantic']]
    values = trainer.train_step()   # step 1: semantic batch
    assert values['kind'] == 'semantic'
    assert all(g is not None and g.abs().sum() > 0 for g in grads(heads['semantic']))
    assert all(g is None for g in grads(heads['depth']))
    assert any(g is not None and g.abs().sum() > 0 for g in grads(shared))
    assert any(not torch.equal(a, p) for a, p in zip(semantic_before, heads['semantic']))

    trainer.step = 6                # phase 2: the regression layers learn from depth
    values = trainer.train_step()
    assert values['kind'] == 'depth' and values['phase'] == 2
    assert all(g is not None for g in grads(heads['regression']))
    assert all(g is None for g in grads(heads['semantic']))


def assert_same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


RESUME_AUGMENT = AugmentConfig(scale_min=0.8, scale_max=1.25, rotation_deg=5.0, flip=True,
                               color_jitter=0.2)


def test_resume_continues_exactly(tmp_path):
    # 6 samples, batch 2: 3 depth batches per epoch; depth batches come at even steps, so
    # stopping at step 7 leaves the depth data partway through its second epoch (batch 4 of
    # 6), with augmentation that must differ from the first epoch's.
    changes = dict(steps=10, data={'height': 32, 'width': 64, 'batch_size': 2})
    straight = make_trainer(small_config(tmp_path / 'a', **changes), augment=RESUME_AUGMENT)
    straight.run()

    first = make_trainer(small_config(tmp_path / 'b', **changes), augment=RESUME_AUGMENT)
    first.run(stop_at=7)
    resumed = make_trainer(small_config(tmp_path / 'c', **changes), augment=RESUME_AUGMENT,
                           resume=tmp_path / 'b' / 'run' / 'last.pt')
    assert resumed.step == 7 and resumed.depth_stream.counter == 4
    resumed.run()
    assert_same_state(straight.module.state_dict(), resumed.module.state_dict())
    # The resumed run drew the same dataset indices (epoch included) as the straight one.
    drawn = straight.depth_stream.dataset.drawn
    assert resumed.depth_stream.dataset.drawn == drawn[8:]
    assert all(i >= 6 for i in drawn[6:]) and all(i < 6 for i in drawn[:6])
    saved = read_checkpoint(tmp_path / 'c' / 'run' / 'last.pt')
    assert saved['step'] == 10 and (tmp_path / 'c' / 'run' / 'config.yaml').is_file()


def test_epoch_reaches_dataloader_workers():
    """Batches depend on the epoch through the index alone: workers give the same batches."""
    samples = [make_sample(s['rgb'], s['depth'], s['semantics'])
               for s in fake_samples(4, 0, 32, 64)]
    dataset = SampleDataset(samples=samples, height=32, width=64, augment=RESUME_AUGMENT)
    assert not torch.equal(dataset[1]['image'], dataset[5]['image'])   # epoch 0 vs epoch 1
    assert torch.equal(dataset[5]['image'], dataset[5]['image'])
    batches = {}
    for workers in (0, 1):
        stream = BatchStream('depth', dataset, 2, seed=3, rank=0, world_size=1,
                             num_workers=workers)
        batches[workers] = [stream.next()['image'] for _ in range(4)]   # 2 epochs
    for a, b in zip(batches[0], batches[1], strict=True):
        assert torch.equal(a, b)


def test_resume_rejects_another_network(tmp_path):
    first = make_trainer(small_config(tmp_path / 'a'))
    first.run(stop_at=1)
    other = small_config(tmp_path / 'b', network={**SMALL_NETWORK, 'num_bins': 24,
                                                  'aspp_dilations': [1, 3]})
    with pytest.raises(ConfigError, match=r'another network configuration \(aspp_dilations: '
                       r'checkpoint \[1, 2\] vs config \[1, 3\], num_bins: checkpoint 16 '
                       r'vs config 24\)'):
        make_trainer(other, resume=tmp_path / 'a' / 'run' / 'last.pt')
    # 'pretrained' only decides the initial weights: resuming with another value is fine.
    same = small_config(tmp_path / 'c', network={**SMALL_NETWORK, 'pretrained': True})
    assert make_trainer(same, resume=tmp_path / 'a' / 'run' / 'last.pt').step == 1


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    trainer = make_trainer(small_config(tmp_path, checkpoint_every=1), semantic=False)
    original = L.multiscale_bin_cross_entropy
    calls = {'n': 0}

    def poisoned(*args):
        calls['n'] += 1
        loss = original(*args)
        return loss * float('nan') if calls['n'] >= 2 else loss

    monkeypatch.setattr(L, 'multiscale_bin_cross_entropy', poisoned)
    last = tmp_path / 'run' / 'last.pt'
    with pytest.raises(TrainingDiverged, match=rf'loss became nan at step 1 .*'
                       rf'last good checkpoint is {last}'):
        trainer.run()
    assert read_checkpoint(last)['step'] == 1


def nan_gradient(loss):
    """``loss`` unchanged in value, but with a NaN gradient: 0 x d sqrt(x)/dx at x = -1."""
    broken = torch.sqrt(loss - loss.detach() - 1.0)
    return torch.where(torch.tensor(True), loss, broken)


@pytest.mark.parametrize('grad_clip', [5.0, 0.0])
def test_nan_gradient_stops_before_the_update(tmp_path, monkeypatch, grad_clip):
    trainer = make_trainer(small_config(tmp_path, checkpoint_every=1,
                                        optim={'warmup_steps': 0, 'grad_clip': grad_clip}),
                           semantic=False)
    original = L.multiscale_bin_cross_entropy
    calls = {'n': 0}

    def poisoned(*args):
        calls['n'] += 1
        loss = original(*args)
        return nan_gradient(loss) if calls['n'] >= 2 else loss

    monkeypatch.setattr(L, 'multiscale_bin_cross_entropy', poisoned)
    last = tmp_path / 'run' / 'last.pt'
    with pytest.raises(TrainingDiverged, match=rf'gradient norm became nan at step 1 .*'
                       rf'last good checkpoint is {last}'):
        trainer.run()
    saved = read_checkpoint(last)
    assert saved['step'] == 1
    assert all(bool(torch.isfinite(v).all()) for v in saved['model'].values()
               if v.is_floating_point())
    # The update was not applied: the parameters are still those of the checkpoint (the
    # BatchNorm statistics did move in the forward pass).
    parameters = {k: v.detach() for k, v in trainer.module.named_parameters()}
    assert_same_state({k: saved['model'][k] for k in parameters}, parameters)


def test_divergence_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    trainer = make_trainer(small_config(tmp_path), semantic=False)
    original = L.multiscale_bin_cross_entropy
    monkeypatch.setattr(L, 'multiscale_bin_cross_entropy',
                        lambda *args: nan_gradient(original(*args)))
    with pytest.raises(TrainingDiverged, match='no checkpoint was written yet'):
        trainer.run()
    assert not (tmp_path / 'run' / 'last.pt').exists()


def test_non_finite_weights_are_never_saved(tmp_path):
    trainer = make_trainer(small_config(tmp_path), semantic=False)
    trainer.output_dir.mkdir(parents=True)
    first = trainer.save()
    with torch.no_grad():
        next(trainer.module.parameters())[0].fill_(float('inf'))
    trainer.step = 3
    with pytest.raises(TrainingDiverged, match=rf'non-finite .*not saved; the last good '
                       rf'checkpoint is {first}'):
        trainer.save()
    assert read_checkpoint(first)['step'] == 0


def buffers(module):
    return {name: value.clone() for name, value in module.named_buffers()}


def test_each_batch_updates_only_its_heads_batchnorm_statistics(tmp_path):
    trainer = make_trainer(small_config(tmp_path))
    net = trainer.module
    semantic_before = buffers(net.semantic_head)
    depth_before = {**buffers(net.depth_heads), **buffers(net.regression)}
    assert any('running_mean' in name for name in semantic_before)
    assert any('running_mean' in name for name in depth_before)

    assert trainer.train_step()['kind'] == 'depth'
    assert_same_state(semantic_before, buffers(net.semantic_head))
    depth_after = {**buffers(net.depth_heads), **buffers(net.regression)}
    assert any(not torch.equal(depth_before[k], depth_after[k]) for k in depth_before)

    assert trainer.train_step()['kind'] == 'semantic'
    assert_same_state(depth_after, {**buffers(net.depth_heads), **buffers(net.regression)})
    assert any(not torch.equal(semantic_before[k], v)
               for k, v in buffers(net.semantic_head).items())


def test_epoch_skip_report_and_an_epoch_without_readable_samples(tmp_path, caplog):
    class Flaky:
        """Samples 1 and 3 cannot be read; with ``broken`` none can."""

        def __init__(self, broken=False):
            self.broken = broken
            self.loads = 0

        def __len__(self):
            return 4

        def load(self, i):
            self.loads += 1
            if self.loads > 100:   # not a DatasetError: ends an endless retry loop
                raise RuntimeError('still drawing batches after 100 unreadable samples')
            if self.broken or i in (1, 3):
                raise DatasetError(f'cannot read sample {i}')
            return fake_samples(1, i, 32, 64)[0]

    stream = BatchStream('depth', SampleDataset(source=Flaky(), height=32, width=64), 2,
                         seed=0, rank=0, world_size=1)
    with caplog.at_level('WARNING', logger='monodepth_ros.training.trainer'):
        stream.next()
        assert 'skipped' not in caplog.text
        stream.next()                   # end of epoch 1: 2 of its 4 samples were unreadable
    assert 'depth data, epoch 1: skipped 2 unreadable samples' in caplog.text
    assert stream.skipped_this_epoch == 0

    stream = BatchStream('depth', SampleDataset(source=Flaky(broken=True), height=32,
                                                width=64), 2, seed=0, rank=0, world_size=1)
    with pytest.raises(DatasetError, match=r'no readable sample in 2 batches in a row'):
        stream.next_nonempty()


def _ddp_worker(rank, world_size, init_file, out_dir, config):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}',
                                         rank=rank, world_size=world_size)
    try:
        trainer = make_trainer(config, rank=rank, world_size=world_size)
        semantic_before = [p.detach().clone() for p in trainer.module.semantic_head.parameters()]
        trainer.train_step()            # depth batch
        semantic_grads = [p.grad for p in trainer.module.semantic_head.parameters()]
        semantic_after = [p.detach().clone() for p in trainer.module.semantic_head.parameters()]
        trainer.train_step()            # semantic batch
        # Parameters only: BatchNorm statistics are per process (DDP broadcasts rank 0's
        # before each forward pass, then each process updates its own).
        parameters = {k: v.detach().clone() for k, v in trainer.module.named_parameters()}
        torch.save({'state': parameters,
                    'ddp': isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel),
                    'drawn': [trainer.depth_stream.dataset.drawn,
                              trainer.semantic_stream.dataset.drawn],
                    'semantic_grads_none': all(g is None for g in semantic_grads),
                    'semantic_unchanged': all(torch.equal(a, b) for a, b in
                                              zip(semantic_before, semantic_after))},
                   os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_ddp_step(tmp_path):
    config = small_config(tmp_path, data={'height': 32, 'width': 64, 'batch_size': 2})
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / 'init'), str(tmp_path),
                                                   config), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in (0, 1)]
    assert ranks[0]['ddp'] and ranks[1]['ddp']
    for stream in (0, 1):               # depth and semantic data: disjoint shards
        assert len(ranks[0]['drawn'][stream]) == 2
        assert set(ranks[0]['drawn'][stream]).isdisjoint(ranks[1]['drawn'][stream])
    # Under DDP (find_unused_parameters), a depth step leaves the semantic head untouched.
    for rank in ranks:
        assert rank['semantic_grads_none'] and rank['semantic_unchanged']
    assert_same_state(ranks[0]['state'], ranks[1]['state'])       # gradients were averaged

    # One process on rank 0's shard alone draws the same samples but ends elsewhere.
    single = make_trainer(config)
    single.depth_stream.world_size = single.semantic_stream.world_size = 2
    single.train_step()
    single.train_step()
    assert [single.depth_stream.dataset.drawn,
            single.semantic_stream.dataset.drawn] == ranks[0]['drawn']
    state = {k: v.detach() for k, v in single.module.named_parameters()}
    assert list(state) == list(ranks[0]['state'])
    differing = [k for k, v in state.items() if not torch.equal(v, ranks[0]['state'][k])]
    assert differing


def test_train_command_on_the_synthetic_world(tmp_path):
    pytest.importorskip('monodepth_ros.synthetic.world')
    from monodepth_ros.cli import main

    recipe = os.path.join(os.path.dirname(__file__), '..', 'training', 'configs',
                          'synthetic_quick.yaml')
    code = main(['train', '--config', recipe, '--output-dir', str(tmp_path / 'run'),
                 '--no-progress', 'steps=2', 'phase2_steps=1', 'data.batch_size=2',
                 'data.height=64', 'data.width=192', 'data.depth.seeds=[1]',
                 'data.depth.frames_per_seed=2', 'data.semantic.seeds=[2]',
                 'data.semantic.frames_per_seed=2', 'data.val.seeds=[3]',
                 'data.val.frames_per_seed=1', 'network.num_bins=16',
                 'network.tiny_channels=[8,8,8,8,8]', 'network.aspp_channels=8',
                 'network.decoder_channels=[8,8,8,8,8]'])
    assert code == 0
    assert (tmp_path / 'run' / 'model.pt').is_file()
    assert (tmp_path / 'run' / 'config.yaml').is_file()
    from monodepth_ros.model.checkpoint import load_model
    model, metadata = load_model(tmp_path / 'run' / 'model.pt')
    assert (metadata.input_height, metadata.input_width, metadata.num_bins) == (64, 192, 16)


def test_rosbag_source_projects_lidar(tmp_path):
    synth_bag = pytest.importorskip('monodepth_ros.bagtools.synth_bag')
    from monodepth_ros.synthetic.world import SyntheticDrive
    from monodepth_ros.training.config import SourceConfig
    from monodepth_ros.training.datasets import load_rosbag_samples

    bag = synth_bag.write_synthetic_bag(tmp_path / 'bag', frames=1, seed=5, size=(448, 128))
    samples = load_rosbag_samples(SourceConfig(kind='rosbag', root=str(bag)), 128, 448)
    assert len(samples) == 1
    depth = samples[0]['depth']
    truth = SyntheticDrive(seed=5).render(0, lidar=False, size=(448, 128)).depth
    both = (depth > 0) & np.isfinite(truth)
    assert both.sum() > 500                               # sparse but plenty of points
    relative = np.abs(depth[both] - truth[both]) / truth[both]
    assert np.median(relative) < 0.02                     # LiDAR depth lands on the surface
    with pytest.raises(DatasetError, match='lacks topics'):
        load_rosbag_samples(SourceConfig(kind='rosbag', root=str(bag),
                                         lidar_topic='/velodyne_points'), 128, 448)


def test_encoder_learning_rate_scale_and_frozen_encoder_batchnorm(tmp_path):
    config = small_config(tmp_path, optim={'warmup_steps': 0, 'lr': 0.01,
                                           'encoder_lr_scale': 0.1, 'freeze_encoder_bn': True})
    trainer = make_trainer(config, semantic=False)
    net = trainer.module
    encoder_before = buffers(net.encoder)
    depth_before = buffers(net.depth_heads)
    lr = trainer.train_step()['lr']
    encoder_group, rest_group = trainer.optimizer.param_groups
    assert encoder_group['lr'] == pytest.approx(0.1 * lr) and rest_group['lr'] == lr
    assert {id(p) for p in encoder_group['params']} == {id(p) for p in net.encoder.parameters()}
    # The encoder's statistics stay; the heads' still follow the batches.
    assert_same_state(encoder_before, buffers(net.encoder))
    assert any(not torch.equal(depth_before[k], v) for k, v in buffers(net.depth_heads).items())


def test_encoder_learning_rate_scale_zero_freezes_the_whole_encoder(tmp_path):
    config = small_config(tmp_path, optim={'warmup_steps': 0, 'lr': 0.01,
                                           'encoder_lr_scale': 0.0})
    trainer = make_trainer(config, semantic=False)
    net = trainer.module
    encoder_before = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    heads_before = {k: v.clone() for k, v in net.depth_heads.state_dict().items()}
    trainer.train_step()
    trainer.train_step()
    # Weights and BatchNorm statistics of the encoder are untouched; nothing else is frozen.
    assert_same_state(encoder_before, net.encoder.state_dict())
    assert all(p.grad is None for p in net.encoder.parameters())
    assert any(not torch.equal(heads_before[k], v)
               for k, v in net.depth_heads.state_dict().items())
    with pytest.raises(ConfigError, match='encoder_lr_scale'):
        validate(small_config(tmp_path, optim={'encoder_lr_scale': -0.1}))


def test_resume_of_another_optimizer_layout_is_a_clear_error(tmp_path):
    trainer = make_trainer(small_config(tmp_path))
    trainer.train_step()
    path = trainer.save()
    payload = torch.load(path, map_location='cpu', weights_only=True)
    payload['optimizer']['param_groups'] = payload['optimizer']['param_groups'][:1]
    torch.save(payload, path)
    with pytest.raises(ConfigError, match='1 parameter group'):
        make_trainer(small_config(tmp_path), resume=path)
