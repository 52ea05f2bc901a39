"""CGC: InfoNCE with known cosines, the MSE ablation, replay inside the term, CE modes and unlabelled batches."""

import math

import pytest
import torch
import torch.nn.functional as F

import consistentzoo
from consistentzoo.objectives import CGCLoss, cgc_consistency, info_nce
from consistentzoo.transforms import CropFlipParams, draw_crop_flip, replay


def test_two_sample_info_nce_with_known_cosines():
    q = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # <q1, q2> = 0.6 (the negative of each query)
    p = torch.tensor([[0.8, 0.6], [0.0, 1.0]])  # <q1, p1> = 0.8, <q2, p2> = 0.8
    tau = 0.5
    by_hand = -math.log(math.exp(0.8 / tau) / (math.exp(0.8 / tau) + math.exp(0.6 / tau)))  # same for both queries
    assert info_nce(q, p, tau).item() == pytest.approx(by_hand, rel=1e-6)
    p2 = torch.tensor([[0.6, 0.8], [1.0, 0.0]])  # <q1, p1> = 0.6, <q2, p2> = 0.6
    by_hand2 = -math.log(math.exp(1.2) / (math.exp(1.2) + math.exp(1.2)))
    assert info_nce(q, p2, tau).item() == pytest.approx(by_hand2, rel=1e-6)


def test_cgc_consistency_replays_the_original_map():
    gen = torch.Generator().manual_seed(0)
    orig = torch.rand(3, 8, 8, generator=gen)
    params = draw_crop_flip(3, (8, 8), generator=gen)
    aug = replay(orig / orig.sum((1, 2), keepdim=True), params)  # a perfectly consistent model
    q = F.normalize(aug.flatten(1), dim=1)
    neg = q @ q.T
    logits = torch.stack([torch.cat([neg.diagonal()[i : i + 1], neg[i][torch.arange(3) != i]]) for i in range(3)])
    expected = F.cross_entropy(logits / 0.5, torch.zeros(3, dtype=torch.long))  # positives are cosine 1
    torch.testing.assert_close(cgc_consistency(orig, aug, params, (8, 8), 0.5), expected, atol=1e-5, rtol=1e-5)
    assert cgc_consistency(orig, aug, params, (8, 8), negatives=False).item() == pytest.approx(0.0, abs=1e-10)
    # the "w/o negatives" ablation is F.mse_loss of the L2-normalised pair
    other = torch.rand(3, 8, 8, generator=gen)
    identity = CropFlipParams(torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3), torch.zeros(3, dtype=torch.bool))
    a, b = (F.normalize((m / m.sum((1, 2), keepdim=True)).flatten(1), dim=1) for m in (orig, other))
    expected_mse = ((a - b) ** 2).mean()
    got = cgc_consistency(orig, other, identity, (8, 8), negatives=False)
    assert got.item() == pytest.approx(expected_mse.item(), rel=1e-4)


class LinearCAMNet(torch.nn.Module):
    """forward_features = the image, head = GAP + linear (weights +1, -1): class 0's map is ReLU(x)/(hw)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(1, 2, bias=False)
        self.fc.weight.data = torch.tensor([[1.0], [-1.0]])

    def forward_features(self, x):
        return x

    def forward_head(self, a):
        return self.fc(a.mean((2, 3)))

    def forward(self, x):
        return self.forward_head(x)


def test_both_views_explain_the_class_predicted_on_the_original():
    model = LinearCAMNet()
    orig = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)) + 0.1  # predicted class 0
    aug = -orig  # would predict class 1, whose map is ReLU(orig)/16; class 0's map of aug is all zero
    identity = CropFlipParams(torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2), torch.zeros(2, dtype=torch.bool))
    _, parts = CGCLoss()(model, orig, aug, identity)
    expected = cgc_consistency(orig[:, 0] / 16, torch.zeros(2, 4, 4), identity, (4, 4))
    assert parts["consistency"].item() == pytest.approx(expected.item(), rel=1e-6)
    own_class = cgc_consistency(orig[:, 0] / 16, orig[:, 0] / 16, identity, (4, 4))
    assert abs(expected.item() - own_class.item()) > 1e-3


def _model():
    torch.manual_seed(0)
    return consistentzoo.create_model("resnet18_cgc", num_classes=5).eval()


def test_cgc_loss_terms_by_mode_and_without_labels():
    model = _model()
    gen = torch.Generator().manual_seed(1)
    orig = torch.randn(3, 3, 64, 64, generator=gen)
    params = draw_crop_flip(3, (64, 64), generator=gen)
    aug, xe, labels = replay(orig, params), torch.randn(3, 3, 64, 64, generator=gen), torch.tensor([0, 1, 2])
    total, parts = CGCLoss(lam=2.0)(model, orig, aug, params, labels, xe)
    assert set(parts) == {"ce", "consistency", "ce_orig", "ce_aug", "ce_xe"}
    ce = F.cross_entropy(model(orig), labels) + F.cross_entropy(model(aug), labels) + F.cross_entropy(model(xe), labels)
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert total.item() == pytest.approx(ce.item() + 2.0 * parts["consistency"].item(), rel=1e-5)
    _, paper = CGCLoss(ce="paper")(model, orig, aug, params, labels, xe)
    assert paper["ce"].item() == pytest.approx(F.cross_entropy(model(orig), labels).item(), rel=1e-5)
    unlabelled, parts_u = CGCLoss(lam=2.0)(model, orig, aug, params)
    assert parts_u["ce"].item() == 0.0
    assert unlabelled.item() == pytest.approx(2.0 * parts["consistency"].item(), rel=1e-5)
    drawn, _ = CGCLoss()(model, orig)  # views drawn inside the loss
    assert torch.isfinite(drawn)
    with pytest.raises(ValueError, match="params"):
        CGCLoss()(model, orig, aug)
