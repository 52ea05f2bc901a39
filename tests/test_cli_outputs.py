"""What the commands print: evaluate's table and files, info's measured numbers, list's help and weight marks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import consistentzoo
from consistentzoo.cli import main
from consistentzoo.models.metadata import REPO_ROOT

TAG = "resnet18_cgc.fashion_scenes"  # committed weights


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A two-class ImageFolder of four 32 px noise images."""
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / "photos" / c / f"{i}.png"
            )
    return tmp_path / "photos"


def _evaluate(folder: Path, out: Path, *extra: str) -> int:
    argv = ["evaluate", "--model", TAG, "--dataset", "imagefolder", "--split", "train", "--source", str(folder)]
    argv += ["--cache-dir", str(out.parent / "cache"), "--metrics", "top1", "--cls-size", "32", "--cls-crop", "32"]
    return main([*argv, "--out", str(out), "--no-progress", "--cpu", *extra])


def test_evaluate_prints_the_table_and_the_files_written(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "res" / "r.json"
    assert _evaluate(folder, out) == 0
    printed = capsys.readouterr().out
    row = json.loads(out.read_text())["results"][0]
    assert (row["model"], row["tag"], row["metric"]) == ("resnet18_cgc", "fashion_scenes", "top1")
    # the tag column names the weights (model.tag), the dataset column the data evaluated
    assert f"| resnet18_cgc | {TAG} | imagefolder | train |  | top1 | {row['value']:.4f} |" in printed
    assert f"wrote {out} and {out.with_suffix('.md')}" in printed
    assert printed.split("\n\nwrote")[0].strip() == out.with_suffix(".md").read_text().strip()
    # random weights are no weight tag
    assert _evaluate(folder, out, "--pretrained", "false") == 0
    assert "| resnet18_cgc | - | imagefolder |" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"][0]["tag"] is None


def test_info_shows_the_card_metrics(capsys) -> None:
    assert main(["info", TAG]) == 0
    printed = capsys.readouterr().out
    assert "none yet" not in printed and f"model_cards/{TAG}/metrics.json" in printed
    rows = json.loads((REPO_ROOT / "model_cards" / TAG / "metrics.json").read_text())["results"]
    for r in rows:  # every measured number, under the method name the CLI accepts
        key = r["metric"] if r["method"] is None else f"{r['metric']}_{r['method']}"
        assert f"{key:24} {r['value']:.4g}" in printed
    assert main(["info", "resnet50_cgc.in1k"]) == 0
    assert "measured      none yet" in capsys.readouterr().out


def test_list_help_and_weight_marks(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["list", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "Args:" not in text and "Returns:" not in text and "weights" in text and "--tags" in text
    assert main(["list", "--tags"]) == 0
    lines = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    for rec in consistentzoo.list_weights():
        if rec.local_dir:
            expected = "weights in the repository"
        elif rec.upstream is not None:
            expected = "weights upstream release, downloaded and converted on first use"
        else:
            expected = f"no weights yet; train: {rec.recipe_command}"
        assert lines[rec.name] == expected
    assert main(["list", "resnet18_c*"]) == 0
    assert f"resnet18_cgc  weights: {TAG} (in the repository)" in capsys.readouterr().out
