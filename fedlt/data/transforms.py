"""Tensor conversion and batched augmentation (FedLoGe's RandomCrop(32, 4) + flip)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def to_tensor(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 NHWC images -> float32 NCHW tensor, ``(x / 255 - mean) / std`` per channel."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    channels = x.shape[1]
    mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
    if mean_t.shape[1] not in (1, channels) or std_t.shape[1] not in (1, channels):
        raise ValueError(
            f"mean/std have {mean_t.shape[1]}/{std_t.shape[1]} entries for {channels} channels"
        )
    return x.sub_(mean_t).div_(std_t).contiguous()


def random_crop_flip(
    x: torch.Tensor,
    generator: torch.Generator,
    padding: int = 4,
    flip: bool = True,
    fill: float | Sequence[float] = 0.0,
) -> torch.Tensor:
    """Random ``padding``-padded crop back to (H, W) plus a random horizontal flip, batched.

    Equivalent per image to torchvision's ``RandomCrop(H, padding)`` followed by
    ``RandomHorizontalFlip(0.5)``. Offsets and flips are drawn on the CPU from ``generator``
    (so results do not depend on the device), then applied to the whole batch with one
    gather on ``x``'s device. ``fill`` is the padding value in ``x``'s units (per channel or
    one number); pass ``-mean / std`` to pad with black as torchvision does before
    normalisation.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding), value=0.0)
        fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
        if fill_t.numel() != 1 or float(fill_t[0]) != 0.0:
            border = torch.ones(1, 1, h + 2 * padding, w + 2 * padding, dtype=torch.bool)
            border[..., padding : padding + h, padding : padding + w] = False
            border = border.to(x.device)
            padded = torch.where(border, fill_t.reshape(1, -1, 1, 1).expand_as(padded), padded)
    else:
        padded = x
    rows = offsets[0][:, None] + torch.arange(h)[None, :]  # (N, H)
    cols = offsets[1][:, None] + torch.arange(w)[None, :]  # (N, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    device = x.device
    batch = torch.arange(n, device=device)[:, None, None]
    # Advanced indices around a slice: result is (N, H, W, C).
    out = padded[batch, :, rows.to(device)[:, :, None], cols.to(device)[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
