"""Conversion of Hub (or parquet-exported) datasets to the common schema.

Hub copies of the papers' datasets differ in column names and box conventions (see the table in
:mod:`consistentzoo.data`); each loader calls :func:`from_columns` with its dataset's conventions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from .errors import AnnotationFormatError, BadImageError, UnknownDatasetError
from .images import open_image, probe_image, to_png_bytes
from .schema import LoadReport, check_label, clean_boxes, make_features

if TYPE_CHECKING:
    import datasets

BoxFormat = Literal["xyxy", "xywh", "yxyx_norm", "ymin_xmin_dict"]
BOX_FORMATS: tuple[str, ...] = ("xyxy", "xywh", "yxyx_norm", "ymin_xmin_dict")
COMMON_COLUMNS = frozenset({"id", "image", "boxes", "box_labels"})


def _to_xyxy(box: Any, fmt: str, width: int, height: int) -> list[float]:
    if fmt == "ymin_xmin_dict":
        return [float(box["xmin"]), float(box["ymin"]), float(box["xmax"]), float(box["ymax"])]
    b = [float(v) for v in box]
    if len(b) != 4:
        raise AnnotationFormatError(f"a box must have 4 numbers, got {box!r}")
    if fmt == "xywh":
        return [b[0], b[1], b[0] + b[2], b[1] + b[3]]
    if fmt == "yxyx_norm":
        return [b[1] * width, b[0] * height, b[3] * width, b[2] * height]
    return b


def from_columns(
    ds: datasets.Dataset,
    split: str,
    *,
    dataset: str,
    image: str = "image",
    label: str = "label",
    names: Sequence[str] | None = None,
    bbox: str | None = None,
    bbox_format: str = "xyxy",
    id_column: str | None = None,
) -> datasets.Dataset:
    """Convert a single-label dataset with one optional box per image to the common schema.

    A dataset that already has the common columns (a parquet export of :func:`consistentzoo.data.load`) is
    only checked (column types, then every image as in :func:`screen_images`).

    Args:
        ds: the Hub dataset.
        split: split name (for the report).
        dataset: registry name (for messages).
        image: name of the image column (``img`` on CIFAR-100).
        label: name of the integer / ``ClassLabel`` label column.
        names: class names; default the ``ClassLabel`` names of ``label``.
        bbox: name of the box column, None if the dataset has no boxes.
        bbox_format: ``xyxy`` / ``xywh`` pixels, ``yxyx_norm`` (TFDS: normalised ymin, xmin, ymax, xmax) or
            ``ymin_xmin_dict`` (``{"ymin", "xmin", "ymax", "xmax"}`` pixels).
        id_column: column holding an identifier; default the image file name if stored, else the row index.

    Returns:
        The converted dataset (images are not decoded; only 16-bit ones are re-encoded, see :func:`screen_images`).
    """
    import datasets

    if COMMON_COLUMNS <= set(ds.column_names):
        return screen_common(check_common(ds, dataset), dataset, split)
    if bbox_format not in BOX_FORMATS:
        raise UnknownDatasetError(bbox_format, BOX_FORMATS, kind="box format")
    missing = [c for c in (image, label, bbox, id_column) if c is not None and c not in ds.column_names]
    if missing:
        raise AnnotationFormatError(
            f"{dataset}: columns {missing} not found in the Hub dataset; it has {ds.column_names}. "
            "Pass a source with the documented schema or a local copy in the official layout."
        )
    feat = ds.features[label]
    if names is None:
        if not isinstance(feat, datasets.ClassLabel):
            raise AnnotationFormatError(f"{dataset}: column {label!r} is not a ClassLabel; class names are needed")
        names = feat.names
    names = list(names)
    report = LoadReport(dataset, split)
    ds = screen_images(ds, report, image).cast_column(image, datasets.Image(decode=False))

    def convert(img: dict[str, Any], lab: Any, box: Any = None, ident: Any = None, idx: int = 0) -> dict[str, Any]:
        y = check_label(lab, len(names), f"{dataset} row {idx}")
        boxes: list[list[float]] = []
        if box is not None and (not isinstance(box, list | tuple) or len(box) > 0):
            info = probe_image(img["bytes"] if img.get("bytes") else img["path"], name=f"{dataset} row {idx}")
            w, h = info.width, info.height
            boxes, _ = clean_boxes([_to_xyxy(box, bbox_format, w, h)], w, h, report)
        if ident is None:
            ident = img.get("path") or str(idx)
        return {"id": str(ident), "label": y, "boxes": boxes, "box_labels": [y] * len(boxes)}

    cols = [image, label] + ([bbox] if bbox else [])

    def fn(*args: Any) -> dict[str, Any]:
        *vals, idx = args
        img, lab, *rest = vals
        box = rest.pop(0) if bbox else None
        ident = rest.pop(0) if id_column else None
        return convert(img, lab, box, ident, idx)

    feats = make_features(names)
    out = ds.map(
        fn,
        input_columns=cols + ([id_column] if id_column else []),
        with_indices=True,
        remove_columns=[c for c in ds.column_names if c != image],
        features=datasets.Features({**{image: datasets.Image(decode=False)}, **_without(feats, "image")}),
        desc=f"{dataset}: to common schema",
    )
    if image != "image":
        out = out.rename_column(image, "image")
    out = out.cast(feats)
    report.images = len(out)
    report.emit()
    return out


def screen_images(ds: datasets.Dataset, report: LoadReport, image: str = "image") -> datasets.Dataset:
    """Check every image of a Hub / parquet dataset as the local loaders do (header only, no pixel decoded).

    Rows whose image is unreadable, a decompression bomb or of an extreme side ratio are dropped and counted in
    ``report.skipped`` (by reason, as :func:`~consistentzoo.data.schema.check_image`); 16-bit images, which
    ``datasets.Image`` would decode as white, are replaced by their 8-bit PNG (``report.converted``). Other
    images are left as they are (no copy is made when nothing needs replacing).

    Args:
        ds: the dataset; its ``image`` column is read undecoded and keeps its feature type.
        report: receives the counts.
        image: the image column.
    """
    import datasets

    feature = ds.features[image]
    ds = ds.cast_column(image, datasets.Image(decode=False))

    def where(v: dict[str, Any], i: int) -> str:
        return v.get("path") or f"{report.dataset} row {i}"

    def check(values: list[dict[str, Any]], idx: list[int]) -> dict[str, list[str]]:
        out = []
        for v, i in zip(values, idx, strict=True):
            try:
                info = probe_image(v["bytes"] if v.get("bytes") else v.get("path") or b"", name=where(v, i))
                out.append("16bit_to_8bit" if info.needs_rescale else "")
            except BadImageError as e:
                out.append(e.reason)
        return {"check": out}

    checks = ds.map(
        check,
        input_columns=[image],
        with_indices=True,
        batched=True,
        remove_columns=ds.column_names,
        desc=f"{report.dataset}: checking images",
    )["check"]
    wide = {i for i, c in enumerate(checks) if c == "16bit_to_8bit"}
    if wide:
        report.converted["16bit_to_8bit"] += len(wide)

        def rescale(v: dict[str, Any], i: int) -> dict[str, Any]:
            if i not in wide:
                return {image: v}
            src = v["bytes"] if v.get("bytes") else v["path"]
            return {image: {"bytes": to_png_bytes(open_image(src, name=where(v, i))), "path": None}}

        ds = ds.map(rescale, input_columns=[image], with_indices=True, features=ds.features)
    bad = [i for i, c in enumerate(checks) if c and c != "16bit_to_8bit"]
    for i in bad:
        report.skip(f"row {i}", checks[i])
    if bad:
        drop = set(bad)
        ds = ds.select([i for i in range(len(ds)) if i not in drop])
    return ds.cast_column(image, feature)


def screen_common(ds: datasets.Dataset, dataset: str, split: str) -> datasets.Dataset:
    """:func:`screen_images` on a dataset already in the common schema, with its own report."""
    report = LoadReport(dataset, split)
    out = screen_images(ds, report)
    report.images = len(out)
    report.emit()
    return out


def check_common(ds: datasets.Dataset, dataset: str) -> datasets.Dataset:
    """``ds`` if its common-schema columns have the common schema's feature types, else a clear error.

    A parquet file with the right column names but, say, a plain ``{bytes, path}`` struct as ``image`` would
    otherwise fail much later (``'dict' object has no attribute 'mode'``).

    Raises:
        AnnotationFormatError: naming the column, its type and the expected type.
    """
    import datasets

    expected: dict[str, tuple[type, ...]] = {
        "image": (datasets.Image,),
        "label": (datasets.ClassLabel,),
        "labels": (datasets.List, datasets.Sequence, datasets.LargeList),
        "boxes": (datasets.List, datasets.Sequence, datasets.LargeList),
        "box_labels": (datasets.List, datasets.Sequence, datasets.LargeList),
    }
    if "label" not in ds.column_names and "labels" not in ds.column_names:
        raise AnnotationFormatError(f"{dataset}: the data has neither a 'label' nor a 'labels' column")
    for col, types in expected.items():
        if col in ds.features and not isinstance(ds.features[col], types):
            want = " or ".join(f"datasets.{t.__name__}" for t in types)
            hint = f" (cast it first: ds.cast_column({col!r}, datasets.Image()))" if col == "image" else ""
            raise AnnotationFormatError(
                f"{dataset}: column {col!r} has type {ds.features[col]!r}; the common schema needs {want}{hint}"
            )
    return ds


def _without(feats: datasets.Features, key: str) -> dict[str, Any]:
    return {k: v for k, v in feats.items() if k != key}
