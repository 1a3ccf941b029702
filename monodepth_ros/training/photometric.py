"""Self-supervised depth from consecutive frames: view synthesis with known ego-motion.

A target frame's depth D and the camera motion T_source_target (from /tf) map each target
pixel p into a source frame: ``p_s ~ K T (D(p) K^-1 p)``. Sampling the source image there
synthesises the target image; where depth (and motion) are right, the two agree. The loss is
the usual photometric error, 0.85 (1 - SSIM) / 2 + 0.15 |I_t - I_s->t| (SSIM on 3x3
windows), the minimum over the source frames (occlusions), with pixels where the unwarped
source already matches better left out (a static camera or objects moving with it), plus an
edge-aware smoothness term on mean-normalised inverse depth. Because the motion is metric,
the depth learnt is metric too. Pixels project with centres at integer coordinates, as
everywhere in this package.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WEIGHT = 0.85


def ssim_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 per pixel over 3x3 windows (reflection padded), channels averaged."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x, y = F.pad(x, (1, 1, 1, 1), mode='reflect'), F.pad(y, (1, 1, 1, 1), mode='reflect')
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2))
    return ((1 - ssim) / 2).clamp(0, 1).mean(1, keepdim=True)


def photometric_error(target: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(N,1,H,W) error between two (N,3,H,W) images in [0, 1]."""
    l1 = (target - image).abs().mean(1, keepdim=True)
    return SSIM_WEIGHT * ssim_distance(target, image) + (1 - SSIM_WEIGHT) * l1


def warp(source: torch.Tensor, depth: torch.Tensor, K: torch.Tensor,
         T_source_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The source image sampled at where each target pixel lands; (image, valid mask).

    source (N,3,H,W), depth (N,1,H,W) metres along the target's optical axis, K (N,3,3),
    T_source_target (N,4,4). Valid: in front of the source camera and inside its image.
    """
    n, _, height, width = depth.shape
    v, u = torch.meshgrid(torch.arange(height, dtype=depth.dtype, device=depth.device),
                          torch.arange(width, dtype=depth.dtype, device=depth.device),
                          indexing='ij')
    pixels = torch.stack([u, v, torch.ones_like(u)]).reshape(1, 3, -1).expand(n, 3, -1)
    rays = torch.linalg.inv(K) @ pixels                          # z = 1
    points = rays * depth.reshape(n, 1, -1)
    moved = T_source_target[:, :3, :3] @ points + T_source_target[:, :3, 3:]
    projected = K @ moved
    z = projected[:, 2:3]
    safe = torch.where(z.abs() < 1e-6, torch.full_like(z, 1e-6), z)
    us, vs = projected[:, 0:1] / safe, projected[:, 1:2] / safe
    grid = torch.cat([2 * us / (width - 1) - 1, 2 * vs / (height - 1) - 1], dim=1)
    grid = grid.reshape(n, 2, height, width).permute(0, 2, 3, 1)
    image = F.grid_sample(source, grid, mode='bilinear', padding_mode='border',
                          align_corners=True)
    valid = ((z > 1e-3) & (us >= 0) & (us <= width - 1) & (vs >= 0) & (vs <= height - 1))
    return image, valid.reshape(n, 1, height, width).to(depth.dtype)


def smoothness(depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of mean-normalised inverse depth (weaker across image edges)."""
    inverse = 1.0 / depth.clamp(min=1e-3)
    inverse = inverse / inverse.mean((2, 3), keepdim=True)
    dx = (inverse[..., :, 1:] - inverse[..., :, :-1]).abs()
    dy = (inverse[..., 1:, :] - inverse[..., :-1, :]).abs()
    image_dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    image_dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-image_dx)).mean() + (dy * torch.exp(-image_dy)).mean()


def view_synthesis_loss(target: torch.Tensor, sources: list[torch.Tensor], depth: torch.Tensor,
                        K: torch.Tensor, motions: list[torch.Tensor],
                        smoothness_weight: float = 1e-3) -> dict:
    """Loss terms for a target frame, its source frames and their motions (T_source_target).

    Images are (N,3,H,W) in [0, 1]; returns {'photometric', 'smoothness', 'total',
    'kept_fraction'} (the share of pixels the auto-mask keeps).
    """
    reprojection, identity = [], []
    for source, motion in zip(sources, motions):
        warped, valid = warp(source, depth, K, motion)
        error = photometric_error(target, warped)
        reprojection.append(torch.where(valid > 0, error, torch.full_like(error, 1e3)))
        identity.append(photometric_error(target, source))
    best_reprojection = torch.cat(reprojection, 1).min(1, keepdim=True).values
    best_identity = torch.cat(identity, 1).min(1, keepdim=True).values
    keep = (best_reprojection < best_identity).to(depth.dtype)
    photometric = (best_reprojection * keep).sum() / keep.sum().clamp(min=1.0)
    smooth = smoothness(depth, target)
    return {'photometric': photometric, 'smoothness': smooth,
            'total': photometric + smoothness_weight * smooth,
            'kept_fraction': keep.mean()}
