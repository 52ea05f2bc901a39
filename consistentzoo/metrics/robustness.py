"""Robustness: accuracy under the fast gradient sign method (FGSM) for a list of perturbation sizes.

Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples" (ICLR 2015); the setting of
Table 6 of the GC paper (Pillai & Pirsiavash, AAAI 2021): L-inf FGSM with eps in {1, 2, 8, 16, 32, 64} on the
0-255 pixel scale, i.e. ``eps / 255`` for images in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._inputs import check_images, check_targets, eval_mode

__all__ = ["fgsm_accuracy"]


def fgsm_accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: Sequence[float],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    pixel_range: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    """Per-image correctness of the model on FGSM adversarial images, for each ``eps``.

    ``x_adv = clip(x + eps * sign(grad_x CE(f(N(x)), y)), lo, hi)``, ``N`` the normalisation
    ``(x - mean) / std`` (identity when ``mean``/``std`` are None); returns ``1[argmax f(N(x_adv)) = y]``.
    The attack is taken in pixel space so ``eps`` has its usual meaning; ``eps = 0`` gives clean accuracy.
    The model runs in eval mode; its parameters get no gradient.

    Args:
        model: Classifier returning logits.
        images: ``[B, C, H, W]`` pixels in ``pixel_range`` (not yet normalised if ``mean``/``std`` are given).
        labels: Long ``[B]`` ground-truth classes.
        eps: Perturbation sizes in the units of ``pixel_range`` (GC Table 6: ``e / 255``, e in 1, 2, 8, 16, 32, 64).
        mean: Per-channel normalisation mean, or None if the model takes raw pixels.
        std: Per-channel normalisation std.
        pixel_range: ``(lo, hi)`` valid pixel values; adversarial images are clipped to it.

    Returns:
        ``[len(eps), B]`` float 0/1; accuracy at ``eps[k]`` is ``out[k].mean()``.
    """
    check_images(images)
    eps = [float(e) for e in eps]
    if not eps or any(e < 0 for e in eps):
        raise ValueError(f"eps must be a non-empty list of non-negative numbers, got {eps}")
    lo, hi = pixel_range
    if not lo < hi:
        raise ValueError(f"pixel_range must be (lo, hi) with lo < hi, got {pixel_range}")
    if images.min() < lo or images.max() > hi:
        raise ValueError(f"images must lie in pixel_range {pixel_range}; pass raw pixels and mean/std, not normalised")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    c = images.shape[1]
    if mean is not None and std is not None:
        m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        if m.shape[1] != c or s.shape[1] != c or (s <= 0).any():
            raise ValueError(f"mean and std need {c} entries, std positive")
    else:
        m, s = torch.zeros(1, c, 1, 1), torch.ones(1, c, 1, 1)
        m, s = m.to(images), s.to(images)

    out = images.new_empty(len(eps), images.shape[0])
    with eval_mode(model):
        x = images.detach().clone().requires_grad_(True)
        logits = model((x - m) / s)
        labels = check_targets(labels, images.shape[0], logits.shape[-1]).to(images.device)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels), x)
        sign = grad.sign()
        with torch.inference_mode():
            for k, e in enumerate(eps):
                adv = (images + e * sign).clamp(lo, hi)
                out[k] = (model((adv - m) / s).argmax(-1) == labels).to(images.dtype)
    return out
