"""Config loading: unknown keys and wrong types are errors that name the key and the valid ones, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_training_support import tiny_config, write_config

from consistentzoo.training.config import ConfigError, apply_overrides, config_from_dict, load_config
from consistentzoo.training.recipe import parse_args, resolve


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, "gc", {"lam": 25.0}))
    cfg = load_config(path, ["optim.lr=1e-3", "schedule.milestones=[10, 20]", "objective.args.lam=5"])
    assert cfg.optim.lr == pytest.approx(1e-3)  # YAML reads 1e-3 as a string: float fields accept it
    assert cfg.schedule.milestones == [10, 20]
    assert cfg.objective.args == {"lam": 5}
    assert cfg.model.kwargs == {"channels": [8, 16, 32, 64]}


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("optim.lrr=0.1", ["'optim.lrr'", "lr", "momentum", "weight_decay"]),
        ("bogus=1", ["'bogus'", "model", "data", "train"]),
        ("train.epochs=ten", ["train.epochs", "int", "batch_size"]),
        ("train.epochs=2.5", ["train.epochs", "int"]),
        ("model.freeze_bn=3", ["model.freeze_bn", "bool"]),
        ("optim.lr=fast", ["optim.lr", "float"]),
        ("objective.args.lamda=1", ["objective.args.lamda", "lam", "resolution"]),
        ("objective.args.lam=big", ["objective.args.lam", "number"]),
        ("objective.name=xent", ["objective.name", "cgc", "guided"]),
        ("data.augment=mixup", ["data.augment", "rrc", "pad_crop"]),
        ("train.batch_size=0", ["train.batch_size", ">= 1"]),
    ],
)
def test_bad_key_or_type_names_key_and_valid_ones(tmp_path: Path, override: str, names: list[str]) -> None:
    path = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, "gc"))
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    for name in names:
        assert name in str(info.value)


def test_override_syntax() -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"tag": "x"}, ["tag.y=1"])


def test_config_round_trips_through_yaml(tmp_path: Path) -> None:
    from consistentzoo.training.config import config_to_dict, save_config

    cfg = config_from_dict(tiny_config(tmp_path, "cgc", {"lam": 0.5, "tau": 0.5}))
    again = load_config(save_config(cfg, tmp_path / "resolved.yaml"))
    assert config_to_dict(again) == config_to_dict(cfg)


def test_errors_come_before_any_work(tmp_path: Path) -> None:
    """The recipe resolves the config before Accelerate, the model or the data are touched: no output is made."""
    path = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "no-such-data", "gc"))
    out = tmp_path / "out"
    args = parse_args("", ["--config", str(path), "--output-dir", str(out), "--set", "train.epoch=3"])
    with pytest.raises(ConfigError, match="'train.epoch'.*epochs"):
        resolve(args, "gc")
    args = parse_args("", ["--config", str(path), "--output-dir", str(out)])
    with pytest.raises(ConfigError, match="train_gc.py"):
        resolve(args, "cgc")  # a GC config given to the CGC recipe
    assert not out.exists()
