"""The README's "Fine-tune a zoo model on your own images", run as written on a tiny folder (issue 12, item 4).

- the README's config, command and loading snippet run verbatim (in a folder holding ``my_photos/``), shortened to
  two steps by flags appended to the command;
- ``config.json`` and the pushed model card record the true dataset and folder, the start point and the class names;
- a Fashion-scenes config pointed at an ImageFolder names its ``load_kwargs`` key (was ``TypeError:
  load_imagefolder() got an unexpected keyword argument 'size'``) before anything loads.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_server import HubServer
from PIL import Image

from consistentzoo.hub import push
from consistentzoo.models.metadata import REPO_ROOT
from consistentzoo.training.config import ConfigError, load_config
from consistentzoo.training.recipe import recipe_main

SECTION = "## Fine-tune a zoo model on your own images"


def _readme_blocks() -> dict[str, str]:
    text = (REPO_ROOT / "README.md").read_text()
    assert SECTION in text, "the README lost its fine-tuning section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return {lang: body for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S) if lang != "text"}


def _photos(root: Path, per_class: int = 4) -> None:
    """``my_photos/{train,val}/{cat,dog}/``: 48×40 noise with a colour per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 1)):
        for c, name in enumerate(("cat", "dog")):
            folder = root / "my_photos" / split / name
            folder.mkdir(parents=True)
            for k in range(n):
                arr = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                arr[..., c] = 255
                Image.fromarray(arr).save(folder / f"{k:04d}.png")


def test_readme_finetune_example_runs_and_records_what_it_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _readme_blocks()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONSISTENTZOO_WEIGHTS", raising=False)
    _photos(tmp_path)
    (tmp_path / "my_photos.yaml").write_text(blocks["yaml"])
    command = shlex.split(blocks["bash"].strip())
    assert command[:2] == ["python", "recipes/finetune.py"]
    old = os.umask(0o022)
    try:
        recipe_main(None, argv=[*command[2:], "--max-steps", "2", "--no-trackers", "--num-workers", "0"])
    finally:
        os.umask(old)

    run = tmp_path / "runs" / "my_photos"
    namespace: dict = {}
    exec(blocks["python"], namespace)  # the README's loading snippet, as written
    assert namespace["classes"] == ["cat", "dog"]
    with torch.no_grad():
        assert namespace["model"](torch.rand(1, 3, 128, 128)).shape == (1, 2)
    # the starting tag's architecture (half width) came with its weights, though the config names none
    assert namespace["model"].layer1[0].conv1.out_channels == 32 and "kwargs" not in blocks["yaml"]

    facts = json.loads((run / "config.json").read_text())["consistentzoo"]
    assert facts["dataset"] == "imagefolder" and facts["data_source"] == "my_photos"
    assert facts["init"] == "resnet18_ce.fashion_scenes" and facts["tag"] == "my_photos"
    assert facts["label_names"] == ["cat", "dog"]
    assert {oct(p.stat().st_mode & 0o777) for p in run.glob("*") if p.is_file() and p.name != ".run.lock"} == {"0o644"}

    with HubServer() as hub:
        push(run, "me/my_photos", token="hf_test_write", endpoint=hub.url)
        card = hub.head("me/my_photos").files["README.md"].decode()
    assert "# resnet18_ce.my_photos" in card and "on imagefolder (my_photos)" in card
    assert "starting from `resnet18_ce.fashion_scenes`" in card and "cat, dog" in card
    assert "Input size 3×128×128, 2 classes (in output order: cat, dog)" in card
    assert "Fashion" not in card.split("## How it was trained", 1)[1]  # not the card of the tag it started from
    assert "torch.hub" not in card and 'create_model("resnet18_ce.my_photos"' not in card  # no zoo tag to load by


def test_a_zoo_config_pointed_at_a_folder_names_its_loader_option(tmp_path: Path) -> None:
    config = REPO_ROOT / "recipes" / "configs" / "resnet18_ce.fashion_scenes.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(config, ["data.dataset=imagefolder", f"data.source={tmp_path}"])
    message = str(info.value)
    assert "'data.load_kwargs.context'" in message and "check_images" in message and "cache_dir" in message
