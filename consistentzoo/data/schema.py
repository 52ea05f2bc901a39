"""The common schema every loader returns, and the checks applied to each sample on the way in.

Columns of every dataset:

- ``id`` (string): the image's identifier in its source (file stem, COCO image id, ...).
- ``image`` (``datasets.Image(mode="RGB")``): stored as a path for local files, so nothing is decoded at load time;
  grayscale, CMYK and RGBA images are converted to RGB when decoded (alpha is dropped, not composited); 16-bit
  images are stored scaled to 8-bit RGB PNG bytes (``datasets.Image`` would clip them to white). Images are
  checked at load time by :func:`consistentzoo.data.images.probe_image` (size, side ratio, readability).
- ``label`` (``ClassLabel``) for single-label datasets, or ``labels`` (multi-hot ``uint8`` list, one entry per
  class) for multi-label datasets (COCO, UnRel).
- ``boxes`` (list of ``[x1, y1, x2, y2]`` float32): pixels of the stored image, 0-based, continuous coordinates
  (a box covering pixel columns 0..9 is ``[0, ., 10, .]``); clipped to the image. Empty where a dataset has none.
- ``box_labels`` (list of ``ClassLabel``): the class of each box, same order as ``boxes``.
- ``mask`` (optional, list of ``datasets.Image``): one binary mask (mode ``L``, 0/255) per box, same order as
  ``boxes`` -- per *instance*, never merged. The union for a class is ``any(mask[i] for box_labels[i] == c)``.
  Masks are PNG-compressed in the Arrow file and decoded only when a row is read.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from .errors import BadImageError, DataQualityWarning, LabelOutOfRangeError, UnknownDatasetError, UnsafePathError
from .images import ImageInfo, open_image, probe_image, to_png_bytes

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

ImageCheck = Literal["none", "header", "full"]
IMAGE_CHECKS: tuple[str, ...] = ("none", "header", "full")
_SCHEMA_VERSION = "2"  # bump when the stored columns change, so cached Arrow files are rebuilt


def make_features(names: Sequence[str], multi_label: bool = False, with_mask: bool = False) -> datasets.Features:
    """The ``datasets.Features`` of the common schema.

    Args:
        names: class names, in label-index order.
        multi_label: ``labels`` (multi-hot) instead of ``label``.
        with_mask: add the per-instance ``mask`` column.

    Returns:
        The features, in column order ``id, image, label|labels, boxes, box_labels[, mask]``.
    """
    import datasets

    class_label = datasets.ClassLabel(names=list(names))
    cols: dict[str, Any] = {"id": datasets.Value("string"), "image": datasets.Image(mode="RGB")}
    if multi_label:
        cols["labels"] = datasets.List(datasets.Value("uint8"), length=len(names))
    else:
        cols["label"] = class_label
    cols["boxes"] = datasets.List(datasets.List(datasets.Value("float32"), length=4))
    cols["box_labels"] = datasets.List(class_label)
    if with_mask:
        cols["mask"] = datasets.List(datasets.Image())
    return datasets.Features(cols)


def class_names(ds: datasets.Dataset) -> list[str]:
    """Class names of a dataset in the common schema (from ``label`` or ``box_labels``)."""
    feats = ds.features
    if "label" in feats:
        return list(feats["label"].names)
    return list(feats["box_labels"].feature.names)


@dataclass
class LoadReport:
    """What was skipped, dropped or changed while converting a dataset to the common schema.

    Attributes:
        dataset: dataset name.
        split: split name.
        images: samples written.
        skipped: skipped samples per reason (``missing_file``, ``corrupt_image``, ``truncated_image``, ...).
        clipped_boxes: boxes that crossed the image border and were clipped to it.
        dropped_boxes: boxes dropped per reason (``zero_area``, ``outside_image``, ``invalid``).
        converted: samples or annotations kept after a conversion, per reason (``16bit_to_8bit``: a 16-bit image
            stored scaled to 8 bits; ``mask_from_box``: an annotation without a segmentation whose mask is its box).
        examples: a few ``(id, reason)`` pairs, for the warning message.
    """

    dataset: str
    split: str
    images: int = 0
    skipped: Counter = field(default_factory=Counter)
    clipped_boxes: int = 0
    dropped_boxes: Counter = field(default_factory=Counter)
    converted: Counter = field(default_factory=Counter)
    examples: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, sample_id: str, reason: str) -> None:
        """Count one skipped sample."""
        self.skipped[reason] += 1
        if len(self.examples) < 5:
            self.examples.append((sample_id, reason))

    @property
    def num_skipped(self) -> int:
        """Total skipped samples."""
        return sum(self.skipped.values())

    @property
    def num_dropped_boxes(self) -> int:
        """Total dropped boxes."""
        return sum(self.dropped_boxes.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "images": self.images,
            "skipped": dict(self.skipped),
            "clipped_boxes": self.clipped_boxes,
            "dropped_boxes": dict(self.dropped_boxes),
            "converted": dict(self.converted),
            "examples": [list(e) for e in self.examples],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadReport:
        """Inverse of :meth:`to_dict`."""
        return cls(
            dataset=d["dataset"],
            split=d["split"],
            images=d["images"],
            skipped=Counter(d["skipped"]),
            clipped_boxes=d["clipped_boxes"],
            dropped_boxes=Counter(d["dropped_boxes"]),
            converted=Counter(d.get("converted", {})),
            examples=[tuple(e) for e in d["examples"]],
        )

    def emit(self) -> None:
        """Warn (``DataQualityWarning``) if anything was skipped, dropped or clipped; log a summary otherwise."""
        if not (self.num_skipped or self.num_dropped_boxes or self.clipped_boxes or self.converted):
            logger.info("%s/%s: %d samples, nothing skipped", self.dataset, self.split, self.images)
            return
        parts = []
        if self.num_skipped:
            parts.append(f"skipped {self.num_skipped} samples {dict(self.skipped)}")
        if self.num_dropped_boxes:
            parts.append(f"dropped {self.num_dropped_boxes} boxes {dict(self.dropped_boxes)}")
        if self.clipped_boxes:
            parts.append(f"clipped {self.clipped_boxes} boxes to the image")
        if self.converted:
            parts.append(f"converted {dict(self.converted)}")
        ex = "; e.g. " + ", ".join(f"{i} ({r})" for i, r in self.examples) if self.examples else ""
        msg = f"{self.dataset}/{self.split}: kept {self.images} samples; " + "; ".join(parts) + ex
        warnings.warn(DataQualityWarning(msg, self), stacklevel=3)


def check_label(label: int, num_classes: int, where: str) -> int:
    """Return ``label`` if ``0 <= label < num_classes``, else raise ``LabelOutOfRangeError`` naming ``where``."""
    if not 0 <= int(label) < num_classes:
        raise LabelOutOfRangeError(
            f"{where}: class index {label} is out of range; this dataset has {num_classes} classes "
            f"(valid indices 0..{num_classes - 1}). Check that the annotation files belong to the same release."
        )
    return int(label)


def clean_boxes(
    boxes: Iterable[Sequence[float]],
    width: int,
    height: int,
    report: LoadReport,
) -> tuple[list[list[float]], list[int]]:
    """Clip xyxy boxes to the image and drop those left without area.

    Args:
        boxes: xyxy boxes in pixels.
        width: image width.
        height: image height.
        report: counts clipped and dropped boxes.

    Returns:
        The kept boxes (float) and the indices (into ``boxes``) they came from.
    """
    kept: list[list[float]] = []
    index: list[int] = []
    for i, b in enumerate(boxes):
        x1, y1, x2, y2 = (float(v) for v in b)
        if not np.all(np.isfinite([x1, y1, x2, y2])) or x2 < x1 or y2 < y1:
            report.dropped_boxes["invalid"] += 1
            continue
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            report.dropped_boxes["zero_area"] += 1
            continue
        c = [min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height)]
        if c[2] - c[0] <= 0 or c[3] - c[1] <= 0:
            report.dropped_boxes["outside_image"] += 1
            continue
        if c != [x1, y1, x2, y2]:
            report.clipped_boxes += 1
        kept.append(c)
        index.append(i)
    return kept, index


def check_image(path: str | os.PathLike, level: ImageCheck = "header") -> ImageInfo | str:
    """Check an image file as the loaders do and return what its header says, or why it is unusable.

    Args:
        path: image file.
        level: ``"none"`` (only that the file exists; returns a zero size), ``"header"`` (Pillow parses the header
            and its size and side ratio are bounded, see :func:`consistentzoo.data.images.probe_image`; for
            JPEG/PNG the end-of-image marker must be present, which catches truncated downloads cheaply), or
            ``"full"`` (decode every pixel).

    Returns:
        The displayed size (after EXIF rotation), mode and format, or a reason string: ``missing_file``,
        ``corrupt_image``, ``truncated_image``, ``too_large``, ``extreme_aspect``.
    """
    if level not in IMAGE_CHECKS:
        raise UnknownDatasetError(level, IMAGE_CHECKS, kind="image check level")
    p = Path(path)
    if not p.is_file():
        return "missing_file"
    if level == "none":
        return ImageInfo(0, 0, "", None)
    try:
        info = probe_image(p, decode=level == "full")
    except BadImageError as e:
        return e.reason
    if level == "header" and not _has_end_marker(p, info.format):
        return "truncated_image"
    return info


def _has_end_marker(path: Path, fmt: str | None) -> bool:
    if fmt not in ("JPEG", "PNG"):
        return True
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64))
        tail = f.read()
    if fmt == "JPEG":
        # Some encoders pad after EOI; search the last bytes rather than require it at the very end.
        return b"\xff\xd9" in tail
    return b"IEND" in tail


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """A binary ``[H, W]`` mask as the PNG-bytes dict a ``datasets.Image`` column stores (mode ``L``, 0/255)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, mode="L").save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def fingerprint(*parts: Any, files: Iterable[str | os.PathLike] = (), images: Iterable[str | os.PathLike] = ()) -> str:
    """A stable hash of loader arguments plus the size and mtime of the given files.

    Args:
        parts: loader arguments that change the rows.
        files: annotation files (must exist).
        images: image files; a missing one hashes as missing, so that a fixed, replaced, emptied or deleted image
            changes the key and the cached rows (which depend on each image's check) are rebuilt.
    """
    h = hashlib.sha256(_SCHEMA_VERSION.encode())
    for p in parts:
        h.update(repr(p).encode())
    for f in files:
        st = Path(f).stat()
        h.update(f"{Path(f).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    for f in images:
        try:
            st = os.stat(f)
            h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}:missing\n".encode())
    return h.hexdigest()[:16]


