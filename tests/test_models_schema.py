"""Every registered weight tag against the metadata schema, in the style of torchvision's schema test."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

import consistentzoo
from consistentzoo import data
from consistentzoo.models import ZooWeights, get_weights, list_weights
from consistentzoo.models.metadata import ARCHITECTURES, OBJECTIVES, REPO_ROOT
from consistentzoo.models.reported import PAPERS, REPORTED

MANDATORY = (
    "zoo_name", "tag", "architecture", "objective", "dataset", "num_classes", "num_params", "papers", "license",
    "description",
)  # fmt: skip


def schema_problems(rec: ZooWeights) -> list[str]:
    """What is wrong with a record (empty list: valid)."""
    problems = [f"{f} is empty" for f in MANDATORY if getattr(rec, f) in (None, "", (), 0)]
    if problems:
        return problems
    if rec.architecture not in ARCHITECTURES:
        problems.append(f"architecture {rec.architecture!r}")
    if rec.objective not in OBJECTIVES:
        problems.append(f"objective {rec.objective!r}")
    if not rec.zoo_name.startswith(rec.architecture) or not rec.zoo_name.endswith("_" + rec.objective):
        problems.append("zoo name does not match architecture/objective")
    if ("_gmp_" in rec.zoo_name) != (rec.model_args.get("global_pool") == "max"):
        problems.append("GMP name without global_pool='max' (or the reverse)")
    problems += [f"unknown paper {p!r}" for p in rec.papers if p not in PAPERS]
    problems += [f"number from paper {r.paper!r} not in papers" for r in rec.reported if r.paper not in rec.papers]
    if rec.label_names is not None and len(rec.label_names) != rec.num_classes:
        problems.append(f"{len(rec.label_names)} label names for {rec.num_classes} classes")
    if rec.dataset not in data.REGISTRY:
        problems.append(f"dataset {rec.dataset!r} has no loader in consistentzoo.data")
    if rec.hub is not None and len(rec.hub.sha256) != 64:
        problems.append("hub sha256 is not a hex sha256")
    if rec.upstream is not None:
        problems += upstream_problems(rec)
    return problems


# ../shared/reference/UPSTREAM_WEIGHTS.md: the files the papers' authors and torchvision released
UPSTREAM_TAGS = {
    "alexnet_ce.in1k", "alexnet_gc.in1k", "resnet18_ce.in1k", "resnet18_gc.in1k", "resnet18_gmp_ce.in1k",
    "resnet18_gmp_gc.in1k", "resnet50_ce.in1k", "resnet50_gc.in1k", "resnet50_gmp_ce.in1k", "resnet50_gmp_gc.in1k",
    "resnet18_gmp_ce.coco", "resnet18_gmp_gc.coco", "resnet50_cgc.in1k",
}  # fmt: skip
UPSTREAM_FORMATS = {"url": "torchvision_state_dict", "drive_file": "authors_pth_tar", "drive_folder": "authors_pth_tar"}


def upstream_problems(rec: ZooWeights) -> list[str]:
    """What is wrong with a record's upstream source."""
    src = rec.upstream
    problems = [
        f"upstream {f} is empty" for f in ("provider", "kind", "location", "format", "license") if not getattr(src, f)
    ]
    if src.kind not in UPSTREAM_FORMATS:
        return problems + [f"upstream kind {src.kind!r} not in {sorted(UPSTREAM_FORMATS)}"]
    if src.format != UPSTREAM_FORMATS[src.kind]:
        problems.append(f"upstream format {src.format!r} for a {src.kind} source")
    if src.license != rec.license:
        problems.append(f"licence {rec.license!r} differs from the upstream release's {src.license!r}")
    if src.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", src.sha256):
        problems.append("upstream sha256 is not a hex sha256")
    if src.sha256 and src.sha256_prefix and not src.sha256.startswith(src.sha256_prefix):
        problems.append("upstream sha256 does not start with its prefix")
    if src.kind == "url":
        # torchvision's files end in the first 8 hex digits of their sha256, which torch.hub checks
        name = src.location.rsplit("/", 1)[-1]
        if not src.location.startswith("https://") or src.filename != name:
            problems.append(f"upstream URL {src.location!r} is not https or its file name is not {src.filename!r}")
        if not (
            src.sha256_prefix and re.fullmatch(r"[0-9a-f]{8}", src.sha256_prefix) and f"-{src.sha256_prefix}." in name
        ):
            problems.append(f"upstream sha256_prefix {src.sha256_prefix!r} is not the 8 hex digits in {name!r}")
    else:
        if not re.fullmatch(r"[-\w]{25,}", src.location):
            problems.append(f"upstream Drive id {src.location!r} is malformed")
        if src.sha256_prefix is not None:
            problems.append("a Drive file has no published hash prefix (pin the full sha256 instead)")
    return problems


