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
from monodepth_ros.training.config import AugmentConfig, config_from_dict, load_config
from monodepth_ros.training.datasets import (
    CityscapesSource,
    KittiEigenSource,
    SampleDataset,
    collate_skip_none,
    make_sample,
    read_split_file,
)
from monodepth_ros.training.evaluate import row_mean_depth
from monodepth_ros.training.trainer import Trainer, TrainingDiverged

SMALL_NETWORK = {'encoder': 'tiny', 'num_bins': 16, 'tiny_channels': [8, 8, 16, 16, 16],
                 'decoder_channels': [16, 16, 8, 8, 8], 'aspp_channels': 16,
                 'aspp_dilations': [1, 2]}


# ------------------------------------------------------------------------------- losses

def test_depth_to_bins_hand_computed():
    # a=1, b=16, K=4: edges 1, 2, 4, 8, 16
    depth = torch.tensor([1.0, 1.99, 2.0, 3.0, 15.9, 16.0, 0.0, 17.0, float('nan')])
    bins = L.depth_to_bins(depth, 1.0, 16.0, 4)
    assert bins.tolist() == [0, 0, 1, 1, 3, 3, -1, -1, -1]


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
    for name in ('synthetic_quick.yaml', 'kitti_cityscapes.yaml'):
        config = load_config(os.path.join(root, name))
        assert config.steps > config.phase2_steps > 0


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
    root = kitti_drive_dir.parent.parent
    frame = sorted((kitti_drive_dir / 'image_02' / 'data').glob('*.png'))[0]
    split = tmp_path / 'split.txt'
    split.write_text(f'{kitti_drive_dir.parent.name}/{kitti_drive_dir.name} '
                     f'{int(frame.stem)} l\n')
    sample = KittiEigenSource(root, split).load(0)
    valid = sample['depth'] > 0
    assert sample['rgb'].shape[:2] == sample['depth'].shape
    assert 1000 < valid.sum() < 0.2 * valid.size      # sparse projected LiDAR
    assert 1.0 < float(np.median(sample['depth'][valid])) < 80.0


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


def make_trainer(config, resume=None, semantic=True):
    depth_samples = [make_sample(s['rgb'], s['depth'], None) for s in fake_samples(6, 0)]
    semantic_samples = [make_sample(s['rgb'], None, s['semantics']) for s in fake_samples(6, 1)]
    datasets = {'depth': SampleDataset(samples=depth_samples, height=64, width=96),
                'semantic': (SampleDataset(samples=semantic_samples, height=64, width=96)
                             if semantic else None),
                'val': fake_samples(2, 2)}
    return Trainer(config, datasets, resume=resume, show_progress=False)


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


def test_resume_continues_exactly(tmp_path):
    straight = make_trainer(small_config(tmp_path / 'a'))
    straight.run()

    first = make_trainer(small_config(tmp_path / 'b'))
    first.run(stop_at=2)
    resumed = make_trainer(small_config(tmp_path / 'c'), resume=tmp_path / 'b' / 'run' / 'last.pt')
    assert resumed.step == 2
    resumed.run()
    for (name, a), b in zip(straight.module.state_dict().items(),
                            resumed.module.state_dict().values()):
        assert torch.equal(a, b), name
    saved = read_checkpoint(tmp_path / 'c' / 'run' / 'last.pt')
    assert saved['step'] == 4 and (tmp_path / 'c' / 'run' / 'config.yaml').is_file()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    trainer = make_trainer(small_config(tmp_path, checkpoint_every=1), semantic=False)
    original = L.multiscale_bin_cross_entropy
    calls = {'n': 0}

    def poisoned(*args):
        calls['n'] += 1
        loss = original(*args)
        return loss * float('nan') if calls['n'] >= 2 else loss

    monkeypatch.setattr(L, 'multiscale_bin_cross_entropy', poisoned)
    with pytest.raises(TrainingDiverged, match=r'loss became nan at step 1 .*last\.pt'):
        trainer.run()
    assert read_checkpoint(tmp_path / 'run' / 'last.pt')['step'] == 1


def _ddp_worker(rank, world_size, init_file, out_dir, config):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}',
                                         rank=rank, world_size=world_size)
    try:
        trainer = make_trainer(config)
        trainer.train_step()
        trainer.train_step()
        torch.save({k: v.clone() for k, v in trainer.module.state_dict().items()},
                   os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_ddp_step(tmp_path):
    config = small_config(tmp_path)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / 'init'), str(tmp_path),
                                                   config), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    rank1 = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    single = make_trainer(config).module.state_dict()
    changed = 0
    for name, value in rank0.items():
        assert torch.equal(value, rank1[name]), name      # gradients were averaged
        if value.dtype.is_floating_point and not torch.equal(value, single[name]):
            changed += 1
    assert changed > 0


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
