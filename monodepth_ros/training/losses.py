"""Training losses: depth-bin cross-entropy, semantic cross-entropy, L1 and scale-invariant log.

Ground-truth depth is (N,1,H,W) metres with 0 (or NaN) where unknown; only pixels with
``depth_min <= gt <= depth_max`` take part. Every loss returns a zero that is still connected
to the graph when a batch has no valid pixel, so a step never fails on an empty crop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monodepth_ros.model.bins import sid_bin_edges
from monodepth_ros.model.semantics import IGNORE_LABEL

IGNORE_BIN = -1


def valid_depth_mask(gt: torch.Tensor, depth_min: float, depth_max: float) -> torch.Tensor:
    return torch.isfinite(gt) & (gt >= depth_min) & (gt <= depth_max)


def far_depth_as_max(gt: torch.Tensor, depth_max: float) -> torch.Tensor:
    """Finite depth beyond ``depth_max`` set to ``depth_max``: taught as the last bin.

    Without it such depth is ignored; 0, NaN and inf (no ground truth) stay as they are.
    """
    return torch.where(torch.isfinite(gt) & (gt > depth_max), torch.full_like(gt, depth_max), gt)


def depth_to_bins(gt: torch.Tensor, depth_min: float, depth_max: float,
                  num_bins: int) -> torch.Tensor:
    """Index of the spacing-increasing bin holding each depth (IGNORE_BIN where invalid).

    Bin i covers [d_i, d_{i+1}) with the edges d_i of ``sid_bin_edges`` (the network's bin
    centres come from the same edges); depth b itself falls in the last bin.
    """
    valid = valid_depth_mask(gt, depth_min, depth_max)
    edges = torch.from_numpy(sid_bin_edges(depth_min, depth_max, num_bins)).to(gt.device)
    safe = torch.where(valid, gt, torch.full_like(gt, depth_min)).double()
    # right=True counts the edges <= depth, so an edge value opens its bin.
    index = (torch.bucketize(safe, edges, right=True) - 1).clamp(0, num_bins - 1)
    return torch.where(valid, index, torch.full_like(index, IGNORE_BIN))


def downsample_depth(gt: torch.Tensor, size, depth_min: float, depth_max: float) -> torch.Tensor:
    """Depth at a coarser scale: mean log depth of the valid pixels of each block, 0 if none.

    Averaging only the valid pixels keeps sparse (LiDAR) ground truth usable at H/8.
    """
    height, width = int(size[0]), int(size[1])
    if gt.shape[-2:] == (height, width):
        return gt
    valid = valid_depth_mask(gt, depth_min, depth_max).float()
    log_gt = torch.where(valid > 0, torch.log(gt.clamp_min(depth_min)), torch.zeros_like(gt))
    kernel = (gt.shape[-2] // height, gt.shape[-1] // width)
    count = F.avg_pool2d(valid, kernel)
    total = F.avg_pool2d(log_gt, kernel)
    mean_log = total / count.clamp_min(1e-6)
    return torch.where(count > 0, torch.exp(mean_log), torch.zeros_like(mean_log))


def _zero_like_graph(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.sum() * 0.0


def bin_cross_entropy(logits: torch.Tensor, gt: torch.Tensor, depth_min: float,
                      depth_max: float) -> torch.Tensor:
    """Cross-entropy of (N,K,h,w) bin logits against depth, over valid pixels only."""
    num_bins = logits.shape[1]
    gt = downsample_depth(gt, logits.shape[-2:], depth_min, depth_max)
    target = depth_to_bins(gt, depth_min, depth_max, num_bins)[:, 0]
    if not bool((target != IGNORE_BIN).any()):
        return _zero_like_graph(logits)
    return F.cross_entropy(logits, target, ignore_index=IGNORE_BIN)


def multiscale_bin_cross_entropy(bin_logits: list, gt: torch.Tensor, depth_min: float,
                                 depth_max: float) -> torch.Tensor:
    """Mean of the bin cross-entropy of every classification head (one per scale)."""
    losses = [bin_cross_entropy(logits, gt, depth_min, depth_max) for logits in bin_logits]
    return sum(losses) / len(losses)


def semantic_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (N,C,H,W) logits against (N,H,W) trainIds; 255 is ignored."""
    labels = labels.long()
    if not bool((labels != IGNORE_LABEL).any()):
        return _zero_like_graph(logits)
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_LABEL)


def l1_depth(pred: torch.Tensor, gt: torch.Tensor, depth_min: float,
             depth_max: float) -> torch.Tensor:
    """Mean absolute error in metres over valid pixels."""
    valid = valid_depth_mask(gt, depth_min, depth_max)
    if not bool(valid.any()):
        return _zero_like_graph(pred)
    return (pred[valid] - gt[valid]).abs().mean()


def log_l1(log_pred: torch.Tensor, gt: torch.Tensor, depth_min: float,
           depth_max: float) -> torch.Tensor:
    """Mean |log pred - log gt| over valid pixels (trains the attention masks in phase 1)."""
    valid = valid_depth_mask(gt, depth_min, depth_max)
    if not bool(valid.any()):
        return _zero_like_graph(log_pred)
    return (log_pred[valid] - torch.log(gt[valid])).abs().mean()


def scale_invariant_log(pred: torch.Tensor, gt: torch.Tensor, depth_min: float,
                        depth_max: float, lam: float = 0.85) -> torch.Tensor:
    """Seed 003 / 002: (1/n) sum e^2 - (lambda / n^2) (sum e)^2, e = ln pred - ln gt.

    Computed per image over its valid pixels, then averaged over the images that have any.
    """
    valid = valid_depth_mask(gt, depth_min, depth_max)
    losses = []
    for i in range(pred.shape[0]):
        mask = valid[i]
        if not bool(mask.any()):
            continue
        e = torch.log(pred[i][mask].clamp_min(1e-6)) - torch.log(gt[i][mask])
        n = e.numel()
        losses.append((e * e).sum() / n - lam * e.sum() ** 2 / (n * n))
    if not losses:
        return _zero_like_graph(pred)
    return torch.stack(losses).mean()
