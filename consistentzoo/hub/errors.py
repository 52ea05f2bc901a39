"""Exceptions of publishing."""

from __future__ import annotations


class HubPushError(RuntimeError):
    """A push that did not happen; the message says whether the repository was verified unchanged."""


class HubAuthError(HubPushError):
    """The Hub refused the token (missing, invalid, or without write access)."""


class InvalidWeightsError(ValueError):
    """A weights folder whose ``model.safetensors`` does not load into the model its ``config.json`` describes."""
