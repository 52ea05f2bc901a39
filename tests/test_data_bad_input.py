"""Bad input: corrupt / truncated images, odd colour modes, boxes outside the image or without area, missing files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from fixtures import data_native as nat

from consistentzoo.data import (
    AnnotationFormatError,
    DataQualityWarning,
    LabelOutOfRangeError,
    MissingAnnotationError,
    UnknownDatasetError,
    load,
)


def _coco(tmp_path, anns, images=None, **kw):
    root = nat.write_coco(tmp_path / "coco", "val2017", images=images, anns=anns)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = load("coco", "val", root, year=2017, cache_dir=tmp_path / "cache", **kw)
    reports = [w.message.report for w in rec if issubclass(w.category, DataQualityWarning)]
    return ds, reports


def _ann(i, bbox, cat=1, img=1):
    x, y, w, h = bbox
    return {
        "id": i,
        "image_id": img,
        "category_id": cat,
        "bbox": bbox,
        "area": w * h,
        "iscrowd": 0,
        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
    }


def test_boxes_outside_image_clipped_or_dropped_and_counted(tmp_path) -> None:
    anns = [_ann(1, [2, 3, 10, 8]), _ann(2, [30, 20, 20, 20], cat=3), _ann(3, [50, 40, 5, 5]), _ann(4, [5, 5, 0, 7])]
    ds, (report,) = _coco(tmp_path, anns)
    r = ds[0]
    assert r["boxes"] == [[2.0, 3.0, 12.0, 11.0], [30.0, 20.0, 40.0, 30.0]]  # second clipped to the 40x30 image
    assert r["box_labels"] == [0, 1] and len(r["mask"]) == 2
    assert r["labels"] == [1, 1]  # the category of a dropped box is still present in the image
    assert report.clipped_boxes == 1 and report.dropped_boxes == {"outside_image": 1, "zero_area": 1}


def test_label_id_not_a_category_is_an_error(tmp_path) -> None:
    with pytest.raises(LabelOutOfRangeError, match="category_id 7"):
        _coco(tmp_path, [_ann(1, [2, 3, 10, 8], cat=7)])


def test_corrupt_truncated_and_missing_images_skipped_and_counted(tmp_path) -> None:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 40, "height": 30} for i in range(1, 5)]
    anns = [_ann(i, [1, 1, 5, 5], img=i) for i in range(1, 5)]
    root = nat.write_coco(tmp_path / "coco", "val2017", images=images, anns=anns)
    (root / "val2017" / "2.jpg").write_bytes(b"not an image at all")
    data = (root / "val2017" / "3.jpg").read_bytes()
    (root / "val2017" / "3.jpg").write_bytes(data[: len(data) // 2])
    (root / "val2017" / "4.jpg").unlink()
    for level in ("header", "full"):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            ds = load("coco", "val2017", root, check_images=level, cache_dir=tmp_path / f"c{level}")
        (w,) = [w for w in rec if issubclass(w.category, DataQualityWarning)]
        assert ds["id"] == ["1"]
        assert w.message.report.skipped == {"corrupt_image": 1, "truncated_image": 1, "missing_file": 1}
        assert "skipped 3 samples" in str(w.message)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_colour_modes_decode_as_rgb(tmp_path, mode) -> None:
    fmt = "PNG" if mode in ("RGBA", "P") else "JPEG"
    nat.image(tmp_path / "f" / "train" / "a" / f"x.{fmt.lower()}", (12, 9), mode=mode, fmt=fmt)
    ds = load("imagefolder", "train", tmp_path / "f", check_images="full", cache_dir=tmp_path / "cache")
    img = ds[0]["image"]
    assert img.mode == "RGB" and img.size == (12, 9)


def test_missing_annotation_files_are_clear_errors(tmp_path) -> None:
    (tmp_path / "coco" / "val2017").mkdir(parents=True)
    with pytest.raises(MissingAnnotationError, match="instances_val2017.json"):
        load("coco", "val2017", tmp_path / "coco")
    root = nat.write_cub(tmp_path / "cub", with_segmentations=False)
    (root / "CUB_200_2011" / "bounding_boxes.txt").unlink()
    with pytest.raises(MissingAnnotationError, match="bounding_boxes.txt"):
        load("cub200", "train", root)
    with pytest.raises(MissingAnnotationError, match="segmentations"):
        load("cub200", "train", root, masks=True)
    nat.write_flowers(tmp_path / "fl")
    (tmp_path / "fl" / "setid.mat").unlink()
    with pytest.raises(MissingAnnotationError, match="setid.mat"):
        load("flowers102", "train", tmp_path / "fl")


def test_malformed_annotations_are_clear_errors(tmp_path) -> None:
    root = nat.write_aircraft(tmp_path / "air")
    f = root / "data" / "images_variant_train.txt"
    f.write_text(f.read_text() + "1234567 MiG-99\n")
    with pytest.raises(AnnotationFormatError, match="MiG-99"):
        load("fgvc_aircraft", "train", root, cache_dir=tmp_path / "cache")
    with pytest.raises(UnknownDatasetError, match="check_images"):
        load("fgvc_aircraft", "test", root, check_images="deep")


def test_imagenet_flat_val_without_annotations_is_an_error(tmp_path) -> None:
    root = nat.write_imagenet(tmp_path / "in")
    for p in (root / "ILSVRC" / "Annotations").rglob("*.xml"):
        p.unlink()
    (root / "LOC_val_solution.csv").unlink()
    with pytest.raises(MissingAnnotationError, match="boxes="):
        load("imagenet_1k", "val", root, cache_dir=tmp_path / "cache")


def test_report_survives_the_cache(tmp_path) -> None:
    anns = [_ann(1, [2, 3, 10, 8]), _ann(2, [50, 40, 5, 5])]
    _, (first,) = _coco(tmp_path, anns)
    _, (again,) = _coco(tmp_path, anns)
    assert first.to_dict() == again.to_dict() and np.isclose(again.dropped_boxes["outside_image"], 1)
