"""Statements of the README checked against the code, so that they stay true."""

from __future__ import annotations

import json
import re

from consistentzoo import list_weights, saliency
from consistentzoo.cli import build_parser
from consistentzoo.models.metadata import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_committed_weights_are_named_and_no_claim_that_none_exist() -> None:
    assert "No weights are published yet" not in README
    committed = sorted(w.name for w in list_weights() if w.local_dir)
    assert committed == ["resnet18_ce.fashion_scenes", "resnet18_cgc.fashion_scenes", "resnet18_gc.fashion_scenes"]
    assert "`resnet18_{ce,gc,cgc}.fashion_scenes`" in README
    for name in committed:
        assert (REPO_ROOT / "weights" / name / "model.safetensors").is_file()


def test_every_subcommand_is_in_the_readme() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in sub.choices:
        assert f"consistentzoo {command} " in README, command


def test_one_name_for_the_evaluation_method() -> None:
    """The cards, the paper keys and the README call element-wise Grad-CAM by the name the CLI accepts."""
    assert "hirescam" in saliency.METHODS and "Evaluated with `hirescam`" in README
    for path in (REPO_ROOT / "model_cards").rglob("*"):
        if path.suffix in (".md", ".json"):
            assert "egradcam" not in path.read_text(), path
    for path in (REPO_ROOT / "model_cards").glob("*/metrics.json"):
        for row in json.loads(path.read_text())["results"]:
            assert row["method"] is None or row["method"] in saliency.METHODS
    assert not any("egradcam" in r.metric for w in list_weights() for r in w.reported)


def test_no_pointer_to_files_a_clone_lacks() -> None:
    assert "DESIGN.md" not in README
    for match in re.findall(r"`((?:consistentzoo|recipes|tests|weights|model_cards)/[\w./-]+)`", README):
        assert (REPO_ROOT / match.rstrip("/")).exists(), match


def test_cpu_only_torch_and_ci_runs_command_one() -> None:
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in README
    command1 = next(line for line in README.splitlines() if line.startswith("apt-get install -y dataset-fashion-mnist"))
    assert "pip install -e . &&" in command1 and command1.endswith("python recipes/fashion_scenes.py")
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    # CI: the same install (no extras) in a venv of its own, then the job's short form
    assert re.search(
        r"-m venv (\S+) && \1/bin/pip install -q -e \. && \1/bin/python recipes/fashion_scenes.py --smoke", ci
    )
