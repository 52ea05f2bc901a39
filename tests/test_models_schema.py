"""Every registered weight tag against the metadata schema, in the style of torchvision's schema test."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import consistentzoo
from consistentzoo import data
from consistentzoo.models import ZooWeights, list_weights
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
