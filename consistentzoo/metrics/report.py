"""Writing evaluation results: the versioned JSON that model cards read, and a markdown table for people.

The JSON is ``{"schema_version": 1, "results": [row, ...], "config": {...}}`` with rows ``{model, tag, dataset,
split, method, metric, value, std, n, skipped}`` — the shape :func:`consistentzoo.hub.card.load_metrics` accepts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["OPTIONAL_ROW_KEYS", "ROW_KEYS", "SCHEMA_VERSION", "markdown_table", "write_json", "write_markdown"]

SCHEMA_VERSION = 1
ROW_KEYS = ("model", "tag", "dataset", "split", "method", "metric", "value", "std", "n", "skipped")
# written when a row has them: the map metrics' paired mode and all-zero map count (EvalConfig.paired)
OPTIONAL_ROW_KEYS = ("paired", "zero_maps")


def _check_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    for i, row in enumerate(rows):
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"result row {i} lacks {missing}; rows need {list(ROW_KEYS)}")


def write_json(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, config: Mapping[str, Any] | None = None
) -> Path:
    """Write the results JSON (parent folders are created).

    Args:
        rows: result rows from :func:`consistentzoo.metrics.evaluate.evaluate`.
        path: output file.
        config: the settings the rows were measured with, recorded under ``"config"``.

    Returns:
        The path written.
    """
    _check_rows(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = [{k: r[k] for k in ROW_KEYS + OPTIONAL_ROW_KEYS if k in r} for r in rows]
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "results": results}
    if config is not None:
        doc["config"] = dict(config)
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return path


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4f}"
    return str(x)


def _weight_tag(row: Mapping[str, Any]) -> str:
    """The full weight tag of a row (``resnet18_cgc.fashion_scenes``), not its bare suffix, which names a dataset."""
    if not row["tag"]:
        return "-"
    return f"{row['model']}.{row['tag']}" if row["model"] else str(row["tag"])


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a GitHub markdown table (one line per row; skipped counts as ``reason: count``, and for the map
    metrics of a paired evaluation the all-zero maps scored as misses)."""
    _check_rows(rows)
    head = ["model", "tag", "dataset", "split", "method", "metric", "value", "std", "n", "skipped"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        skipped = ", ".join(f"{k}: {v}" for k, v in (r["skipped"] or {}).items() if v) or "0"
        if r.get("paired"):
            skipped += f"; all-zero maps scored as misses: {r['zero_maps']}"
        cells = [_fmt(r[k]) for k in head[:-1]] + [skipped]
        cells[1] = _weight_tag(r)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write :func:`markdown_table` of ``rows`` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_table(rows))
    return path
