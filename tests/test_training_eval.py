"""Evaluation during training goes through the metrics evaluator: the configured metrics reach metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures import data_native as nat
from test_training_support import tiny_config

from consistentzoo.training.config import ConfigError, config_from_dict
from consistentzoo.training.loop import Hardware, train


def test_eval_every_step_writes_the_configured_metrics(tmp_path: Path) -> None:
    """CUB copy (3 training images, 3 test images with boxes): top-1 and the pointing game at every step."""
    source = nat.write_cub(tmp_path / "cub")
    raw = tiny_config(tmp_path, "ce", max_steps=2, eval_every=1, eval_metrics=["top1", "pg"])
    raw["data"].update(
        dataset="cub200", source=str(source), eval_split="test", load_kwargs={"cache_dir": str(tmp_path / "cache")}
    )
    raw["train"]["batch_size"] = 3
    hw = Hardware(output_dir=tmp_path / "out", cpu=True, num_workers=0, log_with=None)
    metrics = train(config_from_dict(raw), hw)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    evals = [h for h in saved["history"] if any(k.startswith("eval/") for k in h)]
    assert [h["step"] for h in evals] == [1, 2]
    for h in evals:
        assert set(h) == {"step", "eval/top1", "eval/pg"}
        assert 0.0 <= h["eval/top1"] <= 1.0 and 0.0 <= h["eval/pg"] <= 1.0
    assert saved["eval"] == evals[-1] == metrics["eval"]  # the final evaluation is the last step's, not a second one


@pytest.mark.parametrize(
    ("key", "value", "names"),
    [
        ("eval_metrics", ["top1", "pointing"], ["train.eval_metrics", "'pointing'", "pg", "insertion"]),
        ("eval_metrics", [], ["train.eval_metrics", "at least one"]),
        ("eval_method", "gradcam+", ["train.eval_method", "hirescam", "gradcam++"]),
    ],
)
def test_bad_eval_settings_name_the_valid_ones(tmp_path: Path, key: str, value: object, names: list[str]) -> None:
    raw = tiny_config(tmp_path, "ce", **{key: value})
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    for name in names:
        assert name in str(info.value)
