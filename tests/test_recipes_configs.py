"""Every registered weight tag has a recipe config that loads, and that config agrees with the tag's metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

import consistentzoo
from consistentzoo.models.metadata import REPO_ROOT
from consistentzoo.training.config import load_config

TAGS = consistentzoo.list_weights()
BOOKKEEPING = {"finetune", "init", "label_fraction"}  # how the tag was trained, not objective arguments


@pytest.mark.parametrize("rec", TAGS, ids=[w.name for w in TAGS])
def test_config_matches_the_tag(rec: consistentzoo.models.ZooWeights) -> None:
    path = REPO_ROOT / rec.recipe
    assert path.is_file(), f"{rec.name}: {rec.recipe} is missing"
    cfg = load_config(path)
    assert cfg.tag == rec.name
    assert (cfg.model.name, cfg.model.num_classes, cfg.objective.name) == (rec.zoo_name, rec.num_classes, rec.objective)
    assert cfg.data.image_size == rec.input_size[1]

    def plain(args: dict) -> dict:  # YAML lists, records tuples; the zoo name sets the pooling
        return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in args.items() if k != "global_pool"}

    assert plain(cfg.model.kwargs) == plain(rec.model_args)  # the architecture the weights were trained with
    assert cfg.model.init == rec.objective_args.get("init")
    assert cfg.data.label_fraction == rec.objective_args.get("label_fraction")
    for key, value in rec.objective_args.items():
        if key not in BOOKKEEPING:
            assert cfg.objective.args[key] == value, key
    script = "finetune" if rec.objective_args.get("finetune") else f"train_{rec.objective}"
    assert (REPO_ROOT / "recipes" / f"{script}.py").is_file()


def test_no_config_without_a_tag() -> None:
    names = {f"{w.name}.yaml" for w in TAGS}
    assert {p.name for p in (Path(REPO_ROOT) / "recipes" / "configs").glob("*.yaml")} <= names
