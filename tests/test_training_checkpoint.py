"""Checkpoints: atomic writes, corrupt / foreign checkpoints, exact resume on the CPU, and the NaN rule."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training_support import tiny_config, write_imagefolder

from consistentzoo.training.checkpoint import (
    CheckpointError,
    TrainerState,
    find_resumable,
    list_checkpoints,
    verify_checkpoint,
    write_checkpoint,
)
from consistentzoo.training.config import config_from_dict
from consistentzoo.training.loop import Callback, Hardware, Loop, NonFiniteLossError, train


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagefolder(tmp_path_factory.mktemp("folder"))


def _write(directory: Path, step: int, payload: bytes = b"weights", fail: bool = False) -> Path:
    def write_main(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(payload)
        if fail:
            raise OSError("disk full")

    state = TrainerState(step=step, model_name="m", num_classes=3, fingerprint="f")
    return write_checkpoint(directory, state, is_main=True, rank=0, barrier=lambda: None, write_main=write_main, keep=3)


def test_write_is_atomic_and_a_crash_leaves_nothing_that_looks_valid(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    good = _write(ckpts, 2)
    assert verify_checkpoint(good).step == 2
    with pytest.raises(OSError, match="disk full"):
        _write(ckpts, 4, fail=True)
    assert list_checkpoints(ckpts) == [good]  # the half-written one stays a .tmp-* folder, ignored
    assert (ckpts / ".tmp-step_000004").is_dir()
    assert find_resumable("auto", ckpts) == good
    _write(ckpts, 4)  # the next write replaces the stale temporary folder
    assert [p.name for p in list_checkpoints(ckpts)] == ["step_000002", "step_000004"]


def test_corrupt_checkpoint_falls_back_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpts = tmp_path / "checkpoints"
    good = _write(ckpts, 2)
    bad = _write(ckpts, 4)
    (bad / "model.safetensors").write_bytes(b"weightz")  # same size, other bytes
    with caplog.at_level(logging.WARNING):
        assert find_resumable("auto", ckpts) == good
    assert "step_000004" in caplog.text and "sha256" in caplog.text
    with pytest.raises(CheckpointError, match="corrupt"):
        find_resumable(bad, ckpts)  # an explicit path is never replaced by another
    (good / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        verify_checkpoint(good)
    assert find_resumable("auto", ckpts) is None


class _Kill(Callback):
    """Simulates a killed process: raises after ``step`` optimiser steps (before that step is checkpointed)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, loop: Loop) -> None:
        if loop.state.step == self.step:
            raise KeyboardInterrupt("killed")


@pytest.mark.parametrize("objective", ["gc"])
def test_resume_after_a_kill_equals_the_uninterrupted_run(tmp_path: Path, data: Path, objective: str) -> None:
    raw = tiny_config(data, objective, {"lam": 25.0}, max_steps=5, checkpoint_every=2)
    cfg = config_from_dict(raw)
    hw = {"cpu": True, "num_workers": 0, "log_with": None}
    train(cfg, Hardware(output_dir=tmp_path / "straight", **hw))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, Hardware(output_dir=tmp_path / "killed", **hw), callbacks=[_Kill(3)])
    assert [p.name for p in list_checkpoints(tmp_path / "killed" / "checkpoints")] == ["step_000002"]
    metrics = train(cfg, Hardware(output_dir=tmp_path / "killed", resume="auto", **hw))
    assert metrics["steps"] == 5  # crosses an epoch boundary (3 steps per epoch) and the LR milestone
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path: Path, data: Path) -> None:
    hw = {"cpu": True, "num_workers": 0, "log_with": None}
    train(config_from_dict(tiny_config(data, "ce", max_steps=1)), Hardware(output_dir=tmp_path, **hw))
    other = tiny_config(data, "ce", max_steps=2)
    other["model"]["num_classes"] = 4
    with pytest.raises(CheckpointError, match="num_classes"):
        train(config_from_dict(other), Hardware(output_dir=tmp_path, resume="auto", **hw))
    other = tiny_config(data, "ce", max_steps=2)
    other["optim"]["lr"] = 0.5
    with pytest.raises(CheckpointError, match="another run"):
        train(config_from_dict(other), Hardware(output_dir=tmp_path, resume="auto", **hw))


def test_nan_loss_stops_with_step_and_batch_ids(tmp_path: Path, data: Path) -> None:
    cfg = config_from_dict(tiny_config(data, "gc", {"lam": float("nan")}, checkpoint_every=1))
    with pytest.raises(NonFiniteLossError, match="step 1") as info:
        train(cfg, Hardware(output_dir=tmp_path, cpu=True, num_workers=0, log_with=None))
    report = json.loads((tmp_path / "nan_report.json").read_text())
    assert report["step"] == 1 and len(report["batches"][0]["ids"]) == 4
    assert report["batches"][0]["ids"][0] in str(info.value)
    assert list_checkpoints(tmp_path / "checkpoints") == []  # the bad step was not applied nor saved
