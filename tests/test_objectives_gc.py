"""GC: composite building, quadrant placement, and the loss on a hand-built model with a known map."""

import math

import pytest
import torch
from torch import nn

from consistentzoo.objectives import GCLoss, gc_consistency, make_composite, place_in_quadrant


class LinearCAMNet(nn.Module):
    """forward_features = the image itself, head = GAP + linear: HiResCAM = ReLU(Σ_k w_tk x_k) / (h·w)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.fc.weight.data.copy_(weight)

    def forward_features(self, x):
        return x

    def forward_head(self, a):
        return self.fc(a.mean((2, 3)))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _tiles(b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, 2, 2) + 100
    distractors = torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1, 1).expand(b, 3, 1, 2, 2).clone()
    return images, distractors


def test_make_composite_places_the_image_in_its_quadrant_and_distractors_in_order():
    images, distractors = _tiles()
    comp = make_composite(images, distractors, torch.tensor([2, 1]))
    assert comp.shape == (2, 1, 4, 4)
    # image 0 in quadrant 2 (bottom-left); distractors 0, 1, 2 in quadrants 0, 1, 3
    assert comp[0, 0, 2:, :2].eq(100).all() and comp[0, 0, :2, :2].eq(0).all()
    assert comp[0, 0, :2, 2:].eq(1).all() and comp[0, 0, 2:, 2:].eq(2).all()
    # image 1 in quadrant 1 (top-right); distractors in 0, 2, 3
    assert comp[1, 0, :2, 2:].eq(101).all() and comp[1, 0, :2, :2].eq(0).all()
    assert comp[1, 0, 2:, :2].eq(1).all() and comp[1, 0, 2:, 2:].eq(2).all()


def test_make_composite_checks_distractor_classes():
    images, distractors = _tiles()
    q = torch.tensor([0, 3])
    make_composite(images, distractors, q, torch.tensor([4, 5]), torch.tensor([[1, 2, 1], [4, 4, 0]]))  # with repeats
    with pytest.raises(ValueError, match="image 1: a distractor has the image's class 5"):
        make_composite(images, distractors, q, torch.tensor([4, 5]), torch.tensor([[1, 2, 3], [0, 5, 1]]))
    multi_hot = torch.zeros(2, 3, 6)
    multi_hot[0, 1, 4] = 1  # image 0's drawn category 4 is present in its second distractor
    with pytest.raises(ValueError, match="image 0"):
        make_composite(images, distractors, q, torch.tensor([4, 5]), multi_hot)
    with pytest.raises(ValueError, match="quadrants"):
        make_composite(images, distractors, torch.tensor([0, 4]))


def test_place_in_quadrant():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    grid = place_in_quadrant(maps, torch.tensor([3]))
    expected = torch.zeros(1, 4, 4)
    expected[0, 2:, 2:] = maps[0]
    assert torch.equal(grid, expected)


def test_gc_consistency_by_hand_with_the_image_in_quadrant_2():
    orig = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # sums to 10
    comp = torch.zeros(1, 4, 4)
    comp[0, 2:, :2] = orig[0]  # the same pattern in quadrant 2 (bottom-left) ...
    comp[0, :2, :2] = 1.0  # ... plus 4 units of mass on the distractor in quadrant 0; total 14
    # |x/14 - x/10| summed over quadrant 2 is 10·(1/10 − 1/14); quadrant 0 adds 4/14; mean over 16 cells
    expected = (4 / 14 + 10 * (1 / 10 - 1 / 14)) / 16
    assert gc_consistency(orig, comp, torch.tensor([2])).item() == pytest.approx(expected, abs=1e-7)
    assert expected == pytest.approx(1 / 28)


def test_gc_loss_on_a_known_map_equals_the_hand_value():
    model = LinearCAMNet(torch.tensor([[1.0], [-1.0]]))
    images = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    distractors = torch.stack([torch.ones(1, 2, 2), -torch.ones(1, 2, 2), torch.zeros(1, 2, 2)])[None]
    total, parts = GCLoss(lam=25.0)(model, images, torch.tensor([0]), distractors, torch.tensor([2]))
    ce = math.log(1 + math.exp(-5.0))  # logits (2.5, -2.5), label 0
    assert parts["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert parts["consistency"].item() == pytest.approx(1 / 28, abs=1e-7)  # same maps as the test above
    assert total.item() == pytest.approx(ce + 25 / 28, rel=1e-6)


def test_gc_loss_pixel_resolution_upsamples_after_normalising():
    model = LinearCAMNet(torch.tensor([[1.0], [-1.0]]))
    images = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    distractors = torch.rand(2, 3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    q = torch.tensor([0, 3])
    _, parts = GCLoss(resolution="pixels")(model, images, torch.tensor([0, 0]), distractors, q)
    comp = make_composite(images, distractors, q)
    expected = gc_consistency(images[:, 0], comp[:, 0], q, size=(4, 4))  # the map is the image itself up to scale
    assert parts["consistency"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_gc_loss_multilabel_uses_weighted_bce_and_needs_targets():
    model = LinearCAMNet(torch.tensor([[1.0], [-1.0]]))
    images = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    distractors = torch.stack([torch.ones(1, 2, 2), -torch.ones(1, 2, 2), torch.zeros(1, 2, 2)])[None]
    labels = torch.tensor([[1.0, 1.0]])
    loss = GCLoss(lam=1.0, multilabel=True)
    with pytest.raises(ValueError, match="targets"):
        loss(model, images, labels, distractors, torch.tensor([2]))
    total, parts = loss(model, images, labels, distractors, torch.tensor([2]), targets=torch.tensor([0]))
    bce = (math.log(1 + math.exp(-2.5)) + math.log(1 + math.exp(2.5))) / 2  # logits (2.5, -2.5), both positive
    assert parts["ce"].item() == pytest.approx(80 * bce, rel=1e-6)
    assert total.item() == pytest.approx(80 * bce + 1 / 28, rel=1e-6)
