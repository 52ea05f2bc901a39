"""COCO on the real COCO128 photos: masks equal pycocotools' annToMask, boxes and multi-hot labels correct."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from real_data import COCO128, missing

from consistentzoo.data import DataQualityWarning, load


@pytest.fixture(scope="module")
def coco128(tmp_path_factory: pytest.TempPathFactory):
    if not COCO128.is_dir():
        pytest.skip(missing("coco128"))
    from pycocotools.coco import COCO

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = load("coco", "train2017", COCO128, cache_dir=tmp_path_factory.mktemp("cache"))
    api = COCO(str(COCO128 / "annotations" / "instances_train2017.json"))
    return ds, api, [w for w in rec if issubclass(w.category, DataQualityWarning)]


def test_coco128_masks_equal_anntomask(coco128) -> None:
    ds, api, _ = coco128
    cat_ids = sorted(api.getCatIds())
    n = 0
    for row in ds:
        anns = api.imgToAnns[int(row["id"])]
        assert len(row["mask"]) == len(anns) == len(row["boxes"])
        for ann, m, lab in zip(anns, row["mask"], row["box_labels"], strict=True):
            ref = api.annToMask(ann).astype(bool)
            assert np.array_equal(np.asarray(m) >= 128, ref), f"mask of annotation {ann['id']}"
            assert cat_ids[lab] == ann["category_id"]
            n += 1
    assert n == 746


def test_coco128_boxes_and_multihot(coco128) -> None:
    ds, api, _ = coco128
    cat_ids = sorted(api.getCatIds())
    assert len(ds) == 98 and ds.features["box_labels"].feature.names[0] == "person"
    for row in ds:
        anns = api.imgToAnns[int(row["id"])]
        want = np.array(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        )
        np.testing.assert_allclose(np.array(row["boxes"]), want, atol=1e-3)
        hot = np.zeros(80, np.uint8)
        hot[[cat_ids.index(a["category_id"]) for a in anns]] = 1
        assert row["labels"] == hot.tolist()
        assert row["image"].mode == "RGB"
        info = api.imgs[int(row["id"])]
        assert row["image"].size == (info["width"], info["height"])


def test_coco128_reports_images_without_annotations(coco128) -> None:
    _, _, warns = coco128
    assert len(warns) == 1
    report = warns[0].message.report
    assert report.skipped == {"no_annotations": 2} and report.images == 98
