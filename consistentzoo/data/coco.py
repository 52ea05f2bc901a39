"""COCO 2014 / 2017 instances: multi-hot labels, boxes and per-instance masks, read with pycocotools.

Local layout (official): ``<root>/<split>/*.jpg`` and ``<root>/annotations/instances_<split>.json``, with
``split`` such as ``train2017``, ``val2014``. ``"train"`` / ``"val"`` / ``"validation"`` mean the ``year`` given.

Labels index the categories sorted by COCO category id (80 contiguous indices, torchvision's order). Crowd
annotations count: their category is in ``labels`` and they keep their box and (RLE) mask. Masks are one per box,
exactly ``COCO.annToMask`` of that annotation (polygons rasterised by pycocotools).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .convert import from_columns
from .errors import AnnotationFormatError, LabelOutOfRangeError, MissingAnnotationError, UnknownDatasetError
from .registry import DatasetSpec, register_dataset
from .schema import LoadReport, build, check_image, clean_boxes, encode_mask, fingerprint, image_value, safe_join

if TYPE_CHECKING:
    import datasets

YEARS = (2014, 2017)
SPLITS = ("train", "val", "validation", "train2014", "val2014", "train2017", "val2017")
LAYOUT = "<root>/<split>/*.jpg + <root>/annotations/instances_<split>.json, split e.g. val2014"


def resolve_split(split: str, year: int) -> str:
    """``"val"`` + 2014 -> ``"val2014"``; a full name such as ``"train2017"`` is returned as is."""
    if year not in YEARS:
        raise UnknownDatasetError(str(year), [str(y) for y in YEARS], kind="COCO year")
    if split in ("train", "val", "validation"):
        return f"{'train' if split == 'train' else 'val'}{year}"
    if split not in SPLITS:
        raise UnknownDatasetError(split, SPLITS, kind="COCO split")
    return split


def load_local(
    root: Path,
    split: str,
    *,
    year: int = 2017,
    masks: bool = True,
    drop_empty: bool = True,
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Read a local COCO copy in the official layout.

    Args:
        root: directory holding ``<split>/`` and ``annotations/``.
        split: ``train2017``, ``val2014``, ... or ``train`` / ``val`` with ``year``.
        year: 2014 or 2017, for the short split names.
        masks: add the per-instance ``mask`` column (PNG-compressed; costs about 1 ms per instance to build).
        drop_empty: skip images with no annotation (counted as ``no_annotations``), as multi-label training does.
        check_images: see :func:`consistentzoo.data.load`.
        cache_dir: see :func:`consistentzoo.data.load`.

    Returns:
        The dataset with ``labels`` (80-way multi-hot), ``boxes``, ``box_labels`` and optionally ``mask``.
    """
    from pycocotools.coco import COCO

    split = resolve_split(split, year)
    ann_file = root / "annotations" / f"instances_{split}.json"
    img_dir = root / split
    if not ann_file.is_file():
        raise MissingAnnotationError(f"coco: annotation file {ann_file} not found (expected layout: {LAYOUT})")
    if not img_dir.is_dir():
        raise MissingAnnotationError(f"coco: image directory {img_dir} not found (expected layout: {LAYOUT})")
    try:
        coco = _quiet_coco(COCO, ann_file)
    except (ValueError, KeyError) as e:
        raise AnnotationFormatError(f"coco: {ann_file} is not a COCO instances file ({e})") from e
    cat_ids = sorted(coco.getCatIds())
    names = [coco.cats[c]["name"] for c in cat_ids]
    index = {c: i for i, c in enumerate(cat_ids)}
    for ann in coco.dataset.get("annotations", []):
        if ann["category_id"] not in index:
            raise LabelOutOfRangeError(
                f"coco: annotation {ann.get('id')} of image {ann['image_id']} has category_id {ann['category_id']}, "
                f"which is not among the {len(cat_ids)} categories of {ann_file.name} ({cat_ids[:5]}...)"
            )
        if "bbox" not in ann:
            raise AnnotationFormatError(f"coco: annotation {ann.get('id')} of image {ann['image_id']} has no bbox")
    # Every file name is checked before anything is read: an absolute path or '..' is refused, never opened.
    paths = {
        img_id: safe_join(img_dir, str(info["file_name"]), f"coco image {img_id} ({ann_file.name})")
        for img_id, info in coco.imgs.items()
    }
    report = LoadReport("coco", split)
    key = fingerprint(
        "coco", str(root.resolve()), split, masks, drop_empty, check_images, files=[ann_file], images=paths.values()
    )
    rows = _rows(coco, paths, index, masks, drop_empty, check_images, report)
    return build(rows, names, report, key, multi_label=True, with_mask=masks, cache_dir=cache_dir)


