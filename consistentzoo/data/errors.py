"""Exceptions and warnings of the data loaders: each names the dataset, what was asked and what exists."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import UnknownChoiceError

if TYPE_CHECKING:
    from .schema import LoadReport


class UnknownDatasetError(UnknownChoiceError):
    """A dataset name (or split, or option value) that is not one of the valid choices."""

    def __init__(self, name: str, choices: Iterable[str], kind: str = "dataset"):
        super().__init__(name, sorted(choices), kind)


class DatasetUnavailableError(RuntimeError):
    """The Hub copy of a dataset cannot be reached and no local copy was given."""


class MissingAnnotationError(FileNotFoundError):
    """An annotation file (or the image folder) of a dataset's official layout is absent."""


class AnnotationFormatError(ValueError):
    """An annotation file that exists but does not parse as the dataset's official format."""


class LabelOutOfRangeError(ValueError):
    """A class id in the annotations that is not one of the dataset's classes."""


class DataQualityWarning(UserWarning):
    """Samples or boxes were skipped, clipped or converted while loading; ``report`` holds the counts."""

    def __init__(self, message: str, report: LoadReport | None = None):
        super().__init__(message)
        self.report = report
