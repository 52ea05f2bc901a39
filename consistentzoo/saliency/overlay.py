"""Draw a saliency map over its image (matplotlib colormap, PIL blend) and save it as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import InvalidMapsError
from .postprocess import normalize_minmax, upsample


def _to_pil(image: Image.Image | np.ndarray | Tensor) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(
                f"a tensor image must be [C, H, W] with 1 or 3 channels in [0, 1], got {tuple(image.shape)}"
            )
        array = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(array.squeeze(2) if array.shape[2] == 1 else array).convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"a numpy image must be uint8 [H, W, 3], got {image.dtype}")
        return Image.fromarray(image).convert("RGB")
    raise TypeError(f"image must be a PIL image, a uint8 array or a [C, H, W] tensor, got {type(image).__name__}")


def overlay(
    image: Image.Image | np.ndarray | Tensor,
    saliency_map: Tensor,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> Image.Image:
    """The map, upsampled to the image (bilinear) and min-max scaled, as a colour heatmap blended over the image.

    Args:
        image: PIL image, uint8 ``[H, W, 3]`` array, or float ``[C, H, W]`` tensor in ``[0, 1]`` (unnormalised).
        saliency_map: ``[h, w]`` (or ``[1, h, w]``) map at any resolution.
        alpha: heatmap opacity in ``[0, 1]``.
        colormap: a matplotlib colormap name.

    Returns:
        An RGB PIL image of the image's size. An all-zero map gives the colormap's lowest colour everywhere.

    Raises:
        InvalidMapsError: the map is not ``[h, w]``/``[1, h, w]`` or has NaN or infinite values.
    """
    import matplotlib

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise KeyError(f"unknown matplotlib colormap {colormap!r}; e.g. jet, viridis, inferno, turbo") from None
    base = _to_pil(image)
    maps = saliency_map.detach().float().cpu()
    maps = maps[None] if maps.ndim == 2 else maps
    if maps.ndim != 3 or maps.shape[0] != 1:
        raise InvalidMapsError(f"saliency_map must be [h, w] or [1, h, w], got {tuple(saliency_map.shape)}")
    finite = torch.isfinite(maps)
    if not finite.all():
        raise InvalidMapsError(
            f"saliency_map has {int((~finite).sum())} NaN or infinite values of {maps.numel()}: there is nothing to "
            "draw; find where they come from (non-finite images or weights)"
        )
    scaled = normalize_minmax(upsample(maps, (base.height, base.width)))[0].clamp(0, 1).numpy()
    heat = (cmap(scaled)[..., :3] * 255).round().astype(np.uint8)
    return Image.blend(base, Image.fromarray(heat), alpha)


def save_overlay(
    path: str | Path,
    image: Image.Image | np.ndarray | Tensor,
    saliency_map: Tensor,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> Path:
    """:func:`overlay` written as a PNG to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        overlay(image, saliency_map, alpha, colormap).save(path, format="PNG")
    return path


def _colorbar(fig: Any, ax: Any, colormap: str, fraction: float, pad: float) -> None:
    """The colour bar of min-max scaled maps: 0 = a map's minimum, 1 = its peak."""
    import matplotlib

    scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=matplotlib.colormaps[colormap])
    fig.colorbar(scale, ax=ax, fraction=fraction, pad=pad, label="saliency (0 = map minimum, 1 = map peak)")


def save_figure(
    path: str | Path,
    image: Image.Image | np.ndarray | Tensor,
    saliency_map: Tensor,
    title: str,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> Path:
    """:func:`overlay` as a titled PNG figure with a colour bar (the map's scale: 0 = its minimum, 1 = its peak).

    Args:
        path: output PNG (parent folders created).
        image: as :func:`overlay`.
        saliency_map: as :func:`overlay`.
        title: the figure's title (e.g. model, explained class and its probability).
        alpha: heatmap opacity in ``[0, 1]``.
        colormap: a matplotlib colormap name.

    Returns:
        The path.
    """
    from matplotlib.figure import Figure

    blended = overlay(image, saliency_map, alpha, colormap)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width = 5.0
    fig = Figure(figsize=(width + 1.2, width * blended.height / blended.width + 0.4 + 0.25 * (title.count("\n") + 1)))
    ax = fig.add_subplot()
    ax.imshow(np.asarray(blended))
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    _colorbar(fig, ax, colormap, fraction=0.046, pad=0.03)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return path


def save_grid(
    path: str | Path,
    panels: Sequence[Sequence[tuple[Image.Image | np.ndarray | Tensor, Tensor | None, str]]],
    title: str,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> Path:
    """A grid of titled panels, each an image with (or without) its map drawn over it, and one shared colour bar.

    Every map is min-max scaled on its own (:func:`overlay`), so the colour bar reads the same for all panels:
    0 = that map's minimum, 1 = its peak. An all-zero map shows the colormap's lowest colour everywhere.

    Args:
        path: output PNG (parent folders created).
        panels: rows of ``(image, map or None, panel title)``; rows may differ in length.
        title: the figure's title (what is shown: the setting, the split, which class each map explains).
        alpha: heatmap opacity in ``[0, 1]``.
        colormap: a matplotlib colormap name.

    Returns:
        The path.

    Raises:
        ValueError: no panel.
        InvalidMapsError: a map that :func:`overlay` refuses.
    """
    from matplotlib.figure import Figure

    if not panels or not any(panels):
        raise ValueError("save_grid needs at least one panel")
    rows, cols = len(panels), max(len(r) for r in panels)
    lines = max(t.count("\n") + 1 for r in panels for _, _, t in r)
    fig = Figure(figsize=(2.3 * cols + 0.9, (2.3 + 0.16 * lines) * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, row in enumerate(panels):
        for j in range(cols):
            ax = axes[i][j]
            ax.set_axis_off()
            if j >= len(row):
                continue
            image, saliency_map, text = row[j]
            shown = _to_pil(image) if saliency_map is None else overlay(image, saliency_map, alpha, colormap)
            ax.imshow(np.asarray(shown))
            ax.set_title(text, fontsize=7)
    fig.suptitle(title, fontsize=9)
    _colorbar(fig, axes, colormap, fraction=0.02, pad=0.01)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path
