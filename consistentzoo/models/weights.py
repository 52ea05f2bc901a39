"""Saving and resolving weights: the one path ``pretrained=...`` goes through.

Weights are only ever read from safetensors files (never unpickled). A tag's weights are looked for, in order:
in the repository (``ZooWeights.local_dir``), in ``$CONSISTENTZOO_WEIGHTS/<tag>/``, and on the Hugging Face Hub at the
pinned revision; every file that carries a recorded sha256 is verified before use.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointMismatchError, WeightsIntegrityError, WeightsUnavailableError
from .metadata import REPO_ROOT, ZooWeights

_logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
ENV_WEIGHTS_DIR = "CONSISTENTZOO_WEIGHTS"


def sha256sum(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level exceptions the Hub client lets through (httpx2 for huggingface_hub 2.x, else requests).

    ``HfHubHTTPError`` covers HTTP answers; a refused connection or a body cut short surfaces as the HTTP library's
    own exception, which is not an ``OSError``.
    """
    errors: list[type[BaseException]] = [OSError]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename: a crash never leaves a half file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_pretrained(
    model: nn.Module, directory: str | Path, *, zoo: dict[str, Any] | None = None, half: bool = False
) -> Path:
    """Write ``model.safetensors`` and timm's ``config.json`` into ``directory``.

    ``config.json`` names the timm base architecture (``resnet18`` with ``model_args.global_pool="max"`` for a GMP
    model) so stock timm rebuilds ResNets from it; zoo facts (zoo name, tag, objective) go under ``"consistentzoo"``.

    Args:
        model: a zoo or timm model.
        directory: output folder, created if needed.
        zoo: extra facts recorded under the ``consistentzoo`` key of the config.
        half: store floating-point tensors as fp16 (half the size; loaded back as fp32).

    Returns:
        The directory.
    """
    from safetensors.torch import save_file
    from timm.models._hub import save_config_for_hf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    _atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))

    base_arch = getattr(model, "zoo_architecture", None) or model.pretrained_cfg["architecture"]
    info = {"zoo_name": model.pretrained_cfg.get("architecture"), "tag": _fitting_tag(model)}
    info.update(zoo or {})
    model_args = {"global_pool": pool} if (pool := _pool_type(model)) else {}
    model_args.update(getattr(model, "zoo_model_args", {}))

    def write_config(tmp: str) -> None:
        save_config_for_hf(model, tmp, model_args=model_args)
        cfg = json.loads(Path(tmp).read_text())
        cfg["architecture"] = base_arch
        cfg["consistentzoo"] = info
        Path(tmp).write_text(json.dumps(cfg, indent=2))

    _atomic_write(directory / CONFIG_NAME, write_config)
    return directory


def _fitting_tag(model: nn.Module) -> str | None:
    """The model's weight tag, or None when the model no longer fits it (e.g. built with another num_classes)."""
    from .metadata import list_weights

    cfg = model.pretrained_cfg
    rec = next((w for w in list_weights(cfg.get("architecture")) if w.tag == cfg.get("tag")), None)
    return rec.tag if rec is not None and rec.num_classes == model.num_classes else None


def _pool_type(model: nn.Module) -> str | None:
    pool = getattr(model, "global_pool", None)
    return getattr(pool, "pool_type", None) or None


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a weights folder; a clear error when the folder is not one."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a weights folder: {CONFIG_NAME} is missing (expected {CONFIG_NAME} + {WEIGHTS_NAME}, "
            "as written by consistentzoo.models.save_pretrained or a recipe)"
        )
    return json.loads(path.read_text())


