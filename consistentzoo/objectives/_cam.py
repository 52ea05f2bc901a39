"""One forward pass that yields both the logits (for the classification term) and a differentiable saliency map.

``consistentzoo.saliency.compute`` runs its own forward pass and returns only maps; an objective also needs the
logits of the same pass for its cross-entropy term, and a second forward would cost a full image-pass per view. So
the objectives run ``A = m.forward_features(x); y = m.forward_head(A)`` once, take ``∂s/∂A`` with
``create_graph=True`` through the saliency method itself (:meth:`CAMMethod.from_activations`): the gradient step
and the map formula live in ``consistentzoo.saliency`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .. import saliency

#: The eps of both authors' ``cam / (cam.sum() + eps) + eps``.
EPS = 1e-8


@dataclass
class ViewOutput:
    """The logits of one forward pass and the map of its target class.

    Attributes:
        logits: ``[B, N]``.
        cam: ``[B, h, w]`` at the ``forward_features`` grid, differentiable with respect to the parameters.
        targets: the explained class per image ``[B]``.
    """

    logits: Tensor
    cam: Tensor
    targets: Tensor


def check_model(model: nn.Module) -> None:
    """Raise ``TypeError`` unless the model has timm's ``forward_features``/``forward_head`` interface."""
    if not (callable(getattr(model, "forward_features", None)) and callable(getattr(model, "forward_head", None))):
        raise TypeError(
            f"{type(model).__name__} lacks forward_features/forward_head; the objectives need timm's model interface "
            "(every consistentzoo model has it)"
        )


def forward_cam(
    model: nn.Module, images: Tensor, targets: Tensor | None = None, method: str = "hirescam", relu: bool = True
) -> ViewOutput:
    """Run the model once and compute the map of ``targets`` at the ``forward_features`` output, keeping the graph.

    Args:
        model: a classifier with ``forward_features``/``forward_head``.
        images: ``[B, C, H, W]``.
        targets: class per image ``[B]``; ``None`` means the class predicted on these images.
        method: a differentiable CAM method of ``consistentzoo.saliency`` (``"hirescam"`` — the element-wise
            Grad-CAM both GC papers use — or ``"gradcam"``).
        relu: apply the method's final ReLU (the SSIM paper drops it).

    Returns:
        Logits, map and the explained classes.
    """
    check_model(model)
    cls = saliency.METHODS.get(method)
    if cls is None or not issubclass(cls, saliency.CAMMethod) or not cls.differentiable:
        valid = sorted(n for n, c in saliency.METHODS.items() if issubclass(c, saliency.CAMMethod) and c.differentiable)
        raise ValueError(f"method must be a differentiable CAM method, one of {valid}; got {method!r}")
    activations = model.forward_features(images)
    if not activations.requires_grad:  # frozen feature extractor: the map still needs ∂s/∂A
        activations = activations.detach().requires_grad_(True)
    logits = model.forward_head(activations)
    cam, idx = cls(model, relu=relu).from_activations(images, activations, logits, targets, create_graph=True)
    if relu:
        cam = F.relu(cam)
    return ViewOutput(logits=logits, cam=cam, targets=idx)


def normalise_sum(cam: Tensor, eps: float = EPS) -> Tensor:
    """``cam / (Σ cam + eps) + eps`` per map, as both authors normalise (finite on all-zero maps)."""
    return saliency.normalize_sum(cam, eps) + eps


def upsample(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``[B, h, w]`` maps to ``size`` (``align_corners=False``, the authors' ``F.interpolate``)."""
    return cam if tuple(cam.shape[-2:]) == tuple(size) else saliency.upsample(cam, size)
