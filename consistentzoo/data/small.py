"""Caltech-101 (SSIM paper) and CIFAR-100 (guided-gradient paper).

Caltech-101 has no official split: ``train`` takes ``train_per_class`` images per class (seeded), ``test`` the
rest, ``all`` everything. Its boxes come from ``Annotations/<class>/annotation_NNNN.mat`` (``box_coord`` =
top, bottom, left, right, 1-based) when that folder is present. CIFAR-100 is read from the official python pickles
with an allow-list unpickler (numpy arrays, lists, dicts, bytes and ints only; a pickle naming anything else is
refused before it runs) and its 32x32 images are stored as PNG bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .convert import from_columns
from .errors import AnnotationFormatError, MissingAnnotationError, UnknownDatasetError
from .matfile import as_list, loadmat
from .pickles import load_restricted
from .registry import DatasetSpec, register_dataset
from .schema import Item, LoadReport, build, check_label, fingerprint, rows_from_items

if TYPE_CHECKING:
    import datasets

CALTECH_LAYOUT = "<root>/101_ObjectCategories/<class>/image_NNNN.jpg [+ <root>/Annotations/<class>/annotation_NNNN.mat]"
# Annotation folders whose names differ from the image folders (as in torchvision's Caltech101).
_CALTECH_ANN_DIRS = {
    "Faces": "Faces_2",
    "Faces_easy": "Faces_3",
    "Motorbikes": "Motorbikes_16",
    "airplanes": "Airplanes_Side_2",
}


def load_caltech101(
    root: Path,
    split: str,
    *,
    train_per_class: int = 30,
    seed: int = 0,
    boxes: bool = True,
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Caltech-101 (101 classes; ``BACKGROUND_Google`` excluded).

    Args:
        root: folder holding ``101_ObjectCategories`` (or ``caltech101/101_ObjectCategories``).
        split: ``train``, ``test`` or ``all``.
        train_per_class: images per class in ``train`` (at most the class size minus one).
        seed: seed of the train/test draw.
        boxes: read the boxes from ``Annotations/`` when present.
        check_images: see :func:`consistentzoo.data.load`.
        cache_dir: see :func:`consistentzoo.data.load`.
    """
    if (root / "caltech101").is_dir():
        root = root / "caltech101"
    cat_dir = root / "101_ObjectCategories"
    if not cat_dir.is_dir():
        raise MissingAnnotationError(f"caltech101: {cat_dir} not found (expected layout: {CALTECH_LAYOUT})")
    names = sorted(d.name for d in cat_dir.iterdir() if d.is_dir() and d.name != "BACKGROUND_Google")
    ann_root = root / "Annotations"
    rng = np.random.default_rng(seed)
    chosen: list[tuple[int, Path]] = []
    for y, name in enumerate(names):
        files = sorted((cat_dir / name).glob("image_*.jpg"))
        if split != "all":
            if train_per_class >= len(files):
                raise ValueError(f"caltech101: class {name!r} has {len(files)} images; train_per_class must be smaller")
            pick = set(rng.permutation(len(files))[:train_per_class].tolist())
            files = [f for i, f in enumerate(files) if (i in pick) == (split == "train")]
        chosen.extend((y, f) for f in files)

    def items() -> Iterator[Item]:
        for y, f in chosen:
            it = Item(f"{names[y]}/{f.stem}", f, y)
            ann = ann_root / _CALTECH_ANN_DIRS.get(names[y], names[y]) / f.name.replace("image_", "annotation_")
            ann = ann.with_suffix(".mat")
            if boxes and ann.is_file():
                top, bottom, left, right = (
                    float(v) for v in as_list(loadmat(ann, "caltech101", CALTECH_LAYOUT)["box_coord"])
                )
                it.boxes, it.box_labels = [[left - 1, top - 1, right, bottom]], [y]
            yield it

    report = LoadReport("caltech101", split)
    key = fingerprint(
        "caltech101",
        str(root.resolve()),
        split,
        train_per_class,
        seed,
        boxes,
        len(chosen),
        check_images,
        images=[f for _, f in chosen],
    )
    return build(rows_from_items(items(), len(names), check_images, report), names, report, key, cache_dir=cache_dir)


