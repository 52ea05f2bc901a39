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
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def test_quick_pipeline_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    recipe = _recipe()
    panels = []  # every figure's panels, as the recipe hands them to save_grid
    save_grid = recipe.saliency.save_grid
    monkeypatch.setattr(
        recipe.saliency, "save_grid", lambda path, p, title: panels.append((p, title)) or save_grid(path, p, title)
    )
    # the README's main job in its CI form (--smoke), as CI runs it
    monkeypatch.setattr(sys, "argv", ["fashion_scenes.py", "--smoke", "--out", str(tmp_path)])
    recipe.main(recipe.parse_args())
    out, err = capsys.readouterr()
    assert (
        "| metric (split) | resnet18_ce | resnet18_ce control | resnet18_cgc |" in out and "top1 (test_context)" in out
    )
    assert (
        "all-zero maps scored as misses, pg/spg/ch (test) |" in out
        and out.count("Reading: CGC against its CE-only control") == 1
    )
    summary = json.loads((tmp_path / "results.json").read_text())
    table = summary["rows"]
    assert summary["mode"] == "smoke" and summary["eval_samples"] == 16
    # every stage timed; progress bars on training and on the evaluator's metric families
    assert set(summary["timings"]) >= {
        "scenes",
        "train shortcut-free resnet18_ce seed 0",
        "evaluate shortcut-free resnet18_cgc seed 0",
    }
    assert "evaluate resnet18_ce test" in err and "insertion/deletion" in err and "train:" in err
    assert {r["metric"] for r in table} >= {"top1", "pg", "spg", "ch", "nqh", "insertion_auc", "cgc_loss", "ssim"}
    # map metrics only on the in-distribution split (test, context 0.1), paired, with the zero-map count
    assert {r["split"] for r in table if r["metric"] != "top1"} == {"test"}
    seed0 = tmp_path / "shortcut-free" / "seed0"
    rows = json.loads((seed0 / "resnet18_cgc.fashion_scenes" / "eval.json").read_text())["results"]
    pg = next(r for r in rows if r["metric"] == "pg")
    assert pg["paired"] is True and "zero_map" not in pg["skipped"] and pg["n"] == 16
    assert {e["metric"] for e in summary["effects"]} >= {"ch", "cgc_loss", "top1"}
    for name in ("scenes_shortcut-free.png", "gradcam_overlays.png", "results.md"):
        assert (tmp_path / name).stat().st_size > 0
    for tag in ("resnet18_ce.fashion_scenes", "resnet18_ce.fashion_scenes_control", "resnet18_cgc.fashion_scenes"):
        card = (tmp_path / "cards" / tag / "README.md").read_text()
        assert "model-index" in card and "gradcam_overlays.png" in card
        cfg = json.loads((seed0 / tag / "config.json").read_text())
        assert cfg["consistentzoo"]["objective"] == ("cgc" if "cgc" in tag else "ce")
        # the training data of the shortcut-free setting: the style is the class in 10 % of the scenes
        assert "context: 0.1" in (seed0 / tag / "config.yaml").read_text()
    # the control and the CGC model start from the CE start of the same seed, not from scratch or committed weights
    for tag in ("resnet18_ce.fashion_scenes_control", "resnet18_cgc.fashion_scenes"):
        assert str(seed0 / "resnet18_ce.fashion_scenes") in (seed0 / tag / "config.yaml").read_text()
    # every model panel says the true class, the predicted class with its probability, and the class explained
    main_panels, title = panels[0]
    assert "predicted class" in title and "in distribution" in title
    for row in main_panels:
        assert row[0][1] is None and row[0][2].startswith("scene: true ")
        for _, saliency_map, text in row[1:]:
            label, classes, explained = text.split("\n")
            true, pred = classes.split(" | ")
            assert true.startswith("true ") and pred.startswith("pred ") and 0 <= float(pred.rsplit(" ", 1)[1]) <= 1
            assert explained == f"explained: {pred[5:].rsplit(' ', 1)[0]} (predicted)" and saliency_map.ndim == 2
        assert [t.split("\n")[0] for _, _, t in row[1:]] == ["resnet18_ce", "resnet18_ce control", "resnet18_cgc"]


def test_full_plan_pairs_every_model_with_a_control() -> None:
    """In --full every fine-tuned model has a control of the same setting and seed, from the same CE start."""
    from consistentzoo.training.config import load_config

    recipe = _recipe()
    runs = recipe.FULL
    for run in runs:
        cfg = load_config(recipe.CONFIGS / f"{run.tag}.yaml")
        assert cfg.data.load_kwargs["context"] == recipe.SETTINGS[run.setting].context
        if cfg.model.init:
            arch = run.zoo.rsplit("_", 1)[0]
            control = recipe.Run(run.setting, f"{arch}_ce", run.seed, control=True)
            assert control in runs and cfg.model.init == f"{arch}_ce.{recipe.SETTINGS[run.setting].tag}"
            ctl = load_config(recipe.CONFIGS / f"{control.tag}.yaml")
            assert (ctl.train.max_train_samples, ctl.train.batch_size, ctl.train.epochs, ctl.optim, ctl.schedule) == (
                cfg.train.max_train_samples, cfg.train.batch_size, cfg.train.epochs, cfg.optim, cfg.schedule,
            )  # fmt: skip
            assert runs.index(recipe.Run(run.setting, f"{arch}_ce", run.seed)) < runs.index(run)
    seeds = {
        z: {r.seed for r in runs if r.zoo == z and r.setting == recipe.SF and not r.control}
        for z in ("resnet18_ce", "resnet18_gc", "resnet18_cgc")
    }
    assert seeds == {z: {0, 1, 2} for z in seeds}
