"""The typed metadata record every zoo weight tag carries, and the registry of tags.

One :class:`ZooWeights` per tag (``resnet50_cgc.in1k``): how to build the model, how it was trained, what the paper
reported for it, what we measured, and where its weights live. Family files (``resnet.py``, ``alexnet.py``) end in a
table of these records; timm's ``default_cfgs`` are derived from the same records so nothing is written twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OBJECTIVES = ("ce", "gc", "cgc", "ssim", "guided")
ARCHITECTURES = ("resnet18", "resnet50", "alexnet")

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Paper:
    """A publication a tag reproduces or is compared with."""

    key: str
    title: str
    authors: str
    venue: str
    year: int
    url: str


@dataclass(frozen=True)
class Reported:
    """One number a paper reports for the model a tag reproduces."""

    paper: str
    table: str
    dataset: str
    metric: str
    value: float
    note: str = ""


@dataclass(frozen=True)
class HubLocation:
    """Where published weights live: a Hub repo pinned to a revision, with the weights' sha256."""

    repo_id: str
    revision: str
    sha256: str
    filename: str = "model.safetensors"


@dataclass(frozen=True)
class UpstreamSource:
    """Where the papers' authors (or torchvision) released a tag's weights, and how that file is stored.

    The file is converted once into the zoo's safetensors form and cached (:mod:`consistentzoo.models.upstream`).

    Attributes:
        provider: who released it (``torchvision``, ``GC authors``, ``CGC authors``).
        kind: ``url`` (a plain download URL), ``drive_file`` or ``drive_folder`` (a Google Drive id).
        location: the URL, or the Drive file/folder id.
        format: ``authors_pth_tar`` (``torch.save({'epoch', 'arch', 'state_dict', 'best_acc1', 'optimizer'})`` of a
            ``DataParallel`` model) or ``torchvision_state_dict`` (a bare state dict with torchvision's names).
        license: licence of the released weights.
        sha256_prefix: leading hex digits of the file's sha256 that we know (torchvision's file names carry 8).
        sha256: the full sha256 of the released file once pinned (logged and recorded at the first download).
        filename: local name of the downloaded file (also its name under a mirror, see ``upstream.ENV_MIRROR``).
    """

    provider: str
    kind: str
    location: str
    format: str
    license: str
    filename: str = "checkpoint.pth.tar"
    sha256_prefix: str | None = None
    sha256: str | None = None

    @property
    def url(self) -> str:
        """The address a browser opens to get the file (Drive: its sharing page)."""
        if self.kind == "drive_file":
            return f"https://drive.google.com/file/d/{self.location}/view"
        if self.kind == "drive_folder":
            return f"https://drive.google.com/drive/folders/{self.location}"
        return self.location

    def describe(self) -> str:
        """One line for ``consistentzoo info`` and the cards."""
        known = (
            f"sha256 {self.sha256}"
            if self.sha256
            else (f"sha256 prefix {self.sha256_prefix}" if self.sha256_prefix else "no published hash")
        )
        return f"{self.provider}: {self.url} ({self.format}, licence {self.license}, {known})"