def _quiet_coco(cls: Any, ann_file: Path) -> Any:
    """``COCO(ann_file)`` without its progress prints on stdout."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return cls(str(ann_file))


def _rows(
    coco: Any,
    paths: dict[int, Path],
    index: dict[int, int],
    masks: bool,
    drop_empty: bool,
    check_images: str,
    report: LoadReport,
) -> Iterator[dict[str, Any]]:
    for img_id in sorted(coco.imgs):
        info = coco.imgs[img_id]
        anns = coco.imgToAnns.get(img_id, [])
        if drop_empty and not anns:
            report.skip(str(img_id), "no_annotations")
            continue
        path = paths[img_id]
        found = check_image(path, check_images)
        if isinstance(found, str):
            report.skip(str(img_id), found)
            continue
        w, h = int(info["width"]), int(info["height"])
        if found.width and (found.width, found.height) != (w, h):
            report.skip(str(img_id), "size_mismatch")
            continue
        xyxy = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        boxes, kept = clean_boxes(xyxy, w, h, report)
        box_labels = [index[anns[i]["category_id"]] for i in kept]
        labels = np.zeros(len(index), dtype=np.uint8)
        labels[[index[a["category_id"]] for a in anns]] = 1  # every annotation names a present category
        row = {
            "id": str(img_id),
            "image": image_value(path, found, report),
            "labels": labels.tolist(),
            "boxes": boxes,
            "box_labels": box_labels,
        }
        if masks:
            row["mask"] = [encode_mask(_instance_mask(coco, anns[i], boxes[j], report)) for j, i in enumerate(kept)]
        yield row


def _instance_mask(coco: Any, ann: dict[str, Any], box: list[float], report: LoadReport) -> np.ndarray:
    """``coco.annToMask(ann)``; an annotation without a segmentation (absent or empty) gets its clipped box as mask,
    counted in ``report.converted["mask_from_box"]``."""
    if ann.get("segmentation"):
        return coco.annToMask(ann)
    report.converted["mask_from_box"] += 1
    if len(report.examples) < 5:
        report.examples.append((f"annotation {ann.get('id')}", "mask_from_box"))
    info = coco.imgs[ann["image_id"]]
    mask = np.zeros((int(info["height"]), int(info["width"])), dtype=np.uint8)
    # Pixel (r, c) is inside when its centre (c + 0.5, r + 0.5) is: the pixels a rasterised rectangle covers.
    x1, y1, x2, y2 = (math.ceil(v - 0.5) for v in box)
    mask[y1:y2, x1:x2] = 1
    return mask


def from_hub(ds: datasets.Dataset, split: str, **kw: Any) -> datasets.Dataset:
    """Convert ``detection-datasets/coco`` (``objects{category, bbox}``, boxes xyxy pixels) to the common schema.

    The box order of that copy is unverified here (no network); a local copy with the official JSON is the
    reference. Masks are not part of that copy.
    """
    import datasets as hfd

    from .convert import COMMON_COLUMNS, check_common, screen_common, screen_images

    if COMMON_COLUMNS <= set(ds.column_names):
        return screen_common(check_common(ds, "coco"), "coco", split)
    if "objects" not in ds.column_names:
        return from_columns(ds, split, dataset="coco", **kw)
    names = ds.features["objects"]["category"].feature.names
    report = LoadReport("coco", split)
    ds = screen_images(ds, report)
    feats = _hub_features(names)

    def fn(objects: dict[str, Any], width: int, height: int, image_id: Any) -> dict[str, Any]:
        boxes, kept = clean_boxes(objects["bbox"], width, height, report)
        labels = np.zeros(len(names), dtype=np.uint8)
        labels[list(objects["category"])] = 1
        return {
            "id": str(image_id),
            "labels": labels.tolist(),
            "boxes": boxes,
            "box_labels": [objects["category"][i] for i in kept],
        }

    out = ds.map(
        fn,
        input_columns=["objects", "width", "height", "image_id"],
        remove_columns=[c for c in ds.column_names if c != "image"],
        features=hfd.Features({"image": ds.features["image"], **{k: v for k, v in feats.items() if k != "image"}}),
    )
    out = out.cast(feats)
    report.images = len(out)
    report.emit()
    return out


def _hub_features(names: list[str]) -> datasets.Features:
    from .schema import make_features

    return make_features(names, multi_label=True)


SPEC = register_dataset(
    DatasetSpec(
        name="coco",
        local=load_local,
        splits=SPLITS,
        hub_ids=("detection-datasets/coco",),
        from_hub=from_hub,
        layout=LAYOUT,
    )
)
