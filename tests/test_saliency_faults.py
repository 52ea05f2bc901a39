"""Saliency faults users of other explanation libraries hit (issue 16 part 4, issue 17 "Maps and metrics").

- half precision: every normalisation and every method gives finite maps in fp16/bf16 and under autocast;
- ``torch.inference_mode()``: the same maps as under ``torch.no_grad()``;
- the model is left as it was: parameters, buffers (BatchNorm running statistics), train/eval flags and hooks,
  after every method, in train and eval mode; perturbation maps do not depend on ``batch_size``;
- Ablation-CAM equals its brute-force definition at any layer;
- non-finite images and maps are refused; boxes outside the image give an empty mask (the evaluator skips the pair).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import consistentzoo
from consistentzoo import saliency
from consistentzoo.metrics import boxes_to_mask
from consistentzoo.saliency import InvalidImagesError, InvalidMapsError, UnsupportedModelError

METHODS = sorted(saliency.METHODS)


class TinyNet(nn.Module):
    """conv-BN-ReLU ×2, GAP, linear: timm's interface (forward_features/forward_head/get_classifier), fast."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(F.max_pool2d(x, 2))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyNet()
    with torch.no_grad():  # non-trivial running statistics, so eval mode differs from train mode
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _images(batch: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- half precision -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_normalisations_half_precision(dtype: torch.dtype) -> None:
    zero = torch.zeros(1, 2, 2, dtype=dtype)
    for normalise in (saliency.normalize_sum, saliency.normalize_minmax):
        out = normalise(zero)
        assert out.dtype == dtype and (out == 0).all(), normalise.__name__  # 1e-8 underflowed to 0 in fp16: 0/0
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    tol = {"atol": 2e-2 if dtype == torch.bfloat16 else 2e-3, "rtol": 0}
    torch.testing.assert_close(saliency.normalize_sum(maps.to(dtype)).float(), maps / maps.sum((1, 2), True), **tol)
    lo, hi = maps.amin((1, 2), True), maps.amax((1, 2), True)
    torch.testing.assert_close(saliency.normalize_minmax(maps.to(dtype)).float(), (maps - lo) / (hi - lo), **tol)
    # a map whose sum exceeds fp16's range (65504) still sums to one
    big = torch.full((1, 224, 224), 2.0, dtype=dtype)
    assert torch.isfinite(saliency.normalize_sum(big)).all()
    torch.testing.assert_close(saliency.normalize_sum(big).float().sum(), torch.tensor(1.0), atol=2e-2, rtol=0)
    assert torch.isfinite(saliency.upsample(maps.to(dtype), 32)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_half_precision(method: str, dtype: torch.dtype) -> None:
    model, images = _tiny(), _images()
    reference = saliency.compute(method, model, images, [0, 3])
    half = saliency.compute(method, model.to(dtype), images.to(dtype), [0, 3])
    assert half.dtype == dtype and half.shape == reference.shape
    assert torch.isfinite(half).all() and (half >= 0).all()
    # the same map up to the precision of the dtype (compared after scaling each map to sum 1)
    torch.testing.assert_close(
        saliency.normalize_sum(half.float()), saliency.normalize_sum(reference), atol=0.05, rtol=0
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", [*METHODS, "scorecam:channel_softmax", "fullgrad:channel"])
def test_every_method_zero_map_half_precision(method: str, dtype: torch.dtype) -> None:
    model = _tiny()
    with torch.no_grad():  # the features are ReLU(-1) = 0 everywhere: every method's map is exactly zero
        model.bn2.weight.zero_()
        model.bn2.bias.fill_(-1.0)
    method, _, variant = method.partition(":")
    options = {"weighting": variant} if method == "scorecam" and variant else {}
    options.update({"normalise": variant} if method == "fullgrad" and variant else {})
    maps = saliency.compute(method, model.to(dtype), _images().to(dtype), [0, 3], **options)
    assert torch.isfinite(maps).all() and (maps == 0).all()


@pytest.mark.parametrize("method", METHODS)
def test_every_method_under_autocast(method: str) -> None:
    model, images = _tiny(), _images()
    reference = saliency.compute(method, model, images, [0, 3])
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            maps = saliency.compute(method, model, images, [0, 3])
        assert torch.isfinite(maps).all() and maps.shape == reference.shape, dtype
        torch.testing.assert_close(
            saliency.normalize_sum(maps.float()), saliency.normalize_sum(reference), atol=0.05, rtol=0
        )


# --- inference mode -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_inference_mode_gives_the_no_grad_maps(method: str) -> None:
    model = _tiny()
    with torch.no_grad():
        expected = saliency.compute(method, model, _images(), [0, 3])
    with torch.inference_mode():
        images = _images()  # an inference tensor
        maps = saliency.compute(method, model, images, [0, 3])
        assert torch.is_inference_mode_enabled()  # left as the caller set it
    torch.testing.assert_close(maps, expected, atol=1e-6, rtol=1e-5)


def test_model_built_in_inference_mode_is_named() -> None:
    with torch.inference_mode():
        model = _tiny()
        images = _images()
        with pytest.raises(UnsupportedModelError, match="inference_mode"):
            saliency.compute("gradcam", model, images)
        # gradient-free methods need no autograd and work
        assert torch.isfinite(saliency.compute("scorecam", model, images)).all()


# --- the model is left unchanged ------------------------------------------------------------------------------------


def _state(model: nn.Module) -> dict:
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return {
        "params": {k: (v.detach().clone(), v.requires_grad, v.grad) for k, v in model.named_parameters()},
        "buffers": {k: v.clone() for k, v in model.named_buffers()},
        "modes": {k: m.training for k, m in model.named_modules()},
        "hooks": {k: tuple(len(getattr(m, h)) for h in hooks) for k, m in model.named_modules()},
    }


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    model = consistentzoo.create_model("resnet18", num_classes=10)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.weight.fill_(1.0)  # undo timm's zero init of the last BN of each block
    return model


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("method", METHODS)
def test_model_state_unchanged(method: str, train: bool, resnet: nn.Module) -> None:
    """Parameters, buffers (bit-identical), train/eval flags and hooks after any method, in either mode."""
    model = resnet.train(train)
    model.layer2.eval()  # a mixed mode is kept module by module
    before = _state(model)
    layer = "layer3" if saliency.METHODS[method].resolution == "feature" else None
    maps = saliency.compute(method, model, _images(2, 32), [1, 2], layer=layer)
    assert torch.isfinite(maps).all()
    after = _state(model)
    for name, (value, requires_grad, grad) in before["params"].items():
        now = after["params"][name]
        assert torch.equal(now[0], value) and now[1] == requires_grad and now[2] is None and grad is None, name
    for name, value in before["buffers"].items():
        assert torch.equal(after["buffers"][name], value), name
    assert after["modes"] == before["modes"]
    assert after["hooks"] == before["hooks"]


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_perturbation_maps_do_not_depend_on_batch_size(method: str, resnet: nn.Module) -> None:
    model = resnet.train()
    images = _images(2, 32)
    maps = [saliency.compute(method, model, images, [1, 2], layer="layer3", batch_size=n) for n in (512, 5)]
    assert maps[0].abs().sum() > 0
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0], atol=1e-5, rtol=1e-5)


# --- Ablation-CAM: its definition at any layer ----------------------------------------------------------------------


def _ablation_brute_force(model: nn.Module, layer: nn.Module, images: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """Desai & Ramaswamy: ``w_k = (s - s_{A_k=0}) / s``, a full forward of the image with channel k of the layer's
    output zeroed by a hook (copy i of the image ablates channel i), ``ReLU(Σ_k w_k A_k)``."""
    with torch.no_grad():
        with saliency.tap_layer(layer) as captured:
            logits = model(images)
        acts = captured[0].detach()
        channels, maps = acts.shape[1], []
        for b, t in enumerate(targets):
            ablated = []
            for start in range(0, channels, 128):
                ks = torch.arange(start, min(start + 128, channels))

                def zero_channel(_module, _inputs, out, ks=ks):
                    out = out.clone()
                    out[torch.arange(len(ks)), ks] = 0
                    return out

                handle = layer.register_forward_hook(zero_channel)
                try:
                    ablated.append(model(images[b : b + 1].expand(len(ks), -1, -1, -1))[:, t])
                finally:
                    handle.remove()
            weights = (logits[b, t] - torch.cat(ablated)) / logits[b, t]
            maps.append(F.relu(torch.einsum("k,khw->hw", weights, acts[b])))
    return torch.stack(maps)


@pytest.mark.parametrize(("name", "layer"), [("resnet", "layer3"), ("resnet", "layer4"), ("alexnet", "features.10")])
def test_ablationcam_equals_its_definition(name: str, layer: str, resnet: nn.Module) -> None:
    """At any layer, including a convolution followed by an in-place ReLU (AlexNet ``features.10``), where
    pytorch-grad-cam's cached activations are overwritten by the ReLU and its map differs (see the docstring)."""
    if name == "resnet":
        model, images = resnet.eval(), _images(2, 32)
    else:
        torch.manual_seed(0)
        model, images = consistentzoo.create_model("alexnet", num_classes=10).eval(), _images(2, 64)
    expected = _ablation_brute_force(model, model.get_submodule(layer), images, [1, 2])
    assert expected.amax() > 0
    ours = saliency.compute("ablationcam", model, images, [1, 2], layer=layer)
    # w_k is a difference of nearly equal logits divided by the logit: batched and single forwards differ by ~1e-6
    torch.testing.assert_close(ours, expected, rtol=1e-3, atol=1e-3 * float(expected.amax()))


# --- non-finite input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_images_are_refused(method: str) -> None:
    model = _tiny()
    for bad in (float("nan"), float("inf"), -float("inf")):
        images = _images()
        images[1, 2, 3, 4] = bad
        with pytest.raises(InvalidImagesError, match=r"1 non-finite value.*image 1"):
            saliency.compute(method, model, images)


def test_nan_maps_are_refused() -> None:
    maps = torch.rand(2, 4, 4)
    maps[1, 0, 0] = float("nan")
    with pytest.raises(InvalidMapsError, match="NaN"):
        saliency.normalize_minmax(maps)
    maps[1, 0, 0] = float("inf")
    with pytest.raises(InvalidMapsError, match="infinite"):
        saliency.normalize_minmax(maps)
    maps[1, 0, 0] = float("nan")
    with pytest.raises(InvalidMapsError, match="NaN"):
        saliency.overlay(torch.rand(3, 8, 8), maps[1])
    assert issubclass(InvalidMapsError, ValueError)


# --- boxes outside the image ----------------------------------------------------------------------------------------


def test_boxes_outside_the_image_give_an_empty_mask() -> None:
    for box in ([100, 100, 200, 200], [-50, -40, -10, -5], [64, 0, 70, 10], [0, -9, 10, 0], [10, 64, 20, 64]):
        assert not boxes_to_mask(torch.tensor([box], dtype=torch.float32), 64, 64, clip=True).any(), box
    # a box partly inside keeps its inside part; a degenerate box inside the image keeps its one pixel
    partly = boxes_to_mask(torch.tensor([[60.0, -5.0, 80.0, 2.0]]), 64, 64, clip=True)
    assert partly.sum() == 4 * 2 and partly[:2, 60:].all()
    point = boxes_to_mask(torch.tensor([[10.0, 20.0, 10.0, 20.0]]), 64, 64, clip=True)
    assert point.sum() == 1 and point[20, 10]
    # one box outside, one inside: only the inside one
    both = boxes_to_mask(torch.tensor([[100.0, 100.0, 200.0, 200.0], [0.0, 0.0, 2.0, 2.0]]), 64, 64, clip=True)
    assert both.sum() == 4 and both[:2, :2].all()


def test_evaluator_skips_a_box_outside_the_image_as_empty_mask() -> None:
    datasets = pytest.importorskip("datasets")
    import numpy as np
    from PIL import Image

    from consistentzoo.data.schema import make_features
    from consistentzoo.metrics.evaluate import EvalConfig, evaluate

    rng = np.random.default_rng(0)
    cols = {
        "id": ["inside", "outside"],
        "image": [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2)],
        "label": [0, 1],
        "boxes": [[[8.0, 8.0, 40.0, 40.0]], [[100.0, 100.0, 200.0, 200.0]]],
        "box_labels": [[0], [1]],
    }
    ds = datasets.Dataset.from_dict(cols, features=make_features(["a", "b"]))
    torch.manual_seed(0)
    model = consistentzoo.create_model("resnet18", num_classes=2).eval()
    config = EvalConfig(batch_size=2, loc_size=64, spg_seeds=1, progress=False)
    (row,) = evaluate(model, ds, ["gradcam"], ["pg"], config=config)
    assert row["skipped"]["empty_mask"] == 1
    assert row["n"] + sum(row["skipped"].values()) == 2
