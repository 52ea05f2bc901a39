"""The papers' released checkpoints: downloaded once, converted to the zoo's safetensors form, checked, cached.

A tag whose record carries an :class:`~consistentzoo.models.metadata.UpstreamSource` (the GC and CGC authors' Google
Drive files, torchvision's baselines) resolves, when neither the repository, ``$CONSISTENTZOO_WEIGHTS`` nor a pinned
Hub copy holds it, to a cache entry made here::

    $CONSISTENTZOO_CACHE/upstream/<tag>/        (default $XDG_CACHE_HOME/consistentzoo, i.e. ~/.cache/consistentzoo)
        model.safetensors   the converted weights
        config.json         timm's config (a GMP tag records global_pool="max": the file cannot say, the tag does)
        provenance.json     source, the downloaded file's sha256 and size, the checks run, the date

The first call downloads the file (Drive through ``gdown``, which handles Drive's large-file confirmation and
folders; plain URLs through ``torch.hub.download_url_to_file``), into a temporary folder inside the cache that is
removed whatever happens. The checkpoint is read with ``torch.load(weights_only=True)`` only, unwrapped from the
authors' ``{'epoch', 'arch', 'state_dict', 'best_acc1', 'optimizer'}`` dict, stripped of ``DataParallel``'s
``module`` components, checked key by key and shape by shape against the zoo model, and, for an ImageNet tag, made
to classify three photos that ship with scikit-image (:func:`behaviour_check`). Only then is the entry moved into
place in one rename, so a cache entry is always complete. Later calls read the entry (sha256-verified), offline.

``$CONSISTENTZOO_UPSTREAM_MIRROR`` (a base URL) fetches every file from ``<mirror>/<tag>/<filename>`` instead, with the
same downloader as its upstream (``gdown`` for Drive sources); the tests serve the authors' formats from 127.0.0.1 so.
``HF_HUB_OFFLINE=1`` forbids downloads: only the cache is read.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import (
    BehaviourCheckError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    WeightsIntegrityError,
    WeightsUnavailableError,
)
from .metadata import UpstreamSource, ZooWeights
from .weights import WEIGHTS_NAME, save_pretrained, sha256sum

_logger = logging.getLogger(__name__)

ENV_CACHE = "CONSISTENTZOO_CACHE"
ENV_MIRROR = "CONSISTENTZOO_UPSTREAM_MIRROR"
PROVENANCE_NAME = "provenance.json"
DOWNLOAD_RETRIES = 2  # gdown resumes a transfer cut short this many times before giving up
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")

# scikit-image's bundled photos (no download) -> what they show, and the ImageNet classes of which at least one must
# be in the top-5 of a working ImageNet classifier. Chosen from what the photos show, not from any model's output.
CHECK_PHOTOS: dict[str, tuple[str, tuple[int, ...]]] = {
    "chelsea": ("a tabby cat", (281, 282, 283, 284, 285)),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee": ("a cup of coffee on a saucer", (504, 967, 968)),  # coffee mug, espresso, cup
    "rocket": ("a rocket on its launch pad", (657, 744, 812)),  # missile, projectile/missile, space shuttle
}


def cache_root() -> Path:
    """``$CONSISTENTZOO_CACHE``, else ``$XDG_CACHE_HOME/consistentzoo``, else ``~/.cache/consistentzoo``."""
    if env := os.environ.get(ENV_CACHE):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "consistentzoo"


def entry_dir(rec: ZooWeights) -> Path:
    """The cache folder of one tag's converted weights."""
    return cache_root() / "upstream" / rec.name


def read_provenance(rec: ZooWeights) -> dict[str, Any] | None:
    """The provenance record of a tag's cache entry, or None when there is no complete entry."""
    path = entry_dir(rec) / PROVENANCE_NAME
    if not path.is_file():
        return None
    try:
        prov = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None  # unreadable: :func:`cached` treats the entry as damaged
    return prov if isinstance(prov, dict) else None


