"""Transforms that keep boxes and masks aligned with the image, on ``torchvision.transforms.v2`` tv_tensors.

A row of the common schema becomes a dict of tensors with :func:`to_tv_tensors`; any v2 transform then moves
``image``, ``boxes`` and ``masks`` together. Use :func:`with_transform` to attach a pipeline to a dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

if TYPE_CHECKING:
    import datasets

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_tv_tensors(example: dict[str, Any]) -> dict[str, Any]:
    """A decoded row (PIL image, lists) as tensors: ``image`` uint8 ``[3, H, W]``, ``boxes`` ``BoundingBoxes`` xyxy,
    ``masks`` bool ``Mask`` ``[N, H, W]`` (when the row has masks), ``label`` / ``labels``, ``box_labels``, ``id``."""
    img = example["image"]
    arr = torch.from_numpy(np.asarray(img.convert("RGB") if img.mode != "RGB" else img).copy()).permute(2, 0, 1)
    h, w = arr.shape[-2:]
    out: dict[str, Any] = {
        "id": example["id"],
        "image": tv_tensors.Image(arr),
        "boxes": tv_tensors.BoundingBoxes(
            torch.as_tensor(example["boxes"], dtype=torch.float32).reshape(-1, 4), format="XYXY", canvas_size=(h, w)
        ),
        "box_labels": torch.as_tensor(example["box_labels"], dtype=torch.int64),
    }
    if "label" in example:
        out["label"] = torch.as_tensor(example["label"], dtype=torch.int64)
    if "labels" in example:
        out["labels"] = torch.as_tensor(example["labels"], dtype=torch.float32)
    if "mask" in example:
        ms = [torch.from_numpy(np.asarray(m.convert("L")) >= 128) for m in example["mask"]]
        out["masks"] = tv_tensors.Mask(torch.stack(ms) if ms else torch.zeros(0, h, w, dtype=torch.bool))
    return out


def sanitize() -> v2.SanitizeBoundingBoxes:
    """Drop boxes (with their ``box_labels`` and masks) that a crop left without area.

    The labels are named explicitly: v2's default would pick the multi-hot ``labels`` and filter it like boxes.
    """
    return v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=lambda sample: sample["box_labels"])


def normalize(mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> v2.Compose:
    """uint8 image -> float in [0, 1] -> per-channel normalisation (boxes and masks untouched)."""
    return v2.Compose(
        [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True), v2.Normalize(mean, std)]
    )


def resize_shorter(size: int, antialias: bool = True) -> v2.Resize:
    """Resize so that the shorter side is ``size`` pixels (aspect kept); boxes and masks follow."""
    return v2.Resize(size, antialias=antialias)


def center_crop(size: int) -> v2.Compose:
    """Center crop to ``size`` x ``size``; boxes are clipped and those left empty dropped (with labels, masks)."""
    return v2.Compose([v2.CenterCrop(size), v2.ClampBoundingBoxes(), sanitize()])


def eval_transform(size: int = 448, crop: int | None = None, norm: bool = True) -> v2.Compose:
    """The papers' evaluation input: shorter side to ``size`` (448 for PG / SPG / CH), the full image.

    Args:
        size: shorter side after resizing.
        crop: center crop after resizing (e.g. ``Resize(256) + CenterCrop(224)`` is ``size=256, crop=224``).
        norm: normalise with the ImageNet mean / std.
    """
    steps: list[Callable[..., Any]] = [resize_shorter(size)]
    if crop is not None:
        steps.append(center_crop(crop))
    if norm:
        steps.append(normalize())
    return v2.Compose(steps)


def train_transform(size: int = 224, scale: tuple[float, float] = (0.08, 1.0), norm: bool = True) -> v2.Compose:
    """RandomResizedCrop + horizontal flip (+ normalise), the papers' training view; boxes/masks follow."""
    steps: list[Callable[..., Any]] = [
        v2.RandomResizedCrop(size, scale=scale, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ClampBoundingBoxes(),
        sanitize(),
    ]
    if norm:
        steps.append(normalize())
    return v2.Compose(steps)


def with_transform(ds: datasets.Dataset, transform: Callable[[dict[str, Any]], dict[str, Any]]) -> datasets.Dataset:
    """``ds`` whose rows come out as :func:`to_tv_tensors` followed by ``transform`` (applied per row)."""

    def apply(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        n = len(batch["id"])
        rows = [transform(to_tv_tensors({k: v[i] for k, v in batch.items()})) for i in range(n)]
        return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}

    return ds.with_transform(apply)
