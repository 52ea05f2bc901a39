"""Guided-gradient alignment: the four errors on known vectors; the shared-forward guided gradient equals saliency's."""

import pytest
import torch
import torch.nn.functional as F

import consistentzoo
from consistentzoo import saliency
from consistentzoo.objectives import ERRORS, GuidedGradientLoss, gradient_error


def test_errors_on_known_vectors():
    a = torch.tensor([[3.0, 0.0, -4.0, 0.0]])
    b = torch.tensor([[3.0, 1.0, 0.0, 0.0]])
    # <a,b> = 9, |a| = 5, |b| = sqrt(10); |a-b| = (0, 1, 4, 0); Σmin(|a|,|b|) = 3; |a|_1 = 7, |b|_1 = 4
    assert gradient_error(a, b, "cosine").item() == pytest.approx(-9 / (5 * 10**0.5), rel=1e-6)
    assert gradient_error(a, b, "mae").item() == pytest.approx(5 / 4)
    assert gradient_error(a, b, "mse").item() == pytest.approx(17 / 4)
    assert gradient_error(a, b, "hist_intersection").item() == pytest.approx(-3 / 28, rel=1e-6)
    zero = torch.zeros(1, 4, requires_grad=True)
    for error in ERRORS:
        value = gradient_error(zero, torch.zeros(1, 4), error)
        (grad,) = torch.autograd.grad(value.sum(), zero)
        assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    with pytest.raises(ValueError, match="valid: cosine"):
        gradient_error(a, b, "l2")


def test_shared_forward_guided_gradient_equals_saliency_guided_backprop():
    torch.manual_seed(0)
    model = consistentzoo.create_model("resnet18_guided", num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 4])
    shared, _ = GuidedGradientLoss(error="hist_intersection")(model, x, labels)
    separate, _ = GuidedGradientLoss(error="hist_intersection", share_forward=False)(model, x, labels)
    torch.testing.assert_close(shared, separate, rtol=1e-5, atol=1e-7)
    # and by hand: cosine between ∂L_C/∂x and saliency's guided gradient of the same loss
    xg = x.clone().requires_grad_(True)
    (standard,) = torch.autograd.grad(F.cross_entropy(model(xg), labels), xg)
    guided = saliency.guided_gradients(model, x, lambda out: F.cross_entropy(out, labels, reduction="none") / 2)
    cos = F.cosine_similarity(standard.flatten(1), guided.flatten(1)).mean()
    _, parts = GuidedGradientLoss()(model, x, labels)
    assert parts["consistency"].item() == pytest.approx(-cos.item(), rel=1e-4)
