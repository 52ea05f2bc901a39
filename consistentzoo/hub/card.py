"""Model cards generated from a tag's metadata and a metrics JSON, never written by hand.

A card is a ``README.md`` with YAML front matter (``library_name: timm``, licence, datasets, tags and a
``model-index`` of the measured results, via :class:`huggingface_hub.ModelCardData` and
:class:`~huggingface_hub.EvalResult`), then: the method in two sentences with its paper, a table of the measured
metrics beside the paper's reported ones, a figure slot for the Grad-CAM overlays against the CE baseline, how to
load the weights (timm, torch.hub, consistentzoo), the recipe command, the weights' sha256 and the citations.

Unlike timm's ``push_to_hf_hub``, which never overwrites an existing README, re-generating a card always replaces it,
so new measurements reach the card.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models.metadata import ZooWeights, list_weights
from ..models.reported import PAPERS
from ..models.zoo import split_zoo_name

_logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
CARD_IMAGE_NAME = "gradcam_overlays.png"
METRICS_NAME = "metrics.json"
METRICS_SCHEMA_VERSION = 1

# metric function names (consistentzoo.metrics) -> the short keys the papers' tables use (Reported.metric)
_METRIC_ALIASES = {
    "accuracy": "top1",
    "top1_accuracy": "top1",
    "top5_accuracy": "top5",
    "pointing_game": "pg",
    "stochastic_pointing_game": "spg",
    "content_heatmap": "ch",
    "negative_quadrants_heatmap": "nqh",
    "average_drop": "ad",
    "average_increase": "ai",
    "average_gain": "ag",
    "ssim_consistency": "ssim",
}
# saliency method names (consistentzoo.saliency) -> the suffix of Reported.metric; Grad-CAM has none
_METHOD_SUFFIXES = {"gradcam": "", "gradcam++": "gradcampp"}
_NO_METHOD = ("top1", "top5", "f1_overall", "f1_perclass")
_METRIC_NAMES = {
    "top1": "top-1 accuracy",
    "top5": "top-5 accuracy",
    "pg": "pointing game",
    "spg": "stochastic pointing game",
    "ch": "content heatmap",
    "nqh": "negative-quadrants heatmap",
    "insertion_auc": "insertion AUC",
    "deletion_auc": "deletion AUC",
    "ad": "average drop",
    "ai": "average increase",
    "ag": "average gain",
    "ssim": "SSIM consistency",
    "cgc_loss": "CGC loss",
    "f1_overall": "F1 (overall)",
    "f1_perclass": "F1 (per class)",
}
_METRIC_ORDER = list(_METRIC_NAMES)
_OBJECTIVE_TEXT = {
    "ce": "trained with plain cross-entropy, the baseline the consistency objectives are compared against",
    "gc": "trained with cross-entropy plus a Grad-CAM consistency loss that asks the explanation of a flipped or "
    "rescaled image to equal the flipped or rescaled explanation of the original",
    "cgc": "trained with cross-entropy plus a contrastive Grad-CAM consistency loss that pulls the explanation of an "
    "augmented view towards the transformed explanation of the original and away from those of other images",
    "ssim": "trained with cross-entropy plus an SSIM consistency loss between the Grad-CAM maps of two augmented views "
    "and an L1 sparsity penalty on the maps",
    "guided": "trained with cross-entropy plus a loss that aligns the input gradient with its guided-backpropagation "
    "counterpart, so that the plain gradient becomes an interpretable explanation",
}
_OBJECTIVE_PAPER = {"gc": "gc", "cgc": "cgc", "ssim": "ssim", "guided": "guided"}


@dataclass(frozen=True)
class MeasuredMetric:
    """One measured number, keyed like the papers' numbers (``pg``, ``ch_fullgrad``, ``top1``) so they line up.

    Attributes:
        key: metric key comparable with :attr:`~consistentzoo.models.Reported.metric`.
        value: the measurement.
        std: standard deviation over seeds or runs, if any.
        n: number of images scored, if known.
        dataset: evaluation dataset, if given.
        split: evaluation split, if given.
    """

    key: str
    value: float
    std: float | None = None
    n: int | None = None
    dataset: str | None = None
    split: str | None = None

    @property
    def name(self) -> str:
        """Readable name, e.g. ``pointing game (fullgrad)``."""
        return metric_name(self.key)


def metric_key(metric: str, method: str | None = None) -> str:
    """The paper-table key of a metric measured with a saliency method.

    Args:
        metric: a ``consistentzoo.metrics`` function name (``pointing_game``) or a short key (``pg``).
        method: saliency method (``gradcam``, ``hirescam``, ``fullgrad``, ...); None for classification metrics.

    Returns:
        E.g. ``pg`` for (``pointing_game``, ``gradcam``), ``ch_hirescam`` for (``content_heatmap``, ``hirescam``).
    """
    key = _METRIC_ALIASES.get(metric, metric)
    if not method or key in _NO_METHOD or key.startswith("fgsm_"):
        return key
    suffix = _METHOD_SUFFIXES.get(method, method.replace("+", "p").replace("-", "").lower())
    return f"{key}_{suffix}" if suffix else key


def metric_name(key: str) -> str:
    """Readable name of a metric key (``pg_fullgrad`` -> ``pointing game (fullgrad)``)."""
    if key in _METRIC_NAMES:
        return _METRIC_NAMES[key]
    base, _, suffix = key.rpartition("_")
    if base in _METRIC_NAMES:
        return f"{_METRIC_NAMES[base]} ({suffix})"
    return key.replace("_", " ")


def read_json(path: str | Path) -> Any:
    """A JSON file's content; malformed JSON is a ValueError naming the file, line and column."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: line {e.lineno}, column {e.colno}: {e.msg}") from None


