"""Typed training configuration, loaded from a YAML recipe plus ``key.sub=value`` overrides.

A recipe is a YAML mapping with the sections below (all optional; defaults shown by the
dataclasses). Overrides on the command line use dotted keys and YAML values, e.g.
``optim.lr=5e-4 data.batch_size=4 network.encoder=resnet18 data.depth.seeds=[0,1]``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from monodepth_ros.errors import ConfigError
from monodepth_ros.io import topics
from monodepth_ros.model.network import NetworkConfig

SOURCE_KINDS = ('', 'synthetic', 'kitti', 'cityscapes', 'rosbag')


@dataclass
class SourceConfig:
    """One data source. ``kind`` '' means none (e.g. no semantic source)."""

    kind: str = ''
    root: str = ''              # dataset folder, or bag path for 'rosbag'
    split: str = ''             # split file (kitti: Eigen list; cityscapes: train/val subset)
    gt_root: str = ''           # kitti: annotated depth (data_depth_annotated); '' = velodyne
    seeds: list = field(default_factory=list)    # synthetic drives to render
    frames_per_seed: int = 50
    frame_stride: int = 1       # synthetic: render every n-th frame of a drive
    world_variety: bool = True  # synthetic: walls, fences, vans, bicycles, clouds (ablation)
    camera_sweep: bool = False  # synthetic: each frame through a random camera and mounting
    # synthetic: each drive's heading against the road, uniform in +-heading_deg (degrees;
    # straight ahead then meets the facades of one side 40-80 m away, as on a curve)
    heading_deg: float = 0.0
    junctions: float = 0.0      # synthetic: probability of a cross street per 50 m of road
    max_samples: int = 0        # 0 = all
    image_topic: str = topics.CAMERA_IMAGE_TOPIC
    camera_info_topic: str = topics.CAMERA_INFO_TOPIC
    lidar_topic: str = topics.LIDAR_TOPIC


@dataclass
class AugmentConfig:
    """Seed 003 augmentation; depth is divided by the scale factor to stay metric."""

    enabled: bool = True
    scale_min: float = 0.75
    scale_max: float = 1.25
    rotation_deg: float = 5.0
    flip: bool = True
    color_jitter: float = 0.2   # brightness/contrast/saturation amplitude
    crop_margin: float = 0.1    # images are loaded (1 + margin) x the network size, then cropped
    camera_effects: float = 0.0   # exposure/gamma/white balance/vignetting/blur/noise, 0..1


@dataclass
class DataConfig:
    height: int = 96
    width: int = 320
    batch_size: int = 8
    num_workers: int = 0
    # Focal length (px at the network input) the depth refers to; 0 = KITTI's scaled to width.
    canonical_focal: float = 0.0
    depth: SourceConfig = field(default_factory=lambda: SourceConfig(kind='synthetic'))
    semantic: SourceConfig = field(default_factory=SourceConfig)
    val: SourceConfig = field(default_factory=SourceConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = 'cosine'     # cosine | poly
    poly_power: float = 0.9
    warmup_steps: int = 50
    min_lr_ratio: float = 0.02
    grad_clip: float = 5.0
    # encoder learning rate = lr x this (pretrained: < 1); 0 freezes the encoder entirely
    # (weights and BatchNorm statistics), which also skips its backward pass
    encoder_lr_scale: float = 1.0
    freeze_encoder_bn: bool = False   # keep the encoder's BatchNorm statistics (ImageNet's)


@dataclass
class LossConfig:
    bin_ce: float = 1.0          # depth-bin cross-entropy (both phases)
    fusion_log_l1: float = 1.0   # |log mu - log gt| on the fused expectation (trains masks)
    semantic: float = 1.0
    l1: float = 0.05             # phase 2, metres
    silog: float = 1.0           # phase 2
    silog_lambda: float = 0.85
    # Depth beyond network.depth_max (the road running out to the horizon) is taught as
    # depth_max instead of being ignored, so the network learns where "far" is.
    far_as_max: bool = False


@dataclass
class TrainConfig:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 1000            # total optimizer steps (phase 1 + phase 2)
    phase2_steps: int = 0        # the last phase2_steps steps are regression fine-tuning
    semantic_every: int = 2      # every n-th batch is semantic (2 = alternate; 0 = never)
    val_every: int = 200
    val_frames: int = 16
    log_every: int = 20
    checkpoint_every: int = 200
    output_dir: str = 'runs/train'
    seed: int = 0
    device: str = 'auto'         # auto | cpu | cuda
    amp: bool = True             # mixed precision, used on CUDA only
    max_minutes: float = 0.0     # stop (with a checkpoint) after this wall time; 0 = no limit
    threads: int = 0             # torch CPU threads; 0 = torch default
    description: str = ''

    def to_dict(self) -> dict:
        return _to_plain(self)


def _to_plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _build(cls, data, where: str, defaults=None):
    """Build dataclass ``cls`` from a mapping over ``defaults`` (an instance), recursively."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f'{where}: expected a mapping, got {type(data).__name__}')
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f'{where}: unknown keys {unknown}; known keys: {sorted(known)}')
    defaults = cls() if defaults is None else defaults
    kwargs = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(cls)}
    for name, value in data.items():
        default = getattr(defaults, name)
        key = f'{where}.{name}' if where else name
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, key, default)
        else:
            kwargs[name] = _coerce(default, value, key)
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise ConfigError(f'{where or "config"}: {error}') from error


