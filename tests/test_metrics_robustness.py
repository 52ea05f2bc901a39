"""FGSM accuracy against a hand-written attack."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from consistentzoo.metrics import fgsm_accuracy


def test_fgsm_accuracy_matches_hand_attack():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    images = torch.rand(16, 3, 8, 8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    labels = model((images - m) / s).argmax(-1)  # all correct when clean
    eps = [0.0, 2 / 255, 0.1]
    out = fgsm_accuracy(model, images, labels, eps, mean=mean, std=std)
    assert all(p.grad is None for p in model.parameters())  # the attack leaves the model untouched
    x = images.clone().requires_grad_(True)
    nn.functional.cross_entropy(model((x - m) / s), labels).backward()
    for k, e in enumerate(eps):
        adv = (images + e * x.grad.sign()).clamp(0, 1)
        expected = (model((adv - m) / s).argmax(-1) == labels).float()
        torch.testing.assert_close(out[k], expected)
    assert out[0].eq(1).all() and out[2].mean() < 1
    with pytest.raises(ValueError, match="pixel_range"):
        fgsm_accuracy(model, (images - m) / s, labels, eps)
