"""Random resized crop + horizontal flip that record their parameters and replay them on images or maps.

The consistency objectives (CGC, SSIM) compare the explanation of an augmented view with the *same* augmentation
applied to the explanation of the original view, so the augmentation's parameters must be kept per sample and replayed
on a map of any resolution. This module draws them as ``torchvision.transforms.RandomResizedCrop.get_params`` does
(the CGC convention: scale (0.08, 1), ratio (3/4, 4/3), drawn on the 224-px crop; flip with p = 0.5), stores the box
*relative* to the source size, and replays it batched and differentiably.

Replaying is separable bilinear resampling at each crop's sample positions: every output row blends two input rows,
then every output column two columns, each a batched row gather (``index_select``) and a ``lerp`` — one pass over the
batch with no Python loop over samples. For a box with integer pixel coordinates at the source resolution it equals
the authors' per-sample ``F.interpolate(x[..., i:i+h, j:j+w], size, mode="bilinear", align_corners=False)`` followed by
``flip(-1)``; at other resolutions the box is scaled and sampled at fractional coordinates with the same rule (sample
points clamped to the box's first and last pixel centres). On the CPU it is faster than that per-sample loop forward +
backward, and than one ``F.grid_sample`` (whose backward scatters every output point): ``benchmarks/objectives.py``
measures all three. Images are resampled without antialiasing (the authors crop PIL images, which
antialias when shrinking; pass views made by the data pipeline where that matters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["CropFlipParams", "RandomResizedCropFlip", "draw_crop_flip", "replay"]


@dataclass(frozen=True)
class CropFlipParams:
    """Per-sample parameters of a resized crop followed by an optional horizontal flip.

    Attributes:
        boxes: ``[B, 4]`` float tensor ``(top, left, height, width)`` as fractions of the source height/width.
        flips: ``[B]`` bool tensor, True where the crop is flipped left-right after resizing.
    """

    boxes: Tensor
    flips: Tensor

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be [B, 4] (top, left, height, width); got shape {tuple(self.boxes.shape)}")
        if self.flips.shape != self.boxes.shape[:1]:
            raise ValueError(f"flips must be [B] with B={self.boxes.shape[0]}; got shape {tuple(self.flips.shape)}")

    def __len__(self) -> int:
        return self.boxes.shape[0]

    @classmethod
    def from_pixels(
        cls, top: Tensor, left: Tensor, height: Tensor, width: Tensor, flips: Tensor, size: tuple[int, int]
    ) -> CropFlipParams:
        """Build from pixel boxes, e.g. the ``(i, j, h, w, hor_flip)`` tuples the CGC authors' dataset records.

        Args:
            top: ``[B]`` first row of each box.
            left: ``[B]`` first column.
            height: ``[B]`` box height in pixels.
            width: ``[B]`` box width in pixels.
            flips: ``[B]`` truthy where flipped.
            size: ``(H, W)`` of the image the boxes were drawn on (224×224 for CGC).
        """
        h_src, w_src = size
        top, left, height, width = (torch.as_tensor(v, dtype=torch.float64) for v in (top, left, height, width))
        boxes = torch.stack([top / h_src, left / w_src, height / h_src, width / w_src], dim=1)
        return cls(boxes=boxes, flips=torch.as_tensor(flips).bool())

    def pixel_boxes(self, size: tuple[int, int]) -> Tensor:
        """The boxes in pixels of a ``(H, W)`` grid: ``[B, 4]`` float ``(top, left, height, width)``."""
        h, w = size
        return self.boxes * self.boxes.new_tensor([h, w, h, w])

    def to(self, device: torch.device | str) -> CropFlipParams:
        """The same parameters on another device."""
        return CropFlipParams(self.boxes.to(device), self.flips.to(device))

    @staticmethod
    def cat(params: Sequence[CropFlipParams]) -> CropFlipParams:
        """Concatenate along the batch (e.g. in a collate function over per-sample draws)."""
        if not params:
            raise ValueError("cat needs at least one CropFlipParams")
        return CropFlipParams(torch.cat([p.boxes for p in params]), torch.cat([p.flips for p in params]))


def draw_crop_flip(
    batch_size: int,
    size: tuple[int, int] = (224, 224),
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    generator: torch.Generator | None = None,
) -> CropFlipParams:
    """Draw ``batch_size`` crop boxes and flips as ``RandomResizedCrop.get_params`` + ``RandomHorizontalFlip`` do.

    Each box is drawn on an integer pixel grid of ``size`` (10 attempts at a random area and log-uniform aspect
    ratio, else the centre crop with the ratio clamped — torchvision's rule), then stored relative to ``size``.

    Args:
        batch_size: number of samples.
        size: ``(H, W)`` of the grid the boxes are drawn on (CGC: the 224×224 centre crop).
        scale: range of the box area as a fraction of the grid's area.
        ratio: range of the box aspect ratio (width / height).
        flip_p: probability of a horizontal flip.
        generator: random generator, for reproducible draws.

    Returns:
        The parameters, on the CPU.
    """
    if batch_size < 0:
        raise ValueError(f"batch_size must be >= 0; got {batch_size}")
    if not (0 < scale[0] <= scale[1]):
        raise ValueError(f"scale must satisfy 0 < min <= max; got {scale}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must satisfy 0 < min <= max; got {ratio}")
    if not 0.0 <= flip_p <= 1.0:
        raise ValueError(f"flip_p must lie in [0, 1]; got {flip_p}")
    height, width = size
    area = height * width
    attempts = 10
    u = torch.rand(batch_size, attempts, 4, generator=generator, dtype=torch.float64)
    target_area = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * u[..., 1])
    w = torch.round(torch.sqrt(target_area * aspect))
    h = torch.round(torch.sqrt(target_area / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    # torchvision's fallback: the largest centred box whose ratio lies in the range
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fb_w, fb_h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fb_h, fb_w = height, int(round(height * ratio[1]))
    else:
        fb_w, fb_h = width, height
    first = torch.where(ok.any(1), ok.int().argmax(1), torch.zeros(batch_size, dtype=torch.long))
    rows = torch.arange(batch_size)
    any_ok = ok.any(1)
    h_sel = torch.where(any_ok, h[rows, first], torch.full_like(h[:, 0], fb_h))
    w_sel = torch.where(any_ok, w[rows, first], torch.full_like(w[:, 0], fb_w))
    # randint(0, H - h + 1) from a uniform draw
    top = torch.floor(u[rows, first, 2] * (height - h_sel + 1)).clamp(max=height - h_sel)
    left = torch.floor(u[rows, first, 3] * (width - w_sel + 1)).clamp(max=width - w_sel)
    top = torch.where(any_ok, top, torch.full_like(top, (height - fb_h) // 2))
    left = torch.where(any_ok, left, torch.full_like(left, (width - fb_w) // 2))
    flips = torch.rand(batch_size, generator=generator) < flip_p
    return CropFlipParams.from_pixels(top, left, h_sel, w_sel, flips, size)


def _sample_positions(start: Tensor, length: Tensor, in_size: int, out_size: int) -> Tensor:
    """``[B, out_size]`` pixel-index positions resampling the span ``[start, start + length)`` to ``out_size``.

    Output ``u`` samples ``start + (u + 0.5)·length/out − 0.5`` (``align_corners=False``), clamped to the span's first
    and last pixel centres as ``F.interpolate`` clamps inside a cropped tensor.
    """
    u = torch.arange(out_size, dtype=torch.float64, device=start.device)
    pos = start[:, None] + ((u[None, :] + 0.5) * (length[:, None] / out_size) - 0.5).clamp(min=0.0)
    last = torch.maximum(start + length - 1, start)[:, None]
    return torch.minimum(pos, last).clamp(0.0, in_size - 1)


def _lerp_rows(x: Tensor, positions: Tensor) -> Tensor:
    """``[N, R, K] -> [N, P, K]``: row ``p`` of sample ``n`` is ``x[n]`` interpolated at row ``positions[n, p]``.

    ``positions`` (float64, within ``[0, R - 1]``) picks rows ``⌊p⌋`` and ``min(⌊p⌋ + 1, R - 1)``, blended by the
    fraction, as bilinear interpolation does along one axis. Both row gathers are one ``index_select`` over the batch.
    """
    n, r, k = x.shape
    lo = positions.floor()
    frac = (positions - lo).to(x.dtype).unsqueeze(-1)
    lo = lo.long()
    hi = (lo + 1).clamp(max=r - 1)
    offset = torch.arange(n, device=x.device)[:, None] * r
    flat = x.reshape(n * r, k)
    a = flat.index_select(0, (lo + offset).flatten()).view(n, -1, k)
    b = flat.index_select(0, (hi + offset).flatten()).view(n, -1, k)
    return torch.lerp(a, b, frac)


def replay(x: Tensor, params: CropFlipParams, size: tuple[int, int] | int | None = None) -> Tensor:
    """Apply the recorded crops and flips to a batch of images or maps, at the tensor's own resolution.

    Separable bilinear resampling at the sample positions of each crop (rows, then columns; see the module
    docstring): O(B·C·h·(H + w)), batched, differentiable with respect to ``x``.

    Args:
        x: ``[B, C, H, W]`` images or ``[B, H, W]`` maps, any resolution; gradients flow through.
        params: the per-sample parameters (``len(params) == B``).
        size: output ``(h, w)`` (an int means square); default the input's ``(H, W)``.

    Returns:
        The cropped, resized and flipped batch, same layout as ``x``.
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"replay expects [B, H, W] maps or [B, C, H, W] images; got shape {tuple(x.shape)}")
    if x.shape[0] != len(params):
        raise ValueError(f"batch of {x.shape[0]} but {len(params)} recorded parameters")
    in_h, in_w = x.shape[-2:]
    if size is None:
        size = (in_h, in_w)
    elif isinstance(size, int):
        size = (size, size)
    boxes = params.pixel_boxes((in_h, in_w)).to(device=x.device, dtype=torch.float64)
    rows = _sample_positions(boxes[:, 0], boxes[:, 2], in_h, size[0])
    cols = _sample_positions(boxes[:, 1], boxes[:, 3], in_w, size[1])
    cols = torch.where(params.flips.to(x.device)[:, None], cols.flip(1), cols)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    images = x.to(dtype) if x.ndim == 4 else x.to(dtype)[:, None]
    b, c = images.shape[:2]
    if c > 1:  # one row of positions per (sample, channel)
        rows, cols = rows.repeat_interleave(c, 0), cols.repeat_interleave(c, 0)
    out = _lerp_rows(images.reshape(b * c, in_h, in_w), rows)  # [B·C, h, W]
    out = _lerp_rows(out.transpose(1, 2), cols).transpose(1, 2)  # [B·C, h, w]
    out = out.reshape(b, c, *size)
    return out if x.ndim == 4 else out[:, 0]


