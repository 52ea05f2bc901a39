"""Batching rows whose number of boxes differs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

STACKED = ("image", "label", "labels")
LISTED = ("boxes", "box_labels", "masks", "id")


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and labels; keep per-image lists for boxes, box labels, masks and ids.

    Args:
        batch: rows from :func:`consistentzoo.data.transforms.to_tv_tensors` (after a transform that gives every
            image the same size).

    Returns:
        ``image`` ``[B, 3, H, W]``, ``label`` ``[B]`` or ``labels`` ``[B, C]``, ``boxes`` (list of ``[N_i, 4]``),
        ``box_labels`` (list of ``[N_i]``), ``masks`` (list of ``[N_i, H, W]``, if present), ``id`` (list),
        ``num_boxes`` ``[B]``.

    Raises:
        ValueError: an empty batch, or images of different sizes.
    """
    if not batch:
        raise ValueError("collate: empty batch")
    out: dict[str, Any] = {}
    for key in STACKED:
        if key in batch[0]:
            vals = [torch.as_tensor(b[key]) for b in batch]
            shapes = {tuple(v.shape) for v in vals}
            if len(shapes) > 1:
                raise ValueError(
                    f"collate: {key!r} has different shapes in one batch {sorted(shapes)}; resize or crop first"
                )
            out[key] = torch.stack(vals)
    for key in LISTED:
        if key in batch[0]:
            out[key] = [b[key] for b in batch]
    if "boxes" in out:
        out["num_boxes"] = torch.tensor([len(b) for b in out["boxes"]], dtype=torch.int64)
    return out
