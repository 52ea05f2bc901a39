"""Reading MATLAB annotation files (Stanford Cars, Flowers-102, Caltech-101, UnRel) with scipy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import AnnotationFormatError, MissingAnnotationError


def loadmat(path: Path, dataset: str, layout: str) -> dict[str, Any]:
    """``scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)`` with the loaders' errors."""
    if not path.is_file():
        raise MissingAnnotationError(f"{dataset}: annotation file {path} not found (expected layout: {layout})")
    try:
        import scipy.io
    except ImportError as e:  # scipy is needed only for the .mat-based datasets
        raise ImportError(f"{dataset}: reading {path.name} needs scipy (pip install scipy)") from e
    try:
        return scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except (ValueError, TypeError, OSError) as e:
        raise AnnotationFormatError(f"{dataset}: {path} is not a readable MATLAB file ({e})") from e


def as_list(x: Any) -> list[Any]:
    """A squeezed MATLAB value (scalar, struct or array) as a Python list of its elements."""
    if isinstance(x, np.ndarray):
        return list(x.reshape(-1))
    return [x]


def field(obj: Any, name: str, path: Path, dataset: str) -> Any:
    """Attribute ``name`` of a MATLAB struct, with a clear error if the file lacks it."""
    try:
        return getattr(obj, name)
    except AttributeError as e:
        have = getattr(obj, "_fieldnames", [])
        raise AnnotationFormatError(f"{dataset}: {path.name} has no field {name!r} (fields: {have})") from e
