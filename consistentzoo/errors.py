"""The exception every package raises for a name that is not one of its choices (model, dataset, method, metric)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UnknownChoiceError(KeyError):
    """A name that is not one of the valid choices; the message suggests close matches and says where to look.

    Args:
        name: what was asked for.
        choices: the valid names.
        kind: what a name is (``"model"``, ``"dataset"``, ``"saliency method"``, ...).
        listing: how to see every choice; default: all of them, in the given order, in the message.
        plural: the word before that list (``"Valid metrics: ..."``).
    """

    def __init__(
        self, name: str, choices: Iterable[str], kind: str, listing: str | None = None, plural: str = "choices"
    ):
        choices = list(dict.fromkeys(choices))
        close = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        listing = listing or f"Valid {plural}: {', '.join(choices)}."
        self.message = f"unknown {kind} {name!r}.{hint} {listing}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message
