"""Exceptions of the model zoo: each says what was asked, what exists, and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UnknownModelError(KeyError):
    """A model name or weight tag that is not registered; the message lists close matches."""

    def __init__(self, name: str, choices: Iterable[str], kind: str = "model"):
        choices = sorted(set(choices))
        close = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        lister = "list_models(include_tags=True)" if kind == "weight tag" else "list_models()"
        self.message = f"unknown {kind} {name!r}.{hint} consistentzoo.{lister} lists the known names."
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class WeightsUnavailableError(RuntimeError):
    """Weights that cannot be had: not published yet, or the Hub cannot be reached."""


class WeightsIntegrityError(RuntimeError):
    """A weights file that is corrupt, truncated, or does not match its recorded sha256."""


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the requested model (architecture or number of classes)."""
