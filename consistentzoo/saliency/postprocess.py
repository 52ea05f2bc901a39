"""Map post-processing: upsample to the image size, normalise to sum 1 or to [0, 1]. Differentiable, batched.

All-zero maps stay all-zero (the epsilon keeps them finite); nothing here produces NaN.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def _check_maps(maps: Tensor) -> None:
    if not isinstance(maps, Tensor) or maps.ndim != 3 or not maps.is_floating_point():
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a floating-point tensor [B, h, w], got {shape}")


def upsample(maps: Tensor, size: int | tuple[int, int], mode: str = "bilinear", align_corners: bool = False) -> Tensor:
    """Resize maps ``[B, h, w]`` to ``size`` (``(H, W)`` or one int for a square).

    Bilinear with ``align_corners=False`` is what GC and CGC use (and what OpenCV's ``INTER_LINEAR`` does, so it
    matches pytorch-grad-cam's resize when upsampling).

    Args:
        maps: ``[B, h, w]``.
        size: target ``(H, W)``.
        mode: ``torch.nn.functional.interpolate`` mode (``"bilinear"``, ``"bicubic"``, ``"nearest"``, ...).
        align_corners: passed to ``interpolate`` for the linear modes.
    """
    _check_maps(maps)
    size = (size, size) if isinstance(size, int) else tuple(size)
    kwargs = {"align_corners": align_corners} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(maps[:, None], size=size, mode=mode, **kwargs)[:, 0]


def normalize_sum(maps: Tensor, eps: float = 1e-8) -> Tensor:
    """``m / (Σ_ij m + eps)`` per map: a distribution over pixels (GC, CGC, PG/SPG/CH evaluation).

    The papers' training code adds a further ``+ 1e-8`` after the division; objectives add it where they need it.
    """
    _check_maps(maps)
    return maps / (maps.sum(dim=(1, 2), keepdim=True) + eps)


def normalize_minmax(maps: Tensor, eps: float = 1e-7) -> Tensor:
    """``(m − min m) / (max m − min m + eps)`` per map, in ``[0, 1)`` (pytorch-grad-cam's ``scale_cam_image``)."""
    _check_maps(maps)
    lo = maps.amin(dim=(1, 2), keepdim=True)
    shifted = maps - lo
    return shifted / (shifted.amax(dim=(1, 2), keepdim=True) + eps)
