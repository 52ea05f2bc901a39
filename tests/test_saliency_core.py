"""Saliency API: shapes, closed forms, differentiability, train/eval mode, options, and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import consistentzoo
from consistentzoo import saliency
from consistentzoo.saliency import (
    InvalidImagesError,
    InvalidTargetError,
    LayerNotFoundError,
    NoConvLayerError,
    UnknownMethodError,
    UnsupportedModelError,
)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return consistentzoo.create_model("resnet18_gc", num_classes=10).eval()


@pytest.fixture(scope="module")
def alexnet() -> nn.Module:
    torch.manual_seed(0)
    return consistentzoo.create_model("alexnet_gc", num_classes=7).eval()


def _images(batch: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


class _FunctionalNet(nn.Module):
    """A CNN with functional ReLUs and no timm interface (exercises ``layer=`` and guided backprop's F.relu)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = torch.relu(self.conv2(F.max_pool2d(x, 2)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("method", sorted(set(saliency.METHODS) - {"scorecam"}))  # scorecam: oracle tests
def test_every_method_shape_and_finite(method: str, alexnet: nn.Module) -> None:
    images = _images(2, 128)
    maps = saliency.compute(method, alexnet, images, targets=[0, 6])
    expected = (2, 128, 128) if saliency.METHODS[method].resolution == "input" else (2, 3, 3)
    assert maps.shape == expected
    assert torch.isfinite(maps).all() and (maps >= 0).all()
    assert not maps.requires_grad


def test_hirescam_and_gradcam_equal_cam_on_gap_resnet(resnet: nn.Module) -> None:
    images, targets = _images(3), torch.tensor([0, 4, 9])
    acts = resnet.forward_features(images)
    weight = resnet.get_classifier().weight[targets]
    cam = F.relu(torch.einsum("bk,bkhw->bhw", weight, acts)) / (acts.shape[2] * acts.shape[3])
    torch.testing.assert_close(saliency.compute("hirescam", resnet, images, targets), cam.detach())
    # with a GAP head the gradient is spatially constant, so Grad-CAM's averaging changes nothing
    torch.testing.assert_close(saliency.compute("gradcam", resnet, images, targets), cam.detach())


def test_gmp_resnet_hirescam_closed_form() -> None:
    """With global max pooling ∂y_t/∂A_k is one-hot at each channel's arg-max (METHODS.md)."""
    torch.manual_seed(0)
    model = consistentzoo.create_model("resnet18_gmp_gc", num_classes=10).eval()
    images, targets = _images(2, 128), torch.tensor([2, 7])
    acts = model.forward_features(images).detach()
    flat = acts.flatten(2)
    onehot = torch.zeros_like(flat).scatter_(2, flat.argmax(dim=2, keepdim=True), 1.0).view_as(acts)
    weight = model.get_classifier().weight.detach()[targets]
    expected = torch.einsum("bk,bkhw->bhw", weight, acts * onehot)
    torch.testing.assert_close(saliency.compute("hirescam", model, images, targets, relu=False), expected)


def test_predicted_class_is_default_and_targets_forms_agree(resnet: nn.Module) -> None:
    images = _images(2)
    predicted = resnet(images).argmax(1)
    expected = saliency.compute("gradcam", resnet, images, predicted)
    torch.testing.assert_close(saliency.compute("gradcam", resnet, images), expected)
    torch.testing.assert_close(saliency.compute("gradcam", resnet, images, predicted.tolist()), expected)
    callable_target = saliency.compute(
        "gradcam", resnet, images, lambda logits: logits.gather(1, predicted[:, None])[:, 0]
    )
    torch.testing.assert_close(callable_target, expected)
    one = saliency.compute("gradcam", resnet, images, 3)
    torch.testing.assert_close(one, saliency.compute("gradcam", resnet, images, [3, 3]))


@pytest.mark.parametrize("method", ["hirescam", "gradcam", "gradient"])
def test_gradients_flow_to_conv_weights_in_train_mode(method: str) -> None:
    torch.manual_seed(0)
    model = consistentzoo.create_model("resnet18_gc", num_classes=10).train()
    for module in model.modules():  # timm zero-inits each block's last BN, which would cut the residual branches
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
    images = _images(2)
    maps = saliency.compute(method, model, images, targets=[1, 2], create_graph=True)
    assert model.training, "the caller's train mode must be kept"
    assert maps.requires_grad
    (maps - maps.detach().mean()).pow(2).sum().backward()
    for conv in (model.conv1, model.layer2[0].conv2, model.layer4[1].conv2):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_eval_mode_kept_and_no_param_grads_without_create_graph(resnet: nn.Module) -> None:
    saliency.compute("hirescam", resnet, _images(2))
    assert not resnet.training
    assert all(p.grad is None for p in resnet.parameters())


def test_relu_false_gives_signed_map(resnet: nn.Module) -> None:
    images = _images(2)
    signed = saliency.compute("gradcam", resnet, images, [0, 1], relu=False)
    assert (signed < 0).any()
    torch.testing.assert_close(F.relu(signed), saliency.compute("gradcam", resnet, images, [0, 1]))


def test_layer_by_name_and_module_and_frozen_model(resnet: nn.Module) -> None:
    images = _images(2)
    by_default = saliency.compute("hirescam", resnet, images, [0, 1])
    by_name = saliency.compute("hirescam", resnet, images, [0, 1], layer="layer4")
    by_module = saliency.compute("hirescam", resnet, images, [0, 1], layer=resnet.layer4)
    torch.testing.assert_close(by_name, by_default)
    torch.testing.assert_close(by_module, by_default)
    frozen = consistentzoo.create_model("resnet18_gc", num_classes=10).eval().requires_grad_(False)
    with torch.no_grad():
        assert saliency.compute("hirescam", frozen, images).shape == (2, 2, 2)


def test_functional_relu_model_and_default_last_conv() -> None:
    model = _FunctionalNet().eval()
    images = _images(2, 16)
    assert saliency.compute("gradcam", model, images).shape == (2, 8, 8)  # last nn.Conv2d by default
    guided = saliency.guided_gradients(model, images, [0, 1])
    # reference: the guided rule written out by hand for this net
    x = images.clone().requires_grad_(True)

    class Guided(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):  # type: ignore[override]
            ctx.save_for_backward(t)
            return t.clamp(min=0)

        @staticmethod
        def backward(ctx, g):  # type: ignore[override]
            (t,) = ctx.saved_tensors
            return g.clamp(min=0) * (t > 0)

    h = Guided.apply(model.conv1(x))
    h = Guided.apply(model.conv2(F.max_pool2d(h, 2)))
    logits = model.fc(h.mean(dim=(2, 3)))
    logits.gather(1, torch.tensor([[0], [1]])).sum().backward()
    torch.testing.assert_close(guided, x.grad)


def test_guided_backprop_refuses_network_without_relu() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(UnsupportedModelError, match="gradient"):
        saliency.compute("guided_backprop", model, _images(1, 16))


def test_fullgrad_completeness(resnet: nn.Module, alexnet: nn.Module) -> None:
    for model, size in ((resnet, 64), (alexnet, 128)):
        images = _images(2, size)
        full = saliency.full_gradients(model, images, [1, 2])
        total = (full.input_gradient * images).flatten(1).sum(1)
        total = total + sum(b.flatten(1).sum(1) for b in full.bias_gradients)
        torch.testing.assert_close(total, full.scores, rtol=1e-4, atol=1e-5)


def test_cmwp_is_a_probability_and_contrast_sums_to_zero(alexnet: nn.Module, resnet: nn.Module) -> None:
    for model, size in ((alexnet, 128), (resnet, 64)):
        images = _images(2, size)
        mwp = saliency.compute("cmwp", model, images, [0, 1], relu=False, contrastive=False)
        torch.testing.assert_close(mwp.sum(dim=(1, 2)), torch.ones(2), atol=1e-4, rtol=0)
        assert (mwp >= -1e-6).all()
        contrast = saliency.compute("cmwp", model, images, [0, 1], relu=False)
        torch.testing.assert_close(contrast.sum(dim=(1, 2)), torch.zeros(2), atol=1e-4, rtol=0)


def test_cmwp_matches_excitation_backprop_written_out() -> None:
    """Zhang et al.'s rule layer by layer on features → GAP → fc1 → ReLU → fc2, against our one-pass port."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 4)

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.conv(x))

        def forward_head(self, a: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
            h = F.relu(self.fc1(a.mean(dim=(2, 3))))
            return h if pre_logits else self.fc2(h)

        def get_classifier(self) -> nn.Module:
            return self.fc2

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.forward_head(self.forward_features(x))

    net = Net().eval()
    images, targets = _images(2, 6), torch.tensor([1, 3])
    with torch.no_grad():
        a = net.forward_features(images)
        pooled = a.mean(dim=(2, 3))
        h = net.forward_head(a, pre_logits=True)

    def eb_linear(p_out: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # P(a_j) = Σ_i a_j w+_ij / Σ_j' a_j' w+_ij' · P(z_i)
        contrib = inputs[:, None, :] * weight.clamp(min=0)[None]  # [B, out, in]
        total = contrib.sum(dim=2, keepdim=True)
        cond = torch.where(total > 0, contrib / total.clamp_min(1e-30), torch.zeros_like(contrib))
        return (cond * p_out[:, :, None]).sum(dim=1)

    w2 = net.fc2.weight[targets]
    one = torch.ones(2, 1)  # P(o_t) = 1, per image (each has its own target row)
    p_h = torch.stack([eb_linear(one[i : i + 1], h[i : i + 1], w2[i : i + 1].detach()) for i in range(2)])[:, 0]
    p_dual = torch.stack([eb_linear(one[i : i + 1], h[i : i + 1], -w2[i : i + 1].detach()) for i in range(2)])[:, 0]
    p_h = p_h - p_dual
    p_pooled = eb_linear(p_h, pooled, net.fc1.weight.detach())
    p_a = a / a.sum(dim=(2, 3), keepdim=True).clamp_min(1e-30) * p_pooled[:, :, None, None]
    expected = F.relu(p_a.sum(dim=1))
    torch.testing.assert_close(saliency.compute("cmwp", net, images, targets), expected, atol=1e-6, rtol=1e-4)


def test_all_zero_map_is_valid_not_nan() -> None:
    model = _FunctionalNet().eval()
    with torch.no_grad():
        model.fc.weight.zero_()
    images = _images(2, 16)
    for method in ("gradcam", "hirescam", "gradcam++", "xgradcam", "ablationcam", "gradient"):
        maps = saliency.compute(method, model, images, [0, 1])
        assert torch.isfinite(maps).all(), method
        assert (maps == 0).all(), method
    zero = torch.zeros(2, 4, 4)
    assert (saliency.normalize_sum(zero) == 0).all() and (saliency.normalize_minmax(zero) == 0).all()


def test_postprocess() -> None:
    maps = torch.rand(2, 3, 3)
    up = saliency.upsample(maps, 12)
    assert up.shape == (2, 12, 12)
    torch.testing.assert_close(saliency.normalize_sum(up).sum(dim=(1, 2)), torch.ones(2))
    scaled = saliency.normalize_minmax(up)
    assert scaled.amin() == 0 and (scaled.amax(dim=(1, 2)) > 0.999).all()


def test_batch_of_one(resnet: nn.Module) -> None:
    assert saliency.compute("hirescam", resnet, _images(1), 5).shape == (1, 2, 2)


def test_bad_input(resnet: nn.Module) -> None:
    images = _images(2)
    with pytest.raises(LayerNotFoundError, match="layer4") as err:
        saliency.compute("gradcam", resnet, images, layer="layer5")
    assert isinstance(err.value, KeyError)
    with pytest.raises(UnknownMethodError, match="gradcam"):
        saliency.compute("grad-cam", resnet, images)
    with pytest.raises(InvalidTargetError, match="10 classes"):
        saliency.compute("gradcam", resnet, images, [0, 10])
    with pytest.raises(InvalidTargetError, match="one class index per image"):
        saliency.compute("gradcam", resnet, images, [0, 1, 2])
    with pytest.raises(InvalidTargetError, match="integer"):
        saliency.compute("gradcam", resnet, images, torch.tensor([0.0, 1.0]))
    with pytest.raises(InvalidImagesError, match="floating-point"):
        saliency.compute("gradcam", resnet, (images * 100).to(torch.uint8))
    with pytest.raises(InvalidImagesError, match="unsqueeze"):
        saliency.compute("gradcam", resnet, images[0])
    with pytest.raises(ValueError, match="not differentiable"):
        saliency.compute("scorecam", resnet, images, create_graph=True)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    with pytest.raises(NoConvLayerError, match="layer="):
        saliency.compute("gradcam", mlp, torch.randn(2, 3, 8, 8))
    for error in (LayerNotFoundError, UnknownMethodError):
        assert issubclass(error, KeyError)
    for error in (InvalidImagesError, InvalidTargetError, NoConvLayerError, UnsupportedModelError):
        assert issubclass(error, ValueError)
