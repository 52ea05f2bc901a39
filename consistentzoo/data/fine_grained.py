"""Fine-grained datasets of the CGC paper: CUB-200-2011, Stanford Cars-196, FGVC-Aircraft, Oxford Flowers-102.

Boxes follow each dataset's own convention on the way in: CUB's ``x y width height`` (0-based), Cars' and
Aircraft's 1-based inclusive pixel corners (converted to ``[x1 - 1, y1 - 1, x2, y2]``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .convert import from_columns
from .errors import AnnotationFormatError, MissingAnnotationError, UnknownDatasetError
from .matfile import as_list, field, loadmat
from .registry import DatasetSpec, register_dataset
from .schema import Item, LoadReport, build, fingerprint, rows_from_items, safe_join

if TYPE_CHECKING:
    import datasets


def _need(path: Path, dataset: str, layout: str) -> Path:
    if not path.exists():
        raise MissingAnnotationError(f"{dataset}: {path} not found (expected layout: {layout})")
    return path


def _floats(row: list[str], path: Path, dataset: str) -> list[float]:
    try:
        return [float(v) for v in row]
    except ValueError as e:
        raise AnnotationFormatError(f"{dataset}: {path.name} has a non-numeric box field ({e})") from e


def _table(path: Path, dataset: str, layout: str, ncols: int) -> list[list[str]]:
    """Whitespace-separated rows; the last column keeps its spaces (Aircraft names such as ``'Boeing 707'``)."""
    rows = []
    for n, line in enumerate(_need(path, dataset, layout).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=ncols - 1)
        if len(parts) != ncols:
            raise AnnotationFormatError(f"{dataset}: {path.name} line {n} has {len(parts)} fields, expected {ncols}")
        rows.append(parts)
    return rows


# --- CUB-200-2011 -------------------------------------------------------------------------------------------------

CUB_LAYOUT = (
    "<root>/{images.txt, classes.txt, image_class_labels.txt, train_test_split.txt, bounding_boxes.txt, "
    "images/<class>/*.jpg} (root may also be the folder containing CUB_200_2011/); optional "
    "segmentations/<class>/*.png beside or inside it"
)


def load_cub200(
    root: Path,
    split: str,
    *,
    masks: bool | None = None,
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """CUB-200-2011 from its official archive (``train`` 5994 / ``test`` 5794 images, one box each).

    Args:
        root: the ``CUB_200_2011`` folder or its parent.
        split: ``train`` or ``test``.
        masks: add the ``mask`` column from the segmentations archive (binarised at 50 % agreement); None adds it
            when a ``segmentations/`` folder is found.
        check_images: see :func:`consistentzoo.data.load`.
        cache_dir: see :func:`consistentzoo.data.load`.
    """
    if (root / "CUB_200_2011").is_dir():
        root = root / "CUB_200_2011"
    seg = next((d for d in (root / "segmentations", root.parent / "segmentations") if d.is_dir()), None)
    if masks and seg is None:
        raise MissingAnnotationError(f"cub200: masks=True but no segmentations/ folder beside {root}")
    masks = bool(seg is not None if masks is None else masks)
    files = {k: root / f"{k}.txt" for k in ("images", "classes", "image_class_labels", "train_test_split")}
    files["bounding_boxes"] = root / "bounding_boxes.txt"
    t = {k: _table(p, "cub200", CUB_LAYOUT, 5 if k == "bounding_boxes" else 2) for k, p in files.items()}
    names = [n for _, n in sorted(t["classes"], key=lambda r: int(r[0]))]
    labels = {i: int(c) - 1 for i, c in t["image_class_labels"]}
    is_train = {i: s.strip() == "1" for i, s in t["train_test_split"]}
    boxes = {r[0]: _floats(r[1:], files["bounding_boxes"], "cub200") for r in t["bounding_boxes"]}
    want_train = split == "train"
    paths = {
        img_id: safe_join(root / "images", rel, f"cub200 image {img_id} (images.txt)") for img_id, rel in t["images"]
    }
    mask_of = (
        {i: seg / p.relative_to(root / "images").with_suffix(".png") for i, p in paths.items()} if masks and seg else {}
    )

    def items() -> Iterator[Item]:
        for img_id, _ in t["images"]:
            if img_id not in labels or img_id not in is_train:
                raise AnnotationFormatError(f"cub200: image {img_id} lacks a class or a split entry")
            if is_train[img_id] != want_train:
                continue
            x, y, w, h = boxes.get(img_id, (0.0, 0.0, 0.0, 0.0))
            mask = [mask_of[img_id]] if img_id in mask_of else None
            yield Item(img_id, paths[img_id], labels[img_id], [[x, y, x + w, y + h]], [labels[img_id]], None, mask)

    report = LoadReport("cub200", split)
    key = fingerprint(
        "cub200",
        str(root.resolve()),
        split,
        masks,
        check_images,
        files=files.values(),
        images=[*paths.values(), *mask_of.values()],
    )
    rows = rows_from_items(items(), len(names), check_images, report, with_mask=masks)
    return build(rows, names, report, key, with_mask=masks, cache_dir=cache_dir)


def cub200_from_hub(ds: datasets.Dataset, split: str, **kw: Any) -> datasets.Dataset:
    """``bentrevett/caltech-ucsd-birds-200-2011``: ``image``, ``label``, ``bbox`` (CUB's x, y, w, h; unverified)."""
    bbox = "bbox" if "bbox" in ds.column_names else None
    return from_columns(ds, split, dataset="cub200", bbox=bbox, bbox_format="xywh", **kw)


# --- Stanford Cars-196 --------------------------------------------------------------------------------------------

CARS_LAYOUT = (
    "<root>/devkit/{cars_meta.mat, cars_train_annos.mat}, <root>/cars_test_annos_withlabels.mat (or in devkit/), "
    "<root>/cars_train/*.jpg, <root>/cars_test/*.jpg; or <root>/cars_annos.mat + <root>/car_ims/*.jpg"
)


def load_stanford_cars(
    root: Path,
    split: str,
    *,
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Stanford Cars-196 (``train`` 8144 / ``test`` 8041 images, one box each) from the devkit ``.mat`` files.

    Args:
        root: folder holding ``devkit/`` and ``cars_train/``, ``cars_test/`` (torchvision's layout), or
            ``cars_annos.mat`` and ``car_ims/`` (the all-in-one release).
        split: ``train`` or ``test``.
        check_images: see :func:`consistentzoo.data.load`.
        cache_dir: see :func:`consistentzoo.data.load`.
    """
    all_in_one = root / "cars_annos.mat"
    if all_in_one.is_file():
        mat = loadmat(all_in_one, "stanford_cars", CARS_LAYOUT)
        names = [str(n) for n in as_list(mat["class_names"])]
        anns = [
            a
            for a in as_list(mat["annotations"])
            if bool(field(a, "test", all_in_one, "stanford_cars")) == (split == "test")
        ]
        files = [all_in_one]
        path_of = lambda a: safe_join(root, str(a.relative_im_path), "stanford_cars: cars_annos.mat")  # noqa: E731
    else:
        meta = _need(root / "devkit" / "cars_meta.mat", "stanford_cars", CARS_LAYOUT)
        if split == "train":
            ann = root / "devkit" / "cars_train_annos.mat"
        else:
            ann = next(
                (
                    p
                    for p in (
                        root / "cars_test_annos_withlabels.mat",
                        root / "devkit" / "cars_test_annos_withlabels.mat",
                    )
                    if p.is_file()
                ),
                root / "cars_test_annos_withlabels.mat",
            )
        names = [str(n) for n in as_list(loadmat(meta, "stanford_cars", CARS_LAYOUT)["class_names"])]
        anns = as_list(loadmat(ann, "stanford_cars", CARS_LAYOUT)["annotations"])
        files = [meta, ann]
        img_dir = root / f"cars_{split}"
        path_of = lambda a: safe_join(img_dir, str(a.fname), f"stanford_cars: {ann.name}")  # noqa: E731

    paths = [path_of(a) for a in anns]

    def items() -> Iterator[Item]:
        for a, p in zip(anns, paths, strict=True):
            y = int(field(a, "class", files[-1], "stanford_cars")) - 1
            x1, y1, x2, y2 = (float(getattr(a, f"bbox_{k}")) for k in ("x1", "y1", "x2", "y2"))
            yield Item(p.stem, p, y, [[x1 - 1, y1 - 1, x2, y2]], [y])

    report = LoadReport("stanford_cars", split)
    key = fingerprint("stanford_cars", str(root.resolve()), split, check_images, files=files, images=paths)
    return build(rows_from_items(items(), len(names), check_images, report), names, report, key, cache_dir=cache_dir)


# --- FGVC-Aircraft ------------------------------------------------------------------------------------------------

AIRCRAFT_LAYOUT = (
    "<root>/data/{images/*.jpg, images_<level>_<split>.txt, <level>s.txt, images_box.txt} "
    "(root = fgvc-aircraft-2013b or its data/ folder)"
)
AIRCRAFT_LEVELS = ("variant", "family", "manufacturer")


def load_fgvc_aircraft(
    root: Path,
    split: str,
    *,
    level: str = "variant",
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """FGVC-Aircraft 2013b with its boxes; 100 variants by default, as the papers.

    Args:
        root: ``fgvc-aircraft-2013b`` or its ``data`` folder.
        split: ``train``, ``val``, ``trainval`` or ``test``.
        level: ``variant`` (100 classes), ``family`` (70) or ``manufacturer`` (30).
        check_images: see :func:`consistentzoo.data.load`.
        cache_dir: see :func:`consistentzoo.data.load`.
    """
    if level not in AIRCRAFT_LEVELS:
        raise UnknownDatasetError(level, AIRCRAFT_LEVELS, kind="FGVC-Aircraft level")
    data = root / "data" if (root / "data").is_dir() else root
    names_file = data / f"{level}s.txt" if level != "family" else data / "families.txt"
    split_file, box_file = data / f"images_{level}_{split}.txt", data / "images_box.txt"
    names = [
        ln.strip() for ln in _need(names_file, "fgvc_aircraft", AIRCRAFT_LAYOUT).read_text().splitlines() if ln.strip()
    ]
    index = {n: i for i, n in enumerate(names)}
    boxes = {
        r[0]: _floats(r[1:], box_file, "fgvc_aircraft") for r in _table(box_file, "fgvc_aircraft", AIRCRAFT_LAYOUT, 5)
    }
    entries = _table(split_file, "fgvc_aircraft", AIRCRAFT_LAYOUT, 2)
    paths = {
        i: safe_join(data / "images", f"{i}.jpg", f"fgvc_aircraft image {i} ({split_file.name})") for i, _ in entries
    }

    def items() -> Iterator[Item]:
        for img_id, name in entries:
            if name not in index:
                raise AnnotationFormatError(
                    f"fgvc_aircraft: {split_file.name} names {level} {name!r} (image {img_id}), "
                    f"not in {names_file.name}"
                )
            y = index[name]
            if img_id in boxes:
                x1, y1, x2, y2 = boxes[img_id]
                yield Item(img_id, paths[img_id], y, [[x1 - 1, y1 - 1, x2, y2]], [y])
            else:
                yield Item(img_id, paths[img_id], y)

    report = LoadReport("fgvc_aircraft", split)
    key = fingerprint(
        "fgvc_aircraft",
        str(data.resolve()),
        split,
        level,
        check_images,
        files=[names_file, split_file, box_file],
        images=paths.values(),
    )
    return build(rows_from_items(items(), len(names), check_images, report), names, report, key, cache_dir=cache_dir)


def aircraft_from_hub(ds: datasets.Dataset, split: str, level: str = "variant", **kw: Any) -> datasets.Dataset:
    """``HuggingFaceM4/FGVC-Aircraft``: ``image``, ``bbox{ymin, xmin, ymax, xmax}``, ``variant`` / ``family`` / ..."""
    if level not in AIRCRAFT_LEVELS:
        raise UnknownDatasetError(level, AIRCRAFT_LEVELS, kind="FGVC-Aircraft level")
    bbox = "bbox" if "bbox" in ds.column_names else None
    return from_columns(ds, split, dataset="fgvc_aircraft", label=level, bbox=bbox, bbox_format="ymin_xmin_dict", **kw)


# --- Oxford Flowers-102 -------------------------------------------------------------------------------------------

FLOWERS_LAYOUT = "<root>/{jpg/image_00001.jpg..., imagelabels.mat, setid.mat}"
FLOWERS_SPLITS = {"train": "trnid", "val": "valid", "validation": "valid", "test": "tstid"}


def load_flowers102(
    root: Path,
    split: str,
    *,
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Oxford Flowers-102 (``train`` 1020 / ``val`` 1020 / ``test`` 6149 images; no boxes).

    Class names are not part of the official files; they are ``"1"`` .. ``"102"``, the official label numbers.
    """
    labels_file, setid_file = root / "imagelabels.mat", root / "setid.mat"
    labels = [int(v) - 1 for v in as_list(loadmat(labels_file, "flowers102", FLOWERS_LAYOUT)["labels"])]
    setid = loadmat(setid_file, "flowers102", FLOWERS_LAYOUT)
    ids = [int(v) for v in as_list(setid[FLOWERS_SPLITS[split]])]
    names = [str(i) for i in range(1, 103)]
    images = [root / "jpg" / f"image_{i:05d}.jpg" for i in ids]

    def items() -> Iterator[Item]:
        for i, path in zip(ids, images, strict=True):
            if not 1 <= i <= len(labels):
                raise AnnotationFormatError(f"flowers102: setid.mat names image {i}; imagelabels.mat has {len(labels)}")
            yield Item(path.stem, path, labels[i - 1])

    report = LoadReport("flowers102", split)
    key = fingerprint(
        "flowers102", str(root.resolve()), split, check_images, files=[labels_file, setid_file], images=images
    )
    return build(rows_from_items(items(), len(names), check_images, report), names, report, key, cache_dir=cache_dir)


def _labels_only(dataset: str) -> Any:
    def convert(ds: datasets.Dataset, split: str, **kw: Any) -> datasets.Dataset:
        return from_columns(ds, split, dataset=dataset, **kw)

    return convert


register_dataset(
    DatasetSpec(
        "cub200",
        load_cub200,
        ("train", "test"),
        ("bentrevett/caltech-ucsd-birds-200-2011",),
        cub200_from_hub,
        CUB_LAYOUT,
        aliases=("cub", "cub_200_2011"),
    )
)
register_dataset(
    DatasetSpec(
        "stanford_cars",
        load_stanford_cars,
        ("train", "test"),
        ("tanganke/stanford_cars",),
        _labels_only("stanford_cars"),
        CARS_LAYOUT,
        aliases=("cars", "cars196"),
    )
)
register_dataset(
    DatasetSpec(
        "fgvc_aircraft",
        load_fgvc_aircraft,
        ("train", "val", "trainval", "test"),
        ("HuggingFaceM4/FGVC-Aircraft",),
        aircraft_from_hub,
        AIRCRAFT_LAYOUT,
        aliases=("aircraft",),
    )
)
register_dataset(
    DatasetSpec(
        "flowers102",
        load_flowers102,
        tuple(FLOWERS_SPLITS),
        ("dpdl-benchmark/oxford_flowers102", "nelorth/oxford-flowers"),
        _labels_only("flowers102"),
        FLOWERS_LAYOUT,
        aliases=("oxford_flowers102", "flowers"),
    )
)
