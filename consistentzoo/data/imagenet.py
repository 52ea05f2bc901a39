"""ImageNet-1k (ILSVRC 2012): images and labels from the Hub or a local copy; boxes from the official XML / CSV.

No Hub copy carries the localisation boxes, so PG / SPG / CH on ImageNet need the user's ILSVRC files: the per-image
XML (``ILSVRC/Annotations/CLS-LOC/val/ILSVRC2012_val_00000001.xml``) or Kaggle's ``LOC_val_solution.csv``. Box
coordinates are taken as written (``xmin ymin xmax ymax`` pixels). Classes are the 1000 WordNet ids in sorted
order, which is the standard label order; names are the wnids (human-readable names repeat, e.g. two "crane").
"""

from __future__ import annotations

import csv
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .convert import from_columns
from .errors import AnnotationFormatError, LabelOutOfRangeError, MissingAnnotationError
from .registry import DatasetSpec, register_dataset
from .schema import Item, LoadReport, build, clean_boxes, fingerprint, rows_from_items

if TYPE_CHECKING:
    import datasets

LAYOUT = (
    "<root>/ILSVRC/Data/CLS-LOC/{train/<wnid>/*.JPEG, val/*.JPEG} + <root>/LOC_synset_mapping.txt "
    "[+ LOC_val_solution.csv or ILSVRC/Annotations/CLS-LOC/val/*.xml]; or <root>/{train,val}/<wnid>/*.JPEG"
)
SPLITS = ("train", "val", "validation")
IMAGE_EXTS = (".jpeg", ".jpg", ".png")

Boxes = dict[str, list[tuple[str, list[float]]]]  # image stem -> [(wnid, xyxy)]


