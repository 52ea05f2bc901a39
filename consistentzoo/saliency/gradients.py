"""Input-gradient maps: the plain gradient (Simonyan et al.) and guided backpropagation (Springenberg et al.).

Both work on whole batches and return maps at the input size. :func:`input_gradients` and
:func:`guided_gradients` return the full ``[B, C, H, W]`` gradients (the guided-gradient objective compares them).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .base import Layer, SaliencyMethod, Targets, target_scores
from .errors import UnsupportedModelError

#: Channel reductions of a ``[B, C, H, W]`` gradient to a map ``[B, H, W]``.
REDUCTIONS = ("max_abs", "sum_abs", "sum")


def reduce_channels(gradients: Tensor, reduce: str = "max_abs") -> Tensor:
    """Reduce ``[B, C, H, W]`` gradients over channels.

    Args:
        gradients: input gradients.
        reduce: ``"max_abs"`` (Simonyan et al.: ``max_c |g_c|``), ``"sum_abs"`` (``Σ_c |g_c|``) or ``"sum"``
            (signed ``Σ_c g_c``).
    """
    if reduce == "max_abs":
        return gradients.abs().amax(dim=1)
    if reduce == "sum_abs":
        return gradients.abs().sum(dim=1)
    if reduce == "sum":
        return gradients.sum(dim=1)
    raise ValueError(f"unknown channel reduction {reduce!r}; valid: {', '.join(REDUCTIONS)}")


def _input_leaf(images: Tensor) -> Tensor:
    # keep the caller's graph into the images if there is one; otherwise make them a leaf we can differentiate to
    return images if images.requires_grad else images.detach().requires_grad_(True)


def input_gradients(model: nn.Module, images: Tensor, targets: Targets = None, create_graph: bool = False) -> Tensor:
    """``∂s/∂x`` ``[B, C, H, W]`` for the target scores ``s`` (logit of ``targets``, or a callable's scores).

    Args:
        model: the classifier (mode left as is).
        images: ``[B, C, H, W]`` float.
        targets: see :class:`~consistentzoo.saliency.base.SaliencyMethod`.
        create_graph: keep the graph (double backward into the parameters).
    """
    with torch.enable_grad():
        x = _input_leaf(images)
        scores, _ = target_scores(targets, model(x))
        (grads,) = torch.autograd.grad(scores.sum(), x, create_graph=create_graph)
    return grads


class _GuidedReLU(torch.autograd.Function):
    """``y = max(x, 0)``; backward passes ``1[y > 0] · [δ]₊`` (guided backpropagation's rule)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y = x.clamp(min=0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return grad.clamp(min=0) * (y > 0).to(grad.dtype)


_RELU_OUT_OF_PLACE = {F.relu, torch.relu, Tensor.relu}
_RELU_IN_PLACE = {torch.relu_, Tensor.relu_}


class _GuidedReLUMode(TorchFunctionMode):
    """Swaps every ReLU call (``nn.ReLU`` modules, in-place or not, ``F.relu``, ``torch.relu``, ``x.relu()``) for the
    guided ReLU while active; counts them so that a network without ReLU is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _RELU_OUT_OF_PLACE or func in _RELU_IN_PLACE:
            self.calls += 1
            x = args[0]
            y = _GuidedReLU.apply(x)
            if func in _RELU_IN_PLACE or kwargs.get("inplace", False) or (len(args) > 1 and args[1] is True):
                return x.copy_(y)
            return y
        return func(*args, **kwargs)


def guided_gradients(model: nn.Module, images: Tensor, targets: Targets = None) -> Tensor:
    """Guided-backprop gradients ``[B, C, H, W]`` of the target scores with respect to the images.

    Every ReLU is swapped for the guided ReLU during one forward/backward pass: modules (in-place or not) and
    functional calls alike.

    Raises:
        UnsupportedModelError: the model calls no ReLU (guided backprop is defined by its ReLU rule).
    """
    mode = _GuidedReLUMode()
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        with mode:
            logits = model(x)
        if mode.calls == 0:
            raise UnsupportedModelError(
                f"{type(model).__name__} calls no ReLU (nn.ReLU, F.relu, torch.relu); guided backpropagation is "
                "defined by its ReLU backward rule — use method='gradient' instead"
            )
        scores, _ = target_scores(targets, logits)
        (grads,) = torch.autograd.grad(scores.sum(), x)
    return grads


class Gradient(SaliencyMethod):
    r"""Input gradient, "vanilla" saliency (Simonyan, Vedaldi & Zisserman, 2014, "Deep inside convolutional
    networks: Visualising image classification models and saliency maps").

    .. math:: M(i,j) = \max_c \left| \frac{\partial s}{\partial x_c(i,j)} \right|

    Map at the input size. ``reduce`` picks the channel reduction (:data:`REDUCTIONS`); with ``"sum"`` the map is
    signed and ``relu=False`` keeps its sign. ``create_graph=True`` keeps the double-backward graph into the
    parameters.

    Args:
        model: the classifier.
        layer: unused (input resolution).
        relu: apply the final ReLU (a no-op for the absolute reductions).
        reduce: ``"max_abs"`` (default), ``"sum_abs"`` or ``"sum"``.
    """

    name = "gradient"
    resolution = "input"
    differentiable = True

    def __init__(self, model: nn.Module, layer: Layer = None, relu: bool = True, reduce: str = "max_abs") -> None:
        super().__init__(model, layer, relu)
        reduce_channels(torch.zeros(1, 1, 1, 1), reduce)  # validate early
        self.reduce = reduce

    def attribute(self, images: Tensor, targets: Targets, create_graph: bool) -> Tensor:
        return reduce_channels(input_gradients(self.model, images, targets, create_graph), self.reduce)


class GuidedBackprop(Gradient):
    r"""Guided backpropagation (Springenberg et al., ICLR-W 2015, "Striving for simplicity: The all convolutional
    net"): the input gradient where each ReLU's backward passes only positive signals at positive units,

    .. math:: R^{l} = 1[x^{l} > 0] \cdot [R^{l+1}]_+, \qquad M(i,j) = \max_c |R^{0}_c(i,j)|

    Batched; equals captum's ``GuidedBackprop`` before the channel reduction. Not differentiable (the guided
    gradient is a teacher signal). Works with in-place ``nn.ReLU`` modules and with functional ``F.relu``.
    """

    name = "guided_backprop"
    differentiable = False

    def attribute(self, images: Tensor, targets: Targets, create_graph: bool) -> Tensor:
        return reduce_channels(guided_gradients(self.model, images, targets), self.reduce)
