"""Faithfulness metrics against TorchCAM (insertion/deletion, AD/AI), scipy (RISE blur kernel) and hand computations."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from consistentzoo.metrics import (
    auc,
    average_drop,
    average_gain,
    average_increase,
    blur,
    causal_curves,
    deletion_auc,
    insertion_auc,
    rise_kernel,
)

H = W = 16
STEP = 32  # 256 pixels / 32 = 8 equal steps: TorchCAM's steps=8 then changes exactly the same pixels per step


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )


def _data(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(b, 3, H, W, generator=g)
    maps = torch.rand(b, H, W, generator=g)  # continuous values: no ties, so every ranking agrees
    return images, maps


class _FixedCams:
    """A TorchCAM CAM extractor that returns given maps (TorchCAM's metrics only need this interface)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.maps = torch.empty(0)

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextmanager
    def _hooks_off(self):
        yield


def test_rise_kernel_equals_scipy_gaussian_filter_of_impulse():
    ndimage = pytest.importorskip("scipy.ndimage")
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1.0
    ref = ndimage.gaussian_filter(impulse, 5)  # RISE's gkern(11, 5)
    np.testing.assert_allclose(rise_kernel(11, 5.0, torch.float64).numpy(), ref, rtol=1e-12, atol=1e-15)
    x = torch.rand(1, 3, 12, 12, dtype=torch.float64)
    k = torch.from_numpy(ref)
    hand = torch.nn.functional.conv2d(x, torch.stack([k] * 3)[:, None], padding=5, groups=3)
    torch.testing.assert_close(blur(x), hand)


@pytest.mark.parametrize("mode", ["insertion", "deletion"])
def test_insertion_deletion_equal_torchcam(mode):
    metrics = pytest.importorskip("torchcam.metrics")
    model = _model()
    images, maps = _data()
    targets = torch.tensor([0, 3, 1, 4])
    # Same substrate: TorchCAM's baseline is our blur for insertion (RISE's start image) and zeros for deletion
    # (its default, RISE's black). Same steps: 256 px in 8 intervals of 32 px. Same order: both sort stably by
    # decreasing saliency. Same score: softmax of the given class. TorchCAM integrates with torch.trapezoid on
    # fractions i/8, which equals RISE's (sum - first/2 - last/2) / n for equal steps.
    baseline = blur if mode == "insertion" else None
    extractor = _FixedCams(model)
    ref = []
    for i in range(images.shape[0]):
        metric = metrics.DeletionInsertionMetric(extractor, partial(torch.softmax, dim=-1), steps=8, baseline=baseline)
        extractor.maps = maps[i : i + 1]
        metric.update(images[i : i + 1], class_idx=[int(targets[i])])
        ref.append(metric.summary()[f"{mode}_auc"])
    fn = insertion_auc if mode == "insertion" else deletion_auc
    ours = fn(model, images, maps, targets, pixels_per_step=STEP, batch_size=7)  # chunks mix images and steps
    np.testing.assert_allclose(ours.numpy(), np.array(ref), rtol=1e-5, atol=1e-6)


def test_curves_by_hand_and_defaults():
    model = _model()
    images, maps = _data(2)
    curves = causal_curves(model, images, maps, "deletion", pixels_per_step=STEP)
    assert curves.shape == (2, 9)
    with torch.no_grad():
        probs = model.eval()(images).softmax(-1)
        pred = probs.argmax(-1)
        torch.testing.assert_close(curves[:, 0], probs.max(-1).values)  # no pixel removed: full image, predicted class
        torch.testing.assert_close(curves[:, -1], model(torch.zeros_like(images)).softmax(-1)[[0, 1], pred])
        # after step 3, the 96 most salient pixels of image 1 are black
        order = maps[1].flatten().argsort(descending=True)[:96]
        x = images[1].flatten(1).clone()
        x[:, order] = 0
        torch.testing.assert_close(curves[1, 3], model(x.view(1, 3, H, W)).softmax(-1)[0, pred[1]])
    manual = (curves.sum(1) - curves[:, 0] / 2 - curves[:, -1] / 2) / 8
    torch.testing.assert_close(auc(curves), manual)
    # default: 8 * W pixels per step = 128 -> 2 steps; a partial last step is allowed (RISE's ceil)
    assert causal_curves(model, images, maps, "insertion").shape == (2, 3)
    assert causal_curves(model, images, maps, "insertion", pixels_per_step=100).shape == (2, 4)


def test_model_mode_restored():
    model = _model().train()
    images, maps = _data(2)
    insertion_auc(model, images, maps, pixels_per_step=STEP)
    average_drop(model, images, maps)
    assert all(m.training for m in model.modules())


def test_average_drop_increase_equal_torchcam():
    metrics = pytest.importorskip("torchcam.metrics")
    core = pytest.importorskip("torchcam.methods.core")
    model = _model()
    images, maps = _data(6)
    maps[2] = maps[2] ** 8  # spread of drops
    extractor = _FixedCams(model)
    ad, ai = average_drop(model, images, maps), average_increase(model, images, maps)
    for i in range(images.shape[0]):
        metric = metrics.ClassificationMetric(extractor, partial(torch.softmax, dim=-1))
        extractor.maps = core._CAM._normalize(maps[i : i + 1].clone(), 2)  # TorchCAM's min-max (eps 1e-8)
        metric.update(images[i : i + 1])
        ref = metric.summary()
        assert float(ad[i]) == pytest.approx(ref["avg_drop"], rel=1e-4, abs=1e-6)
        assert float(ai[i]) == ref["conf_increase"]


def test_average_gain_by_hand():
    model = _model()
    images, maps = _data(5)
    targets = torch.tensor([0, 1, 2, 3, 4])
    with torch.no_grad():
        flat = maps.flatten(1)
        s = (flat - flat.min(1, keepdim=True).values) / (flat.max(1, keepdim=True).values - flat.min(1, True).values)
        p = model.eval()(images).softmax(-1)[torch.arange(5), targets]
        o = model(s.view_as(maps)[:, None] * images).softmax(-1)[torch.arange(5), targets]
    torch.testing.assert_close(average_gain(model, images, maps, targets), (o - p).clamp_min(0) / p)
    torch.testing.assert_close(average_drop(model, images, maps, targets), (p - o).clamp_min(0) / p)
    torch.testing.assert_close(average_increase(model, images, maps, targets), (p < o).float())
    # a constant map masks everything out (min-max of a constant is taken as 0), no NaN
    const = average_drop(model, images, torch.ones_like(maps), targets)
    assert torch.isfinite(const).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"maps": torch.rand(2, H, W - 1)}, "resize the maps"),
        ({"maps": torch.full((2, H, W), float("nan"))}, "NaN"),
        ({"images": torch.rand(0, 3, H, W), "maps": torch.rand(0, H, W)}, "empty batch"),
        ({"targets": torch.tensor([0, 9])}, "targets"),
        ({"substrate": "grey"}, "substrate"),
        ({"pixels_per_step": 0}, "pixels_per_step"),
    ],
)
def test_bad_input_raises(kwargs, match):
    images, maps = _data(2)
    args = {"images": images, "maps": maps, **kwargs}
    with pytest.raises(ValueError, match=match):
        insertion_auc(_model(), **args)


