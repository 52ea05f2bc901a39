"""Properties every objective must have: map terms reach the conv weights (double backward), one step with a large λ
lowers the consistency term, finite values on all-zero maps, every zoo architecture."""

import pytest
import torch

import consistentzoo
from consistentzoo.objectives import CGCLoss, GCLoss, GuidedGradientLoss, SSIMSparsityLoss
from consistentzoo.transforms import draw_crop_flip, replay

OBJECTIVES = ("gc", "cgc", "ssim", "guided")


def _batch(px: int, b: int = 2, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, px, px, generator=gen)
    params = draw_crop_flip(b, (px, px), scale=(0.3, 1.0), generator=gen)
    return {
        "images": images,
        "labels": torch.arange(b) % 3,
        "distractors": torch.randn(b, 3, 3, px, px, generator=gen),
        "quadrants": torch.arange(b) % 4,
        "aug": replay(images, params),
        "params": params,
    }


def _loss(kind: str, lam: float):
    return {
        "gc": lambda: GCLoss(lam=lam),
        "cgc": lambda: CGCLoss(lam=lam),
        "ssim": lambda: SSIMSparsityLoss(alpha=lam, beta=0.0),
        "guided": lambda: GuidedGradientLoss(lam=lam),
    }[kind]()


def _call(kind: str, loss, model, batch: dict):
    if kind == "gc":
        return loss(model, batch["images"], batch["labels"], batch["distractors"], batch["quadrants"])
    if kind == "cgc":
        return loss(model, batch["images"], batch["aug"], batch["params"], batch["labels"])
    if kind == "ssim":
        return loss(model, batch["images"], batch["labels"], batch["aug"], batch["params"])
    return loss(model, batch["images"], batch["labels"])


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return consistentzoo.create_model(name, num_classes=3).eval()  # eval: deterministic BN and dropout


@pytest.mark.parametrize("kind", OBJECTIVES)
@pytest.mark.parametrize(("name", "px"), [("resnet18_gmp_gc", 64), ("resnet50_cgc", 64), ("alexnet_gc", 96)])
def test_map_term_reaches_the_first_conv_through_double_backward(kind, name, px):
    model, batch = _model(name), _batch(px)
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight
    grads = []
    for lam in (0.0, 1.0):
        total, parts = _call(kind, _loss(kind, lam), model, batch)
        assert torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())
        (g,) = torch.autograd.grad(total, first_conv)
        grads.append(g)
    map_term_grad = grads[1] - grads[0]
    assert torch.isfinite(map_term_grad).all() and map_term_grad.abs().sum() > 0


@pytest.mark.parametrize("kind", OBJECTIVES)
def test_one_step_with_a_large_lambda_lowers_the_consistency_term(kind):
    model, batch = _model("resnet18_gc"), _batch(64, b=4, seed=1)
    loss = _loss(kind, 1e4)
    total, before = _call(kind, loss, model, batch)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(total, params)
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p -= 1e-2 * g / norm  # one normalised gradient step
    _, after = _call(kind, loss, model, batch)
    assert after["consistency"] < before["consistency"]


@pytest.mark.parametrize("kind", OBJECTIVES)
def test_finite_on_all_zero_maps(kind):
    model = _model("resnet18_gc")
    with torch.no_grad():  # a zero head gives zero logits, zero ∂s/∂A and so all-zero maps and input gradients
        model.get_classifier().weight.zero_()
        model.get_classifier().bias.zero_()
    total, parts = _call(kind, _loss(kind, 1.0), model, _batch(64))
    grads = torch.autograd.grad(total, [p for p in model.parameters()], allow_unused=True)
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
