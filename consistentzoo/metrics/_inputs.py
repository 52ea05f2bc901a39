"""Input checks shared by the metric families, and the eval-mode context their model calls run in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def check_maps(maps: Tensor, name: str = "maps", allow_negative: bool = False) -> None:
    """Raise ``ValueError`` unless ``maps`` is a non-empty, finite (non-negative) float tensor ``[B, H, W]``."""
    if not isinstance(maps, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(maps).__name__}")
    if maps.ndim != 3:
        raise ValueError(f"{name} must have shape [B, H, W], got {tuple(maps.shape)}")
    if maps.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"{name} has an empty spatial size {tuple(maps.shape[1:])}")
    if not maps.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {maps.dtype}")
    lo, hi = torch.aminmax(maps)  # one pass; NaN propagates into both
    if not (torch.isfinite(lo) and torch.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if not allow_negative and lo < 0:
        raise ValueError(f"{name} contains negative values; apply ReLU (or abs) to the saliency maps first")


def check_masks(masks: Tensor, maps: Tensor, name: str = "masks") -> None:
    """Raise ``ValueError`` unless ``masks`` is a boolean tensor of the same shape as ``maps``."""
    if not isinstance(masks, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(masks).__name__}")
    if masks.dtype != torch.bool:
        raise ValueError(f"{name} must be a boolean tensor, got {masks.dtype}")
    if masks.shape != maps.shape:
        raise ValueError(
            f"{name} must match the maps' shape {tuple(maps.shape)}, got {tuple(masks.shape)}; "
            "resize the maps to the image size first"
        )


def check_images(images: Tensor, maps: Tensor | None = None) -> None:
    """Raise ``ValueError`` unless ``images`` is a non-empty finite float ``[B, C, H, W]`` matching ``maps``."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape [B, C, H, W], got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch")
    if not images.is_floating_point():
        raise ValueError(f"images must be a floating-point tensor, got {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    if maps is not None and (maps.shape[0] != images.shape[0] or maps.shape[1:] != images.shape[2:]):
        raise ValueError(
            f"maps {tuple(maps.shape)} must be [B, H, W] for images {tuple(images.shape)}; "
            "resize the maps to the image size first"
        )


def check_targets(targets: Tensor, batch_size: int, num_classes: int) -> Tensor:
    """Return ``targets`` as a long tensor ``[B]`` after checking its shape and range."""
    targets = torch.as_tensor(targets)
    if targets.shape != (batch_size,) or targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(
            f"targets must be an integer tensor of shape ({batch_size},), got {targets.dtype} {tuple(targets.shape)}"
        )
    if ((targets < 0) | (targets >= num_classes)).any():
        raise ValueError(f"targets must lie in [0, {num_classes}), got {targets.tolist()}")
    return targets.long()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore each module's training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.train(flag)