def cached(rec: ZooWeights) -> Path | None:
    """The verified ``model.safetensors`` of a complete cache entry, or None (a damaged or stale entry is removed)."""
    if not entry_dir(rec).exists():
        return None
    prov = read_provenance(rec)
    weights = entry_dir(rec) / WEIGHTS_NAME
    pinned = rec.upstream.sha256 if rec.upstream else None
    problem = None
    if prov is None:
        problem = f"{PROVENANCE_NAME} is missing or unreadable"
    elif not weights.is_file() or sha256sum(weights) != prov.get("weights_sha256"):
        problem = f"{WEIGHTS_NAME} is missing or differs from the sha256 in {PROVENANCE_NAME}"
    elif pinned and prov.get("file_sha256") != pinned:
        problem = f"it was converted from a file with sha256 {prov.get('file_sha256')}, not the pinned {pinned}"
    if problem:
        _logger.warning("removing the cache entry of %s at %s: %s", rec.name, entry_dir(rec), problem)
        shutil.rmtree(entry_dir(rec), ignore_errors=True)
        return None
    return weights


def resolve(rec: ZooWeights) -> Path:
    """The cached converted weights of a tag, fetching and converting the upstream file the first time.

    Raises:
        WeightsUnavailableError: no upstream source, offline without a cache entry, or the download failed.
        WeightsIntegrityError: a hash, format or behaviour check failed (nothing is cached).
        CheckpointMismatchError: the file holds another architecture or class count.
    """
    return cached(rec) or fetch(rec)


def fetch(rec: ZooWeights, *, check: bool = True, force: bool = False, progress: bool = True) -> Path:
    """Download a tag's upstream file, convert, check and cache it; returns the cached ``model.safetensors``.

    Args:
        rec: the tag's record; it must carry ``upstream``.
        check: run the photo check on ImageNet tags (a stand-in with random weights cannot pass it).
        force: replace an existing cache entry.
        progress: show the downloader's progress bar.
    """
    src = _source(rec)
    with _locked(rec):
        if not force and (path := cached(rec)):
            return path
        if _offline():
            raise WeightsUnavailableError(
                f"{rec.name} is not in the cache ({entry_dir(rec)}) and HF_HUB_OFFLINE is set, so it is not "
                f"downloaded. Get {src.url} elsewhere and run `consistentzoo import-weights {rec.name} FILE`."
            )
        with _staging(rec) as staging:
            file, origin = _download(rec, staging, progress)
            return _install(rec, file, origin, staging, check=check)


def import_file(rec: ZooWeights, path: str | Path, *, check: bool = True) -> Path:
    """Convert a checkpoint the user already has (same checks as :func:`fetch`) into the cache entry of ``rec``."""
    _source(rec)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected the checkpoint of {rec.name}: {rec.upstream.url})")
    with _locked(rec), _staging(rec) as staging:
        return _install(rec, path, path.resolve().as_uri(), staging, check=check)


def _source(rec: ZooWeights) -> UpstreamSource:
    """The tag's upstream release, or an error listing the tags that have one."""
    if rec.upstream is None:
        from .metadata import list_weights

        tags = [w.name for w in list_weights() if w.upstream]
        raise WeightsUnavailableError(f"{rec.name} has no upstream release; the tags that have one: {', '.join(tags)}")
    return rec.upstream


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def _locked(rec: ZooWeights) -> Iterator[None]:
    """One process at a time per tag (several ranks calling ``create_model(pretrained=True)`` fetch once)."""
    from filelock import FileLock

    root = cache_root() / "upstream"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{rec.name}.lock")):
        yield