CIFAR_LAYOUT = "<root>/cifar-100-python/{train, test, meta} (the official python pickles)"
CIFAR_LABELS = ("fine", "coarse")


def load_cifar100(
    root: Path,
    split: str,
    *,
    label_type: str = "fine",
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """CIFAR-100 from the official ``cifar-100-python`` pickles (``train`` 50000 / ``test`` 10000).

    Args:
        root: folder holding ``cifar-100-python/`` (or that folder itself).
        split: ``train`` or ``test``.
        label_type: ``fine`` (100 classes) or ``coarse`` (20 superclasses).
        check_images: unused (the images are arrays in the pickle); kept for a uniform signature.
        cache_dir: see :func:`consistentzoo.data.load`.
    """
    if label_type not in CIFAR_LABELS:
        raise UnknownDatasetError(label_type, CIFAR_LABELS, kind="CIFAR-100 label_type")
    base = root / "cifar-100-python" if (root / "cifar-100-python").is_dir() else root
    data_file, meta_file = base / split, base / "meta"
    for f in (data_file, meta_file):
        if not f.is_file():
            raise MissingAnnotationError(f"cifar100: {f} not found (expected layout: {CIFAR_LAYOUT})")
    meta, data = _unpickle(meta_file), _unpickle(data_file)
    if f"{label_type}_label_names" not in meta:
        raise AnnotationFormatError(f"cifar100: {meta_file} has no {label_type}_label_names (keys: {sorted(meta)})")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[f"{label_type}_label_names"]]
    try:
        pixels = np.asarray(data["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels, files = list(data[f"{label_type}_labels"]), list(data["filenames"])
    except (KeyError, ValueError) as e:
        raise AnnotationFormatError(f"cifar100: {data_file} is not a CIFAR-100 python pickle ({e})") from e

    def rows() -> Iterator[dict[str, Any]]:
        for img, y, fname in zip(pixels, labels, files, strict=True):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            ident = fname.decode() if isinstance(fname, bytes) else str(fname)
            yield {
                "id": ident,
                "image": {"bytes": buf.getvalue(), "path": None},
                "label": check_label(y, len(names), f"cifar100 {ident}"),
                "boxes": [],
                "box_labels": [],
            }

    report = LoadReport("cifar100", split)
    key = fingerprint("cifar100", str(base.resolve()), split, label_type, files=[data_file, meta_file])
    return build(rows(), names, report, key, cache_dir=cache_dir)


def _unpickle(path: Path) -> dict[str, Any]:
    """One of CIFAR's pickles, read with the allow-list unpickler (numpy arrays only; nothing else is run)."""
    d = load_restricted(path, "cifar100")
    if not isinstance(d, dict):
        raise AnnotationFormatError(f"cifar100: {path} holds a {type(d).__name__}, not the dict of a CIFAR-100 file")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def cifar100_from_hub(ds: datasets.Dataset, split: str, label_type: str = "fine", **kw: Any) -> datasets.Dataset:
    """``uoft-cs/cifar100``: ``img``, ``fine_label``, ``coarse_label``."""
    if label_type not in CIFAR_LABELS:
        raise UnknownDatasetError(label_type, CIFAR_LABELS, kind="CIFAR-100 label_type")
    image = "img" if "img" in ds.column_names else "image"
    return from_columns(ds, split, dataset="cifar100", image=image, label=f"{label_type}_label", **kw)


def caltech101_from_hub(ds: datasets.Dataset, split: str, **kw: Any) -> datasets.Dataset:
    """``flwrlabs/caltech101``: ``image``, ``label`` (schema unverified)."""
    return from_columns(ds, split, dataset="caltech101", **kw)


register_dataset(
    DatasetSpec(
        "caltech101",
        load_caltech101,
        ("train", "test", "all"),
        ("flwrlabs/caltech101",),
        caltech101_from_hub,
        CALTECH_LAYOUT,
        aliases=("caltech_101",),
    )
)
register_dataset(
    DatasetSpec(
        "cifar100",
        load_cifar100,
        ("train", "test"),
        ("uoft-cs/cifar100",),
        cifar100_from_hub,
        CIFAR_LAYOUT,
        aliases=("cifar_100",),
    )
)
