"""Augmentation that keeps metric depth consistent (seed 003), numpy + OpenCV.

A sample is a dict of ``rgb`` (H,W,3 uint8), ``depth`` (H,W float32 metres, 0 = unknown) and
``semantics`` (H,W uint8 trainIds, 255 = ignore). Geometric changes are applied to all three:

- zoom by s in [scale_min, scale_max] about the image centre: objects look s times larger, as
  if s times closer, so depth is divided by s;
- rotation by +-rotation_deg about the centre (depth unchanged: a roll of the camera keeps the
  distance along the optical axis of every point);
- random crop to the network size (or the run-time framing, :func:`frame_sample`, when the
  image is smaller);
- horizontal flip; colour jitter on the RGB image only;
- camera effects on the RGB image only (``camera_effects`` > 0): exposure, gamma, white
  balance, vignetting, optical blur and sensor noise, so a model trained on rendered images
  does not learn the renderer's clean look (sim-to-real domain randomisation).

Depth and semantics use nearest-neighbour sampling so no invented values appear at edges.
"""

from __future__ import annotations

import cv2
import numpy as np

from monodepth_ros.io.framing import DEFAULT_ANCHOR, plan_framing
from monodepth_ros.model.semantics import IGNORE_LABEL


def frame_sample(sample: dict, height: int, width: int, camera=None, mode: str = 'fit-width',
                 anchor: float = DEFAULT_ANCHOR, canonical_focal: float = 0.0) -> dict:
    """Bring a sample to (height, width) with the run-time framing (:mod:`io.framing`).

    One uniform scale then a crop or padding, exactly as the pipeline frames camera images:
    area/linear RGB (black padding), nearest depth (0 = unknown padding) and semantics (255).
    ``camera``: the sample's calibration (places the principal point; None = image centre);
    ``mode``, ``anchor``, ``canonical_focal``: as :func:`plan_framing`. The focal length in
    pixels follows the scale.
    """
    if sample['rgb'].shape[:2] == (height, width):
        return dict(sample)
    in_h, in_w = sample['rgb'].shape[:2]
    framing = plan_framing(in_w, in_h, (width, height), camera, mode, anchor, canonical_focal)
    out = dict(sample)
    if 'focal' in sample:
        out['focal'] = sample['focal'] * framing.scale[0]
    out['rgb'] = np.ascontiguousarray(framing.apply(sample['rgb']))
    out['depth'] = np.ascontiguousarray(framing.apply(sample['depth'], fill=0.0, nearest=True))
    out['semantics'] = np.ascontiguousarray(
        framing.apply(sample['semantics'], fill=IGNORE_LABEL, nearest=True))
    return out


def augment_sample(sample: dict, height: int, width: int, config, rng: np.random.Generator
                   ) -> dict:
    """Random metric-consistent augmentation, ending at (height, width)."""
    rgb, depth, semantics = sample['rgb'], sample['depth'], sample['semantics']
    in_h, in_w = rgb.shape[:2]
    if config.enabled:
        scale = float(rng.uniform(config.scale_min, config.scale_max))
        angle = float(rng.uniform(-config.rotation_deg, config.rotation_deg))
        if abs(scale - 1.0) > 1e-6 or abs(angle) > 1e-6:
            matrix = cv2.getRotationMatrix2D(((in_w - 1) / 2.0, (in_h - 1) / 2.0), angle, scale)
            rgb = cv2.warpAffine(rgb, matrix, (in_w, in_h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT_101)
            depth = cv2.warpAffine(depth, matrix, (in_w, in_h), flags=cv2.INTER_NEAREST,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0.0) / scale
            semantics = cv2.warpAffine(semantics, matrix, (in_w, in_h),
                                       flags=cv2.INTER_NEAREST,
                                       borderMode=cv2.BORDER_CONSTANT,
                                       borderValue=IGNORE_LABEL)
    sample = {'rgb': rgb, 'depth': depth.astype(np.float32), 'semantics': semantics}
    if in_h >= height and in_w >= width:
        top = int(rng.integers(0, in_h - height + 1)) if config.enabled else (in_h - height) // 2
        left = int(rng.integers(0, in_w - width + 1)) if config.enabled else (in_w - width) // 2
        sample = {k: v[top:top + height, left:left + width] for k, v in sample.items()}
    else:
        sample = frame_sample(sample, height, width)
    if config.enabled and config.flip and rng.random() < 0.5:
        sample = {k: v[:, ::-1] for k, v in sample.items()}
    if config.enabled and config.color_jitter > 0:
        sample['rgb'] = color_jitter(sample['rgb'], config.color_jitter, rng)
    if config.enabled and config.camera_effects > 0:
        sample['rgb'] = camera_effects(sample['rgb'], config.camera_effects, rng)
    return {k: np.ascontiguousarray(v) for k, v in sample.items()}


def color_jitter(rgb: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation factors in [1 - amount, 1 + amount]."""
    image = rgb.astype(np.float32)
    brightness, contrast, saturation = rng.uniform(1 - amount, 1 + amount, size=3)
    image = image * brightness
    mean = image.mean()
    image = (image - mean) * contrast + mean
    gray = image.mean(axis=2, keepdims=True)
    image = (image - gray) * saturation + gray
    return np.clip(image, 0, 255).astype(np.uint8)


def camera_effects(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random exposure, gamma, white balance, vignetting, blur and noise (``strength`` 0..1).

    At strength 1: exposure x exp(N(0, 0.3)), gamma in [0.75, 1.33], per-channel gains in
    [0.88, 1.12], vignetting darkening the corners by up to 40 %, Gaussian blur of sigma up
    to 1.2 px (half the time) and read + shot noise of up to 4 % of full scale.
    """
    height, width = rgb.shape[:2]
    image = rgb.astype(np.float32) / 255.0
    image *= np.float32(np.exp(rng.normal(0.0, 0.3 * strength)))
    image *= (1.0 + rng.uniform(-0.12, 0.12, size=3) * strength).astype(np.float32)
    gamma = float(np.exp(rng.uniform(-0.29, 0.29) * strength))
    image = np.clip(image, 0.0, 1.0) ** np.float32(gamma)
    vignette = rng.uniform(0.0, 0.4) * strength
    if vignette > 0:
        y = (np.arange(height, dtype=np.float32) - (height - 1) / 2) / (height / 2)
        x = (np.arange(width, dtype=np.float32) - (width - 1) / 2) / (width / 2)
        radius2 = (x[None, :] ** 2 + y[:, None] ** 2) / 2.0
        image *= (1.0 - np.float32(vignette) * radius2)[:, :, None]
    if rng.random() < 0.5:
        sigma = rng.uniform(0.0, 1.2) * strength
        if sigma > 0.1:
            image = cv2.GaussianBlur(image, (0, 0), sigma)
    noise = rng.uniform(0.0, 0.04) * strength
    if noise > 0:
        # Shot noise grows with the signal, read noise does not.
        deviation = noise * np.sqrt(0.3 + 0.7 * np.clip(image, 0.0, 1.0))
        image = image + deviation * rng.standard_normal(image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
