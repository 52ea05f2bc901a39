"""Data folders with bad images, changed files, annotations without masks, 16-bit and rotated photos.

Issue-17 cases covered here ("Images and data folders"):

- one decompression-bomb image (20000 x 20000 PNG) in an ImageFolder aborted the whole load and ``evaluate``: it is
  skipped and counted (``too_large``) like any other bad image; a 100000 x 1 strip likewise (``extreme_aspect``).
- the ImageFolder cache ignored file contents (a fixed image stayed excluded, a file replaced by 0 bytes was kept
  and failed later): the cache key holds each image's size and mtime.
- a COCO annotation without ``segmentation`` -> ``KeyError`` from pycocotools: its box is its mask, counted in
  ``report.converted["mask_from_box"]``.
- 16-bit PNGs were pure white in the loaders; EXIF orientation is applied by the loaders as by ``explain``.
- the same screening (bombs, extreme side ratios, unreadable, 16-bit) for Hub and parquet rows.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from fixtures import data_native as nat
from PIL import Image

from consistentzoo.data import DataQualityWarning, load
from consistentzoo.data.images import open_image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a 20000 x 20000 PNG (written once per module: about 0.5 s)."""
    return nat.bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png").read_bytes()


def _load(*args, **kw):
    """``load`` and the report of its DataQualityWarning (None when nothing was skipped or converted)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = load(*args, **kw)
    reports = [w.message.report for w in rec if issubclass(w.category, DataQualityWarning)]
    return ds, (reports[0] if reports else None)


def _folder(root: Path) -> Path:
    for c in ("cat", "dog"):
        for i in range(2):
            nat.image(root / "train" / c / f"{i}.png", (20, 16), seed=i, fmt="PNG")
    return root


# --- bombs and absurd sizes in a folder ---------------------------------------------------------------------------


def test_bomb_and_strip_in_imagefolder_skipped_and_counted(tmp_path, bomb) -> None:
    root = _folder(tmp_path / "f")
    (root / "train" / "cat" / "bomb.png").write_bytes(bomb)
    nat.strip_png(root / "train" / "dog" / "strip.png")
    for level in ("header", "full"):
        ds, report = _load("imagefolder", "train", root, check_images=level, cache_dir=tmp_path / level)
        assert len(ds) == 4 and "bomb" not in " ".join(ds["id"])
        assert report.skipped == {"too_large": 1, "extreme_aspect": 1}


def test_evaluate_not_aborted_by_a_bomb(tmp_path, bomb) -> None:
    from consistentzoo.metrics.cli import build_parser, run_evaluate

    root = _folder(tmp_path / "f")
    (root / "train" / "dog" / "bomb.png").write_bytes(bomb)
    out = tmp_path / "r.json"
    argv = (
        f"--model resnet18 --pretrained false --num-classes 2 --dataset imagefolder --split train --source {root} "
        f"--cache-dir {tmp_path / 'cache'} --metrics top1 --out {out} --batch-size 4 --cls-size 32 --cls-crop 32 "
        "--no-progress --cpu"
    ).split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run_evaluate(build_parser().parse_args(argv)) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["metric"] == "top1" and row["n"] == 4


# --- the cache follows the files ----------------------------------------------------------------------------------


def test_imagefolder_cache_follows_file_contents(tmp_path) -> None:
    root = _folder(tmp_path / "f")
    broken = root / "train" / "dog" / "broken.png"
    broken.write_bytes(b"not a png")
    cache = tmp_path / "cache"
    ds, report = _load("imagefolder", "train", root, cache_dir=cache)
    assert len(ds) == 4 and report.skipped == {"corrupt_image": 1}

    nat.image(broken, (20, 16), seed=9, fmt="PNG")  # fixed
    ds, report = _load("imagefolder", "train", root, cache_dir=cache)
    assert len(ds) == 5 and report is None and "dog/broken" in ds["id"]

    emptied = root / "train" / "cat" / "0.png"
    emptied.write_bytes(b"")  # replaced by 0 bytes
    ds, report = _load("imagefolder", "train", root, cache_dir=cache)
    assert len(ds) == 4 and "cat/0" not in ds["id"] and report.skipped == {"corrupt_image": 1}
    for row in ds:  # every kept row still decodes
        assert row["image"].size == (20, 16)

    # Same size, new mtime: garbage written over a good image of the same length is seen too.
    victim = root / "train" / "cat" / "1.png"
    size, st = victim.stat().st_size, victim.stat()
    victim.write_bytes(b"\0" * size)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    ds, report = _load("imagefolder", "train", root, cache_dir=cache)
    assert "cat/1" not in ds["id"] and report.skipped == {"corrupt_image": 2}


def test_coco_cache_follows_image_files(tmp_path) -> None:
    root = nat.write_coco(tmp_path / "coco")
    ds, _ = _load("coco", "val2017", root, masks=False, cache_dir=tmp_path / "cache")
    assert ds["id"] == ["1"]
    (root / "val2017" / "a.jpg").write_bytes(b"")
    ds, report = _load("coco", "val2017", root, masks=False, cache_dir=tmp_path / "cache")
    assert len(ds) == 0 and report.skipped == {"corrupt_image": 1}


# --- COCO annotations without a segmentation ----------------------------------------------------------------------


@pytest.mark.parametrize("segmentation", ["absent", "empty"])
def test_coco_annotation_without_segmentation_uses_its_box(tmp_path, segmentation) -> None:
    from pycocotools import mask as mask_utils

    box = [2, 3, 10, 8]
    ann = {"id": 5, "image_id": 1, "category_id": 3, "bbox": box, "area": 80, "iscrowd": 0}
    if segmentation == "empty":
        ann["segmentation"] = []
    root = nat.write_coco(tmp_path / "coco", anns=[ann])
    ds, report = _load("coco", "val2017", root, cache_dir=tmp_path / "cache")
    assert report.converted == {"mask_from_box": 1} and ("annotation 5", "mask_from_box") in report.examples
    got = np.asarray(ds[0]["mask"][0].convert("L")) > 0
    # Oracle: pycocotools' own rasterisation of the box as a rectangle polygon.
    x, y, w, h = box
    rle = mask_utils.merge(mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], 30, 40))
    expected = mask_utils.decode(rle).astype(bool)
    assert got.shape == (30, 40) and np.array_equal(got, expected) and got.sum() == w * h


# --- 16-bit and rotated images through the loaders ----------------------------------------------------------------


def test_16bit_png_in_a_folder_is_grey_not_white(tmp_path) -> None:
    root = _folder(tmp_path / "f")
    nat.png16(root / "train" / "cat" / "deep.png", 32896, (20, 16))
    ds, report = _load("imagefolder", "train", root, cache_dir=tmp_path / "cache")
    (row,) = [r for r in ds if r["id"] == "cat/deep"]
    assert row["image"].mode == "RGB" and np.all(np.asarray(row["image"]) == 128)
    assert report.converted == {"16bit_to_8bit": 1}


def test_exif_rotated_photo_loads_as_explain_opens_it(tmp_path) -> None:
    root = _folder(tmp_path / "f")
    rot = nat.exif_jpeg(root / "train" / "cat" / "rot.jpg", (40, 30), orientation=6)
    ds, _ = _load("imagefolder", "train", root, cache_dir=tmp_path / "cache")
    (row,) = [r for r in ds if r["id"] == "cat/rot"]
    assert row["image"].size == (30, 40)
    assert np.array_equal(np.asarray(row["image"]), np.asarray(open_image(rot)))
    assert Image.open(rot).size == (40, 30)


# --- the same checks on Hub / parquet rows ------------------------------------------------------------------------


def test_hub_and_parquet_rows_screened_like_local_files(tmp_path, bomb) -> None:
    import datasets

    from consistentzoo.data.registry import get_spec

    good = nat.image(tmp_path / "g.png", (20, 16), fmt="PNG").read_bytes()
    rows = {
        "good": good,
        "bomb": bomb,
        "strip": nat.strip_png(tmp_path / "strip.png").read_bytes(),
        "corrupt": b"not an image",
        "empty": b"",
        "deep": nat.png16(tmp_path / "deep.png", 32896, (20, 16)).read_bytes(),
    }
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    hub = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in rows.values()], "label": [0] * len(rows)}, features=feats
    )
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = get_spec("flowers102").from_hub(hub, "train")
    (report,) = [w.message.report for w in rec if issubclass(w.category, DataQualityWarning)]
    assert report.skipped == {"too_large": 1, "extreme_aspect": 1, "corrupt_image": 2}
    assert report.converted == {"16bit_to_8bit": 1}
    assert len(ds) == 2 and [r["image"].size for r in ds] == [(20, 16), (20, 16)]
    assert np.all(np.asarray(ds[1]["image"]) == 128)

    # A parquet file already in the common schema (a ``load`` export) is screened the same way.
    common = ds.cast_column("image", datasets.Image(decode=False)).map(
        lambda v, i: {"image": {"bytes": bomb, "path": None} if i == 0 else v},
        input_columns=["image"],
        with_indices=True,
    )
    common.to_parquet(tmp_path / "x.parquet")
    back, report = _load("parquet", "train", tmp_path / "x.parquet")
    assert len(back) == 1 and report.skipped == {"too_large": 1}
