"""Localisation metrics: pointing-game edge cases by construction, oracles from Quantus, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from consistentzoo.metrics import (
    PerImageResult,
    boxes_to_mask,
    content_heatmap,
    mean_std,
    negative_quadrants_heatmap,
    pointing_game,
    stochastic_pointing_game,
)


def _point_map(h: int, w: int, y: int, x: int) -> torch.Tensor:
    m = torch.full((h, w), 0.01)
    m[y, x] = 1.0
    return m


def _pixel_mask(h: int, w: int, pixels: list[tuple[int, int]]) -> torch.Tensor:
    g = torch.zeros(h, w, dtype=torch.bool)
    for y, x in pixels:
        g[y, x] = True
    return g


def test_pointing_game_tolerance_is_strict():
    # mask pixel at (20, 40); maximum 15 px away misses, 14 px hits, horizontally, vertically and on a 9-12-15 diagonal
    cases = [((20, 55), 0.0), ((20, 54), 1.0), ((35, 40), 0.0), ((34, 40), 1.0), ((29, 52), 0.0), ((28, 51), 1.0)]
    maps = torch.stack([_point_map(64, 80, y, x) for (y, x), _ in cases])
    masks = torch.stack([_pixel_mask(64, 80, [(20, 40)])] * len(cases))
    res = pointing_game(maps, masks)
    assert res.values.tolist() == [hit for _, hit in cases]
    assert res.n_skipped == {"zero_map": 0, "empty_mask": 0}
    # custom tolerance: 15 px away hits with 15.5, and tolerance=1 means "on the mask"
    assert pointing_game(maps[:1], masks[:1], tolerance=15.5).values.item() == 1.0
    on = pointing_game(_point_map(64, 80, 20, 40)[None], masks[:1], tolerance=1).values.item()
    off = pointing_game(_point_map(64, 80, 20, 41)[None], masks[:1], tolerance=1).values.item()
    assert (on, off) == (1.0, 0.0)


def test_pointing_game_matches_brute_force_distance():
    g = torch.Generator().manual_seed(0)
    b, h, w = 24, 40, 50
    masks = torch.rand(b, h, w, generator=g) > 0.995  # a few scattered pixels per image
    masks[0] = False
    masks[0, 0, 0] = True  # and one at the corner
    maps = torch.rand(b, h, w, generator=g)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for tol in (1.0, 2.5, 7.0, 15.0):
        res = pointing_game(maps, masks, tolerance=tol)
        for i, hit in zip(res.index.tolist(), res.values.tolist(), strict=True):
            arg = maps[i].flatten().argmax()
            y, x = int(arg // w), int(arg % w)
            d = torch.sqrt(((yy[masks[i]] - y) ** 2 + (xx[masks[i]] - x) ** 2).double()).min()
            assert hit == float(d < tol), (i, tol, float(d))


def test_pointing_game_several_boxes_and_border():
    h, w = 60, 90
    two_boxes = boxes_to_mask(torch.tensor([[5.0, 5.0, 15.0, 15.0], [60.0, 30.0, 80.0, 50.0]]), h, w)
    border = boxes_to_mask(torch.tensor([[70.0, 40.0, 90.0, 60.0]]), h, w)  # touches the right and bottom edges
    left = boxes_to_mask(torch.tensor([[0.0, 40.0, 5.0, 45.0]]), h, w)  # touches the left edge
    maps = torch.stack(
        [
            _point_map(h, w, 45, 75),  # inside the second box of the class
            _point_map(h, w, 40, 40),  # 20 px left of the second box, far from the first: miss
            _point_map(h, w, 59, 89),  # bottom-right corner pixel, inside the border box
            _point_map(h, w, 32, 62),  # 8 px above and 8 px left of the border box's corner: 11.3 px, hit
            _point_map(h, w, 39, 89),  # right edge, one row above a box at the left edge: far, no wrap-around
        ]
    )
    masks = torch.stack([two_boxes, two_boxes, border, border, left])
    assert pointing_game(maps, masks).values.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert two_boxes.sum() == 10 * 10 + 20 * 20 and border[40:, 70:].all() and border.sum() == 20 * 20


def test_skips_and_per_class_mean():
    h = w = 32
    mask = boxes_to_mask(torch.tensor([[0.0, 0.0, 8.0, 8.0]]), h, w)
    maps = torch.stack([_point_map(h, w, 2, 2), torch.zeros(h, w), _point_map(h, w, 30, 30), _point_map(h, w, 3, 3)])
    masks = torch.stack([mask, mask, mask, torch.zeros(h, w, dtype=torch.bool)])
    labels = torch.tensor([7, 7, 3, 3])
    for res in (pointing_game(maps, masks), content_heatmap(maps, masks), stochastic_pointing_game(maps, masks)):
        assert res.index.tolist() == [0, 2]
        assert res.n_skipped == {"zero_map": 1, "empty_mask": 1}
        assert res.skipped["zero_map"].tolist() == [1] and res.skipped["empty_mask"].tolist() == [3]
        assert torch.isfinite(res.values).all()
    pg = pointing_game(maps, masks)
    assert pg.per_class_mean(labels) == {3: 0.0, 7: 1.0}
    assert pg.class_mean(labels) == 0.5
    all_skipped = pointing_game(torch.zeros(2, h, w), masks[:2])
    assert all_skipped.n == 0
    with pytest.raises(ValueError, match="no image was scored"):
        all_skipped.mean()
    joined = PerImageResult.concat([pg, all_skipped])
    assert joined.batch_size == 6 and joined.index.tolist() == [0, 2] and joined.n_skipped["zero_map"] == 3


def test_stochastic_pointing_game_seeded_and_limits():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(6, 48, 48, generator=g) ** 4
    masks = torch.zeros(6, 48, 48, dtype=torch.bool)
    masks[:, 10:30, 12:40] = True
    a = stochastic_pointing_game(maps, masks, seed=3).values
    b = stochastic_pointing_game(maps, masks, seed=3).values
    c = stochastic_pointing_game(maps, masks, seed=4).values
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a * 100).round() == a * 100).all()  # 100 samples -> multiples of 1/100
    # all mass inside the mask -> every sample hits; a one-pixel map -> SPG equals PG
    inside = maps * masks
    assert stochastic_pointing_game(inside, masks).values.eq(1).all()
    point = torch.zeros_like(maps)
    point[:, 5, 5] = 1.0
    point[1, 20, 20] = 1.0
    point[1, 5, 5] = 0.0
    assert torch.equal(stochastic_pointing_game(point, masks).values, pointing_game(point, masks).values)
    m, s = mean_std([stochastic_pointing_game(maps, masks, seed=k).mean() for k in range(5)])
    assert 0 < m < 1 and 0 < s < 0.1
    assert mean_std([1.0, 3.0]) == (2.0, 1.0) and mean_std([1.0, 3.0], ddof=1)[1] == pytest.approx(math.sqrt(2))


def test_content_heatmap_equals_quantus_relevance_mass_accuracy():
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(0)
    b, h, w = 5, 12, 14
    maps = rng.random((b, h, w)).astype(np.float32) ** 3
    masks = rng.random((b, h, w)) > 0.6
    ours = content_heatmap(torch.from_numpy(maps), torch.from_numpy(masks)).values.numpy()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * h * w, 4))
    ref = quantus.RelevanceMassAccuracy(normalise=False, abs=False, disable_warnings=True)(
        model=model,
        x_batch=rng.random((b, 3, h, w)).astype(np.float32),
        y_batch=np.zeros(b, dtype=int),
        a_batch=maps[:, None],
        s_batch=masks[:, None].astype(np.float32),
        device="cpu",
    )
    np.testing.assert_allclose(ours, np.asarray(ref, dtype=np.float64), rtol=1e-5)


def test_nqh_equals_one_minus_quantus_focus():
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(1)
    b, h, w = 4, 16, 20
    maps = rng.random((b, h, w)).astype(np.float32) ** 2
    quadrants = np.array([0, 1, 2, 3])
    ours = negative_quadrants_heatmap(torch.from_numpy(maps), torch.from_numpy(quadrants)).values.numpy()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * h * w, 4))
    focus = quantus.Focus(normalise=False, abs=False, disable_warnings=True)(
        model=model,
        x_batch=rng.random((b, 3, h, w)).astype(np.float32),
        y_batch=np.zeros(b, dtype=int),
        a_batch=maps[:, None],
        custom_batch=[[int(q == k) for k in range(4)] for q in quadrants],
        device="cpu",
    )
    np.testing.assert_allclose(ours, 1 - np.asarray(focus, dtype=np.float64), rtol=1e-5, atol=1e-6)


def test_nqh_by_construction():
    maps = torch.zeros(3, 4, 6)
    maps[0, :2, :3] = 1.0  # all mass on the real image (top-left): 0
    maps[1, 2:, 3:] = 1.0  # all mass on bottom-right while the real image is top-left: 1
    res = negative_quadrants_heatmap(maps, torch.tensor([0, 0, 2]))
    assert res.values.tolist() == [0.0, 1.0] and res.skipped["zero_map"].tolist() == [2]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, g: pointing_game(m, g[:, :-1]), "match the maps' shape"),
        (lambda m, g: pointing_game(m, g.float()), "boolean"),
        (lambda m, g: content_heatmap(m - 0.5, g), "negative"),
        (lambda m, g: content_heatmap(m.masked_fill(g, float("nan")), g), "NaN"),
        (lambda m, g: stochastic_pointing_game(m[:0], g[:0]), "empty batch"),
        (lambda m, g: pointing_game(m, g, tolerance=0), "tolerance"),
        (lambda m, g: stochastic_pointing_game(m, g, n_samples=0), "n_samples"),
        (lambda m, g: negative_quadrants_heatmap(m[:, :, :-1], torch.zeros(2, dtype=torch.long)), "even"),
        (lambda m, g: negative_quadrants_heatmap(m, torch.tensor([0, 4])), "quadrants"),
        (lambda m, g: pointing_game(m[0], g[0]), r"\[B, H, W\]"),
    ],
)
def test_bad_input_raises(call, match):
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:4, 2:4] = True
    with pytest.raises(ValueError, match=match):
        call(maps, masks)


def test_boxes_outside_image():
    with pytest.raises(ValueError, match="outside"):
        boxes_to_mask(torch.tensor([[-2.0, 0.0, 5.0, 5.0]]), 10, 10)
    with pytest.raises(ValueError, match="x2 >= x1"):
        boxes_to_mask(torch.tensor([[5.0, 0.0, 2.0, 5.0]]), 10, 10)
    clipped = boxes_to_mask(torch.tensor([[-2.0, 8.0, 5.0, 14.0]]), 10, 10, clip=True)
    assert clipped.sum() == 5 * 2 and clipped[8:, :5].all()
    assert not boxes_to_mask(torch.zeros(0, 4), 4, 4).any()


def test_pointing_game_ties_and_both_hit_lookups_match_brute_force():
    from consistentzoo.metrics.localisation import _hits

    h = w = 40
    # two equal maxima: the first in row-major order (row 5, far from the mask) is the point, not (30, 2)
    maps = torch.full((1, h, w), 0.1)
    maps[0, 5, 35] = maps[0, 30, 2] = 1.0
    mask = _pixel_mask(h, w, [(30, 3)])[None]
    assert pointing_game(maps, mask).values.tolist() == [0.0]
    maps[0, 5, 35] = 0.5
    assert pointing_game(maps, mask).values.tolist() == [1.0]
    # per-point look-ups (few points) and the prefix-sum path (many points) against the Euclidean distance
    g = torch.Generator().manual_seed(2)
    masks = torch.rand(3, h, w, generator=g) > 0.997
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for n_points in (1, 400):
        ys, xs = torch.randint(0, h, (3, n_points), generator=g), torch.randint(0, w, (3, n_points), generator=g)
        for tol in (1.0, 4.5, 15.0):
            got = _hits(masks, ys, xs, tol)
            for i in range(3):
                d2 = (yy[masks[i]][None] - ys[i][:, None]) ** 2 + (xx[masks[i]][None] - xs[i][:, None]) ** 2
                assert torch.equal(got[i], (d2 < tol * tol).any(1)), (n_points, tol, i)
