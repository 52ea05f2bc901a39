"""Every recipe runs two steps on a tiny local image folder, and its output folder loads back as a model."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from test_training_support import TINY_MODEL, tiny_config, write_config, write_imagefolder

import consistentzoo

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ARGS = {"ce": {}, "gc": {"lam": 25.0}, "cgc": {"lam": 1.0, "tau": 0.5}, "ssim": {"alpha": 0.1}, "guided": {}}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagefolder(tmp_path_factory.mktemp("folder"))


def _run(script: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(RECIPES / script), run_name="__main__")


def _check_output(out: Path, name: str, **kwargs: object) -> None:
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and "eval/top1" in metrics["eval"]
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "step_000002" / "config.yaml").is_file()
    model = consistentzoo.create_model(name, pretrained=out, **kwargs)
    saved = load_file(out / "model.safetensors")
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_train_ce_full_resnet18_loads_in_timm(tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ResNet-18 (GMP): loads back through consistentzoo and stock timm; tensorboard logs are written."""
    cfg = tiny_config(data, "ce")
    cfg["model"] = {"name": "resnet18_gmp_ce", "num_classes": 3}
    config = write_config(tmp_path / "ce.yaml", cfg)
    out = tmp_path / "out"
    _run(
        "train_ce.py",
        ["--config", str(config), "--output-dir", str(out), "--max-steps", "2", "--num-workers", "0", "--cpu"],
        monkeypatch,
    )
    _check_output(out, "resnet18_gmp_ce")
    model = timm.create_model(f"local-dir:{out}")
    assert model.global_pool.pool_type == "max" and model.num_classes == 3
    assert list(out.rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("objective", ["gc", "cgc", "ssim", "guided"])
def test_objective_recipe_two_steps(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch, objective: str
) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(data, objective, ARGS[objective]))
    out = tmp_path / "out"
    argv = [
        "--config",
        str(config),
        "--output-dir",
        str(out),
        "--max-steps",
        "2",
        "--num-workers",
        "0",
        "--no-trackers",
    ]
    _run(f"train_{objective}.py", argv, monkeypatch)
    _check_output(out, f"resnet18_{objective}", channels=TINY_MODEL["kwargs"]["channels"])


def test_finetune_few_shot_from_a_recipe_output(tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fine-tune (CGC, 1-shot episode 0) from the weights folder of a CE run, with a fresh 3-class head."""
    base = tmp_path / "base"
    config = write_config(tmp_path / "ce.yaml", tiny_config(data, "ce"))
    common = ["--max-steps", "2", "--num-workers", "0", "--no-trackers"]
    _run("train_ce.py", ["--config", str(config), "--output-dir", str(base), *common], monkeypatch)
    cfg = tiny_config(data, "cgc", ARGS["cgc"])
    cfg["model"]["init"] = str(base)
    cfg["data"].update(few_shot=1, episode=0)
    cfg["train"]["batch_size"] = 3  # one image per class
    config = write_config(tmp_path / "ft.yaml", cfg)
    out = tmp_path / "ft"
    _run(
        "finetune.py",
        ["--config", str(config), "--output-dir", str(out), "--set", "train.epochs=2", *common],
        monkeypatch,
    )
    _check_output(out, "resnet18_cgc", channels=TINY_MODEL["kwargs"]["channels"])
    assert json.loads((out / "metrics.json").read_text())["eval"]["eval/top1"] >= 0.0
