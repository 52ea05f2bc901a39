"""Exceptions of the model zoo: each says what was asked, what exists, and what to do."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import UnknownChoiceError


class UnknownModelError(UnknownChoiceError):
    """A model name or weight tag that is not registered; the message lists close matches."""

    def __init__(self, name: str, choices: Iterable[str], kind: str = "model"):
        lister = "list_models(include_tags=True)" if kind == "weight tag" else "list_models()"
        super().__init__(name, sorted(choices), kind, listing=f"consistentzoo.{lister} lists the known names.")


class WeightsUnavailableError(RuntimeError):
    """Weights that cannot be had: not published yet, or the Hub cannot be reached."""


class WeightsIntegrityError(RuntimeError):
    """A weights file that is corrupt, truncated, or does not match its recorded sha256."""


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the requested model (architecture or number of classes)."""


class UnsafeCheckpointError(WeightsIntegrityError):
    """A pickled checkpoint that needs more than ``torch.load(weights_only=True)`` allows; it is never unpickled."""


class BehaviourCheckError(WeightsIntegrityError):
    """Converted weights that do not recognise the check photos (wrong key mapping, normalisation or pooling)."""


class WeightsConfigError(ValueError):
    """A weights folder's ``config.json`` that is not valid JSON, or has a field of the wrong type or name."""