def safe_join(root: Path, name: str, where: str) -> Path:
    """``root / name`` for a file name read from an annotation file, refusing names that leave ``root``.

    Args:
        root: the dataset folder the name is relative to.
        name: the annotation's file name (``/`` or ``\\`` separated).
        where: the annotation, for the message (``"coco image 42 (instances_val2017.json)"``).

    Raises:
        UnsafePathError: an empty name, an absolute path, a drive letter, or any ``..`` component. Checked on the
            name itself, so a symbolic link inside the dataset folder (e.g. to a shared image store) still works.
    """
    text = str(name).replace("\\", "/")
    parts = [q for q in text.split("/") if q not in ("", ".")]
    drive = text[:1].isalpha() and text[1:2] == ":" and text[2:3] in ("", "/")
    if not parts or text.startswith("/") or drive or ".." in parts:
        raise UnsafePathError(
            f"{where}: file name {name!r} is not a relative path inside {root}; refused (absolute paths and '..' "
            "are never read from annotations)"
        )
    return root.joinpath(*parts)


def write_dataset(
    rows: Iterator[dict[str, Any]],
    features: datasets.Features,
    report: LoadReport,
    key: str,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Stream rows into an Arrow file under ``cache_dir`` and memory-map it; reuse it when ``key`` matches.

    The rows are encoded one by one, so memory stays flat whatever the dataset size. The load report is stored
    beside the Arrow file and emitted again when the cached file is reused.

    Args:
        rows: examples in the common schema (images as ``{"path": ...}`` or ``{"bytes": ...}``).
        features: from :func:`make_features`.
        report: filled while ``rows`` is consumed.
        key: fingerprint of everything that determines the rows (see :func:`fingerprint`).
        cache_dir: where the Arrow files live; default ``$HF_DATASETS_CACHE/consistentzoo``.

    Returns:
        The memory-mapped dataset.
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    root = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE) / "consistentzoo"
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{report.dataset}-{report.split}-{key}".replace("/", "_")
    arrow, meta = root / f"{stem}.arrow", root / f"{stem}.report.json"
    if arrow.is_file() and meta.is_file():
        cached = LoadReport.from_dict(json.loads(meta.read_text()))
        report.__dict__.update(cached.__dict__)
    else:
        # Write to a temporary name and rename: two processes (DDP ranks) may build the same file at once.
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".arrow.tmp")
        os.close(fd)
        try:
            with ArrowWriter(features=features, path=tmp) as writer:
                for row in rows:
                    writer.write(features.encode_example(row))
                    report.images += 1
                writer.finalize()
            os.replace(tmp, arrow)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        meta.write_text(json.dumps(report.to_dict()))
    info = datasets.DatasetInfo(features=features, description=json.dumps(report.to_dict()))
    ds = datasets.Dataset.from_file(str(arrow), info=info)
    report.emit()
    return ds


