"""Guided-gradient alignment ("A Learning Paradigm for Interpretable Gradients", VISAPP 2024)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .. import saliency

__all__ = ["ERRORS", "GuidedGradientLoss", "gradient_error"]

#: The error functions E of the paper (eqs. 10–13).
ERRORS = ("cosine", "mae", "mse", "hist_intersection")
_EPS = 1e-12


def gradient_error(standard: Tensor, guided: Tensor, error: str = "cosine") -> Tensor:
    """``E(δ, δ_G)`` per image ``[B]`` between two gradient images, each flattened over ``C·H·W = m`` values.

    - ``"cosine"``: ``−<δ, δ_G> / (‖δ‖₂ ‖δ_G‖₂)``
    - ``"mae"``: ``‖δ − δ_G‖₁ / m``
    - ``"mse"``: ``‖δ − δ_G‖₂² / m``
    - ``"hist_intersection"``: ``−Σ_i min(|δ_i|, |δ_G,i|) / (‖δ‖₁ ‖δ_G‖₁)`` (the paper's eq. 13, as printed)

    Denominators get ``1e-12`` so that all-zero gradients give finite values and gradients.

    Args:
        standard: ``[B, ...]`` standard input gradients ``∂L_C/∂x``.
        guided: ``[B, ...]`` guided-backprop gradients ``∂_G L_C/∂x`` (a teacher: detach it).
        error: one of :data:`ERRORS`.
    """
    if standard.shape != guided.shape:
        raise ValueError(f"gradients differ in shape: {tuple(standard.shape)} vs {tuple(guided.shape)}")
    a, b = standard.flatten(1), guided.flatten(1)
    if error == "cosine":
        return -(a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + _EPS)
    if error == "mae":
        return (a - b).abs().mean(1)
    if error == "mse":
        return (a - b).pow(2).mean(1)
    if error == "hist_intersection":
        return -torch.minimum(a.abs(), b.abs()).sum(1) / (a.abs().sum(1) * b.abs().sum(1) + _EPS)
    raise ValueError(f"unknown error {error!r}; valid: {', '.join(ERRORS)}")


_RELUS = {F.relu, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_}


class _SwitchableGuidedReLUs(TorchFunctionMode):
    """Hooks every ReLU output of one forward pass so that a backward pass can be made *guided* after the fact.

    While ``guided`` is True, the hook clamps the gradient arriving at each ReLU output to ``[δ]₊`` before the
    ReLU's own backward multiplies it by ``1[u > 0]``: guided backpropagation's rule ``1[u>0]·[δ]₊``. While it is
    False the hooks pass gradients unchanged, so the standard gradient, the guided gradient and the final double
    backward all share the one forward graph (the paper's five passes per step).
    """

    def __init__(self) -> None:
        super().__init__()
        self.guided = False
        self.calls = 0

    def _hook(self, grad: Tensor) -> Tensor | None:
        return grad.clamp(min=0) if self.guided else None

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _RELUS and isinstance(out, Tensor) and out.requires_grad:
            self.calls += 1
            out.register_hook(self._hook)
        return out


class GuidedGradientLoss(nn.Module):
    r"""Guided-gradient alignment: cross-entropy plus λ times the error between the standard input gradient of the
    loss and its guided-backprop gradient.

    .. math::
        L = L_C + \lambda \frac{1}{n}\sum_i E\Big(\frac{\partial L_C}{\partial x_i},
            \mathrm{sg}\Big[\frac{\partial_G L_C}{\partial x_i}\Big]\Big)

    where ``L_C`` is the batch-mean cross-entropy, ``∂_G`` back-propagates through every ReLU as
    ``1[u>0]·[δ]₊`` (Springenberg et al.), ``sg`` stops the gradient (the guided gradient is a teacher) and the
    standard gradient keeps its graph (``create_graph=True``), so the update is a double backward. ``E`` is one of
    :data:`ERRORS` (cosine, the paper's default).

    By default the guided gradient is taken from the same forward pass as the standard one (ReLU outputs are hooked
    and the hooks switched on for the guided backward): one forward, two backward, then the double backward — the
    paper's five passes. ``share_forward=False`` uses ``consistentzoo.saliency.guided_gradients`` instead (a
    separate forward with guided ReLUs: six passes, and BatchNorm statistics see the batch twice in train mode).

    Paper: Torres Figueroa, Zhang, Sicre, Avrithis & Ayache, "A Learning Paradigm for Interpretable Gradients",
    VISAPP 2024 (arXiv:2404.15024), Algorithm 1; no code was published. CIFAR-100: λ = 7.5e-3 with cosine.

    Args:
        lam: weight λ of the alignment term.
        error: the error function E.
        share_forward: take both gradients from one forward pass (see above).
    """

    def __init__(
        self,
        lam: float = 7.5e-3,
        error: Literal["cosine", "mae", "mse", "hist_intersection"] = "cosine",
        share_forward: bool = True,
    ):
        super().__init__()
        if error not in ERRORS:
            raise ValueError(f"unknown error {error!r}; valid: {', '.join(ERRORS)}")
        self.lam = lam
        self.error = error
        self.share_forward = share_forward

    def forward(self, model: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the loss for a batch.

        Args:
            model: a classifier with ReLU activations (every zoo model).
            images: ``[B, C, H, W]``.
            labels: ``[B]`` class indices.

        Returns:
            ``(total, parts)`` with parts ``ce`` and ``consistency`` (the unweighted mean error), detached.
        """
        x = images.detach().requires_grad_(True)
        mode = _SwitchableGuidedReLUs()
        with torch.enable_grad():
            if self.share_forward:
                with mode:
                    logits = model(x)
                if mode.calls == 0:
                    raise saliency.UnsupportedModelError(
                        f"{type(model).__name__} calls no ReLU; guided backpropagation is defined by its ReLU rule"
                    )
            else:
                logits = model(x)
            ce = F.cross_entropy(logits, labels)
            (standard,) = torch.autograd.grad(ce, x, create_graph=True)
            if self.share_forward:
                mode.guided = True
                try:
                    (guided,) = torch.autograd.grad(ce, x, retain_graph=True)
                finally:
                    mode.guided = False
            else:
                n = images.shape[0]
                guided = saliency.guided_gradients(
                    model, images, lambda out: F.cross_entropy(out, labels, reduction="none") / n
                )
        error = gradient_error(standard, guided.detach(), self.error).mean()
        total = ce + self.lam * error
        return total, {"ce": ce.detach(), "consistency": error.detach()}

    def extra_repr(self) -> str:
        return f"lam={self.lam}, error={self.error!r}, share_forward={self.share_forward}"
