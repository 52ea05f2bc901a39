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


class BadImageError(ValueError):
    """An image file that cannot be used: missing, empty, not an image, corrupt or truncated.

    Attributes:
        name: the file (or a description of the bytes).
        reason: a short key, as counted in ``LoadReport.skipped`` (``corrupt_image``, ``truncated_image``,
            ``missing_file``, ``too_large``, ``extreme_aspect``).
    """

    def __init__(self, name: str, reason: str, detail: str):
        self.name, self.reason = name, reason
        super().__init__(f"image {name}: {detail} [{reason}]")


class ImageTooLargeError(BadImageError):
    """An image whose header announces more pixels or a more extreme side ratio than allowed (refused unread)."""


class UnsafePathError(AnnotationFormatError):
    """An annotation names a file outside the dataset's folder (an absolute path or one that climbs out with ``..``)."""


class UnsafePickleError(AnnotationFormatError):
    """A pickle that asks for a class or function outside the few a dataset's official files need; never run."""
