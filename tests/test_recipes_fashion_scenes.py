"""The README's main job, shrunk: scenes -> CE -> CGC -> evaluation -> table, overlay figure and cards."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from consistentzoo.data.fashion_scenes import DEBIAN_DIR
from consistentzoo.models.metadata import REPO_ROOT

pytestmark = pytest.mark.skipif(
    not DEBIAN_DIR.is_dir(), reason=f"{DEBIAN_DIR} absent: apt-get install dataset-fashion-mnist"
)


def _recipe():
    spec = importlib.util.spec_from_file_location("fashion_scenes_recipe", REPO_ROOT / "recipes" / "fashion_scenes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_pipeline_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    recipe = _recipe()
    # the README's main job in its CI form (--smoke), as CI runs it
    monkeypatch.setattr(sys, "argv", ["fashion_scenes.py", "--smoke", "--out", str(tmp_path)])
    recipe.main(recipe.parse_args())
    out, err = capsys.readouterr()
    assert "| metric (split) | resnet18_ce | resnet18_cgc |" in out and "top1 (test_context)" in out
    summary = json.loads((tmp_path / "results.json").read_text())
    table = summary["rows"]
    assert summary["mode"] == "smoke" and summary["eval_samples"] == 16
    # every stage timed; progress bars on training and on the evaluator's metric families
    assert set(summary["timings"]) >= {"scenes", "train resnet18_ce seed 0", "evaluate resnet18_cgc seed 0"}
    assert "evaluate resnet18_ce test" in err and "insertion/deletion" in err and "train:" in err
    assert {r["metric"] for r in table} >= {"top1", "pg", "spg", "ch", "nqh", "insertion_auc", "cgc_loss", "ssim"}
    for name in ("scenes.png", "gradcam_overlays.png", "results.md"):
        assert (tmp_path / name).stat().st_size > 0
    for zoo in ("resnet18_ce", "resnet18_cgc"):
        card = (tmp_path / "cards" / f"{zoo}.fashion_scenes" / "README.md").read_text()
        assert "model-index" in card and "gradcam_overlays.png" in card
        cfg = json.loads((tmp_path / "seed0" / f"{zoo}.fashion_scenes" / "config.json").read_text())
        assert cfg["consistentzoo"]["objective"] == zoo.split("_")[1]
    # the CGC run started from the CE run of the same seed, not from scratch or from committed weights
    cgc_cfg = (tmp_path / "seed0" / "resnet18_cgc.fashion_scenes" / "config.yaml").read_text()
    assert str(tmp_path / "seed0" / "resnet18_ce.fashion_scenes") in cgc_cfg
