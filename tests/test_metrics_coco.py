"""PG / SPG / CH on real COCO photos and annotations (masks via pycocotools), with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from real_data import COCO128 as COCO
from real_data import missing

from consistentzoo.metrics import content_heatmap, pointing_game, stochastic_pointing_game

ANN = COCO / "annotations" / "instances_train2017.json"
N_IMAGES = 12

pytestmark = [
    pytest.mark.skipif(not ANN.is_file(), reason=missing("coco128")),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),  # numpy 2 copy keyword, harmless
]


@pytest.fixture(scope="module")
def coco_pairs() -> list[tuple[torch.Tensor, list[int]]]:
    """Per image: the union mask of each category present, ``[n_cat, H, W]``, and the category ids."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO as CocoApi

    api = CocoApi(str(ANN))
    out = []
    for img_id in sorted(api.getImgIds())[:N_IMAGES]:
        info = api.loadImgs(img_id)[0]
        assert (COCO / "train2017" / info["file_name"]).is_file()
        anns = api.loadAnns(api.getAnnIds(imgIds=img_id, iscrowd=None))
        cats = sorted({a["category_id"] for a in anns})
        masks = np.zeros((len(cats), info["height"], info["width"]), dtype=bool)
        for a in anns:
            masks[cats.index(a["category_id"])] |= api.annToMask(a).astype(bool)
        out.append((torch.from_numpy(masks), cats))
    return out


def test_map_equal_to_mask_scores_one(coco_pairs):
    n = 0
    for masks, _ in coco_pairs:
        maps = masks.float()
        empty = ~masks.flatten(1).any(1)
        for res in (pointing_game(maps, masks), content_heatmap(maps, masks), stochastic_pointing_game(maps, masks)):
            assert res.values.eq(1).all()
            assert res.n + int(empty.sum()) == masks.shape[0]  # only polygon-less categories are skipped
        n += masks.shape[0]
    assert n >= N_IMAGES


def _centred_gaussian(h: int, w: int) -> torch.Tensor:
    y = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    x = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    sigma = min(h, w) / 4
    return torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))


def test_centred_gaussian_known_answers(coco_pairs):
    ndimage = pytest.importorskip("scipy.ndimage")
    hits = []
    for masks, _ in coco_pairs:
        b, h, w = masks.shape
        maps = _centred_gaussian(h, w).expand(b, h, w).contiguous()
        pg = pointing_game(maps, masks)
        ch = content_heatmap(maps, masks)
        flat_arg = int(maps[0].flatten().argmax())
        cy, cx = divmod(flat_arg, w)
        for i, hit, mass in zip(pg.index.tolist(), pg.values.tolist(), ch.values.tolist(), strict=True):
            m = masks[i].numpy()
            dist = ndimage.distance_transform_edt(~m)[cy, cx]  # px from the centre to the nearest mask pixel
            assert hit == float(dist < 15)
            g = maps[i].numpy()
            assert mass == pytest.approx(float((g * m).sum() / g.sum()), rel=1e-9)
            hits.append(hit)
        # without tolerance (on the mask) SPG converges to CH; the same samples with 15 px hit at least as often
        spg = stochastic_pointing_game(maps, masks, n_samples=2000, tolerance=1, seed=0)
        spg15 = stochastic_pointing_game(maps, masks, n_samples=2000, tolerance=15, seed=0)
        assert torch.equal(spg.index, ch.index)
        assert (spg.values - ch.values).abs().max() < 0.05
        assert (spg15.values >= spg.values).all()
    assert 0 < sum(hits) < len(hits)  # real data: some centred maxima hit, some miss