def load_metrics(
    source: str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]], rec: ZooWeights
) -> list[MeasuredMetric]:
    """The measured metrics of one tag from a metrics JSON (a path, or the parsed object).

    Accepted shapes: the evaluator's ``{"schema_version": 1, "results": [row, ...]}`` (rows with ``model``, ``tag``,
    ``dataset``, ``split``, ``method``, ``metric``, ``value``, ``std``, ``n``, ``skipped``), a bare list of such rows,
    a flat ``{metric_key: value}`` mapping as in :attr:`ZooWeights.measured`, or a training run's ``metrics.json``
    (its final evaluation). Rows of other models are ignored.

    Args:
        source: the JSON file or its content.
        rec: the tag whose rows are wanted.

    Raises:
        ValueError: unknown schema version, a row without ``metric``/``value``, a value that is not a finite number,
            or rows only for other models (the message lists them).
    """
    origin = str(source) if isinstance(source, (str, Path)) else "metrics"
    data = read_json(source) if isinstance(source, (str, Path)) else source
    if isinstance(data, Mapping) and "results" in data:
        version = data.get("schema_version", METRICS_SCHEMA_VERSION)
        if version != METRICS_SCHEMA_VERSION:
            raise ValueError(f"{origin}: metrics schema_version {version!r} is not supported (expected 1)")
        rows: Sequence[Any] = data["results"]
    elif isinstance(data, Mapping) and "history" in data and isinstance(data.get("eval"), Mapping):
        rows = _training_rows(data)
    elif isinstance(data, Mapping):
        rows = [{"metric": k, "value": v} for k, v in data.items()]
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        rows = data
    else:
        raise ValueError(f"{origin}: expected a metrics JSON object or list, got {type(data).__name__}")

    out: list[MeasuredMetric] = []
    others: set[str] = set()
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "metric" not in row or "value" not in row:
            raise ValueError(f"{origin}: result {i} needs 'metric' and 'value' keys, got {row!r}")
        if not _is_row_of(row, rec):
            others.add(f"{row.get('model')}.{row['tag']}" if row.get("tag") else str(row.get("model")))
            continue
        value, std = row["value"], row.get("std")
        for what, x in (("value", value), ("std", std)):
            if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x)):
                raise ValueError(f"{origin}: result {i} ({row['metric']}) has {what} {x!r}, not a finite number")
        out.append(
            MeasuredMetric(
                key=metric_key(str(row["metric"]), row.get("method")),
                value=float(value),
                std=None if std is None else float(std),
                n=row.get("n"),
                dataset=row.get("dataset"),
                split=row.get("split"),
            )
        )
    if rows and not out:
        raise ValueError(f"{origin} holds results for {sorted(others)}, none for {rec.name}")
    return out


