"""The depth node's parameters: specs with descriptions and limits, validation, descriptors.

One table (:data:`PARAMETERS`) feeds the rclpy declarations, ``ros2 param describe``, the
validated :class:`NodeConfig` and the parameter documentation.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from monodepth_ros.engines import BACKENDS, PRECISIONS
from monodepth_ros.errors import ConfigError
from monodepth_ros.io.framing import DEFAULT_ANCHOR, DEFAULT_FRAMING, FRAMING_MODES
from monodepth_ros.runtime.far_pass import DEFAULT_FAR_PASS_FOCAL
from monodepth_ros.runtime.scale import SCALE_MODES, ScaleSettings
from monodepth_ros.runtime.sync import STAMP_TOLERANCE_S

DOUBLE_MAX = sys.float_info.max


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: default (its type is the parameter type), description, checks."""

    name: str
    default: Any
    description: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    read_only: bool = False     # needs a restart (subscriptions/QoS are made once)
    reloads_model: bool = False


PARAMETERS = (
    ParameterSpec('model_path', '', 'Model file: .onnx, or a .pt checkpoint (exported to ONNX '
                  'once and cached). Empty: the packaged default model.', reloads_model=True),
    ParameterSpec('model_card', '', 'Model card of a foreign ONNX model (how to feed it and read '
                  'its output): a YAML file or a preset name (see "monodepth inspect-model"). '
                  'Empty: none, for our own models.', reloads_model=True),
    ParameterSpec('backend', 'auto', 'Inference backend: auto picks the fastest available '
                  '(tensorrt > onnxruntime > torch).', choices=BACKENDS, reloads_model=True),
    ParameterSpec('precision', 'fp16', 'Engine precision (TensorRT; other backends run fp32 '
                  'on CPU).', choices=PRECISIONS, reloads_model=True),
    ParameterSpec('engine_cache_dir', '', 'Folder for cached TensorRT engines (ONNX exports of '
                  '.pt checkpoints go to <folder>/onnx). Empty: $MONODEPTH_ENGINE_CACHE, else '
                  '$XDG_CACHE_HOME/monodepth_ros/engines (~/.cache/...).', reloads_model=True),
    ParameterSpec('output_resolution', 'network', "Resolution of every output: 'network' "
                  "(model input size, the framed camera's intrinsics) or 'camera' (input image "
                  'size, NaN outside the part the network saw).', choices=('network', 'camera')),
    ParameterSpec('framing', DEFAULT_FRAMING, "How images reach the network input, never "
                  "stretched: 'canonical-fit' (scaled to the model's canonical focal length, "
                  'but no smaller than the whole image fitting the input and no larger than '
                  'fit-width; fit-width without a CameraInfo, for a model with no canonical '
                  "focal length and for a foreign model card), 'fit-width' (scaled to the "
                  'network width, rows cropped around the principal point or padded) or '
                  "'canonical-focal' (scaled to the model's canonical focal length, then "
                  'cropped or padded both ways).',
                  choices=FRAMING_MODES),
    ParameterSpec('framing_anchor', DEFAULT_ANCHOR, 'Where the principal point row lands in '
                  'the network input, as a fraction of its height (0 top, 1 bottom; 0.46 as '
                  "in KITTI keeps the band around a level camera's horizon).", minimum=0.0,
                  maximum=1.0),
    ParameterSpec('far_pass_focal', DEFAULT_FAR_PASS_FOCAL, 'Our camera-aware models run a '
                  'second, zoomed pass around the principal point for the far field, at this '
                  "focal length at the network input in multiples of the model's canonical "
                  'one (skipped when that zooms less than 1.25x over the first pass); both '
                  'views run as one batch of two on ONNX Runtime and PyTorch, one after the '
                  'other on TensorRT. 0 turns it off (one image per frame: 0.86x the inference '
                  'time with ONNX Runtime on a 2-core CPU, about half on TensorRT).',
                  minimum=0.0),
    ParameterSpec('ground_contact', True, 'Our models: vehicles and people within 10 m take '
                  'the depth of the road where they touch it (the road plane fitted to the '
                  'predicted road). Fixes near traffic read too far on long lenses.'),
    ParameterSpec('depth_upsampling', 'nearest', "How depth is resized to camera resolution: "
                  "'nearest' or 'bilinear' (never blends with invalid pixels).",
                  choices=('nearest', 'bilinear')),
    ParameterSpec('cloud_stride', 1, 'Keep every n-th pixel (rows and columns) in the point '
                  'cloud.', minimum=1, maximum=64),
    ParameterSpec('cloud_min_range', 0.0, 'Points with depth (z, metres) below this are NaN.',
                  minimum=0.0),
    ParameterSpec('cloud_max_range', 80.0, 'Points with depth (z, metres) above this are NaN.',
                  minimum=0.0),
    ParameterSpec('confidence_threshold', 0.0, 'Pixels with confidence below this are NaN in '
                  'the point cloud (0 keeps all).', minimum=0.0, maximum=1.0),
    ParameterSpec('cloud_rgb', True, 'Add the packed rgb field to the point cloud.'),
    ParameterSpec('cloud_confidence', False, 'Add a float32 confidence field to the cloud.'),
    ParameterSpec('cloud_label', False, 'Add a float32 label (trainId) field to the cloud.'),
    ParameterSpec('output_qos_reliability', 'reliable', 'Reliability of the outputs: reliable '
                  '(RViz default) or best_effort.', choices=('reliable', 'best_effort'),
                  read_only=True),
    ParameterSpec('output_qos_depth', 2, 'History depth of the output publishers.', minimum=1,
                  maximum=100, read_only=True),
    ParameterSpec('use_compressed_input', False, 'Subscribe to sensor_msgs/CompressedImage '
                  'on <~/input/image>/compressed (the image_transport convention: a remap of '
                  '~/input/image applies) instead of Image on ~/input/image.', read_only=True),
    ParameterSpec('camera_info_cache', True, 'When no CameraInfo stamp is within '
                  'camera_info_stamp_tolerance of the image stamp, use the newest one stamped '
                  'at or before the image (drivers that publish it rarely).'),
    ParameterSpec('camera_info_stamp_tolerance', STAMP_TOLERANCE_S, 'Largest |image - '
                  'camera_info| stamp difference (seconds) counted as a match.', minimum=0.0),
    ParameterSpec('camera_info_wait', 0.1, 'Seconds to wait for the CameraInfo of an image '
                  'that arrived before it (drivers publish the image first); 0: do not wait.',
                  minimum=0.0, maximum=1.0),
    ParameterSpec('queue_size', 1, 'Images waiting for the worker; when full the oldest is '
                  'dropped and counted (1 = always process the latest frame).', minimum=1,
                  maximum=10),
    ParameterSpec('scale_mode', 'auto', 'Metres from a relative or mis-scaled model: none '
                  '(the model is metric), fixed (scale_value, scale_shift), lidar (fitted per '
                  'frame to lidar_topic), ground (from camera_height and the ground plane '
                  'fitted to the prediction); auto: none for metric models, lidar for '
                  'affine ones with lidar_topic, else ground.', choices=SCALE_MODES),
    ParameterSpec('camera_height', 0.0, "The camera's height above the ground (metres) for "
                  'scale_mode ground; 0: from /tf_static, the transform from ground_frame to the '
                  "image's frame.", minimum=0.0, maximum=100.0),
    ParameterSpec('ground_frame', 'base_link', 'Frame on the ground under the robot (z up) for '
                  'the camera height from /tf_static.'),
    ParameterSpec('scale_value', 1.0, "scale_mode fixed: s in the model's space (metres = s * "
                  'd + t, or 1 / metres for inverse-depth models).', minimum=1e-9),
    ParameterSpec('scale_shift', 0.0, 'scale_mode fixed: t.'),
    ParameterSpec('scale_smoothing', True, 'Smooth the fitted scale over frames (robust: a '
                  'single outlier is ignored, a lasting jump resets it).'),
    ParameterSpec('lidar_topic', '', 'PointCloud2 topic of a LiDAR to fit the scale to '
                  '(scale_mode lidar or auto); its frame is connected to the camera by '
                  '/tf_static. Empty: no LiDAR subscription.', read_only=True),
    ParameterSpec('lidar_stamp_tolerance', 0.05, 'Largest |image - LiDAR| stamp difference '
                  '(seconds) for a scan to be used with an image.', minimum=0.0, maximum=1.0),
    ParameterSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.',
                  minimum=0.05, read_only=True),
    ParameterSpec('model_retry_period', 10.0, 'Seconds between attempts to load a model that '
                  'failed to load (0 = only on parameter change).', minimum=0.0),
)
PARAMETER_SPECS = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeConfig:
    """Validated node parameters (one field per entry of :data:`PARAMETERS`)."""

    model_path: str = ''
    model_card: str = ''
    backend: str = 'auto'
    precision: str = 'fp16'
    engine_cache_dir: str = ''
    output_resolution: str = 'network'
    depth_upsampling: str = 'nearest'
    framing: str = DEFAULT_FRAMING
    framing_anchor: float = DEFAULT_ANCHOR
    far_pass_focal: float = DEFAULT_FAR_PASS_FOCAL
    ground_contact: bool = True
    cloud_stride: int = 1
    cloud_min_range: float = 0.0
    cloud_max_range: float = 80.0
    confidence_threshold: float = 0.0
    cloud_rgb: bool = True
    cloud_confidence: bool = False
    cloud_label: bool = False
    output_qos_reliability: str = 'reliable'
    output_qos_depth: int = 2
    use_compressed_input: bool = False
    camera_info_cache: bool = True
    camera_info_stamp_tolerance: float = STAMP_TOLERANCE_S
    camera_info_wait: float = 0.1
    queue_size: int = 1
    scale_mode: str = 'auto'
    camera_height: float = 0.0
    ground_frame: str = 'base_link'
    scale_value: float = 1.0
    scale_shift: float = 0.0
    scale_smoothing: bool = True
    lidar_topic: str = ''
    lidar_stamp_tolerance: float = 0.05
    diagnostics_period: float = 1.0
    model_retry_period: float = 10.0

    @classmethod
    def from_parameters(cls, values: dict[str, Any]) -> NodeConfig:
        """Build from a name -> value mapping (missing names keep defaults); ConfigError."""
        unknown = sorted(set(values) - set(PARAMETER_SPECS))
        if unknown:
            raise ConfigError(f'unknown node parameter(s) {unknown}; known: '
                              f'{sorted(PARAMETER_SPECS)}')
        checked = {name: check_parameter(name, value) for name, value in values.items()}
        config = replace(cls(), **checked)
        config.check_consistency()
        return config

    def check_consistency(self) -> None:
        if self.lidar_topic:
            from monodepth_ros.io.topics import validate_topic_name

            validate_topic_name(self.lidar_topic)
        if self.cloud_max_range <= self.cloud_min_range:
            raise ConfigError(
                f'cloud_max_range ({self.cloud_max_range}) must be greater than '
                f'cloud_min_range ({self.cloud_min_range})')

    def updated(self, changes: dict[str, Any], allow_read_only: bool = False) -> NodeConfig:
        """This config with ``changes`` applied and validated (ConfigError with the reason)."""
        for name, value in changes.items():
            spec = PARAMETER_SPECS.get(name)
            if spec is None:
                raise ConfigError(f'unknown node parameter {name!r}')
            if spec.read_only and not allow_read_only and value != getattr(self, name):
                raise ConfigError(f'{name} cannot change while the node runs; restart it')
        checked = {name: check_parameter(name, value) for name, value in changes.items()}
        config = replace(self, **checked)
        config.check_consistency()
        return config

    def pipeline_config(self):
        from monodepth_ros.runtime.pipeline import PipelineConfig
        return PipelineConfig(
            output_resolution=self.output_resolution, depth_upsampling=self.depth_upsampling,
            cloud_stride=self.cloud_stride, cloud_min_range=self.cloud_min_range,
            cloud_max_range=self.cloud_max_range,
            confidence_threshold=self.confidence_threshold, cloud_rgb=self.cloud_rgb,
            cloud_confidence=self.cloud_confidence, cloud_label=self.cloud_label,
            framing=self.framing, framing_anchor=self.framing_anchor,
            far_pass_focal=self.far_pass_focal, ground_contact=self.ground_contact,
            scale=ScaleSettings(self.scale_mode, self.camera_height or None, self.scale_value,
                                self.scale_shift, self.scale_smoothing, bool(self.lidar_topic)))


