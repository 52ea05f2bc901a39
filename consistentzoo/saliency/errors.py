"""Exceptions of the saliency methods: each says what was asked, what exists, and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..errors import UnknownChoiceError


class UnknownMethodError(UnknownChoiceError):
    """A method name that is not one of ``consistentzoo.saliency.METHODS``; the message lists them."""

    def __init__(self, name: str, choices: Iterable[str]):
        super().__init__(name, sorted(choices), "saliency method", plural="methods")


class LayerNotFoundError(KeyError):
    """A target layer name (or module) that is not in the model; the message lists candidate layers."""

    def __init__(self, layer: str, candidates: Iterable[str]):
        candidates = list(candidates)
        close = difflib.get_close_matches(layer, candidates, n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        shown = candidates if len(candidates) <= 30 else candidates[:10] + ["..."] + candidates[-15:]
        self.message = (
            f"the model has no layer {layer!r}.{hint} Convolutional layers and blocks it has: {', '.join(shown)}."
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class NoConvLayerError(ValueError):
    """The model has no layer with a spatial ``[B, C, h, w]`` output to explain at."""


class InvalidImagesError(ValueError):
    """Images that are not a non-empty floating-point ``[B, C, H, W]`` tensor."""


class InvalidMapsError(ValueError):
    """Maps that are not a floating-point ``[B, h, w]`` tensor, or that contain NaN."""


class InvalidTargetError(ValueError):
    """Targets of the wrong length or type, or a class index outside ``[0, num_classes)``."""


class UnsupportedModelError(ValueError):
    """A model the method cannot explain (e.g. guided backprop on a network without ReLU)."""
