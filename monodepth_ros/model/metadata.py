"""Model metadata that travels inside every checkpoint and ONNX file.

Runtime code (engines, pipeline, node) reads input size, normalisation, depth range and class
names from here and never hard-codes them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from monodepth_ros.errors import ModelFileError
from monodepth_ros.model.bins import sid_bin_centers
from monodepth_ros.model.semantics import CITYSCAPES_CLASSES, CITYSCAPES_COLORS

METADATA_KEY = 'monodepth_ros.metadata'
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Names of the network inputs/outputs in ONNX files and engines.
INPUT_NAME = 'image'
OUTPUT_NAMES = ('depth', 'semantic_logits', 'confidence')


@dataclass
class ModelMetadata:
    """What a runtime needs to know about a trained model.

    The network takes ``image``: float32 NCHW RGB, ``(pixel / 255 - mean) / std``, of size
    ``input_height x input_width``, and returns ``depth`` (N,1,H,W metres),
    ``semantic_logits`` (N,C,H,W) and ``confidence`` (N,1,H,W in [0, 1]).

    Camera-aware depth: ``canonical_focal`` is the focal length, in pixels of the network
    input, of the camera the network's depth refers to. An image from a camera whose focal
    length at the network input is f shows every object f / canonical_focal times larger
    than the canonical camera would, so its metric depth is the network depth times
    ``f / canonical_focal`` (:meth:`depth_scale`). f is the horizontal focal length fx, as in
    training (training/datasets.py). 0 means no rescaling (older models).
    """

    input_height: int
    input_width: int
    depth_min: float = 1.0
    depth_max: float = 80.0
    num_bins: int = 80
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    class_names: tuple = CITYSCAPES_CLASSES
    class_colors: tuple = CITYSCAPES_COLORS
    network: dict = field(default_factory=dict)
    source_checkpoint_sha256: str = ''
    description: str = ''
    canonical_focal: float = 0.0

    def depth_scale(self, network_camera) -> float:
        """Factor from network depth to metres for a camera at the network input size.

        ``network_camera``: the CameraModel of the image as the network sees it (after the
        framing, io.framing: one uniform scale, so fx and fy scale alike), or None. Its fx is
        used, the focal length training normalises by.
        """
        if self.canonical_focal <= 0 or network_camera is None:
            return 1.0
        return float(network_camera.fx) / float(self.canonical_focal)

    def bin_centers(self) -> np.ndarray:
        return sid_bin_centers(self.depth_min, self.depth_max, self.num_bins)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ('mean', 'std', 'class_names'):
            data[key] = list(data[key])
        data['class_colors'] = [list(color) for color in self.class_colors]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict, source: str = 'model') -> ModelMetadata:
        try:
            meta = cls(**data)
        except TypeError as error:
            raise ModelFileError(
                f'{source}: metadata does not match this version: {error}') from error
        meta.mean = tuple(float(v) for v in meta.mean)
        meta.std = tuple(float(v) for v in meta.std)
        meta.class_names = tuple(meta.class_names)
        meta.class_colors = tuple(tuple(int(c) for c in color) for color in meta.class_colors)
        return meta

    @classmethod
    def from_json(cls, text: str, source: str = 'model') -> ModelMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelFileError(f'{source}: metadata is not valid JSON ({error})') from error
        return cls.from_dict(data, source)
