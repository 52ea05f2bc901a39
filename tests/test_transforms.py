"""Recorded random resized crop + flip: replay on images and maps, identity, resolution independence."""

import pytest
import torch
import torchvision.transforms.functional as TF

from consistentzoo.transforms import CropFlipParams, RandomResizedCropFlip, draw_crop_flip, replay


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_replay_on_image_equals_augmented_image_and_authors_per_sample_crop():
    x = torch.randn(8, 3, 32, 32, generator=_gen())
    augmented, params = RandomResizedCropFlip(size=24)(x, generator=_gen(1))
    assert torch.equal(augmented, replay(x, params, 24))
    assert params.flips.any() and not params.flips.all()  # both branches exercised with this seed
    for b, (i, j, h, w) in enumerate(params.pixel_boxes((32, 32)).round().long().tolist()):
        # the CGC authors' per-sample replay: crop, bilinear resize (align_corners=False), flip
        expected = TF.resized_crop(x[b], i, j, h, w, [24, 24], antialias=False)
        if params.flips[b]:
            expected = expected.flip(-1)
        torch.testing.assert_close(augmented[b], expected, atol=1e-5, rtol=1e-5)


def test_identity_draw_is_identity():
    x = torch.randn(4, 3, 20, 20, generator=_gen())
    augmented, params = RandomResizedCropFlip(size=20, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)(x)
    torch.testing.assert_close(params.boxes, torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 4, dtype=torch.float64))
    torch.testing.assert_close(augmented, x)
    torch.testing.assert_close(replay(x.mean(1), params), x.mean(1))  # and on a map


def test_crop_of_map_equals_map_of_crop():
    x = torch.rand(6, 3, 28, 28, generator=_gen())
    params = draw_crop_flip(6, (28, 28), generator=_gen(2))
    torch.testing.assert_close(replay(x, params).mean(1), replay(x.mean(1), params))


def test_replay_is_resolution_independent_on_a_linear_map():
    # bilinear interpolation reproduces a linear function exactly, so a box replayed at any resolution samples it
    # at the same relative points (boxes large enough that no sample point is clamped at the box border)
    params = CropFlipParams(torch.tensor([[0.25, 0.125, 0.5, 0.75], [0.0, 0.5, 0.5, 0.5]]), torch.tensor([False, True]))
    outs = []
    for res in (32, 64):
        centres = (torch.arange(res, dtype=torch.float64) + 0.5) / res  # relative pixel centres
        ramp = 2 * centres[:, None] + 3 * centres[None, :]
        outs.append(replay(ramp.expand(2, res, res), params, size=4))
    torch.testing.assert_close(outs[0], outs[1])
    u = (torch.arange(4, dtype=torch.float64) + 0.5) / 4
    rows, cols = 0.25 + 0.5 * u, 0.125 + 0.75 * u  # first sample's relative sample points
    torch.testing.assert_close(outs[0][0], 2 * rows[:, None] + 3 * cols[None, :])


def test_replay_is_differentiable():
    params = draw_crop_flip(2, (6, 6), generator=_gen(3))
    maps = torch.rand(2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: replay(m, params, 5), (maps,))


def test_draws_follow_random_resized_crop_rules():
    params = draw_crop_flip(500, (224, 224), generator=_gen(4))
    top, left, h, w = params.pixel_boxes((224, 224)).unbind(1)
    torch.testing.assert_close(params.pixel_boxes((224, 224)), params.pixel_boxes((224, 224)).round())  # integers
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 224).all() and (left + w <= 224).all()
    area = h * w / 224**2
    assert area.min() > 0.07 and area.max() <= 1.0
    assert ((w / h) > 0.7).all() and ((w / h) < 1.4).all()
    assert 0.4 < params.flips.double().mean() < 0.6


def test_from_pixels_and_bad_input():
    p = CropFlipParams.from_pixels(
        torch.tensor([10.0]), torch.tensor([20.0]), torch.tensor([100.0]), torch.tensor([50.0]), [True], (224, 224)
    )
    torch.testing.assert_close(
        p.pixel_boxes((224, 224)), torch.tensor([[10.0, 20.0, 100.0, 50.0]], dtype=torch.float64)
    )
    assert len(CropFlipParams.cat([p, p])) == 2
    with pytest.raises(ValueError, match="batch of 2"):
        replay(torch.zeros(2, 8, 8), p)
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        CropFlipParams(torch.zeros(3), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="scale"):
        draw_crop_flip(2, scale=(0.5, 0.1))


@pytest.mark.parametrize("out_size", [(9, 13), (40, 30)])
def test_replay_equals_grid_sample_at_the_crop_sample_points(out_size):
    # torch's grid_sample as the oracle: bilinear at each box's sample points, clamped to its first and last pixel
    # centres, flipped columns; fractional boxes (drawn on 224 px, replayed at 21x17) and several channels
    params = draw_crop_flip(5, (224, 224), generator=_gen(4))
    x = torch.randn(5, 3, 21, 17, generator=_gen(5), dtype=torch.float64)
    h, w = x.shape[-2:]
    boxes = params.pixel_boxes((h, w))
    grids = []
    for b in range(5):
        top, left, bh, bw = boxes[b].tolist()
        rows = top + ((torch.arange(out_size[0], dtype=torch.float64) + 0.5) * bh / out_size[0] - 0.5).clamp(min=0)
        cols = left + ((torch.arange(out_size[1], dtype=torch.float64) + 0.5) * bw / out_size[1] - 0.5).clamp(min=0)
        rows, cols = rows.clamp(max=max(top + bh - 1, top)), cols.clamp(max=max(left + bw - 1, left))
        if params.flips[b]:
            cols = cols.flip(0)
        gy, gx = torch.meshgrid((2 * rows + 1) / h - 1, (2 * cols + 1) / w - 1, indexing="ij")
        grids.append(torch.stack([gx, gy], -1))
    expected = torch.nn.functional.grid_sample(x, torch.stack(grids), mode="bilinear", align_corners=False)
    torch.testing.assert_close(replay(x, params, out_size), expected)
    torch.testing.assert_close(replay(x[:, 1], params, out_size), expected[:, 1])
