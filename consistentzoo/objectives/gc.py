"""GC: Grad-CAM consistency on a 2×2 composite (Pillai & Pirsiavash, AAAI 2021)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._cam import check_model, forward_cam, normalise_sum, upsample

__all__ = ["GCLoss", "draw_quadrants", "gc_consistency", "make_composite", "place_in_quadrant"]

#: Quadrant index → (row, column) in the 2×2 grid: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
QUADRANTS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _check_quadrants(quadrants: Tensor, batch: int) -> Tensor:
    if quadrants.shape != (batch,) or quadrants.is_floating_point():
        raise ValueError(
            f"quadrants must be an integer tensor [{batch}]; got {quadrants.dtype} {tuple(quadrants.shape)}"
        )
    if ((quadrants < 0) | (quadrants > 3)).any():
        raise ValueError("quadrants must lie in {0: top-left, 1: top-right, 2: bottom-left, 3: bottom-right}")
    return quadrants.long()


def _tile(tiles: Tensor) -> Tensor:
    """``[B, 4, ..., h, w]`` tiles in quadrant order → ``[B, ..., 2h, 2w]`` grid."""
    b, _, *mid, h, w = tiles.shape
    grid = tiles.reshape(b, 2, 2, -1, h, w).permute(0, 3, 1, 4, 2, 5)  # b, c, row, h, col, w
    return grid.reshape(b, *mid, 2 * h, 2 * w)


def make_composite(
    images: Tensor,
    distractors: Tensor,
    quadrants: Tensor,
    labels: Tensor | None = None,
    distractor_labels: Tensor | None = None,
) -> Tensor:
    """Place each image in its quadrant of a 2×2 grid and fill the other three with its distractors, in order.

    The composite is not resized: 224-px images give a 448-px composite, as in the authors' code.

    Args:
        images: ``[B, C, h, w]``.
        distractors: ``[B, 3, C, h, w]``, filled into the free quadrants in increasing quadrant order.
        quadrants: ``[B]`` integer quadrant of each image (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right).
        labels: optional check: the composite's class per image ``[B]`` (in multi-label data the drawn category).
        distractor_labels: optional check: ``[B, 3]`` class of each distractor, or ``[B, 3, K]`` multi-hot labels;
            every distractor must lack the image's class.

    Returns:
        ``[B, C, 2h, 2w]`` composites.

    Raises:
        ValueError: bad shapes or quadrants, or a distractor of the image's own class.
    """
    b, c, h, w = images.shape
    if distractors.shape != (b, 3, c, h, w):
        raise ValueError(f"distractors must be [B, 3, C, h, w] = {(b, 3, c, h, w)}; got {tuple(distractors.shape)}")
    quadrants = _check_quadrants(quadrants, b)
    if (labels is None) != (distractor_labels is None):
        raise ValueError("pass both labels and distractor_labels to check the distractor classes, or neither")
    if labels is not None:
        _check_distractor_classes(labels, distractor_labels)
    slots = torch.arange(4, device=images.device)[None, :] != quadrants[:, None]  # [B, 4], three True per row
    tiles = images.new_empty(b, 4, c, h, w)
    tiles[torch.arange(b, device=images.device), quadrants] = images
    tiles[slots] = distractors.reshape(b * 3, c, h, w)
    return _tile(tiles)


def _check_distractor_classes(labels: Tensor, distractor_labels: Tensor) -> None:
    b = labels.shape[0]
    if distractor_labels.ndim == 2:
        if distractor_labels.shape != (b, 3):
            raise ValueError(f"distractor_labels must be [B, 3] or [B, 3, K]; got {tuple(distractor_labels.shape)}")
        clash = distractor_labels == labels[:, None]
    elif distractor_labels.ndim == 3 and distractor_labels.shape[:2] == (b, 3):
        clash = distractor_labels[torch.arange(b), :, labels.long()] > 0
    else:
        raise ValueError(f"distractor_labels must be [B, 3] or [B, 3, K]; got {tuple(distractor_labels.shape)}")
    if clash.any():
        row = int(clash.any(1).nonzero()[0])
        raise ValueError(
            f"image {row}: a distractor has the image's class {int(labels[row])}; distractors need another"
        )


def place_in_quadrant(maps: Tensor, quadrants: Tensor) -> Tensor:
    """Zero-pad ``[B, h, w]`` maps into their quadrant of a ``[B, 2h, 2w]`` grid (GC's target map)."""
    b, h, w = maps.shape
    quadrants = _check_quadrants(quadrants, b)
    onehot = F.one_hot(quadrants, 4).to(maps.dtype)  # [B, 4]
    return _tile(onehot[:, :, None, None] * maps[:, None])


def draw_quadrants(batch_size: int, generator: torch.Generator | None = None, device: str | None = None) -> Tensor:
    """Uniform random quadrants ``[batch_size]`` in {0, 1, 2, 3}."""
    return torch.randint(0, 4, (batch_size,), generator=generator).to(device or "cpu")


def gc_consistency(
    orig_cam: Tensor, composite_cam: Tensor, quadrants: Tensor, size: tuple[int, int] | None = None
) -> Tensor:
    """GC's L1 term on raw maps: mean |norm(composite) − pad_q(norm(orig))|.

    Each map is normalised to sum 1 separately (``cam/(Σ+1e-8)+1e-8``); with ``size`` (AlexNet: the image size)
    both are then upsampled bilinearly to ``size`` and ``2·size``, as the authors' AlexNet does, before the orig map
    is zero-padded into its quadrant.

    Args:
        orig_cam: ``[B, h, w]`` map of the original image.
        composite_cam: ``[B, H, W]`` map of the composite (``H = 2h``, ``W = 2w`` at feature resolution).
        quadrants: ``[B]`` quadrant of the original image.
        size: pixel size of the original image to compare at, or ``None`` to compare at feature resolution.

    Returns:
        The scalar ``nn.L1Loss()`` (mean over images and cells).
    """
    orig, comp = normalise_sum(orig_cam), normalise_sum(composite_cam)
    if size is not None:
        orig = upsample(orig, size)
        comp = upsample(comp, (2 * size[0], 2 * size[1]))
    target = place_in_quadrant(orig, quadrants)
    if target.shape != comp.shape:
        raise ValueError(
            f"composite map {tuple(comp.shape[1:])} is not twice the original map {tuple(orig.shape[1:])}; "
            "a composite of 2×2 images of the original's size has a map of twice its size at feature resolution"
        )
    return F.l1_loss(comp, target)


def _is_alexnet(model: nn.Module) -> bool:
    return getattr(model, "zoo_architecture", "") == "alexnet"


class GCLoss(nn.Module):
    r"""GC objective: cross-entropy on the original plus λ · L1 between the composite's map and the padded map.

    .. math::
        L = \mathrm{CE}(f(x), y) + \lambda \,\big\| \hat g_y(C_q(x, d_1, d_2, d_3)) - P_q(\hat g_y(x)) \big\|_1

    where :math:`C_q` puts ``x`` in quadrant ``q`` of a 2×2 composite with three distractors of other classes,
    :math:`\hat g_y` is the element-wise Grad-CAM (``ReLU(Σ_k ∂y_t/∂A_k ⊙ A_k)``) of the label ``y`` at the
    ``forward_features`` output, normalised to sum 1, and :math:`P_q` zero-pads a map into quadrant ``q``. The L1 is
    the mean over cells; no map is detached (gradients flow through the target too). ResNets compare at feature
    resolution (14×14 vs 7×7 padded); AlexNet upsamples both maps to pixels (448 vs 224 padded) after normalising.

    Multi-label (COCO): the classification term is ``bce_weight · BCEWithLogits(f(x), labels)`` (80 in the
    authors' code, with λ = 1) and the map target is the one positive category drawn per image (``targets``), whose
    distractors lack it.

    Paper: Pillai & Pirsiavash, "Explainable Models with Consistent Interpretations", AAAI 2021; code
    ``UMBCvision/Explainable-Models-with-Consistent-Interpretations`` (this follows ``resnet_multigpu.py`` and
    ``alexnet_multigpu.py``).

    Args:
        lam: weight λ of the L1 term (ImageNet 25, COCO 1).
        resolution: ``"auto"`` (pixels for AlexNet, features otherwise — the authors' choice), ``"features"`` or
            ``"pixels"``.
        multilabel: multi-hot labels with BCE (COCO mode).
        bce_weight: factor of the BCE term in multi-label mode.
        method: the differentiable saliency method (``"hirescam"`` is the authors' element-wise Grad-CAM).
    """

    def __init__(
        self,
        lam: float = 25.0,
        resolution: Literal["auto", "features", "pixels"] = "auto",
        multilabel: bool = False,
        bce_weight: float = 80.0,
        method: str = "hirescam",
    ):
        super().__init__()
        if resolution not in ("auto", "features", "pixels"):
            raise ValueError(f"resolution must be one of 'auto', 'features', 'pixels'; got {resolution!r}")
        self.lam = lam
        self.resolution = resolution
        self.multilabel = multilabel
        self.bce_weight = bce_weight
        self.method = method

    def forward(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        distractors: Tensor,
        quadrants: Tensor | None = None,
        targets: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the loss for a batch (both forward passes in the model's current mode).

        Args:
            model: a zoo classifier (``forward_features``/``forward_head``).
            images: ``[B, C, h, w]`` training images.
            labels: ``[B]`` class indices, or ``[B, K]`` multi-hot labels in multi-label mode.
            distractors: ``[B, 3, C, h, w]`` images of other classes (drawn by the data sampler).
            quadrants: ``[B]`` quadrant of each image; ``None`` draws them uniformly.
            targets: the class each map explains ``[B]``; default the labels; required in multi-label mode (the
                drawn positive category).

        Returns:
            ``(total, parts)`` with parts ``ce``, ``consistency`` (the unweighted L1), detached.
        """
        check_model(model)
        if self.multilabel and targets is None:
            raise ValueError("multi-label GC needs targets: the positive category drawn for each composite")
        if quadrants is None:
            quadrants = draw_quadrants(images.shape[0], device=images.device)
        target_cls = labels if targets is None else targets
        composite = make_composite(images, distractors, quadrants)
        orig = forward_cam(model, images, target_cls, self.method)
        comp = forward_cam(model, composite, target_cls, self.method)
        if self.multilabel:
            ce = self.bce_weight * F.binary_cross_entropy_with_logits(orig.logits, labels.to(orig.logits.dtype))
        else:
            ce = F.cross_entropy(orig.logits, labels)
        pixels = self.resolution == "pixels" or (self.resolution == "auto" and _is_alexnet(model))
        l1 = gc_consistency(orig.cam, comp.cam, quadrants, tuple(images.shape[-2:]) if pixels else None)
        total = ce + self.lam * l1
        return total, {"ce": ce.detach(), "consistency": l1.detach()}

    def extra_repr(self) -> str:
        return f"lam={self.lam}, resolution={self.resolution!r}, multilabel={self.multilabel}, method={self.method!r}"