def build(
    rows: Iterator[dict[str, Any]],
    names: Sequence[str],
    report: LoadReport,
    key: str,
    *,
    multi_label: bool = False,
    with_mask: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """:func:`make_features` + :func:`write_dataset`, the last step of every local loader."""
    feats = make_features(names, multi_label=multi_label, with_mask=with_mask)
    return write_dataset(rows, feats, report, key, cache_dir=cache_dir)


@dataclass
class Item:
    """One sample read from a local annotation file, before the image is checked.

    Attributes:
        id: identifier in the source.
        path: image file.
        label: class index (single-label) or None.
        boxes: xyxy pixel boxes.
        box_labels: one class index per box.
        labels: class indices present (multi-label datasets) or None.
        mask_paths: one mask image per box (optional; binarised at 50 %).
    """

    id: str
    path: Path
    label: int | None = None
    boxes: list[list[float]] = field(default_factory=list)
    box_labels: list[int] = field(default_factory=list)
    labels: list[int] | None = None
    mask_paths: list[Path] | None = None


def rows_from_items(
    items: Iterable[Item],
    num_classes: int,
    check_images: str,
    report: LoadReport,
    with_mask: bool = False,
) -> Iterator[dict[str, Any]]:
    """Check each item's image, clip its boxes and yield rows of the common schema.

    Unusable images are skipped and counted in ``report``; out-of-range labels raise ``LabelOutOfRangeError``.
    """
    for it in items:
        if it.label is not None:
            check_label(it.label, num_classes, f"{report.dataset} sample {it.id}")
        for b in it.box_labels:
            check_label(b, num_classes, f"{report.dataset} sample {it.id}")
        level = "header" if it.boxes and check_images == "none" else check_images  # boxes need the size
        info = check_image(it.path, level)
        if isinstance(info, str):
            report.skip(it.id, info)
            continue
        size = (info.width, info.height)
        boxes, kept = clean_boxes(it.boxes, size[0], size[1], report) if it.boxes else ([], [])
        row: dict[str, Any] = {
            "id": it.id,
            "image": image_value(it.path, info, report),
            "boxes": boxes,
            "box_labels": [it.box_labels[i] for i in kept],
        }
        if it.labels is not None:
            hot = np.zeros(num_classes, dtype=np.uint8)
            hot[[check_label(c, num_classes, f"{report.dataset} sample {it.id}") for c in it.labels]] = 1
            row["labels"] = hot.tolist()
        else:
            row["label"] = it.label
        if with_mask:
            row["mask"] = [_read_mask(it.mask_paths[i], size) for i in kept] if it.mask_paths else []
        yield row


def image_value(path: Path, info: ImageInfo, report: LoadReport) -> dict[str, Any]:
    """The ``image`` cell of a checked file: its path, or -- for a 16-bit image, which ``datasets.Image`` would
    decode as white -- the image scaled to 8-bit RGB by :func:`~consistentzoo.data.images.open_image`, as PNG
    bytes (counted as ``converted["16bit_to_8bit"]``)."""
    if not info.needs_rescale:
        return {"path": str(path), "bytes": None}
    report.converted["16bit_to_8bit"] += 1
    return {"path": None, "bytes": to_png_bytes(open_image(path))}


def _read_mask(path: Path, size: tuple[int, int]) -> dict[str, Any]:
    """A mask image (any mode, opened as every image is) binarised at half its range and checked against the image
    size."""
    arr = np.asarray(open_image(path, max_aspect=None).convert("L"))
    if (arr.shape[1], arr.shape[0]) != tuple(size):
        raise ValueError(f"mask {path} has size {arr.shape[::-1]}, its image {size}")
    return encode_mask(arr >= 128)