class _Counting(nn.Module):
    """Wraps a model; records the batch size of every forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.model(x)


def _curves_by_hand(model, images, maps, mode, substrate, step):
    """Every point of the definition scored on its own image: the oracle for the batched path."""
    b, c, h, w = images.shape
    start, finish = (substrate, images) if mode == "insertion" else (images, substrate)
    with torch.no_grad():
        targets = model.eval()(images).softmax(-1).argmax(-1)
        rows = []
        for i in range(b):
            order = maps[i].flatten().argsort(descending=True, stable=True)
            pts = []
            for k in range(-(-h * w // step) + 1):
                x = start[i].flatten(1).clone()
                top = order[: min(k * step, h * w)]
                x[:, top] = finish[i].flatten(1)[:, top]
                pts.append(model(x.view(1, c, h, w)).softmax(-1)[0, targets[i]])
            rows.append(torch.stack(pts))
    return torch.stack(rows)


@pytest.mark.parametrize("mode", ["insertion", "deletion"])
def test_each_distinct_image_is_scored_once(mode):
    model = _Counting(_model())
    images, maps = _data(3)
    substrate = blur(images) if mode == "insertion" else torch.zeros_like(images)
    curves = causal_curves(model, images, maps, mode, pixels_per_step=STEP, batch_size=5)
    torch.testing.assert_close(curves, _curves_by_hand(model.model, images, maps, mode, substrate, STEP))
    # 9 points per image, one of them the full image, which is scored once for the target
    assert sum(model.batches) == 3 + 3 * 8 and max(model.batches) <= 5


@pytest.mark.parametrize("mode", ["insertion", "deletion"])
def test_steps_that_change_no_pixel_reuse_the_score(mode):
    model = _Counting(_model())
    images, maps = _data(2)
    # the substrate differs from the image only at the pixels ranked 64..95: steps 0-2 show one image, 3-8 another
    substrate = images.clone()
    for i in range(2):
        top = maps[i].flatten().argsort(descending=True)[64:96]
        substrate[i].view(3, -1)[:, top] = -1.0
    curves = causal_curves(model, images, maps, mode, substrate=substrate, pixels_per_step=STEP)
    torch.testing.assert_close(curves, _curves_by_hand(model.model, images, maps, mode, substrate, STEP))
    assert sum(model.batches) == 2 + 2  # the full images, then one perturbed image each
    assert (curves[:, :3] == curves[:, :1]).all() and (curves[:, 3:] == curves[:, 3:4]).all()
    # an image equal to its substrate is scored once in all
    model.batches.clear()
    flat = causal_curves(model, images, maps, mode, substrate=images, pixels_per_step=STEP)
    assert sum(model.batches) == 2 and (flat == flat[:, :1]).all()


def test_cpu_chunk_capped_by_the_cache(monkeypatch):
    from consistentzoo.metrics import faithfulness

    images, maps = _data(3)
    per_image = images[0].numel() * images.element_size()
    assert 1 <= faithfulness.perturbation_chunk(images, 64) <= 64
    huge = torch.zeros(1, 1, 1, 1).expand(2, 3, 4096, 4096)  # 200 MB per image, no memory behind it
    assert faithfulness.perturbation_chunk(huge, 64) == 1
    assert faithfulness.perturbation_chunk(images.to("meta"), 64) == 64  # other devices: batch_size as given
    expected = insertion_auc(_model(), images, maps, pixels_per_step=STEP)
    monkeypatch.setattr(faithfulness, "_last_level_cache_bytes", lambda: 8 * per_image * 3)
    assert faithfulness.perturbation_chunk(images, 64) == 3 and faithfulness.perturbation_chunk(images, 2) == 2
    model = _Counting(_model())
    torch.testing.assert_close(insertion_auc(model, images, maps, pixels_per_step=STEP), expected)
    assert max(model.batches) == 3
    monkeypatch.setattr(faithfulness, "_last_level_cache_bytes", lambda: 1)
    assert faithfulness.perturbation_chunk(images, 64) == 1
