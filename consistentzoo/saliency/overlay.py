"""Draw a saliency map over its image (matplotlib colormap, PIL blend) and save it as PNG."""

from __future__ import annotations

from pathlib import Path

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
    import matplotlib
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
    scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=matplotlib.colormaps[colormap])
    fig.colorbar(scale, ax=ax, fraction=0.046, pad=0.03, label="saliency (0 = map minimum, 1 = map peak)")
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return path
