"""Helpers of the training and recipe tests (no tests here): a tiny image folder and tiny recipe configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

#: A ResNet-18 with narrow stages (190 k parameters): the same code path as the zoo's, fast on two CPU cores.
TINY_MODEL = {"name": "resnet18_ce", "num_classes": 3, "kwargs": {"channels": [8, 16, 32, 64]}}


def write_imagefolder(root: Path, per_class: int = 4, val_per_class: int = 1, classes: int = 3) -> Path:
    """``root/{train,val}/class<c>/<k>.png``: 40×36 noise images with one saturated channel per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            for k in range(n):
                path = root / split / f"class{c}" / f"{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                arr = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
                arr[..., c % 3] = 255
                Image.fromarray(arr).save(path)
    return root


def tiny_config(data: Path, objective: str = "ce", args: dict[str, Any] | None = None, **train: Any) -> dict[str, Any]:
    """A recipe config for the tiny folder: 32 px, batch 4, 3 steps per epoch, no evaluation during training."""
    model = dict(TINY_MODEL, name=f"resnet18_{objective}")
    return {
        "tag": f"tiny_{objective}",
        "model": model,
        "data": {
            "dataset": "imagefolder",
            "source": str(data),
            "image_size": 32,
            "load_kwargs": {"cache_dir": str(data / ".cache")},
        },
        "objective": {"name": objective, "args": args or {}},
        "optim": {"lr": 0.05},
        "schedule": {"milestones": [1]},
        "train": {"epochs": 2, "batch_size": 4, "checkpoint_every": 0, "log_every": 1, **train},
    }


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    """Write a config mapping as YAML."""
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