def _coerce(default, value, key: str):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f'{key}: expected true/false, got {value!r}')
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f'{key}: expected an integer, got {value!r}')
        return value
    if isinstance(default, float):
        if isinstance(value, str):   # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{key}: expected a number, got {value!r}')
        if not math.isfinite(value):
            raise ConfigError(f'{key}: expected a finite number, got {value!r}')
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f'{key}: expected a string, got {value!r}')
        return value
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{key}: expected a list, got {value!r}')
        if any(isinstance(item, float) and not math.isfinite(item) for item in value):
            raise ConfigError(f'{key}: expected finite numbers, got {value!r}')
        return type(default)(value)
    return value


def apply_override(data: dict, override: str) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as YAML) to a nested mapping."""
    if '=' not in override:
        raise ConfigError(f'override {override!r}: expected key.sub=value')
    key, text = override.split('=', 1)
    parts = key.strip().split('.')
    if not all(parts):
        raise ConfigError(f'override {override!r}: empty key component')
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f'override {override!r}: value is not valid YAML ({error})') from error
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f'override {override!r}: {part} is not a section')
        node = child
    node[parts[-1]] = value


def config_from_dict(data: dict, overrides=()) -> TrainConfig:
    data = dict(data or {})
    for override in overrides:
        apply_override(data, override)
    return _build(TrainConfig, data, '')


def load_config(path, overrides=()) -> TrainConfig:
    """Read a YAML recipe, apply overrides, validate, return a TrainConfig."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'training recipe {path} not found (expected a YAML file, e.g. '
                          'training/configs/synthetic_quick.yaml)')
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f'{path}: not valid YAML ({error})') from error
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: a recipe must be a YAML mapping')
    config = config_from_dict(data, overrides)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    for name in ('depth', 'semantic', 'val'):
        source = getattr(config.data, name)
        if source.kind not in SOURCE_KINDS:
            raise ConfigError(f'data.{name}.kind: unknown {source.kind!r}; expected one of '
                              f'{[k for k in SOURCE_KINDS if k]} or empty')
        for key in ('image_topic', 'camera_info_topic', 'lidar_topic'):
            try:
                topics.validate_topic_name(getattr(source, key))
            except ConfigError as error:
                raise ConfigError(f'data.{name}.{key}: {error}') from None
        if not 0.0 <= source.junctions <= 1.0:
            raise ConfigError(f'data.{name}.junctions ({source.junctions}) must be a '
                              'probability in [0, 1]')
        if not 0.0 <= source.heading_deg <= 45.0:
            raise ConfigError(f'data.{name}.heading_deg ({source.heading_deg}) must lie in '
                              '[0, 45] degrees')
    if not config.data.depth.kind:
        raise ConfigError('data.depth.kind: a depth source is required')
    stride = 32
    if config.data.height < stride or config.data.width < stride:
        raise ConfigError(f'data.height/width ({config.data.height}x{config.data.width}) must '
                          f'be at least {stride}')
    if config.optim.lr <= 0 or config.optim.weight_decay < 0 or config.max_minutes < 0:
        raise ConfigError('optim.lr must be > 0, optim.weight_decay and max_minutes >= 0')
    if config.data.height % stride or config.data.width % stride:
        raise ConfigError(f'data.height/width ({config.data.height}x{config.data.width}) must '
                          f'be divisible by the network stride {stride}')
    if config.optim.schedule not in ('cosine', 'poly'):
        raise ConfigError(f'optim.schedule: {config.optim.schedule!r}, expected cosine or poly')
    if not 0 <= config.phase2_steps <= config.steps:
        raise ConfigError(f'phase2_steps ({config.phase2_steps}) must be within 0..steps '
                          f'({config.steps})')
    if config.data.batch_size < 1 or config.steps < 1:
        raise ConfigError('data.batch_size and steps must be >= 1')
    if not 0.0 <= config.data.augment.camera_effects <= 1.0:
        raise ConfigError(f'data.augment.camera_effects ({config.data.augment.camera_effects}) '
                          'must lie in [0, 1]')
    if config.optim.encoder_lr_scale < 0 or config.data.canonical_focal < 0:
        raise ConfigError('optim.encoder_lr_scale and data.canonical_focal must be >= 0')


def save_config(config: TrainConfig, path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
