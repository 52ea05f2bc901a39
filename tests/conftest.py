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
