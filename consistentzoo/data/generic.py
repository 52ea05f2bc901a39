"""Generic local sources: an image-per-class folder tree, or parquet files (e.g. an export of a loaded dataset)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .convert import from_columns
from .errors import MissingAnnotationError
from .registry import DatasetSpec, register_dataset
from .schema import Item, LoadReport, build, fingerprint, rows_from_items

if TYPE_CHECKING:
    import datasets

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
FOLDER_LAYOUT = "<root>/<split>/<class>/*.jpg (or <root>/<class>/*.jpg)"


def load_imagefolder(
    root: Path,
    split: str,
    *,
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """One folder per class; classes sorted by name. ``<root>/<split>/`` is used when it exists, else ``<root>``."""
    base = root / split if (root / split).is_dir() else root
    names = sorted(d.name for d in base.iterdir() if d.is_dir())
    if not names:
        raise MissingAnnotationError(f"imagefolder: no class folders under {base} (expected layout: {FOLDER_LAYOUT})")
    files = [
        (y, p) for y, n in enumerate(names) for p in sorted((base / n).rglob("*")) if p.suffix.lower() in IMAGE_EXTS
    ]

    def items() -> Iterator[Item]:
        for y, p in files:
            yield Item(str(p.relative_to(base).with_suffix("")), p, y)

    report = LoadReport("imagefolder", split)
    key = fingerprint(
        "imagefolder",
        str(base.resolve()),
        split,
        [str(p) for _, p in files],
        check_images,
        images=[p for _, p in files],
    )
    return build(rows_from_items(items(), len(names), check_images, report), names, report, key, cache_dir=cache_dir)


def load_parquet_dir(root: Path, split: str, **kw: Any) -> datasets.Dataset:
    """Unreachable through :func:`consistentzoo.data.load` (parquet paths go to :func:`parquet_to_common`)."""
    raise MissingAnnotationError(f"parquet: no *.parquet file under {root}")


def parquet_to_common(ds: datasets.Dataset, split: str, **kw: Any) -> datasets.Dataset:
    """Parquet files already in the common schema pass through; others are converted with ``from_columns``
    options (``image=``, ``label=``, ``bbox=``, ``bbox_format=``)."""
    return from_columns(ds, split, dataset="parquet", **kw)


register_dataset(
    DatasetSpec("imagefolder", load_imagefolder, ("train", "val", "validation", "test", "all"), layout=FOLDER_LAYOUT)
)
register_dataset(
    DatasetSpec("parquet", load_parquet_dir, (), (), parquet_to_common, "<root>/**/*.parquet or one .parquet file")
)