def _training_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of a training run's ``metrics.json``: its final evaluation (``"eval": {"eval/<metric>": value}``)."""
    final, method = data["eval"], data.get("eval_method")
    return [
        {"metric": key[5:], "value": value, "std": final.get(f"{key}_std"), "method": method,
         "dataset": data.get("eval_dataset"), "split": data.get("eval_split")}
        for key, value in final.items()
        if key.startswith("eval/") and not key.endswith("_std")
    ]  # fmt: skip


def _is_row_of(row: Mapping[str, Any], rec: ZooWeights) -> bool:
    model, tag = row.get("model"), row.get("tag")
    if model is None or model == rec.name:
        return tag is None or tag == rec.tag
    return model == rec.zoo_name and tag in (None, rec.tag)


def _measured(rec: ZooWeights, metrics: Any) -> list[MeasuredMetric]:
    """Metrics from the JSON, falling back to the record's own ``measured`` numbers for keys the JSON lacks."""
    found = load_metrics(metrics, rec) if metrics is not None else []
    keys = {m.key for m in found}
    return found + [m for m in load_metrics(dict(rec.measured), rec) if m.key not in keys] if rec.measured else found


def _sort_key(key: str) -> tuple[int, str]:
    base = key if key in _METRIC_NAMES else key.rpartition("_")[0]
    return (_METRIC_ORDER.index(base) if base in _METRIC_ORDER else len(_METRIC_ORDER), key)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _github_repo() -> str:
    """``owner/name`` of the package's GitHub repository, from the installed package's metadata."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("consistentzoo").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository" and "github.com/" in url:
            return url.strip().split("github.com/", 1)[1].strip("/")
    return "consistentzoo/consistentzoo"  # the pyproject's Repository URL, for a source tree that is not installed


def _method_section(rec: ZooWeights) -> str:
    arch, gmp, objective = split_zoo_name(rec.zoo_name)
    net = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "alexnet": "AlexNet"}[arch]
    net += " with global max pooling" if gmp else ""
    if rec.model_args.get("stem") == "cifar":
        net += " (CIFAR stem)"
    hyper = {k: v for k, v in rec.objective_args.items() if k not in ("finetune", "init")}
    hyper_text = f" ({', '.join(f'{k} = {v}' for k, v in hyper.items())})" if hyper else ""
    start = f", starting from `{rec.objective_args['init']}`" if rec.objective_args.get("init") else ""
    first = f"`{rec.name}` is a {net} {_OBJECTIVE_TEXT[objective]}{hyper_text}, on {rec.dataset}{start}."
    if objective == "ce":
        titles = "; ".join(f"*{PAPERS[p].title}* ({PAPERS[p].venue} {PAPERS[p].year})" for p in rec.papers)
        second = f"It is the baseline of {titles}." if titles else "It is the baseline of the zoo's comparisons."
    else:
        paper = PAPERS[_OBJECTIVE_PAPER[objective]]
        where = f"{paper.venue} {paper.year}" if paper.year else paper.venue
        link = f", {paper.url}" if paper.url else ""
        second = f"The objective is from *{paper.title}* ({paper.authors}, {where}{link})."
    return f"{first} {second}"


def _metrics_section(rec: ZooWeights, measured: list[MeasuredMetric]) -> str:
    reported: dict[str, list[str]] = {}
    for r in rec.reported:
        paper = PAPERS.get(r.paper)
        where = f"{paper.venue} {paper.year}" if paper and paper.year else (paper.venue if paper else r.paper)
        reported.setdefault(r.metric, []).append(f"{_fmt(r.value)} ({where}, {r.table}, {r.dataset})")
    by_key: dict[str, list[MeasuredMetric]] = {}
    for m in measured:  # one line per split a metric was measured on
        by_key.setdefault(m.key, []).append(m)
    keys = sorted(set(by_key) | set(reported), key=_sort_key)
    if not keys:
        return "No metrics measured yet, and the papers report none for this tag."
    lines = ["| Metric | Measured | Paper |", "|---|---|---|"]
    for key in keys:
        for i, m in enumerate(by_key.get(key) or [None]):
            if m is None:
                cell = "—"
            else:
                cell = _fmt(m.value) + (f" ± {_fmt(m.std)}" if m.std is not None else "")
                where = " ".join(x for x in (m.dataset, m.split) if x)
                extra = ", ".join(x for x in (where, f"n = {m.n}" if m.n is not None else "") if x)
                cell += f" ({extra})" if extra else ""
            paper = "<br>".join(reported.get(key, ["—"])) if i == 0 else ""
            lines.append(f"| {metric_name(key)} | {cell} | {paper} |")
    by = "`recipes/evaluate.py`" if _registered(rec) else "the training run's final evaluation (`metrics.json`)"
    notes = [
        "",
        f"Measured: by {by} on these weights (mean ± std where several runs were made). "
        "Paper: as printed in the paper's table (mostly percent), for the authors' own model of this kind — "
        "a reference for the size and direction of the effect, not a measurement of these weights.",
    ]
    if not measured:
        notes.append("Nothing has been measured on these weights yet.")
    if not rec.reported:
        notes.append("The papers report no numbers for this training set.")
    return "\n".join(lines + notes)


def _figure_section(rec: ZooWeights, image: str | None) -> str:
    arch, gmp, objective = split_zoo_name(rec.zoo_name)
    start = rec.tag.removesuffix("_control")  # a `_control` tag: CE fine-tuned beside a consistency objective
    baseline = f"{arch}{'_gmp' if gmp else ''}_ce.{start}"
    if rec.tag != start:
        who = f"this CE-only control beside its starting point `{baseline}`"
    else:
        who = "this baseline" if objective == "ce" else f"`{rec.name}` beside the cross-entropy baseline `{baseline}`"
    caption = f"Grad-CAM overlays of {who} on evaluation images of {rec.dataset}."
    if image is None:
        return f"_Figure not produced yet: {caption}_"
    return f"![{caption}]({image})\n\n{caption}"


def _load_section(rec: ZooWeights, repo_id: str | None) -> str:
    arch = rec.architecture
    needs_zoo = arch == "alexnet" or rec.model_args.get("stem", "imagenet") != "imagenet"
    blocks = []
    if repo_id:
        register = "import consistentzoo  # registers the architecture with timm\n" if needs_zoo else ""
        blocks.append(
            "With timm alone"
            + (" (plus the registration import)" if needs_zoo else "")
            + f":\n\n```python\nimport timm\n{register}\n"
            f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()\n```'
        )
    if not _registered(rec):  # not a zoo tag: the Hub repository or the folder
        blocks.append(
            f"From a local copy of the files:\n\n```python\nimport consistentzoo\n\nmodel = consistentzoo.create_model("
            f'"{rec.zoo_name}", pretrained="path/to/folder").eval()\n```'
        )
        return "\n\n".join(blocks)
    blocks.append(
        "With torch.hub:\n\n```python\nimport torch\n\n"
        f'model = torch.hub.load("{_github_repo()}", "{rec.zoo_name}", pretrained=True, pretrained_cfg="{rec.tag}")'
        "\n```"
    )
    blocks.append(
        "With consistentzoo (sha256-verified, cached; works offline with `HF_HUB_OFFLINE=1` once downloaded):\n\n"
        f'```python\nimport consistentzoo\n\nmodel = consistentzoo.create_model("{rec.name}", pretrained=True).eval()\n'
        f"# or from a local copy of this repository's files:\n"
        f'model = consistentzoo.create_model("{rec.zoo_name}", pretrained="path/to/folder")\n```'
    )
    if not repo_id and not rec.local_dir and not rec.upstream:
        blocks.insert(0, f"The weights are not published yet; train them with `{rec.recipe_command}`.")
    return "\n\n".join(blocks)


def record_from_config(cfg: Mapping[str, Any], num_params: int) -> ZooWeights | None:
    """The record of weights a run wrote, from the facts its ``config.json`` keeps under ``consistentzoo``.

    A recipe records the true dataset (and its source folder), the start point (``init``: a tag or a folder) and
    the class names (:func:`consistentzoo.training.loop.weights_facts`); a card of fine-tuned weights is built from
    these, not from the registered tag the config was copied from.

    Args:
        cfg: the parsed ``config.json``.
        num_params: parameter count of the built model.

    Returns:
        The record, or None when ``config.json`` does not say which zoo model and dataset the weights are.
    """
    info = cfg.get("consistentzoo") or {}
    zoo_name, dataset = info.get("zoo_name"), info.get("dataset")
    try:
        arch, gmp, objective = split_zoo_name(zoo_name or "")
    except ValueError:
        return None
    if not dataset:
        return None
    init, source = info.get("init"), info.get("data_source")
    args = dict(info.get("objective_args") or {})
    if init:
        args.update(init=init, finetune=True)
    where = f"{dataset} ({Path(source).name})" if dataset == "imagefolder" and source else dataset
    description = (
        f"{arch}{' (global max pooling)' if gmp else ''} trained with the {objective.upper()} objective on {where}"
        + (f", starting from {init}" if init else ", from scratch")
    )
    names = info.get("label_names")
    return ZooWeights(
        zoo_name=zoo_name,
        tag=info.get("tag") or dataset,
        architecture=arch,
        model_args=dict(cfg.get("model_args") or {}),
        objective=info.get("objective") or objective,
        objective_args=args,
        dataset=dataset,
        num_classes=int(cfg["num_classes"]),
        num_params=num_params,
        papers=(),
        label_names=tuple(names) if names else None,
        input_size=tuple(info.get("input_size") or (3, 224, 224)),
        description=description,
    )


def _registered(rec: ZooWeights) -> bool:
    """Whether ``rec`` is a zoo tag (else: weights of one's own, described by their ``config.json``)."""
    return any(w.name == rec.name and w.dataset == rec.dataset for w in list_weights(rec.zoo_name))


def _trained_section(rec: ZooWeights) -> str:
    if _registered(rec):
        how = (
            f"```bash\n{rec.recipe_command}\n```\n\nConfig: `{rec.recipe}` (the resolved copy is uploaded beside the "
            "weights)."
        )
    else:
        how = "With `recipes/finetune.py`; the resolved config is `config.yaml`, uploaded beside the weights."
    classes = f"{rec.num_classes} classes"
    if rec.label_names:
        shown = ", ".join(rec.label_names[:50]) + (", ..." if len(rec.label_names) > 50 else "")
        classes += f" (in output order: {shown})"
    return f"{how} Input size {'×'.join(map(str, rec.input_size))}, {classes}."


def build_card(
    rec: ZooWeights,
    metrics: str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    *,
    image: str | None = None,
    repo_id: str | None = None,
    sha256: str | None = None,
    comparison: str | None = None,
) -> Any:
    """The model card of a weight tag, from its metadata and measured metrics only.

    Args:
        rec: the tag's metadata record.
        metrics: a metrics JSON (path or parsed; see :func:`load_metrics`); ``rec.measured`` fills in missing keys.
        image: path of the Grad-CAM overlay grid relative to the card (e.g. :data:`CARD_IMAGE_NAME`), or None to
            leave the figure slot empty.
        repo_id: Hub repository the card describes (default: ``rec.hub.repo_id``).
        sha256: sha256 of the weights file (default: ``rec.expected_sha256``).
        comparison: markdown measured beside other models (e.g. against a control over seeds), shown after the
            metrics under "Compared with other models"; None leaves the section out.

    Returns:
        A :class:`huggingface_hub.ModelCard`; ``str(card)`` is the README text.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    measured = _measured(rec, metrics)
    repo_id = repo_id or (rec.hub.repo_id if rec.hub else None)
    sha256 = sha256 or rec.expected_sha256
    _, gmp, objective = split_zoo_name(rec.zoo_name)
    eval_results = [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=m.dataset or rec.dataset,
            dataset_name=m.dataset or rec.dataset,
            dataset_split=m.split,
            metric_type=m.key,
            metric_name=m.name,
            metric_value=m.value,
        )
        for m in sorted(measured, key=lambda m: _sort_key(m.key))
    ]
    tags = ["image-classification", "timm", "consistentzoo", "explainability", "grad-cam", f"objective-{objective}"]
    tags += ["global-max-pooling"] if gmp else []
    data = ModelCardData(
        library_name="timm",
        license=rec.license,
        datasets=[rec.dataset],
        tags=tags,
        pipeline_tag="image-classification",
        model_name=rec.name,
        eval_results=eval_results or None,
        metrics=sorted({m.key for m in measured}, key=_sort_key) or None,
    )
    files = ["- `model.safetensors`" + (f" — sha256 `{sha256}`" if sha256 else ""), "- `config.json` — timm config"]
    files.append(f"- `{METRICS_NAME}` — the measured metrics above" if measured else "")
    if rec.hub and rec.hub.repo_id == repo_id:
        files.append(f"- pinned revision in the zoo's metadata: `{rec.hub.revision}`")
    if rec.upstream:
        files.append(f"- converted from the release of the {rec.upstream.describe()}")
    citations = []
    for key in rec.papers:
        p = PAPERS[key]
        citations.append(f"- {p.authors}. *{p.title}*. {p.venue}" + (f" {p.year}" if p.year else "") + ".")
        citations[-1] += f" {p.url}" if p.url else ""
    sections = [
        f"# {rec.name}",
        rec.description or "",
        _method_section(rec),
        "## Metrics",
        _metrics_section(rec, measured),
        "## Compared with other models" if comparison else "",
        comparison or "",
        "## Explanations",
        _figure_section(rec, image),
        "## How to load",
        _load_section(rec, repo_id),
        "## How it was trained",
        _trained_section(rec),
        "## Files",
        "\n".join(f for f in files if f),
        "## Citation",
        "\n".join(citations) or "—",
        "_This card is generated by `consistentzoo card` from the zoo's metadata and the metrics JSON; "
        "edit those, not this file._",
    ]
    body = "\n\n".join(s for s in sections if s)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def write_card(
    rec: ZooWeights,
    out_dir: str | Path,
    metrics: str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    *,
    image: str | Path | None = None,
    repo_id: str | None = None,
    sha256: str | None = None,
    comparison: str | None = None,
) -> Path:
    """Write (or rewrite) ``README.md`` in ``out_dir``, with the overlay figure beside it when there is one.

    Re-running with new metrics replaces the card. A figure given as ``image`` is copied to
    ``out_dir/`` :data:`CARD_IMAGE_NAME`; without one, a figure already there from an earlier run is kept and
    referenced.

    Args:
        rec: the tag's metadata record.
        out_dir: folder of the card (``model_cards/<tag>/`` or a weights folder to push).
        metrics: metrics JSON (see :func:`load_metrics`).
        image: a PNG of Grad-CAM overlays (this model against the CE baseline).
        repo_id: Hub repository the card describes.
        sha256: sha256 of the weights file.
        comparison: see :func:`build_card`.

    Returns:
        Path of the written ``README.md``.

    Raises:
        ValueError: ``image`` is not a PNG file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / CARD_IMAGE_NAME
    if image is not None:
        check_png(image)
        if Path(image).resolve() != target.resolve():
            shutil.copyfile(image, target)
    image_name = CARD_IMAGE_NAME if target.is_file() else None
    card = build_card(rec, metrics, image=image_name, repo_id=repo_id, sha256=sha256, comparison=comparison)
    path = out_dir / CARD_NAME
    path.write_text(str(card), encoding="utf-8")
    _logger.info("wrote the model card of %s to %s", rec.name, path)
    return path


def check_png(path: str | Path) -> None:
    """Raise ValueError unless ``path`` is a PNG file (the figure slot takes the saliency package's PNG grids)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"overlay figure {path} does not exist")
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            raise ValueError(f"overlay figure {path} is not a PNG file")
