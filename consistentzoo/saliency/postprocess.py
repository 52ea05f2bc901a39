"""Map post-processing: upsample to the image size, normalise to sum 1 or to [0, 1]. Differentiable, batched.

All-zero maps stay all-zero in every floating dtype: sums and ranges are taken in at least float32 (a 224×224 map
sums past fp16's 65504), and the default epsilon is raised to the dtype's smallest normal number
(``torch.finfo(dtype).tiny``) so it never underflows to 0 (fp16 turns 1e-8 into 0, and 0/0 is NaN). The result has the
maps' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InvalidMapsError


def _check_maps(maps: Tensor) -> None:
    if not isinstance(maps, Tensor) or maps.ndim != 3 or not maps.is_floating_point():
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise InvalidMapsError(f"maps must be a floating-point tensor [B, h, w], got {shape}")


def _check_finite(maps: Tensor) -> None:
    bad = ~torch.isfinite(maps)
    if bad.any():
        rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
        raise InvalidMapsError(
            f"maps contain NaN or infinite values ({int(bad.sum())}, in map(s) {rows[:10]}): such a map has no "
            "finite minimum or maximum; find where they come from (non-finite images or weights) instead"
        )


def _eps(dtype: torch.dtype, eps: float | None, default: float) -> float:
    """``eps`` (or ``default``), at least the dtype's smallest normal number so it cannot underflow to zero."""
    return max(default if eps is None else eps, torch.finfo(dtype).tiny)


def _compute_dtype(maps: Tensor) -> torch.dtype:
    return torch.promote_types(maps.dtype, torch.float32)


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


def normalize_sum(maps: Tensor, eps: float | None = None) -> Tensor:
    """``m / (Σ_ij m + eps)`` per map: a distribution over pixels (GC, CGC, PG/SPG/CH evaluation).

    The papers' training code adds a further ``+ 1e-8`` after the division; objectives add it where they need it.

    Args:
        maps: ``[B, h, w]``.
        eps: added to the sum; ``None``: ``1e-8``, or ``torch.finfo(maps.dtype).tiny`` where that is larger (fp16).
    """
    _check_maps(maps)
    eps = _eps(maps.dtype, eps, 1e-8)
    wide = maps.to(_compute_dtype(maps))
    return (wide / (wide.sum(dim=(1, 2), keepdim=True) + eps)).to(maps.dtype)


def normalize_minmax(maps: Tensor, eps: float | None = None) -> Tensor:
    """``(m − min m) / (max m − min m + eps)`` per map, in ``[0, 1)`` (pytorch-grad-cam's ``scale_cam_image``).

    Args:
        maps: ``[B, h, w]``.
        eps: added to the range; ``None``: ``1e-7``, or ``torch.finfo(maps.dtype).tiny`` where that is larger.

    Raises:
        InvalidMapsError: a map contains NaN or inf.
    """
    _check_maps(maps)
    _check_finite(maps)
    eps = _eps(maps.dtype, eps, 1e-7)
    wide = maps.to(_compute_dtype(maps))
    shifted = wide - wide.amin(dim=(1, 2), keepdim=True)
    return (shifted / (shifted.amax(dim=(1, 2), keepdim=True) + eps)).to(maps.dtype)