@contextlib.contextmanager
def _staging(rec: ZooWeights) -> Iterator[Path]:
    """A temporary folder inside the cache (same file system, so the final rename is atomic), always removed."""
    folder = Path(tempfile.mkdtemp(prefix=f".{rec.name}.", suffix=".partial", dir=cache_root() / "upstream"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _download(rec: ZooWeights, staging: Path, progress: bool) -> tuple[Path, str]:
    """Fetch the upstream file into ``staging``; returns (file, the address it came from)."""
    import gdown
    from gdown.exceptions import DownloadError

    src = rec.upstream
    mirror = os.environ.get(ENV_MIRROR)
    out = staging / src.filename
    if mirror:
        url = f"{mirror.rstrip('/')}/{rec.name}/{src.filename}"
    elif src.kind == "url":
        url = src.location
    elif src.kind == "drive_file":
        url = f"https://drive.google.com/uc?id={src.location}"
    else:
        url = src.url
    _logger.info("downloading %s from %s", rec.name, url)
    try:
        if src.kind == "url":
            torch.hub.download_url_to_file(url, str(out), progress=progress)
        elif src.kind == "drive_file" or mirror:
            gdown.download(url, str(out), quiet=not progress, retries=DOWNLOAD_RETRIES)
        else:
            files = gdown.download_folder(
                id=src.location, output=str(staging / "folder"), quiet=not progress, retries=DOWNLOAD_RETRIES
            )
            out = _pick_checkpoint(rec, [Path(f) for f in files or []])
    except (OSError, http.client.HTTPException, DownloadError) as e:
        raise WeightsUnavailableError(
            f"could not download {rec.name} from {url} ({type(e).__name__}: {e}); nothing was cached. Retry, or "
            f"download {src.url} in a browser and run `consistentzoo import-weights {rec.name} FILE`."
        ) from e
    if not out.is_file():
        raise WeightsUnavailableError(f"the download of {rec.name} from {url} produced no file; nothing was cached")
    return out, url


def _pick_checkpoint(rec: ZooWeights, files: list[Path]) -> Path:
    """The checkpoint inside a downloaded Drive folder: the only one, else ``model_best.pth.tar``."""
    found = [f for f in files if f.name.endswith(CHECKPOINT_SUFFIXES)]
    best = [f for f in found if f.name == "model_best.pth.tar"]
    if len(found) == 1 or len(best) == 1:
        return (best or found)[0]
    names = [f.name for f in files]
    raise WeightsUnavailableError(
        f"the Drive folder of {rec.name} holds {names}: expected one checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) "
        f"or model_best.pth.tar; import the right one with `consistentzoo import-weights {rec.name} FILE`"
    )


def _check_hash(rec: ZooWeights, file: Path, sha: str) -> str:
    """Compare the file's sha256 with what the record knows; returns what was checked (for the provenance)."""
    src = rec.upstream
    if src.sha256 and sha != src.sha256:
        raise WeightsIntegrityError(
            f"{rec.name}: {file} has sha256 {sha}, not the pinned {src.sha256} (a different or incomplete file)"
        )
    if src.sha256_prefix and not sha.startswith(src.sha256_prefix):
        raise WeightsIntegrityError(
            f"{rec.name}: {file} has sha256 {sha}, which does not start with the published prefix "
            f"{src.sha256_prefix} of {src.url} (a different or incomplete file)"
        )
    if src.sha256:
        return "matched the pinned sha256"
    if src.sha256_prefix:
        return f"matched the published prefix {src.sha256_prefix}"
    _logger.warning(
        "%s: %s has no published hash; its sha256 is %s (recorded in %s; pin it as UpstreamSource.sha256)",
        rec.name, src.url, sha, PROVENANCE_NAME,
    )  # fmt: skip
    return "no published hash: sha256 recorded only"


def read_checkpoint(file: str | Path, rec: ZooWeights) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict of an authors' or torchvision checkpoint, read without unpickling anything but tensors.

    Returns:
        ``(state, info)``: the state dict with ``DataParallel``'s ``module`` path components removed (ResNet
        ``module.conv1.weight`` -> ``conv1.weight``; AlexNet ``features.module.0.weight`` -> ``features.0.weight``),
        and what the file says about itself (form, epoch, arch, best_acc1).

    Raises:
        UnsafeCheckpointError: the pickle needs more than ``weights_only`` allows (it is not unpickled).
        WeightsIntegrityError: not a readable checkpoint (truncated, not a PyTorch file).
        CheckpointMismatchError: neither a state dict nor the authors' dict.
    """
    import pickle

    file = Path(file)
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e) and "Weights only" not in str(e):
            raise WeightsIntegrityError(f"{rec.name}: {file} is not a readable PyTorch checkpoint ({e})") from e
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(e).splitlines()]
        why = next((line for line in lines if "Unpickler error" in line), lines[0] if lines else type(e).__name__)
        why = why.split(". Please use")[0]  # not torch's advice on how to allowlist it
        raise UnsafeCheckpointError(
            f"{rec.name}: {file} needs more than tensors, numbers, strings, dicts and lists to be read "
            f"(torch.load(weights_only=True): {why}); it was not unpickled. The authors' files need nothing more: "
            "this is another file"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise WeightsIntegrityError(
            f"{rec.name}: {file} is not a readable PyTorch checkpoint ({type(e).__name__}: {e}); "
            "it may be incomplete: download it again"
        ) from e
    info: dict[str, Any] = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
        info["form"] = "authors' dict (state_dict unwrapped)"
        for key in ("epoch", "arch", "best_acc1"):
            if key in obj:
                value = obj[key]
                info[key] = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
        info["form"] = "bare state dict"
    else:
        keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointMismatchError(
            f"{rec.name}: {file} holds neither a state dict nor the authors' {{'state_dict': ...}} dict (found {keys})"
        )
    stripped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = ".".join(part for part in key.split(".") if part != "module")
        if new in stripped:
            raise CheckpointMismatchError(f"{rec.name}: {file} holds {new!r} twice (with and without 'module.')")
        stripped[new] = value
    info["stripped_module_prefix"] = any(k != n for k, n in zip(state, stripped, strict=True))
    return stripped, info


def convert(rec: ZooWeights, state: dict[str, torch.Tensor], file: str | Path) -> nn.Module:
    """The tag's zoo model with ``state`` loaded, after checking the exact key set and every shape.

    ``num_batches_tracked`` buffers may be absent (torchvision's older files predate them); nothing else may.

    Raises:
        CheckpointMismatchError: names the tag, the file and the first mismatching key.
    """
    from .factory import create_model

    model = create_model(rec.name, num_classes=rec.num_classes)
    expected = model.state_dict()
    problems: list[str] = []
    for key, value in expected.items():
        if key not in state:
            if not key.endswith("num_batches_tracked"):
                problems.append(f"{key!r} is missing from the file")
        elif tuple(state[key].shape) != tuple(value.shape):
            problems.append(
                f"{key!r} has shape {tuple(state[key].shape)} in the file, {tuple(value.shape)} in the model"
            )
    problems += [f"{key!r} is in the file but not in the model" for key in state if key not in expected]
    if problems:
        pool = f", global_pool={rec.model_args['global_pool']}" if rec.model_args.get("global_pool") else ""
        raise CheckpointMismatchError(
            f"{rec.name}: {file} does not fit {rec.architecture} ({rec.num_classes} classes{pool}): first mismatching "
            f"key: {problems[0]} ({len(problems)} mismatch{'es' if len(problems) > 1 else ''} in all)"
        )
    full = {k: state[k].to(v.dtype) if k in state else v for k, v in expected.items()}
    model.load_state_dict(full, strict=True)
    return model.eval()


def _photos() -> dict[str, Any]:
    import skimage.data
    from PIL import Image

    return {name: Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in CHECK_PHOTOS}


def behaviour_check(
    model: nn.Module, transform: Callable[[Any], torch.Tensor] | None = None, *, name: str = "the model"
) -> dict[str, list[int]]:
    """Classify scikit-image's cat, coffee cup and rocket photos; each top-5 must hold one expected ImageNet class.

    Args:
        model: any ImageNet classifier (1000 outputs).
        transform: PIL image -> normalised ``[3, H, W]`` tensor; default timm's eval transform from the model's
            ``pretrained_cfg`` (resize, centre crop, ImageNet mean/std for the zoo's models).
        name: what to call the model in the error.

    Returns:
        Photo name -> its top-5 class indices.

    Raises:
        BehaviourCheckError: a photo whose top-5 holds none of its expected classes (all photos are reported).
    """
    from timm.data import ImageNetInfo, create_transform, resolve_data_config

    if transform is None:
        transform = create_transform(**resolve_data_config(model=model))
    photos = _photos()
    batch = torch.stack([transform(photos[p]) for p in CHECK_PHOTOS])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(batch)
    model.train(was_training)
    if logits.shape[-1] != 1000:
        raise BehaviourCheckError(f"{name} has {logits.shape[-1]} outputs; the photo check needs 1000 ImageNet classes")
    info = ImageNetInfo()
    top5 = {p: logits[i].topk(5).indices.tolist() for i, p in enumerate(CHECK_PHOTOS)}
    failed = [p for p, (_, expected) in CHECK_PHOTOS.items() if not set(top5[p]) & set(expected)]
    if failed:

        def labels(idx: list[int] | tuple[int, ...]) -> str:
            return ", ".join(f"{i} {info.index_to_description(i).split(',')[0]}" for i in idx)

        lines = [
            f"{p} ({CHECK_PHOTOS[p][0]}): top-5 [{labels(top5[p])}], expected one of [{labels(CHECK_PHOTOS[p][1])}]"
            for p in failed
        ]
        raise BehaviourCheckError(
            f"{name} failed the photo check on {len(failed)} of {len(CHECK_PHOTOS)} photos (a wrong key mapping, "
            "normalisation or pooling, or not ImageNet weights): " + "; ".join(lines)
        )
    return top5


def _install(rec: ZooWeights, file: Path, origin: str, staging: Path, *, check: bool) -> Path:
    """Hash, convert, check and write the entry in ``staging``, then move it into the cache in one rename."""
    sha = sha256sum(file)
    hash_check = _check_hash(rec, file, sha)
    state, info = read_checkpoint(file, rec)
    model = convert(rec, state, file)
    if not rec.tag.startswith("in1k"):
        behaviour: dict[str, Any] = {"skipped": f"the photo check is defined for ImageNet classes; {rec.tag} is not"}
    elif not check:
        behaviour = {"skipped": "turned off by the caller (check=False / --skip-check)"}
        _logger.warning("%s: converted WITHOUT the photo check (asked for); the cache entry records that", rec.name)
    else:
        behaviour = {"passed": True, "top5": behaviour_check(model, name=f"{rec.name} converted from {file}")}
    out = staging / "entry"
    save_pretrained(model, out, zoo={"upstream": rec.upstream.url})
    src = rec.upstream
    provenance = {
        "tag": rec.name,
        "source": {"provider": src.provider, "kind": src.kind, "location": src.location, "url": src.url,
                   "format": src.format, "license": src.license},
        "downloaded_from": origin,
        "file_name": file.name,
        "file_bytes": file.stat().st_size,
        "file_sha256": sha,
        "hash_check": hash_check,
        "checkpoint": info,
        "global_pool": rec.model_args.get("global_pool", "avg"),
        "behaviour_check": behaviour,
        "weights_sha256": sha256sum(out / WEIGHTS_NAME),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    (out / PROVENANCE_NAME).write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    target = entry_dir(rec)
    if target.exists():
        shutil.rmtree(target)
    os.replace(out, target)
    _logger.info("cached %s at %s (from %s, sha256 %s)", rec.name, target, origin, sha)
    return target / WEIGHTS_NAME
