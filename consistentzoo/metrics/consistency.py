"""Consistency of explanations under transforms: COSE-style SSIM consistency and the COSE score.

Daroya, Sun & Maji, "COSE: A Consistency-Sensitivity Metric for Saliency on Image Classification" (ICCV 2023),
as its code computes them (``src/utils/transforms.py``, ``postprocess/02_compile_explanations.py``); the SSIM
is scikit-image's ``structural_similarity`` (Wang et al., IEEE TIP 2004) with a 5x5 uniform window, batched in
torch. The CGC-loss-on-held-out-data metric lives with the objectives, not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._inputs import check_maps, check_masks
from .results import PerImageResult

__all__ = ["CoseResult", "cose", "ssim_consistency"]


def _symmetric_pad(x: Tensor, pad: int) -> Tensor:
    """Pad the last two dims like scipy.ndimage mode "reflect" (edge repeated: ``d c b a | a b c d``)."""
    h, w = x.shape[-2:]
    if pad > h or pad > w:
        raise ValueError(f"maps of size {h}x{w} are smaller than the SSIM window's half-width {pad}")
    rows = torch.cat([x[..., :pad, :].flip(-2), x, x[..., h - pad :, :].flip(-2)], dim=-2)
    return torch.cat([rows[..., :pad].flip(-1), rows, rows[..., w - pad :].flip(-1)], dim=-1)


def _ssim_map(a: Tensor, b: Tensor, data_range: Tensor, win_size: int) -> Tensor:
    """Per-pixel SSIM ``[B, H, W]`` exactly as skimage (uniform window, sample covariance, K1 0.01, K2 0.03)."""
    pad = (win_size - 1) // 2

    def mean(x: Tensor) -> Tensor:
        return F.avg_pool2d(_symmetric_pad(x.unsqueeze(1), pad), win_size, stride=1).squeeze(1)

    cov_norm = win_size**2 / (win_size**2 - 1)
    ux, uy = mean(a), mean(b)
    vx = cov_norm * (mean(a * a) - ux * ux)
    vy = cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    r = data_range.view(-1, 1, 1)
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))


def ssim_consistency(maps: Tensor, maps_back: Tensor, valid: Tensor | None = None, win_size: int = 5) -> PerImageResult:
    """SSIM between each map and the map of the transformed image mapped back by the inverse transform (COSE).

    ``SSIM(x, y) = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` over 5x5
    uniform windows (sample covariance, ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``, ``R`` the larger value range of
    the two maps), i.e. ``skimage.metrics.structural_similarity(win_size=5, data_range=R, full=True)``. The score
    is the mean of the SSIM map over ``valid`` eroded by a 5x5 square (pixels outside the image count as valid,
    as ``skimage.morphology.binary_erosion``), or, without ``valid``, over the image less a 2-pixel border
    (skimage's own mean). To get ``valid``, warp a ones-map with the same inverse transform as the map.

    Args:
        maps: ``[B, H, W]`` non-negative maps of the original images.
        maps_back: ``[B, H, W]`` maps of the transformed images, already inverse-transformed onto the originals.
        valid: Optional boolean ``[B, H, W]``, pixels the inverse transform filled from inside the transformed image.
        win_size: SSIM window side (odd, >= 3); COSE uses 5.

    Returns:
        SSIM per scored pair, in ``[-1, 1]``. Skipped, in this order: ``"constant_maps"`` (both maps constant, so
        ``R = 0`` and SSIM is 0/0), ``"empty_valid_region"`` (nothing left of ``valid`` after erosion).
    """
    check_maps(maps)
    check_maps(maps_back, "maps_back")
    if maps_back.shape != maps.shape:
        raise ValueError(f"maps_back must match maps' shape {tuple(maps.shape)}, got {tuple(maps_back.shape)}")
    if valid is not None:
        check_masks(valid, maps, "valid")
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd integer >= 3, got {win_size}")
    pad = (win_size - 1) // 2
    b, h, w = maps.shape
    if h < win_size or w < win_size:
        raise ValueError(f"maps of size {h}x{w} are smaller than the {win_size}x{win_size} SSIM window")
    a, c = maps.double(), maps_back.double()
    fa, fc = a.flatten(1), c.flatten(1)
    data_range = torch.maximum(fa.amax(1) - fa.amin(1), fc.amax(1) - fc.amin(1))
    if valid is None:
        region = torch.zeros(b, h, w, dtype=torch.bool, device=maps.device)
        region[:, pad : h - pad, pad : w - pad] = True
    else:
        # erosion = min-pool; max_pool2d pads with -inf, so outside pixels never erode (skimage mode "ignore")
        region = -F.max_pool2d(-valid.unsqueeze(1).double(), win_size, stride=1, padding=pad).squeeze(1) > 0
    constant = data_range == 0
    empty = ~region.flatten(1).any(1) & ~constant
    keep = ~(constant | empty)
    index = keep.nonzero().flatten()
    s = _ssim_map(a[index], c[index], data_range[index], win_size)
    reg = region[index]
    values = (s * reg).flatten(1).sum(1) / reg.flatten(1).sum(1)
    skipped = {"constant_maps": constant.nonzero().flatten(), "empty_valid_region": empty.nonzero().flatten()}
    return PerImageResult(values.to(maps.dtype), index, b, skipped)


@dataclass(frozen=True)
class CoseResult:
    """COSE and its two parts.

    Attributes:
        cose: ``sqrt(consistency * (1 - fidelity))``, higher is better.
        consistency: Mean SSIM where the label, the prediction and the transformed prediction agree.
        fidelity: Mean SSIM where the prediction is right and the transformed prediction is wrong (lower is better).
        n_consistency: Pairs averaged into ``consistency``.
        n_fidelity: Pairs averaged into ``fidelity``.
    """

    cose: float
    consistency: float
    fidelity: float
    n_consistency: int
    n_fidelity: int


def cose(similarity: Tensor, labels: Tensor, preds: Tensor, preds_transformed: Tensor) -> CoseResult:
    """COSE = ``sqrt(consistency * (1 - fidelity))`` (Daroya et al., ICCV 2023).

    consistency = mean similarity over pairs with ``label == pred == pred_transformed`` (the explanation should
    not change); fidelity = mean over pairs with ``label == pred != pred_transformed`` (it should). Pairs where
    the original prediction is wrong count in neither. A negative ``consistency * (1 - fidelity)`` (possible
    with SSIM < 0) gives COSE 0 rather than COSE's NaN.

    Args:
        similarity: ``[N]`` per-pair similarity (e.g. ``ssim_consistency(...).values``).
        labels: ``[N]`` ground-truth classes of those pairs.
        preds: ``[N]`` predictions on the original images.
        preds_transformed: ``[N]`` predictions on the transformed images.

    Raises:
        ValueError: If either group is empty (COSE's mean would be NaN), or on mismatched or non-finite inputs.
    """
    similarity = torch.as_tensor(similarity).double()
    n = similarity.shape[0] if similarity.ndim == 1 else -1
    tensors = [torch.as_tensor(t) for t in (labels, preds, preds_transformed)]
    if n <= 0 or any(t.shape != (n,) for t in tensors):
        raise ValueError("similarity, labels, preds and preds_transformed must be 1-D tensors of one non-zero length")
    if not torch.isfinite(similarity).all():
        raise ValueError("similarity contains NaN or infinite values")
    labels, preds, preds_transformed = (t.to(similarity.device) for t in tensors)
    right = labels == preds
    cons_mask = right & (preds_transformed == labels)
    fid_mask = right & (preds_transformed != labels)
    if not cons_mask.any() or not fid_mask.any():
        raise ValueError(
            f"COSE needs pairs of both kinds: {int(cons_mask.sum())} with a consistent prediction, "
            f"{int(fid_mask.sum())} where the transform flipped a correct prediction"
        )
    consistency = float(similarity[cons_mask].mean())
    fidelity = float(similarity[fid_mask].mean())
    score = math.sqrt(max(consistency * (1.0 - fidelity), 0.0))
    return CoseResult(score, consistency, fidelity, int(cons_mask.sum()), int(fid_mask.sum()))
