"""Per-image results that carry the images they skipped, and the explicit aggregations over them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["PerImageResult", "mean_std"]


@dataclass(frozen=True)
class PerImageResult:
    """Per-image values of a metric that skips some images, with the skipped images and why.

    Only the images that were scored have a value, so ``result.values.mean()`` is always the right
    mean and no filler (zero or NaN) can leak into an aggregate. ``index`` says which input image
    each value belongs to; ``skipped`` maps a reason (e.g. ``"zero_map"``, ``"empty_mask"``) to the
    indices of the images skipped for it. Each skipped image is listed under one reason only, the
    first that applies in the order the metric documents.

    Attributes:
        values: Float tensor ``[n]``, one value per scored image.
        index: Long tensor ``[n]``, the position of each scored image in the input batch.
        batch_size: Number of images given to the metric (scored + skipped).
        skipped: Reason -> long tensor of the skipped images' positions in the input batch.
    """

    values: Tensor
    index: Tensor
    batch_size: int
    skipped: Mapping[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.values.ndim != 1 or self.index.shape != self.values.shape:
            raise ValueError("values and index must be 1-D tensors of the same length")
        n_skipped = sum(int(v.numel()) for v in self.skipped.values())
        if self.values.numel() + n_skipped != self.batch_size:
            raise ValueError(
                f"{self.values.numel()} scored + {n_skipped} skipped images != batch_size {self.batch_size}"
            )

    @property
    def n(self) -> int:
        """Number of scored images."""
        return int(self.values.numel())

    @property
    def n_skipped(self) -> dict[str, int]:
        """Number of skipped images per reason (every reason the metric checks, zero counts included)."""
        return {reason: int(idx.numel()) for reason, idx in self.skipped.items()}

    def mean(self) -> float:
        """Mean over the scored images.

        Raises:
            ValueError: If every image was skipped (the mean is undefined, and is never reported as NaN).
        """
        if self.n == 0:
            raise ValueError(f"no image was scored (skipped: {self.n_skipped}); the mean is undefined")
        return float(self.values.double().mean())

    def per_class_mean(self, labels: Tensor) -> dict[int, float]:
        """Mean of the scored images of each class.

        Args:
            labels: Long tensor ``[batch_size]``, the class each input image was scored for
                (for multi-label data, one entry per (image, class) pair given to the metric).

        Returns:
            Class id -> mean value, for every class with at least one scored image.
        """
        labels = torch.as_tensor(labels)
        if labels.shape != (self.batch_size,):
            raise ValueError(f"labels must have shape ({self.batch_size},), got {tuple(labels.shape)}")
        scored = labels.to(self.index.device)[self.index]
        out: dict[int, float] = {}
        for c in torch.unique(scored).tolist():
            out[int(c)] = float(self.values[scored == c].double().mean())
        return out

    def class_mean(self, labels: Tensor) -> float:
        """Mean over classes of the per-class means (the pointing game's headline number).

        Args:
            labels: Long tensor ``[batch_size]``, as in :meth:`per_class_mean`.

        Raises:
            ValueError: If every image was skipped.
        """
        per_class = self.per_class_mean(labels)
        if not per_class:
            raise ValueError(f"no image was scored (skipped: {self.n_skipped}); the class mean is undefined")
        return math.fsum(per_class.values()) / len(per_class)

    @staticmethod
    def concat(results: Sequence[PerImageResult]) -> PerImageResult:
        """Join results of consecutive batches into one, as if the batches had been one batch.

        Args:
            results: Results in batch order; their indices are shifted by the preceding batch sizes.
        """
        if not results:
            raise ValueError("concat needs at least one result")
        offsets = [0]
        for r in results[:-1]:
            offsets.append(offsets[-1] + r.batch_size)
        reasons: dict[str, list[Tensor]] = {}
        for r, off in zip(results, offsets, strict=True):
            for reason, idx in r.skipped.items():
                reasons.setdefault(reason, []).append(idx + off)
        return PerImageResult(
            values=torch.cat([r.values for r in results]),
            index=torch.cat([r.index + off for r, off in zip(results, offsets, strict=True)]),
            batch_size=sum(r.batch_size for r in results),
            skipped={reason: torch.cat(idx) for reason, idx in reasons.items()},
        )


def mean_std(values: Iterable[float] | Tensor, ddof: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of repeated measurements (e.g. one stochastic pointing game per seed).

    Args:
        values: One number per run.
        ddof: Delta degrees of freedom of the standard deviation: 0 (numpy's default) or 1 (sample std).

    Returns:
        ``(mean, std)``.
    """
    v = torch.as_tensor(list(values) if not isinstance(values, Tensor) else values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("mean_std needs at least one value")
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof}")
    if v.numel() - ddof <= 0:
        raise ValueError(f"need more than {ddof} value(s) for ddof={ddof}")
    if not torch.isfinite(v).all():
        raise ValueError("values contain NaN or infinity")
    return float(v.mean()), float(v.var(correction=ddof).sqrt())
