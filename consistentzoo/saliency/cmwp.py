r"""Contrastive marginal winning probability (cMWP): contrastive excitation backprop (Zhang et al., ECCV 2016,
"Top-down neural attention by excitation backprop"; journal version IJCV 2018), the ``cMWP`` row of the GC paper's
Table 3.

Excitation backprop passes a probability top-down. For a layer ``z_i = Σ_j w_ij a_j (+ b_i)`` with non-negative
inputs ``a`` (post-ReLU), the winning probability of ``a_j`` is

.. math:: P(a_j) = \sum_i \frac{a_j\, w^+_{ij}}{\sum_{j'} a_{j'}\, w^+_{ij'}}\; P(z_i),
          \qquad w^+ = \max(w, 0),

ReLU and max-pool pass ``P`` to the unit that fired, average pooling and sums split it in proportion to their inputs.
With ``c = P/a`` the rule is ``c_in = W^{+\top} (c_out \odot z / z^+)``, which is the backward pass of
``z^+ \cdot \mathrm{sg}(z / z^+)``: every convolution and linear layer is swapped for that during one forward pass
(a ``TorchFunctionMode``; forward values are unchanged), and ``P(A) = A \odot \partial \langle c_h, h\rangle /
\partial A``. Batch norm, which the 2016 paper predates, passes ``P`` through unchanged.

The contrast: the classifier unit ``o_t`` (weights ``w_t``) and its dual ``ō_t`` (weights ``−w_t``) each give a MWP
at the classifier's input ``h``; their difference is propagated down to the target layer (EB is linear in the top
signal, so this is one backward pass), summed over channels and ReLU'd. This is an independent port of the
algorithm; TorchRay's implementation (CC BY-NC, broken on current torch) was not used.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .base import (
    Layer,
    SaliencyMethod,
    Targets,
    _check_spatial,
    resolve_layer,
    resolve_targets,
    tap_layer,
)
from .errors import InvalidTargetError, UnsupportedModelError

_EPS = 1e-12


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den.abs() > _EPS, num / torch.where(den.abs() > _EPS, den, torch.ones_like(den)), 0.0)


def _excite(y: Tensor, z: Tensor) -> Tensor:
    """Forward value ``y``; backward ``grad · y/z`` into ``z``'s graph (and nothing into ``y``'s)."""
    weighted = z * _safe_ratio(y, z).detach()
    return y.detach() + weighted - weighted.detach()


class _ExcitationMode(TorchFunctionMode):
    """Gives every ``conv2d``/``linear`` call the excitation-backprop backward (positive weights, no bias) and lets
    ``batch_norm`` pass the probability through unchanged."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is F.conv2d or func is F.linear:
            rest = list(args[3:]) if len(args) > 3 else []
            extra = {k: v for k, v in kwargs.items() if k != "bias"}
            positive = func(args[0], args[1].clamp(min=0), None, *rest, **extra)
            return _excite(out, positive)
        if func is F.batch_norm:
            return _excite(out, args[0])
        return out


def _classifier(model: nn.Module) -> nn.Linear:
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Linear):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise UnsupportedModelError(f"{type(model).__name__} has no nn.Linear classifier for cmwp's contrast")
        head = linears[-1]
    return head


class ContrastiveMWP(SaliencyMethod):
    r"""Contrastive marginal winning probability (contrastive excitation backprop), see the module docstring.

    .. math:: \mathrm{cMWP} = \mathrm{ReLU}\Big(\sum_k \mathrm{EB}_{h \to A}\big(P_{o_t}(h) - P_{\bar o_t}(h)\big)_k
              \Big), \quad P_{o_t}(h_j) = \frac{h_j w^+_{tj}}{\sum_{j'} h_{j'} w^+_{tj'}}

    The contrast is taken at the classifier's input ``h`` (ResNet: the pooled features, TorchRay's ``avgpool``;
    AlexNet: fc7), the map at the target layer (default: ``forward_features`` output; TorchRay's ResNet50 benchmark
    used ``layer="layer3"``). ``contrastive=False`` gives the plain MWP map (sums to 1 before the ReLU when every
    propagated input is non-negative); the contrastive map sums to 0 before the ReLU. Not differentiable.

    Args:
        model: the classifier; its last linear layer (``get_classifier()``) is the contrast.
        layer: target layer.
        relu: apply the final ReLU.
        contrastive: subtract the dual unit's MWP.
    """

    name = "cmwp"

    def __init__(self, model: nn.Module, layer: Layer = None, relu: bool = True, contrastive: bool = True) -> None:
        super().__init__(model, layer, relu)
        self.contrastive = contrastive

    def attribute(self, images: Tensor, targets: Targets, create_graph: bool) -> Tensor:
        if callable(targets) and not isinstance(targets, Tensor):
            raise InvalidTargetError("cmwp needs class indices as targets (or None), not a callable")
        layer = resolve_layer(self.model, self.layer)
        classifier = _classifier(self.model)
        if layer is None:
            acts = self.model.forward_features(images)
            _check_spatial(acts, "forward_features")
            acts = acts.detach().requires_grad_(True)
            with _ExcitationMode():
                hidden = self.model.forward_head(acts, pre_logits=True)
            logits = classifier(hidden.detach())
        else:
            captured_h: list[Tensor] = []
            handle = classifier.register_forward_pre_hook(lambda _m, inp: captured_h.append(inp[0]))
            try:
                with tap_layer(layer) as captured, _ExcitationMode():
                    logits = self.model(images)
            finally:
                handle.remove()
            if not captured:
                raise UnsupportedModelError(f"the layer {type(layer).__name__} was not called in the forward pass")
            acts, hidden = captured[-1], captured_h[-1]
            _check_spatial(acts, type(layer).__name__)
        idx = resolve_targets(targets, logits.detach())
        weight = classifier.weight.detach()[idx]  # [B, D]
        h = hidden.detach()
        signal = self._top_signal(h, weight.clamp(min=0))
        if self.contrastive:
            signal = signal - self._top_signal(h, (-weight).clamp(min=0))
        (grads,) = torch.autograd.grad(hidden, acts, grad_outputs=signal)
        return (acts.detach() * grads).sum(dim=1)

    @staticmethod
    def _top_signal(h: Tensor, positive_weight: Tensor) -> Tensor:
        """``c = P/h`` at the classifier input for ``P(o) = 1``: ``c_j = w⁺_j / Σ_j' h_j' w⁺_j'``."""
        total = (h * positive_weight).sum(dim=1, keepdim=True)
        return _safe_ratio(positive_weight, total.expand_as(positive_weight))
