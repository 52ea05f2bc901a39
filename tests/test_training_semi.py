"""Semi-supervised CGC: the unlabelled stream feeds the CGC term only, cycles on its own, and resumes exactly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from test_training_support import tiny_config, write_imagefolder

from consistentzoo.training import objectives as training_objectives
from consistentzoo.training.checkpoint import list_checkpoints
from consistentzoo.training.config import ConfigError, config_from_dict
from consistentzoo.training.data import load_splits
from consistentzoo.training.loop import Callback, Hardware, Loop, train

HW = {"cpu": True, "num_workers": 0, "log_with": None}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagefolder(tmp_path_factory.mktemp("folder"))  # 12 training images, 3 classes


def _semi_config(data: Path, **train: Any) -> dict[str, Any]:
    """6 labelled images (batch 3: 2 steps per epoch) and 6 unlabelled (batch 2: 3 steps per cycle)."""
    raw = tiny_config(data, "cgc", {"lam": 0.25, "tau": 0.5}, **train)
    raw["data"].update(label_fraction=0.5, unlabelled_batch_size=2, eval_split=None)
    raw["train"]["batch_size"] = 3
    return raw


class _Recorder:
    """Wraps CGC's batch adapter: records each batch's ids and whether labels reached the loss."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bool]] = []

    def __call__(self, loss: torch.nn.Module, model: torch.nn.Module, batch: dict[str, Any]) -> Any:
        self.calls.append((list(batch["id"]), training_objectives._labels(batch) is not None))
        return training_objectives._call_cgc(loss, model, batch)


def test_unlabelled_images_reach_the_cgc_term_only(tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config_from_dict(_semi_config(data, max_steps=4))
    splits = load_splits(cfg)
    labelled_ids = set(splits.train["id"])
    unlabelled_ids = set(splits.unlabelled["id"])
    assert len(labelled_ids) == len(unlabelled_ids) == 6 and not labelled_ids & unlabelled_ids

    recorder = _Recorder()
    spec = training_objectives.OBJECTIVES["cgc"]
    monkeypatch.setitem(training_objectives.OBJECTIVES, "cgc", dataclasses.replace(spec, call=recorder))
    metrics = train(cfg, Hardware(output_dir=tmp_path, **HW))

    # each step: one labelled call (with labels: CE + CGC) then one unlabelled call (no labels: CGC only)
    assert len(recorder.calls) == 2 * 4
    labelled_calls, unlabelled_calls = recorder.calls[0::2], recorder.calls[1::2]
    assert all(has_labels and set(ids) <= labelled_ids and len(ids) == 3 for ids, has_labels in labelled_calls)
    assert all(not has_labels and set(ids) <= unlabelled_ids and len(ids) == 2 for ids, has_labels in unlabelled_calls)
    # the unlabelled stream cycles on its own: its first 3 steps see each unlabelled image once, then it reshuffles
    assert sorted(i for ids, _ in unlabelled_calls[:3] for i in ids) == sorted(unlabelled_ids)
    assert metrics["unlabelled"] == {
        "images": 6,
        "batch_size": 2,
        "steps_per_cycle": 3,
        "cycle": 1,
        "step_in_cycle": 1,
    }
    assert metrics["epoch"] == 2.0  # 4 labelled steps = 2 epochs of 2 steps
    last = metrics["train_last"]
    assert last["unlabelled_ce"] == 0.0 and "unlabelled_ce_orig" not in last and "unlabelled_ce_xe" not in last
    assert last["unlabelled_consistency"] > 0 and "ce_orig" in last
    assert last["loss"] == pytest.approx(last["ce"] + 0.25 * (last["consistency"] + last["unlabelled_consistency"]))


class _Kill(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, loop: Loop) -> None:
        if loop.state.step == self.step:
            raise KeyboardInterrupt("killed")


def test_resume_with_the_unlabelled_stream_is_exact(tmp_path: Path, data: Path) -> None:
    # 5 steps cross the labelled epochs (every 2 steps) and the unlabelled cycle (every 3) at different steps
    cfg = config_from_dict(_semi_config(data, max_steps=5, checkpoint_every=2))
    straight = train(cfg, Hardware(output_dir=tmp_path / "straight", **HW))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, Hardware(output_dir=tmp_path / "killed", **HW), callbacks=[_Kill(3)])
    (ckpt,) = list_checkpoints(tmp_path / "killed" / "checkpoints")
    state = json.loads((ckpt / "state.json").read_text())
    assert (state["step"], state["unlabelled_cycle"], state["unlabelled_step"]) == (2, 0, 2)
    resumed = train(cfg, Hardware(output_dir=tmp_path / "killed", resume="auto", **HW))
    assert resumed["unlabelled"] == straight["unlabelled"]
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_unlabelled_config_is_checked(data: Path) -> None:
    raw = _semi_config(data)
    raw["data"]["label_fraction"] = None
    with pytest.raises(ConfigError, match="label_fraction"):
        config_from_dict(raw)
    raw = tiny_config(data, "ce")
    raw["data"].update(label_fraction=0.5, unlabelled_batch_size=4)
    with pytest.raises(ConfigError, match="no unlabelled term.*cgc"):
        config_from_dict(raw)
    raw = _semi_config(data)
    raw["data"]["unlabelled_batch_sizes"] = 2
    with pytest.raises(ConfigError, match="unlabelled_batch_sizes.*unlabelled_batch_size"):
        config_from_dict(raw)
    # CE with label_fraction: the labelled share only, as before; CGC with unlabelled_batch_size 0: the same
    raw = tiny_config(data, "ce")
    raw["data"]["label_fraction"] = 0.5
    assert load_splits(config_from_dict(raw)).unlabelled is None
    raw = _semi_config(data)
    raw["data"]["unlabelled_batch_size"] = 0
    assert load_splits(config_from_dict(raw)).unlabelled is None


def test_fingerprint_of_a_config_without_the_new_keys_is_unchanged(data: Path) -> None:
    """Checkpoints written before ``data.unlabelled_batch_size`` / ``train.eval_*`` existed still resume."""
    import hashlib

    from consistentzoo.training.config import config_to_dict
    from consistentzoo.training.loop import _RESUME_FREE, _fingerprint

    cfg = config_from_dict(tiny_config(data, "gc", {"lam": 25.0}))
    raw = config_to_dict(cfg)
    for section, key in {*_RESUME_FREE, ("data", "unlabelled_batch_size")}:
        raw[section].pop(key)
    assert "eval_metrics" not in raw["train"] and "eval_method" not in raw["train"]
    old = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert _fingerprint(cfg) == old
    semi = config_from_dict(_semi_config(data))
    other = config_from_dict({**_semi_config(data), "data": {**_semi_config(data)["data"], "unlabelled_batch_size": 3}})
    assert _fingerprint(semi) != _fingerprint(other)
