"""Saliency: batched, torch-only, differentiable explanation methods.

``compute(method, model, images, targets=None, layer=None, create_graph=False)`` returns maps ``[B, h, w]``:
ReLU'd, unnormalised, at the resolution natural to the method (the target layer's grid for CAM methods, the input
size for gradient methods and FullGrad). ``targets=None`` explains the predicted class. An all-zero map is a valid
result (no evidence for the class), never NaN. :mod:`.postprocess` upsamples and normalises, :mod:`.overlay` draws.

Example:
    >>> import consistentzoo
    >>> from consistentzoo import saliency
    >>> model = consistentzoo.create_model("resnet18_gc", num_classes=10)
    >>> maps = saliency.compute("hirescam", model, torch.randn(2, 3, 64, 64), create_graph=True)  # [2, 2, 2]
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .base import (
    CAMInputs,
    CAMMethod,
    Layer,
    SaliencyMethod,
    Targets,
    layer_candidates,
    model_state_kept,
    resolve_layer,
    tap_layer,
)
from .cam import GradCAM, GradCAMPlusPlus, HiResCAM, XGradCAM
from .cmwp import ContrastiveMWP
from .errors import (
    InvalidImagesError,
    InvalidMapsError,
    InvalidTargetError,
    LayerNotFoundError,
    NoConvLayerError,
    UnknownMethodError,
    UnsupportedModelError,
)
from .fullgrad import FullGrad, full_gradients
from .gradients import Gradient, GuidedBackprop, guided_gradients, input_gradients, reduce_channels
from .overlay import overlay, save_figure, save_grid, save_overlay
from .perturbation import AblationCAM, ScoreCAM
from .postprocess import normalize_minmax, normalize_sum, upsample

#: Method name → class.
METHODS: dict[str, type[SaliencyMethod]] = {
    cls.name: cls
    for cls in (
        GradCAM,
        HiResCAM,
        GradCAMPlusPlus,
        XGradCAM,
        ScoreCAM,
        AblationCAM,
        FullGrad,
        Gradient,
        GuidedBackprop,
        ContrastiveMWP,
    )
}


def get_method(method: str, model: nn.Module, layer: Layer = None, **options: Any) -> SaliencyMethod:
    """The method object for ``method`` (a key of :data:`METHODS`) bound to ``model``.

    Args:
        method: method name.
        model: the classifier.
        layer: target layer (``None``: ``forward_features`` output, or the last ``nn.Conv2d``).
        **options: the method class's options, e.g. ``relu=False``, ``reduce="sum"``, ``weighting=...``.

    Raises:
        UnknownMethodError: ``method`` is not in :data:`METHODS`.
    """
    try:
        cls = METHODS[method]
    except KeyError:
        raise UnknownMethodError(method, METHODS) from None
    return cls(model, layer=layer, **options)


def compute(
    method: str,
    model: nn.Module,
    images: Tensor,
    targets: Targets = None,
    layer: Layer = None,
    create_graph: bool = False,
    **options: Any,
) -> Tensor:
    """Saliency maps ``[B, h, w]`` of ``targets`` for a batch of images.

    Args:
        method: one of :data:`METHODS` (``gradcam``, ``hirescam``, ``gradcam++``, ``xgradcam``, ``scorecam``,
            ``ablationcam``, ``fullgrad``, ``gradient``, ``guided_backprop``, ``cmwp``).
        model: the classifier. It is left as it was (parameters, buffers, each module's train/eval mode, hooks);
            gradient methods run it in the caller's mode, Score-CAM and Ablation-CAM in eval mode.
        images: float ``[B, C, H, W]`` as the model expects them, finite (NaN/inf raise ``InvalidImagesError``).
        targets: one class per image (tensor ``[B]``, list, or one int), ``None`` for the predicted class, or a
            callable ``logits [B, N] -> scores [B]`` (gradient methods and gradient CAMs).
        layer: target layer for layer methods: ``None`` (``forward_features`` output for timm-style models, else the
            last ``nn.Conv2d``), a dotted name (``"layer4"``, ``"features.10"``) or a module of ``model``.
        create_graph: keep the graph so that a loss on the maps trains the model (``gradcam``, ``hirescam``,
            ``gradcam++``, ``xgradcam``, ``gradient``).
        **options: options of the method's class, e.g. ``relu=False`` for the signed map.

    Returns:
        Maps ``[B, h, w]`` in the images' dtype, ReLU'd (unless ``relu=False``), unnormalised. Under
        ``torch.inference_mode()`` the same maps as under ``torch.no_grad()``.
    """
    return get_method(method, model, layer=layer, **options)(images, targets, create_graph=create_graph)


__all__ = [
    "METHODS",
    "AblationCAM",
    "CAMInputs",
    "CAMMethod",
    "ContrastiveMWP",
    "FullGrad",
    "GradCAM",
    "GradCAMPlusPlus",
    "Gradient",
    "GuidedBackprop",
    "HiResCAM",
    "InvalidImagesError",
    "InvalidMapsError",
    "InvalidTargetError",
    "LayerNotFoundError",
    "NoConvLayerError",
    "SaliencyMethod",
    "ScoreCAM",
    "Targets",
    "UnknownMethodError",
    "UnsupportedModelError",
    "XGradCAM",
    "compute",
    "full_gradients",
    "get_method",
    "guided_gradients",
    "input_gradients",
    "layer_candidates",
    "model_state_kept",
    "normalize_minmax",
    "normalize_sum",
    "overlay",
    "reduce_channels",
    "resolve_layer",
    "save_figure",
    "save_grid",
    "save_overlay",
    "tap_layer",
    "upsample",
]
