"""UnRel (Peyre et al., ICCV 2017): unusual relations; multi-label, one box per annotated object.

Official layout: ``<root>/images/*.jpg`` and ``<root>/annotations.mat`` (a cell array of structs with
``filename``, ``im_id``, ``objects`` (``category``, ``box`` = xmin ymin xmax ymax pixels) and ``relationships``).
No Hub copy exists. The CGC paper evaluates on the 28 UnRel categories that overlap ImageNet but does not list
them; pass them as ``categories=`` (images left without any of them are skipped and counted).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UnknownDatasetError
from .matfile import as_list, field, loadmat
from .registry import DatasetSpec, register_dataset
from .schema import Item, LoadReport, build, fingerprint, rows_from_items, safe_join

if TYPE_CHECKING:
    import datasets

LAYOUT = "<root>/images/*.jpg + <root>/annotations.mat"


def load_local(
    root: Path,
    split: str,
    *,
    categories: Sequence[str] | None = None,
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Read UnRel's ``annotations.mat``.

    Args:
        root: folder with ``images/`` and ``annotations.mat``.
        split: ``test`` (UnRel is an evaluation set; ``all`` is the same).
        categories: keep only these object categories (class order as given); default every category found,
            sorted. Names unknown to the annotations are an error.
        check_images: see :func:`consistentzoo.data.load`.
        cache_dir: see :func:`consistentzoo.data.load`.
    """
    ann_file = root / "annotations.mat"
    anns = as_list(loadmat(ann_file, "unrel", LAYOUT)["annotations"])
    parsed = []
    for a in anns:
        objs = [
            (str(field(o, "category", ann_file, "unrel")), [float(v) for v in as_list(o.box)])
            for o in as_list(a.objects)
        ]
        fname = str(field(a, "filename", ann_file, "unrel"))
        parsed.append((fname, safe_join(root / "images", fname, f"unrel: {ann_file.name}"), objs))
    found = sorted({c for _, _, objs in parsed for c, _ in objs})
    names = list(categories) if categories is not None else found
    unknown = sorted(set(names) - set(found))
    if unknown:
        raise UnknownDatasetError(unknown[0], found, kind="UnRel category")
    index = {c: i for i, c in enumerate(names)}
    report = LoadReport("unrel", split)

    def items() -> Iterator[Item]:
        for fname, path, objs in parsed:
            keep = [(index[c], b) for c, b in objs if c in index]
            if not keep:
                report.skip(fname, "no_selected_category")
                continue
            # Relationship entries repeat objects; UnRel's objects list is already one entry per object.
            yield Item(
                Path(fname).stem,
                path,
                boxes=[b for _, b in keep],
                box_labels=[c for c, _ in keep],
                labels=sorted({c for c, _ in keep}),
            )

    key = fingerprint(
        "unrel", str(root.resolve()), split, names, check_images, files=[ann_file], images=[p for _, p, _ in parsed]
    )
    rows = rows_from_items(items(), len(names), check_images, report)
    return build(rows, names, report, key, multi_label=True, cache_dir=cache_dir)


register_dataset(DatasetSpec("unrel", load_local, ("test", "all"), layout=LAYOUT))
