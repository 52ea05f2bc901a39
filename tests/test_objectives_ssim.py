"""SSIM + sparsity: 1 − SSIM against skimage, the p-norms by hand, a consistent model scores 0."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import consistentzoo
from consistentzoo.objectives import SSIMSparsityLoss, lp_sparsity, ssim_dissimilarity
from consistentzoo.transforms import CropFlipParams


def test_ssim_dissimilarity_matches_skimage_on_a_known_pair():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 32, 32, generator=gen, dtype=torch.float64)
    b = (a + 0.3 * torch.rand(2, 32, 32, generator=gen, dtype=torch.float64)).clamp(0, 1)
    got = ssim_dissimilarity(a, b)
    for i in range(2):
        ref = structural_similarity(
            a[i].numpy(), b[i].numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert got[i].item() == pytest.approx(1 - ref, abs=1e-6)
    assert ssim_dissimilarity(a, b, reduction="mean").item() == pytest.approx(got.mean().item(), abs=1e-10)
    ranges = torch.tensor([1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(
        ssim_dissimilarity(a, b, ranges, reduction="mean"), ssim_dissimilarity(a, b, ranges).mean()
    )
    assert ssim_dissimilarity(a, a).abs().max().item() < 1e-6
    with pytest.raises(ValueError, match="win_size"):
        ssim_dissimilarity(a[:, :8, :8], b[:, :8, :8])


def test_lp_sparsity_by_hand():
    m = torch.tensor([[[3.0, 0.0], [-4.0, 0.0]]])
    assert lp_sparsity(m, 0).item() == 2
    assert lp_sparsity(m, 1).item() == 7
    assert lp_sparsity(m, 2).item() == 5
    z = torch.zeros(1, 2, 2, requires_grad=True)
    lp_sparsity(z, 2).sum().backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="p must be"):
        lp_sparsity(m, 3)


def test_identity_transform_gives_zero_consistency_and_the_hand_sparsity():
    torch.manual_seed(0)
    model = consistentzoo.create_model("resnet18_ssim", num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    identity = CropFlipParams(torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2), torch.zeros(2, dtype=torch.bool))
    labels = torch.tensor([1, 3])
    total, parts = SSIMSparsityLoss(alpha=0.1, beta=1e-3, p=1)(model, x, labels, x, identity)
    assert parts["consistency"].item() == pytest.approx(0.0, abs=1e-6)
    # Φ: Grad-CAM without ReLU of the predicted class, upsampled to 64 px, min-max scaled; sparsity = mean L1
    maps = consistentzoo.saliency.compute("gradcam", model, x, relu=False)
    scaled = consistentzoo.saliency.normalize_minmax(consistentzoo.saliency.upsample(maps, 64))
    assert parts["sparsity"].item() == pytest.approx(scaled.abs().sum((1, 2)).mean().item(), rel=1e-5)
    ce = torch.nn.functional.cross_entropy(model(x), labels).item()
    assert total.item() == pytest.approx(ce + 1e-3 * parts["sparsity"].item(), rel=1e-5)


def test_raw_maps_option_and_validation():
    torch.manual_seed(0)
    model = consistentzoo.create_model("resnet18_ssim", num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    total, parts = SSIMSparsityLoss(scale="none", p=2, targets="orig")(model, x, torch.tensor([0, 1]))
    assert all(math.isfinite(v.item()) for v in parts.values()) and torch.isfinite(total)
    with pytest.raises(ValueError, match="p must be"):
        SSIMSparsityLoss(p=3)
    assert np.isfinite(parts["sparsity"].item())