def check_parameter(name: str, value: Any) -> Any:
    """Return ``value`` converted to the parameter's type, or raise ConfigError with a reason."""
    spec = PARAMETER_SPECS.get(name)
    if spec is None:
        raise ConfigError(f'unknown node parameter {name!r}')
    expected = type(spec.default)
    if expected is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f'{name} must be true or false, got {value!r}')
        return bool(value)
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f'{name} must be an integer, got {value!r}')
        value = int(value)
    elif expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ConfigError(f'{name} must be a number, got {value!r}')
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f'{name} must be finite, got {value}')
    elif expected is str:
        if not isinstance(value, str):
            raise ConfigError(f'{name} must be a string, got {value!r}')
    if spec.choices and value not in spec.choices:
        raise ConfigError(f'{name} must be one of {list(spec.choices)}, got {value!r}')
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(f'{name} must be >= {spec.minimum}, got {value}')
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(f'{name} must be <= {spec.maximum}, got {value}')
    return value


def parameter_constraints(spec: ParameterSpec) -> str:
    """The limits of a parameter in words (``ros2 param describe`` shows them)."""
    parts = []
    if spec.choices:
        parts.append('one of: ' + ', '.join(str(choice) for choice in spec.choices))
    if spec.minimum is not None:
        parts.append(f'>= {spec.minimum}')
    if spec.maximum is not None:
        parts.append(f'<= {spec.maximum}')
    if type(spec.default) is float:
        parts.append('an integer is accepted')
    return '; '.join(parts)