ALL = list_weights()


def test_every_zoo_name_registered_and_covered() -> None:
    names = consistentzoo.list_models()
    assert len(names) == 25
    assert {w.name for w in ALL} >= set(REPORTED), "paper numbers recorded for a tag that is not registered"
    # the GC paper's 2x2 grid of models, the CGC and SSIM fine-grained ones, and the guided CIFAR-100 one
    for arch in ("resnet18", "resnet50"):
        for name in (f"{arch}_ce", f"{arch}_gc", f"{arch}_gmp_ce", f"{arch}_gmp_gc", f"{arch}_cgc"):
            assert f"{name}.in1k" in {w.name for w in ALL}


@pytest.mark.parametrize("rec", ALL, ids=[w.name for w in ALL])
def test_schema(rec: ZooWeights) -> None:
    assert schema_problems(rec) == []
    with torch.device("meta"):
        model = consistentzoo.create_model(rec.name)
    assert sum(p.numel() for p in model.parameters()) == rec.num_params
    assert model.num_classes == rec.num_classes
    assert model.pretrained_cfg["tag"] == rec.tag


def test_schema_check_catches_a_removed_field() -> None:
    rec = ALL[0]
    for field in MANDATORY:
        broken = dataclasses.replace(rec, **{field: "" if isinstance(getattr(rec, field), str) else None})
        assert any(field in p for p in schema_problems(broken)), field


@pytest.mark.skipif(
    not any((REPO_ROOT / "recipes" / "configs").glob("*.yaml")), reason="recipes/configs/ comes with the recipes issue"
)
def test_recipe_configs_exist() -> None:
    assert [w.recipe for w in ALL if not (REPO_ROOT / w.recipe).is_file()] == []


def test_upstream_sources_are_the_released_files() -> None:
    assert {w.name for w in ALL if w.upstream} == UPSTREAM_TAGS
    assert get_weights("resnet50_ce.in1k").upstream.location.endswith("/resnet50-19c8e357.pth")
    assert get_weights("alexnet_ce.in1k").upstream.sha256_prefix == "4df8aa71"
    assert get_weights("resnet50_cgc.in1k").upstream.kind == "drive_folder"
    assert get_weights("resnet18_gc.coco").upstream is None  # the GC README links that row to the ImageNet file


def test_schema_check_catches_a_broken_upstream_source() -> None:
    rec = get_weights("resnet50_ce.in1k")
    src = rec.upstream
    broken = {
        "kind": dataclasses.replace(src, kind="ftp"),
        "format": dataclasses.replace(src, format="authors_pth_tar"),
        "sha256_prefix": dataclasses.replace(src, sha256_prefix="deadbeef"),
        "licence": dataclasses.replace(src, license="mit"),
        "Drive id": dataclasses.replace(get_weights("resnet18_gc.in1k").upstream, location="not-an-id"),
    }
    for what, bad in broken.items():
        assert any(what in p for p in schema_problems(dataclasses.replace(rec, upstream=bad))), what
