"""Box- and mask-aligned transforms, and collate with variable numbers of boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from consistentzoo.data import collate, eval_transform, to_tv_tensors, train_transform
from consistentzoo.data.transforms import center_crop, resize_shorter


def _row(w=80, h=40, boxes=((10, 5, 30, 25), (60, 0, 80, 40)), multi=True):
    img = np.zeros((h, w, 3), np.uint8)
    masks = []
    for x1, y1, x2, y2 in boxes:
        img[y1:y2, x1:x2] = 255
        m = np.zeros((h, w), np.uint8)
        m[y1:y2, x1:x2] = 255
        masks.append(Image.fromarray(m))
    row = {
        "id": "x",
        "image": Image.fromarray(img),
        "boxes": [list(map(float, b)) for b in boxes],
        "box_labels": list(range(len(boxes))),
        "mask": masks,
    }
    row["labels" if multi else "label"] = [1, 1, 0] if multi else 2
    return row


def test_resize_shorter_side_to_448_keeps_boxes_and_masks_aligned() -> None:
    out = eval_transform(448, norm=False)(to_tv_tensors(_row()))
    assert out["image"].shape == (3, 448, 896)
    torch.testing.assert_close(out["boxes"], torch.tensor([[112.0, 56.0, 336.0, 280.0], [672.0, 0.0, 896.0, 448.0]]))
    m = out["masks"][0]
    assert m.shape == (448, 896) and m[56:280, 112:336].all() and m.sum() == 224 * 224
    assert out["labels"].tolist() == [1, 1, 0]  # the multi-hot vector is not filtered like box labels


def test_center_crop_clips_and_drops_boxes_with_their_labels_and_masks() -> None:
    t = torch.nn.Sequential(resize_shorter(40), center_crop(40))
    out = t(to_tv_tensors(_row()))
    assert out["image"].shape == (3, 40, 40)
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.0, 5.0, 10.0, 25.0]]))
    assert out["box_labels"].tolist() == [0] and out["masks"].shape == (1, 40, 40)
    assert out["masks"][0].sum() == 10 * 20 and out["labels"].tolist() == [1, 1, 0]


def test_train_transform_box_matches_mask_extent() -> None:
    torch.manual_seed(3)
    out = train_transform(64, scale=(0.5, 1.0), norm=False)(to_tv_tensors(_row(boxes=((10, 5, 30, 25),))))
    ys, xs = torch.nonzero(out["masks"][0], as_tuple=True)
    box = out["boxes"][0]
    assert abs(xs.min() - box[0]) <= 1.5 and abs(xs.max() + 1 - box[2]) <= 1.5
    assert abs(ys.min() - box[1]) <= 1.5 and abs(ys.max() + 1 - box[3]) <= 1.5


def test_collate_variable_numbers_of_boxes() -> None:
    rows = [
        eval_transform(32, crop=32)(to_tv_tensors(_row(boxes=b, multi=False)))
        for b in [((0, 0, 40, 40),), ((10, 5, 30, 25), (20, 10, 60, 40)), ()]
    ]
    batch = collate(rows)
    assert batch["image"].shape == (3, 3, 32, 32) and batch["label"].tolist() == [2, 2, 2]
    assert batch["num_boxes"].tolist() == [1, 2, 0] and [b.shape[0] for b in batch["boxes"]] == [1, 2, 0]
    assert [m.shape[0] for m in batch["masks"]] == [1, 2, 0] and batch["id"] == ["x"] * 3
    with pytest.raises(ValueError, match="different shapes"):
        collate([to_tv_tensors(_row()), to_tv_tensors(_row(w=20))])
    with pytest.raises(ValueError, match="empty"):
        collate([])