def parameter_descriptor(spec: ParameterSpec, descriptor_class, integer_range_class,
                         floating_point_range_class):
    """rcl_interfaces ParameterDescriptor of ``spec`` (message classes passed in).

    ``dynamic_typing`` is on so that rclpy accepts any type at start (``cloud_max_range:=50``
    is an integer) and :func:`check_parameter` converts it or refuses it with a reason; the
    ranges and choices are filled in so that ``ros2 param describe`` shows them.
    """
    descriptor = descriptor_class(
        name=spec.name, description=spec.description, read_only=spec.read_only,
        additional_constraints=parameter_constraints(spec), dynamic_typing=True)
    if spec.minimum is not None or spec.maximum is not None:
        if type(spec.default) is int:
            descriptor.integer_range = [integer_range_class(
                from_value=int(spec.minimum if spec.minimum is not None else -2**63),
                to_value=int(spec.maximum if spec.maximum is not None else 2**63 - 1),
                step=0)]
        elif type(spec.default) is float:
            # Open ends as the largest double: older message code refuses inf.
            descriptor.floating_point_range = [floating_point_range_class(
                from_value=float(spec.minimum if spec.minimum is not None else -DOUBLE_MAX),
                to_value=float(spec.maximum if spec.maximum is not None else DOUBLE_MAX),
                step=0.0)]
    return descriptor


def parameter_defaults() -> dict[str, Any]:
    """Name -> default for every node parameter (matches config/kitti.yaml's keys)."""
    return {spec.name: spec.default for spec in PARAMETERS}
