"""The registry of dataset loaders and :func:`load`, the one entry point.

Adding a dataset is one call to :func:`register_dataset` with a :class:`DatasetSpec`: a function that reads the
official local layout, and (optionally) default Hub ids plus a function that converts the Hub columns.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .errors import DatasetUnavailableError, UnknownDatasetError
from .schema import IMAGE_CHECKS

if TYPE_CHECKING:
    import datasets

LocalLoader = Callable[..., "datasets.Dataset"]
HubConverter = Callable[..., "datasets.Dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one dataset.

    Attributes:
        name: registry name, e.g. ``"cub200"``.
        local: ``local(root, split, *, check_images, cache_dir, **kw)`` reading the official layout under ``root``.
        splits: split names ``local`` accepts (aliases included).
        hub_ids: Hub dataset ids tried when ``source`` is None, first one first.
        from_hub: ``from_hub(ds, split, **kw)`` converting a Hub (or parquet export) dataset to the common schema;
            None when no Hub copy is known.
        layout: one line describing the official local layout, quoted in error messages.
        default_local: folders where a system package installs the dataset (Debian's ``dataset-fashion-mnist``);
            with ``source=None`` the first that exists is used before the Hub is tried.
    """

    name: str
    local: LocalLoader
    splits: tuple[str, ...]
    hub_ids: tuple[str, ...] = ()
    from_hub: HubConverter | None = None
    layout: str = ""
    aliases: tuple[str, ...] = field(default=())
    default_local: tuple[str, ...] = ()


REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` under its name and aliases; a name registered twice is an error."""
    for key in (spec.name, *spec.aliases):
        if key in REGISTRY:
            raise ValueError(f"dataset name {key!r} is already registered")
        REGISTRY[key] = spec
    return spec


def list_datasets() -> list[str]:
    """Registered dataset names (aliases excluded), sorted."""
    return sorted({s.name for s in REGISTRY.values()})


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; ``UnknownDatasetError`` lists the valid names."""
    key = name.lower().replace("-", "_")
    spec = REGISTRY.get(key) or REGISTRY.get(name)
    if spec is None:
        raise UnknownDatasetError(name, list_datasets())
    return spec


def load(
    name: str,
    split: str,
    source: str | os.PathLike | None = None,
    *,
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
    hub_timeout: float = 3.0,
    **kw: Any,
) -> datasets.Dataset:
    """Load a dataset split in the common schema (see :mod:`consistentzoo.data.schema`).

    Args:
        name: a registered name (:func:`list_datasets`), e.g. ``"coco"``, ``"cub200"``, ``"imagenet_1k"``.
        split: a split of that dataset (``"train"``, ``"test"``, ``"val2014"``, ...; each loader lists its own).
        source: None for a system-installed copy (``DatasetSpec.default_local``) or else the dataset's default Hub
            id; a Hub id (``"org/name"``); a local directory in the
            dataset's official layout; or a local parquet file / directory of parquet files (a Hub export).
        check_images: for local images, ``"none"``, ``"header"`` (default: parse the header and check the
            end-of-image marker, and refuse images above Pillow's pixel limit or with a side ratio above 20:1) or
            ``"full"`` (decode every image). Unusable images are skipped and counted (``corrupt_image``,
            ``truncated_image``, ``missing_file``, ``too_large``, ``extreme_aspect``); ``"none"`` checks nothing.
        cache_dir: where the converted Arrow file is written (default ``$HF_DATASETS_CACHE/consistentzoo``).
        hub_timeout: seconds allowed to reach the Hub endpoint before giving up.
        **kw: dataset-specific options (e.g. ``masks=`` for COCO, ``level=`` for FGVC-Aircraft).

    Returns:
        A ``datasets.Dataset``. Skipped samples, clipped or dropped boxes raise one ``DataQualityWarning`` whose
        ``report`` attribute holds the counts.

    Raises:
        UnknownDatasetError: unknown name, split or option value.
        DatasetUnavailableError: the Hub cannot be reached and no local ``source`` was given.
        MissingAnnotationError: a file of the official layout is missing.
        LabelOutOfRangeError: an annotation names a class the dataset does not have.
        UnsafePathError: an annotation names a file outside the dataset folder (absolute path or ``..``).
        UnsafePickleError: a CIFAR pickle asks for anything but numpy arrays (nothing in it is run).
    """
    spec = get_spec(name)
    if check_images not in IMAGE_CHECKS:
        raise UnknownDatasetError(check_images, IMAGE_CHECKS, kind="check_images value")
    if source is None:
        source = next((d for d in spec.default_local if Path(d).is_dir()), None)
    if source is None:
        if not spec.hub_ids or spec.from_hub is None:
            raise DatasetUnavailableError(
                f"{spec.name}: no Hub copy is known; pass source=<local directory> in the official layout "
                f"({spec.layout})."
            )
        return _from_hub(spec, spec.hub_ids[0], split, hub_timeout, **kw)
    path = Path(source).expanduser()
    if path.exists():
        if _is_parquet(path):
            if spec.from_hub is None:
                raise UnknownDatasetError(str(path), ["a directory in the official layout"], kind=f"{spec.name} source")
            return spec.from_hub(_read_parquet(path, split), split, **kw)
        if split not in spec.splits:
            raise UnknownDatasetError(split, spec.splits, kind=f"{spec.name} split")
        return spec.local(path, split, check_images=check_images, cache_dir=cache_dir, **kw)
    src = str(source)
    if src.count("/") == 1 and not src.startswith((".", "/", "~")):
        return _from_hub(spec, src, split, hub_timeout, **kw)
    raise FileNotFoundError(
        f"{spec.name}: source {src!r} is neither an existing local path nor a Hub id of the form 'org/name'. "
        f"Local layout expected: {spec.layout}"
    )


def _is_parquet(path: Path) -> bool:
    return path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet")))


def _read_parquet(path: Path, split: str) -> datasets.Dataset:
    import datasets

    if path.is_file():
        files = [str(path)]
    else:
        all_files = sorted(path.rglob("*.parquet"))
        # Hub exports name shards after their split (``data/train-00000-of-00004.parquet``); fall back to all.
        files = [str(f) for f in all_files if f.name.startswith(f"{split}-") or f.parent.name == split]
        files = files or [str(f) for f in all_files]
    return datasets.Dataset.from_parquet(files)


def _endpoint_reachable(endpoint: str, timeout: float) -> bool:
    """Whether a TCP connection to the endpoint opens within ``timeout`` (DNS included, hence the thread)."""
    import socket

    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def _from_hub(spec: DatasetSpec, hub_id: str, split: str, timeout: float, **kw: Any) -> datasets.Dataset:
    from huggingface_hub import constants

    hint = (
        f"{spec.name}: could not load Hub dataset {hub_id!r} (split {split!r}). Without network access, pass "
        f"source=<local directory> in the official layout ({spec.layout}) or source=<parquet export>; with a "
        f"cached Hub copy, set HF_HUB_OFFLINE=1."
    )
    if spec.from_hub is None:
        raise DatasetUnavailableError(f"{spec.name}: no Hub schema converter; " + hint)
    if not constants.HF_HUB_OFFLINE and not _endpoint_reachable(constants.ENDPOINT, timeout):
        raise DatasetUnavailableError(hint + f" ({constants.ENDPOINT} unreachable within {timeout:g} s)")
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, split=split)
    except (OSError, ValueError) as e:  # ConnectionError, DatasetNotFoundError are OSErrors
        raise DatasetUnavailableError(hint + f" ({type(e).__name__}: {e})") from e
    return spec.from_hub(ds, split, **kw)
