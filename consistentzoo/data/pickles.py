"""Reading the one pickle format a dataset ships in (CIFAR's ``cifar-100-python`` files) without running code.

A pickle names the functions it calls; :func:`load_restricted` resolves only names on an allow-list and refuses
any other (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) with
:class:`~consistentzoo.data.errors.UnsafePickleError` *before* it is called.
"""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AnnotationFormatError, UnsafePickleError


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 protocol <= 2 pickles use it for ``bytes`` (always ``latin1``)."""
    if encoding != "latin1":
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r}; only 'latin1' (bytes objects) is allowed")
    return codecs.encode(text, "latin1")


# numpy's own array-rebuilding function (``numpy.core.multiarray._reconstruct`` on numpy 1, ``numpy._core...`` on 2).
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]

NUMPY_ARRAYS: Mapping[tuple[str, str], Callable[..., Any] | type] = {
    # The official files were written by Python 2 with numpy 1; numpy 2 writes ``numpy._core``.
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # ``bytes`` pickled by Python 3 at protocol <= 2 (what ``pickle.dumps(..., protocol=2)`` writes).
    ("_codecs", "encode"): _latin1_encode,
}
"""What CIFAR's python pickles need: dicts, lists, str/bytes and ints (no lookup), and numpy arrays."""


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, allowed: Mapping[tuple[str, str], Any], where: str):
        super().__init__(file, encoding="bytes")
        self._allowed, self._where = allowed, where

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in self._allowed)
            raise UnsafePickleError(
                f"{self._where}: the pickle asks for {module}.{name}, which is not one of the objects this format "
                f"needs ({allowed}); refused without running it"
            ) from None


def load_restricted(path: Path, where: str, allowed: Mapping[tuple[str, str], Any] = NUMPY_ARRAYS) -> Any:
    """Unpickle ``path`` (``encoding="bytes"``, as Python 2 pickles need) resolving only the ``allowed`` names.

    Args:
        path: the pickle file.
        where: the dataset, for messages (``"cifar100"``).
        allowed: ``(module, name) -> object`` the pickle may use; default numpy arrays only.

    Raises:
        UnsafePickleError: the pickle names anything else (nothing it names is imported or called).
        AnnotationFormatError: the file is not a pickle (truncated, empty, another format).
    """
    try:
        with open(path, "rb") as f:
            return _AllowListUnpickler(f, allowed, f"{where}: {path}").load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
        raise AnnotationFormatError(f"{where}: {path} is not a python pickle of the expected format ({e})") from e