def read_xml_boxes(folder: Path) -> Boxes:
    """Boxes of every ``*.xml`` (PASCAL-VOC style ILSVRC annotation) under ``folder``, keyed by file stem."""
    out: Boxes = {}
    for f in sorted(folder.rglob("*.xml")):
        try:
            tree = ET.parse(f).getroot()
        except ET.ParseError as e:
            raise AnnotationFormatError(f"imagenet_1k: {f} is not valid XML ({e})") from e
        objs = []
        for obj in tree.iter("object"):
            bb = obj.find("bndbox")
            name = obj.findtext("name")
            if bb is None or name is None:
                raise AnnotationFormatError(f"imagenet_1k: {f} has an <object> without <name> or <bndbox>")
            objs.append((name.strip(), [float(bb.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax")]))
        out[f.stem] = objs
    return out


def read_csv_boxes(path: Path) -> Boxes:
    """Boxes of Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString`` = ``wnid x1 y1 x2 y2 ...``)."""
    out: Boxes = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise AnnotationFormatError(f"imagenet_1k: {path} lacks the ImageId,PredictionString header")
        for row in reader:
            parts = row["PredictionString"].split()
            if len(parts) % 5:
                raise AnnotationFormatError(f"imagenet_1k: {path} row {row['ImageId']}: fields not a multiple of 5")
            out[row["ImageId"]] = [
                (parts[i], [float(v) for v in parts[i + 1 : i + 5]]) for i in range(0, len(parts), 5)
            ]
    return out


def read_boxes(path: Path) -> Boxes:
    """Boxes from a folder of XML files or a ``LOC_val_solution.csv``."""
    if not path.exists():
        raise MissingAnnotationError(f"imagenet_1k: box annotations {path} not found (a folder of XML or a CSV)")
    return read_xml_boxes(path) if path.is_dir() else read_csv_boxes(path)


def _find(root: Path, split: str) -> tuple[Path, Path | None, Path | None]:
    """Image folder, synset mapping and default box annotations of a local copy."""
    split = "val" if split == "validation" else split
    kaggle = root / "ILSVRC" / "Data" / "CLS-LOC" / split
    img_dir = kaggle if kaggle.is_dir() else root / split
    if not img_dir.is_dir():
        raise MissingAnnotationError(f"imagenet_1k: image folder for split {split!r} not found (layout: {LAYOUT})")
    mapping = root / "LOC_synset_mapping.txt"
    boxes = None
    for cand in (root / "ILSVRC" / "Annotations" / "CLS-LOC" / split, root / f"LOC_{split}_solution.csv"):
        if cand.exists():
            boxes = cand
            break
    return img_dir, mapping if mapping.is_file() else None, boxes


def load_local(
    root: Path,
    split: str,
    *,
    boxes: str | os.PathLike | None = None,
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """A local ImageNet-1k copy (Kaggle's ILSVRC layout or ``train/<wnid>``, ``val/<wnid>`` folders).

    Args:
        root: the copy's top folder.
        split: ``train`` or ``val`` (``validation``).
        boxes: XML folder or ``LOC_val_solution.csv``; default the one found in the layout, if any.
        check_images: see :func:`consistentzoo.data.load`.
        cache_dir: see :func:`consistentzoo.data.load`.

    Raises:
        MissingAnnotationError: a flat ``val/`` folder without any box/label annotation to label it.
    """
    img_dir, mapping, found_boxes = _find(root, split)
    box_path = Path(boxes) if boxes is not None else found_boxes
    ann = read_boxes(box_path) if box_path is not None else {}
    if mapping is not None:
        wnids = sorted(line.split(maxsplit=1)[0] for line in mapping.read_text().splitlines() if line.strip())
    else:
        train = img_dir.parent / "train"
        wnids = sorted(d.name for d in (train if train.is_dir() else img_dir).iterdir() if d.is_dir())
    if not wnids:
        raise MissingAnnotationError(f"imagenet_1k: no class list (LOC_synset_mapping.txt or train/<wnid>/) in {root}")
    index = {w: i for i, w in enumerate(wnids)}

    def cls(wnid: str, where: str) -> int:
        if wnid not in index:
            raise LabelOutOfRangeError(f"imagenet_1k: {where} names class {wnid!r}, not among the {len(wnids)} wnids")
        return index[wnid]

    files = sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTS)

    def items() -> Iterator[Item]:
        for p in files:
            objs = ann.get(p.stem, [])
            if p.parent != img_dir:
                y = cls(p.parent.name, str(p))
            elif objs:
                y = cls(objs[0][0], f"annotation of {p.stem}")
            else:
                raise MissingAnnotationError(
                    f"imagenet_1k: {p.name} lies in a flat folder and has no annotation to give its label; "
                    "pass boxes=<XML folder or LOC_val_solution.csv>"
                )
            yield Item(p.stem, p, y, [b for _, b in objs], [cls(w, f"annotation of {p.stem}") for w, _ in objs])

    report = LoadReport("imagenet_1k", split)
    ann_files = [mapping] if mapping else []
    key = fingerprint(
        "imagenet_1k",
        str(root.resolve()),
        split,
        str(box_path),
        len(files),
        check_images,
        files=ann_files,
        images=files,
    )
    return build(rows_from_items(items(), len(wnids), check_images, report), wnids, report, key, cache_dir=cache_dir)


def from_hub(ds: datasets.Dataset, split: str, boxes: str | os.PathLike | None = None, **kw: Any) -> datasets.Dataset:
    """``ILSVRC/imagenet-1k`` (``image``, ``label``) plus, optionally, the user's boxes joined on the file stem.

    Args:
        ds: the Hub dataset.
        split: its split.
        boxes: XML folder or ``LOC_val_solution.csv``; rows are matched by the stored image file name, so a Hub
            copy without file names cannot take boxes (an error, never a guess by row order).
    """
    out = from_columns(ds, split, dataset="imagenet_1k", **kw)
    if boxes is None:
        return out
    ann = read_boxes(Path(boxes))
    names = out.features["label"].names
    index = {w: i for i, w in enumerate(names)}
    report = LoadReport("imagenet_1k", split)

    def attach(ident: str, label: int) -> dict[str, Any]:
        stem = Path(ident).stem
        if not stem.startswith("ILSVRC"):
            raise AnnotationFormatError(
                f"imagenet_1k: Hub row id {ident!r} is not an ILSVRC file name; boxes cannot be matched to it"
            )
        objs = ann.get(stem, [])
        kept, idx = clean_boxes([b for _, b in objs], 1 << 30, 1 << 30, report)
        labs = []
        for i in idx:
            w = objs[i][0]
            if w not in index:
                raise LabelOutOfRangeError(f"imagenet_1k: annotation of {stem} names {w!r}, not a class of the dataset")
            labs.append(index[w])
        return {"boxes": kept, "box_labels": labs}

    return out.map(attach, input_columns=["id", "label"], features=out.features)


register_dataset(
    DatasetSpec(
        "imagenet_1k",
        load_local,
        SPLITS,
        ("ILSVRC/imagenet-1k", "benjamin-paine/imagenet-1k"),
        from_hub,
        LAYOUT,
        aliases=("imagenet", "in1k", "imagenet1k"),
    )
)