def load_state_dict(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file, verifying its sha256 when one is given.

    Raises:
        WeightsIntegrityError: the hash differs, or the file is truncated or not safetensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsIntegrityError(f"{path}: only .safetensors weights are loaded (pickled checkpoints are refused)")
    if expected_sha256 is not None and (actual := sha256sum(path)) != expected_sha256:
        raise WeightsIntegrityError(f"{path}: sha256 {actual} does not match the recorded {expected_sha256}")
    try:
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsIntegrityError(f"{path}: not a readable safetensors file ({e}); delete it and fetch again") from e
    return {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}


def load_into(model: nn.Module, state: dict[str, torch.Tensor], *, source: str, reset_head: bool = False) -> None:
    """Load a state dict, checking the classifier shape first so a class-count mismatch is named as such.

    Args:
        model: the built model.
        state: weights to load.
        source: where the weights came from (for messages).
        reset_head: keep the model's freshly initialised classifier when the class counts differ.
    """
    head = model.get_classifier()
    head_keys = {f"{name}.{p}" for name, mod in model.named_modules() if mod is head for p, _ in mod.named_parameters()}
    mismatch = {k for k in head_keys if k in state and state[k].shape != model.state_dict()[k].shape}
    if mismatch and not reset_head:
        ckpt = state[sorted(mismatch)[0]].shape[0]
        raise CheckpointMismatchError(
            f"{source} has {ckpt} classes but the model was built with {model.num_classes}; pass num_classes={ckpt}, "
            "or reset_head=True to load everything but the classifier"
        )
    if mismatch:
        state = {k: v for k, v in state.items() if k not in head_keys}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (mismatch and k in head_keys)]
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"{source} does not fit {type(model).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def resolve_weights_file(rec: ZooWeights) -> Path:
    """The local path of a tag's verified ``model.safetensors``, downloading it from the Hub when needed.

    Raises:
        WeightsUnavailableError: not published, or the Hub cannot be reached and no local copy exists.
        WeightsIntegrityError: a file whose sha256 differs from the record (a cached download is removed).
    """
    expected = rec.expected_sha256
    candidates = []
    if rec.local_dir:
        candidates.append(REPO_ROOT / rec.local_dir / WEIGHTS_NAME)
    if env := os.environ.get(ENV_WEIGHTS_DIR):
        candidates.append(Path(env) / rec.name / WEIGHTS_NAME)
    for path in candidates:
        if path.is_file():
            if expected and sha256sum(path) != expected:
                raise WeightsIntegrityError(f"{path}: sha256 differs from the one recorded for {rec.name}")
            return path
    if rec.hub is None and rec.upstream is not None:
        from .upstream import resolve  # the authors' release, converted once and cached

        return resolve(rec)
    if rec.hub is None:
        raise WeightsUnavailableError(
            f"{rec.name} has no published weights yet. Train them with `{rec.recipe_command}` and load the output "
            f"with create_model({rec.zoo_name!r}, pretrained='<output dir>'), or put them in "
            f"${ENV_WEIGHTS_DIR}/{rec.name}/{WEIGHTS_NAME}."
        )
    return _download(rec)


def _download(rec: ZooWeights) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    assert rec.hub is not None
    try:
        path = Path(hf_hub_download(rec.hub.repo_id, rec.hub.filename, revision=rec.hub.revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, *transport_errors()) as e:
        raise WeightsUnavailableError(
            f"could not get {rec.name} from the Hub ({rec.hub.repo_id}@{rec.hub.revision}): {e}. Without a network, "
            f"copy {WEIGHTS_NAME} to ${ENV_WEIGHTS_DIR}/{rec.name}/ or pass pretrained='<folder with config.json "
            f"and {WEIGHTS_NAME}>'."
        ) from e
    if sha256sum(path) != rec.hub.sha256:
        evict_cached(path)
        raise WeightsIntegrityError(
            f"the Hub file for {rec.name} ({rec.hub.repo_id}@{rec.hub.revision}) does not match its recorded sha256; "
            "the download was removed from the cache"
        )
    return path


def evict_cached(path: Path) -> None:
    """Remove a cached Hub file and the blob it points to, so a bad download is never reused."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)
