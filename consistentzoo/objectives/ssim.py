"""SSIM consistency + sparsity of Grad-CAM ("Staying Consistent with GradCAM", UMass COMPSCI 682 report)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import saliency
from ..transforms import CropFlipParams, RandomResizedCropFlip, replay
from ._cam import check_model, forward_cam, upsample

__all__ = ["SSIMSparsityLoss", "lp_sparsity", "ssim_dissimilarity"]


def ssim_dissimilarity(
    replayed: Tensor,
    computed: Tensor,
    data_range: float | Tensor = 1.0,
    win_size: int = 11,
    win_sigma: float = 1.5,
    reduction: Literal["none", "mean"] = "none",
) -> Tensor:
    """``1 − SSIM`` per map pair ``[B]`` (or its mean), with pytorch-msssim's differentiable SSIM (Gaussian window,
    K = 0.01/0.03).

    Why pytorch-msssim: its SSIM equals ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)`` — the reference implementation COSE-style evaluation uses — to float
    precision, it is pure torch (one small file, differentiable, batched, GPU), and it takes a per-sample
    ``data_range`` tensor. torchmetrics' SSIM (reflect padding, then border crop) differs from skimage by up to a few
    hundredths on small maps; kornia is not a dependency of the project.

    Args:
        replayed: ``[B, H, W]`` transformed maps of the original images, ``t(Φ(x))``.
        computed: ``[B, H, W]`` maps of the transformed images, ``Φ(t(x))``.
        data_range: value range of the maps (1 for min-max scaled maps), a float or a ``[B]`` tensor.
        win_size: Gaussian window size (odd; maps must be at least this large).
        win_sigma: Gaussian window σ.
        reduction: ``"none"`` (per pair) or ``"mean"`` (over the batch; ~9× faster on CPU: the maps are laid along
            channels, so the Gaussian filter runs as one grouped convolution instead of a one-channel one).
    """
    from pytorch_msssim import ssim  # optional heavy import (see DESIGN.md)

    if reduction not in ("none", "mean"):
        raise ValueError(f"reduction must be 'none' or 'mean'; got {reduction!r}")

    if replayed.shape != computed.shape or replayed.ndim != 3:
        raise ValueError(f"maps must both be [B, H, W]; got {tuple(replayed.shape)} and {tuple(computed.shape)}")
    if min(replayed.shape[-2:]) < win_size or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and at most the map size {tuple(replayed.shape[-2:])}; got {win_size}")
    per_pair = reduction == "none"
    if isinstance(data_range, Tensor):
        data_range = data_range.reshape(-1, 1, 1, 1) if per_pair else data_range.reshape(1, -1, 1, 1)
    # [B, 1, H, W] gives one SSIM per image; [1, B, H, W] one per channel, averaged: the batch mean
    x, y = (replayed[:, None], computed[:, None]) if per_pair else (replayed[None], computed[None])
    value = ssim(x, y, data_range=data_range, size_average=not per_pair, win_size=win_size, win_sigma=win_sigma)
    return 1.0 - value


def lp_sparsity(maps: Tensor, p: int = 1) -> Tensor:
    """``‖m‖_p`` per map ``[B]`` for p ∈ {0, 1, 2}: the count of non-zero cells, ``Σ|m|`` or ``√Σm²``.

    The p = 0 count has no gradient (the report found it hard to train); p = 1 is the report's best. Finite and
    with a finite (zero) gradient on all-zero maps.
    """
    flat = maps.flatten(1)
    if p == 0:
        return (flat != 0).sum(1).to(maps.dtype)
    if p in (1, 2):
        return torch.linalg.vector_norm(flat, ord=p, dim=1)
    raise ValueError(f"p must be 0, 1 or 2; got {p!r}")


class SSIMSparsityLoss(nn.Module):
    r"""SSIM consistency + sparsity objective:

    .. math::
        L = \mathrm{CE}(f(x), y) + \alpha\,\big(1 - \mathrm{SSIM}(t(\Phi(x)), \Phi(t(x)))\big)
            + \beta\,\|\Phi(x)\|_p

    ``Φ`` is Grad-CAM (gradients averaged over space) of the **predicted** class at the ``forward_features`` output
    **without the final ReLU** (with it the report's models learnt all-negative maps), upsampled bilinearly to the
    image size and min-max scaled to [0, 1] per map as pytorch-grad-cam (the library the authors modified) does;
    ``t`` is a random resized crop (scale 0.08–1, ratio 0.75–1.33) + flip 0.5, recorded and replayed on ``Φ(x)``.
    SSIM (Gaussian window 11, σ 1.5, data range 1) and the norm are averaged over the batch. No code was published:
    the min-max scaling, the map resolution and the SSIM window are this package's reading of the report (options
    ``scale``, ``map_size``, ``win_size``), as is the target of ``Φ(t(x))``: the class predicted on ``t(x)``
    (pytorch-grad-cam's default, ``targets="each"``) or on ``x`` (``targets="orig"``).

    Report: P. Phan (with A. Sun, P. Nguyen), "Staying Consistent with GradCAM", UMass Amherst COMPSCI 682; good
    settings (ResNet50, CUB-200): α = 0.1, β = 1e-5, p = 1 (α ≥ 1 collapses accuracy).

    Args:
        alpha: weight α of ``1 − SSIM``.
        beta: weight β of the sparsity norm.
        p: the norm's order, 0, 1 or 2.
        method: the differentiable CAM method (``"gradcam"``; ``"hirescam"`` for the element-wise form).
        relu: keep the final ReLU (the report drops it; True is the ablation it warns against).
        targets: ``"each"`` (each view's predicted class) or ``"orig"`` (the class predicted on ``x`` for both).
        scale: ``"minmax"`` (maps in [0, 1], data range 1) or ``"none"`` (raw maps, data range from both maps).
        map_size: resolution of the maps in the loss; ``None`` means the image size.
        win_size: SSIM Gaussian window size.
        win_sigma: SSIM Gaussian window σ.
        augment: draws ``t`` when no transformed view is given (its scale, ratio and flip_p; the crop is resized back
            to the image size).
    """

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1e-5,
        p: int = 1,
        method: str = "gradcam",
        relu: bool = False,
        targets: Literal["each", "orig"] = "each",
        scale: Literal["minmax", "none"] = "minmax",
        map_size: tuple[int, int] | None = None,
        win_size: int = 11,
        win_sigma: float = 1.5,
        augment: RandomResizedCropFlip | None = None,
    ):
        super().__init__()
        if p not in (0, 1, 2):
            raise ValueError(f"p must be 0, 1 or 2; got {p!r}")
        if targets not in ("each", "orig"):
            raise ValueError(f"targets must be 'each' or 'orig'; got {targets!r}")
        if scale not in ("minmax", "none"):
            raise ValueError(f"scale must be 'minmax' or 'none'; got {scale!r}")
        self.alpha = alpha
        self.beta = beta
        self.p = p
        self.method = method
        self.relu = relu
        self.targets = targets
        self.scale = scale
        self.map_size = map_size
        self.win_size = win_size
        self.win_sigma = win_sigma
        self.augment = augment if augment is not None else RandomResizedCropFlip(size=224)

    def _prepare(self, cam: Tensor, size: tuple[int, int]) -> Tensor:
        cam = upsample(cam, size)
        return saliency.normalize_minmax(cam) if self.scale == "minmax" else cam

    def forward(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor | None = None,
        aug: Tensor | None = None,
        params: CropFlipParams | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the loss for a batch.

        Args:
            model: a zoo classifier (``forward_features``/``forward_head``).
            images: ``[B, C, H, W]`` training images ``x``.
            labels: ``[B]`` class indices for the CE term; ``None`` leaves it out.
            aug: ``[B, C, H, W]`` transformed images ``t(x)``; ``None`` draws ``t`` here.
            params: the recorded ``t`` (required with ``aug``).

        Returns:
            ``(total, parts)`` with parts ``ce``, ``consistency`` (mean ``1 − SSIM``) and ``sparsity`` (mean norm),
            detached.
        """
        check_model(model)
        if (aug is None) != (params is None):
            raise ValueError("pass aug together with its params, or neither (the loss then draws them)")
        if aug is None:
            params = self.augment.draw(images.shape[0], tuple(images.shape[-2:])).to(images.device)
            aug = replay(images, params)
        o = forward_cam(model, images, None, self.method, relu=self.relu)
        a = forward_cam(model, aug, o.targets if self.targets == "orig" else None, self.method, relu=self.relu)
        size = self.map_size or tuple(images.shape[-2:])
        phi_x = self._prepare(o.cam, size)
        phi_tx = self._prepare(a.cam, size)
        replayed = replay(phi_x, params)
        if self.scale == "minmax":
            data_range: float | Tensor = 1.0
        else:
            both = torch.stack([replayed.detach().flatten(1), phi_tx.detach().flatten(1)], 1).flatten(1)
            data_range = (both.amax(1) - both.amin(1)).clamp(min=1e-8)
        consistency = ssim_dissimilarity(replayed, phi_tx, data_range, self.win_size, self.win_sigma, "mean")
        sparsity = lp_sparsity(phi_x, self.p).mean()
        ce = F.cross_entropy(o.logits, labels) if labels is not None else consistency.new_zeros(())
        total = ce + self.alpha * consistency + self.beta * sparsity
        return total, {"ce": ce.detach(), "consistency": consistency.detach(), "sparsity": sparsity.detach()}

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, p={self.p}, method={self.method!r}, relu={self.relu}, "
            f"targets={self.targets!r}, scale={self.scale!r}, win_size={self.win_size}"
        )
