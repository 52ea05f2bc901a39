"""Run timm's own model test suite (``test_models.py``, vendored unmodified) on the zoo's names and tags only.

Importing consistentzoo registers the zoo names with timm before ``test_models.py`` builds its parameter lists; the
collected items whose ``model_name`` is not a zoo name or weight tag (timm's own ~1300 models) are deselected.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm

import consistentzoo

HERE = Path(__file__).resolve().parent
VENDORED_TIMM = "1.0.31"  # the timm release test_models.py was taken from (README.md)
ZOO = set(consistentzoo.list_models()) | set(consistentzoo.list_models(include_tags=True))

# the markers timm's pyproject.toml declares for this file (registered so pytest does not warn about them)
TIMM_MARKERS = ("base", "cfg", "cfg_nonstd", "torchscript", "features", "fxforward", "fxbackward", "forward",
                "backward")  # fmt: skip


def pytest_report_header(config: pytest.Config) -> str:
    note = "" if timm.__version__ == VENDORED_TIMM else " (differs: replace test_models.py with the installed one's)"
    return f"timm suite: test_models.py of timm {VENDORED_TIMM}, installed timm {timm.__version__}{note}"


def pytest_configure(config: pytest.Config) -> None:
    for marker in TIMM_MARKERS:
        config.addinivalue_line("markers", f"{marker}: timm test-suite marker")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        if HERE not in item.path.parents:
            keep.append(item)  # not timm's suite: left alone
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        (keep if params.get("model_name") in ZOO else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