@dataclass(frozen=True)
class ZooWeights:
    """Metadata of one weight tag (``{zoo_name}.{dataset_tag}``).

    Attributes:
        zoo_name: registered model name, e.g. ``resnet18_gmp_gc``.
        tag: dataset tag after the dot, e.g. ``in1k``.
        architecture: timm architecture the weights load into (``resnet18``, ``resnet50``, ``alexnet``).
        model_args: keyword arguments that rebuild the architecture (e.g. ``global_pool="max"``).
        objective: training objective, one of :data:`OBJECTIVES`.
        objective_args: the objective's hyper-parameters as the recipe uses them.
        dataset: training dataset name as ``consistentzoo.data.load`` knows it.
        num_classes: classifier outputs.
        label_names: class names in output order, or None where they come from the dataset at training time.
        input_size: (C, H, W) the model is trained at.
        num_params: parameter count of the built model (checked by the schema test).
        papers: keys of :data:`PAPERS` this tag reproduces.
        reported: numbers the papers report for this model.
        measured: metrics we measured (metric name -> value); empty until measured.
        hub: published location, or None while the weights are not published.
        local_dir: directory inside the repository holding committed weights, or None.
        sha256: sha256 of the committed ``local_dir`` weights (Hub weights carry theirs in ``hub``).
        upstream: the authors' release, converted and cached when nothing above holds the weights, or None.
        license: licence of the weights.
        description: one sentence for cards and ``torch.hub.help``.
    """

    zoo_name: str
    tag: str
    architecture: str
    model_args: dict[str, Any]
    objective: str
    objective_args: dict[str, Any]
    dataset: str
    num_classes: int
    num_params: int
    papers: tuple[str, ...]
    label_names: tuple[str, ...] | None = None
    input_size: tuple[int, int, int] = (3, 224, 224)
    reported: tuple[Reported, ...] = ()
    measured: dict[str, float] = field(default_factory=dict)
    hub: HubLocation | None = None
    local_dir: str | None = None
    sha256: str | None = None
    upstream: UpstreamSource | None = None
    license: str = "mit"
    description: str = ""

    @property
    def name(self) -> str:
        """Full name with tag, e.g. ``resnet50_cgc.in1k``."""
        return f"{self.zoo_name}.{self.tag}"

    @property
    def recipe(self) -> str:
        """Path of the recipe config that reproduces the tag, relative to the repository root."""
        return f"recipes/configs/{self.name}.yaml"

    @property
    def recipe_command(self) -> str:
        """The command that trains these weights."""
        script = "finetune" if self.objective_args.get("finetune") else f"train_{self.objective}"
        return f"accelerate launch recipes/{script}.py --config {self.recipe}"

    @property
    def expected_sha256(self) -> str | None:
        """The sha256 any copy of these weights must have (committed or on the Hub), if recorded."""
        return self.sha256 or (self.hub.sha256 if self.hub else None)

    @property
    def published(self) -> bool:
        return self.hub is not None or self.local_dir is not None or self.upstream is not None

    def timm_cfg(self) -> dict[str, Any]:
        """The timm ``pretrained_cfg`` fields of this tag (hub id only once published)."""
        return dict(
            hf_hub_id=self.hub.repo_id if self.hub else None,
            num_classes=self.num_classes,
            input_size=self.input_size,
            label_names=self.label_names,
            license=self.license,
            description=self.description,
            paper_ids=",".join(self.papers),
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (used by cards and ``consistentzoo info``)."""
        out = dataclasses.asdict(self)
        out.update(name=self.name, recipe=self.recipe, recipe_command=self.recipe_command)
        return out


_WEIGHTS: dict[str, ZooWeights] = {}


def register_weights(records: list[ZooWeights]) -> list[ZooWeights]:
    """Add tag records to the registry; a tag registered twice is an error, not an overwrite."""
    for rec in records:
        if rec.name in _WEIGHTS:
            raise ValueError(f"weight tag {rec.name!r} is already registered")
        if rec.objective not in OBJECTIVES:
            raise ValueError(f"{rec.name}: objective {rec.objective!r} is not one of {OBJECTIVES}")
        _WEIGHTS[rec.name] = rec
    return records


def attach_upstream(records: list[ZooWeights], sources: dict[str, UpstreamSource]) -> list[ZooWeights]:
    """The records with their upstream release filled in (and its licence, which is the weights' licence)."""
    unknown = set(sources) - {r.name for r in records}
    if unknown:
        raise ValueError(f"upstream sources for unregistered tags: {sorted(unknown)}")
    return [
        dataclasses.replace(r, upstream=src, license=src.license) if (src := sources.get(r.name)) else r
        for r in records
    ]


def list_weights(zoo_name: str | None = None) -> list[ZooWeights]:
    """All registered tag records, optionally only those of one zoo name."""
    return [w for w in _WEIGHTS.values() if zoo_name is None or w.zoo_name == zoo_name]


def get_weights(name: str) -> ZooWeights:
    """The record of ``zoo_name.tag``; raises :class:`~consistentzoo.models.errors.UnknownModelError`."""
    from .errors import UnknownModelError

    try:
        return _WEIGHTS[name]
    except KeyError:
        raise UnknownModelError(name, list(_WEIGHTS), kind="weight tag") from None
