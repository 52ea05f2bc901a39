"""FullGrad (Srinivas & Fleuret, NeurIPS 2019, "Full-gradient representation for neural-network visualization").

The bias terms are found by intercepting the functional calls (``conv2d``, ``linear``, ``batch_norm``) during one
forward pass with a ``TorchFunctionMode``, so fused modules (timm's ``BatchNormAct2d``) and in-place activations
after them are handled without knowing the model's module types.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .base import Layer, SaliencyMethod, Targets, target_scores, wide_dtype


class FullGradients(NamedTuple):
    """The full-gradient decomposition ``s = Σ x·∂s/∂x + Σ_l Σ b_l·∂s/∂z_l`` (exact for ReLU networks with
    eval-mode batch norm).

    Attributes:
        input_gradient: ``∂s/∂x`` ``[B, C, H, W]``.
        bias_gradients: per biased layer, ``b_l ⊙ ∂s/∂z_l`` at the layer's output shape (``[B, C, h, w]`` for
            convolutions and batch norms, ``[B, N]`` for linear layers).
        scores: the explained scores ``s [B]``.
    """

    input_gradient: Tensor
    bias_gradients: list[Tensor]
    scores: Tensor


def _batch_norm_bias(args: tuple, kwargs: dict) -> Tensor | None:
    """The effective bias ``β − μγ/√(σ²+ε)`` of a ``batch_norm`` call, shaped ``[1, C, 1, ...]``."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    call = dict(zip(names, args, strict=False), **kwargs)  # trailing arguments may be omitted
    x, training, eps = call["input"], call.get("training", False), call.get("eps", 1e-5)
    if training or call.get("running_mean") is None:
        # batch statistics: the bias is not a constant of the model, taken with the batch's mean and variance
        dims = [0] + list(range(2, x.ndim))
        mean, var = x.detach().mean(dims), x.detach().var(dims, unbiased=False)
    else:
        mean, var = call["running_mean"], call["running_var"]
    weight = call.get("weight")
    bias = call.get("bias")
    scale = (weight if weight is not None else torch.ones_like(mean)) / torch.sqrt(var + eps)
    effective = (bias if bias is not None else torch.zeros_like(mean)) - mean * scale
    return effective.view(1, -1, *([1] * (x.ndim - 2))).detach()


class _BiasRecorder(TorchFunctionMode):
    """Records (output, bias) for every biased ``conv2d``/``linear``/``batch_norm`` call; the model continues with a
    clone, so in-place activations after the call leave the recorded output intact."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[Tensor, Tensor]] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is F.conv2d or func is F.linear:
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if bias is not None:
                shape = (1, -1) + (1,) * (out.ndim - 2)
                self.records.append((out, bias.detach().view(shape)))
                return out.clone()
        elif func is F.batch_norm:
            self.records.append((out, _batch_norm_bias(args, kwargs)))
            return out.clone()
        return out


def full_gradients(model: nn.Module, images: Tensor, targets: Targets = None) -> FullGradients:
    """The input gradient and the bias gradients of the target scores (FullGrad's decomposition).

    Args:
        model: the classifier (its mode is left as is; completeness is exact in eval mode).
        images: ``[B, C, H, W]`` float.
        targets: classes, ``None`` for the predicted class, or a callable on the logits.
    """
    recorder = _BiasRecorder()
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        with recorder:
            logits = model(x)
        scores, _ = target_scores(targets, logits)
        outputs = [out for out, _ in recorder.records]
        grads = torch.autograd.grad(scores.sum(), [x, *outputs], allow_unused=True)
    bias_grads = [
        (g if g is not None else torch.zeros_like(out)) * bias
        for g, (out, bias) in zip(grads[1:], recorder.records, strict=True)
    ]
    return FullGradients(grads[0].detach(), [b.detach() for b in bias_grads], scores.detach())


class FullGrad(SaliencyMethod):
    r"""FullGrad saliency (Srinivas & Fleuret, NeurIPS 2019), at the input size:

    .. math:: M = \psi\big(|x \odot \nabla_x s|\big) + \sum_{l \in \text{conv, bn}} \sum_c
              \mathrm{up}\Big(\psi\big(|b_l \odot \nabla_{z_l} s|\big)\Big)_c

    summed over channels, where ``ψ`` min-max scales each term (``normalise="sample"``: per image over all channels,
    the official ``idiap/fullgrad-saliency`` code; ``"channel"``: per image and channel, pytorch-grad-cam's variant)
    and ``up`` is bilinear with ``align_corners=True`` (as the official code). The bias gradients of linear layers
    enter the completeness identity (see :func:`full_gradients`) but not the map. Not differentiable.

    Args:
        model: the classifier.
        layer: unused (all layers contribute).
        relu: apply the final ReLU (a no-op: every term is non-negative).
        normalise: ``"sample"`` or ``"channel"``.
    """

    name = "fullgrad"
    resolution = "input"
    NORMALISATIONS = ("sample", "channel")
    eps: float = 1e-6

    def __init__(self, model: nn.Module, layer: Layer = None, relu: bool = True, normalise: str = "sample") -> None:
        super().__init__(model, layer, relu)
        if normalise not in self.NORMALISATIONS:
            raise ValueError(f"unknown FullGrad normalisation {normalise!r}; valid: {', '.join(self.NORMALISATIONS)}")
        self.normalise = normalise

    def _scale(self, t: Tensor) -> Tensor:
        t = t.to(wide_dtype(t.dtype)).abs()
        dims = tuple(range(1, t.ndim)) if self.normalise == "sample" else tuple(range(2, t.ndim))
        t = t - t.amin(dim=dims, keepdim=True)
        return t / (t.amax(dim=dims, keepdim=True) + self.eps)

    def attribute(self, images: Tensor, targets: Targets, create_graph: bool) -> Tensor:
        full = full_gradients(self.model, images, targets)
        saliency = self._scale(full.input_gradient * images).sum(dim=1)
        # upsampling is linear and the same for every channel and layer: Σ_l Σ_c up(ψ(·)) = up(Σ_l Σ_c ψ(·)), so the
        # scaled terms are summed at each grid size first and each grid is upsampled once (not B·C maps per layer)
        grids: dict[tuple[int, int], Tensor] = {}
        for bias_grad in full.bias_gradients:
            if bias_grad.ndim == 4:
                summed = self._scale(bias_grad).sum(dim=1)
                key = tuple(summed.shape[-2:])
                grids[key] = grids[key] + summed if key in grids else summed
        for grid in grids.values():
            up = F.interpolate(grid[:, None], size=images.shape[-2:], mode="bilinear", align_corners=True)
            saliency = saliency + up[:, 0]
        return saliency