class RandomResizedCropFlip(nn.Module):
    """Random resized crop + horizontal flip of a batch, returning the recorded parameters for replay.

    ``images, params = aug(x)`` equals ``replay(x, params, aug.size)``; ``replay(map, params)`` then applies the same
    crop and flip to any map of the same images (e.g. a Grad-CAM map at feature or pixel resolution).

    Args:
        size: output size (an int means square); CGC and the SSIM paper use 224.
        scale: range of the box area as a fraction of the input's area.
        ratio: range of the box aspect ratio.
        flip_p: probability of a horizontal flip.
        draw_size: the pixel grid the integer boxes are drawn on; default the input's own size.
    """

    def __init__(
        self,
        size: int | tuple[int, int] = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        draw_size: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.flip_p = flip_p
        self.draw_size = draw_size

    def draw(self, batch_size: int, size: tuple[int, int], generator: torch.Generator | None = None) -> CropFlipParams:
        """Draw parameters for ``batch_size`` inputs of pixel size ``size``."""
        return draw_crop_flip(batch_size, self.draw_size or size, self.scale, self.ratio, self.flip_p, generator)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, CropFlipParams]:
        """Augment ``x`` (``[B, C, H, W]``); return the augmented batch and its parameters."""
        params = self.draw(x.shape[0], tuple(x.shape[-2:]), generator)
        return replay(x, params, self.size), params

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}, flip_p={self.flip_p}"
