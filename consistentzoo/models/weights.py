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
import secrets
import stat
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointMismatchError, WeightsConfigError, WeightsIntegrityError, WeightsUnavailableError
from .metadata import ARCHITECTURES, REPO_ROOT, ZooWeights

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
    """Write through a temporary file in the same folder, then rename: a crash never leaves a half file.

    The final file has mode 0666 less the umask, as ``open()`` would create it (``tempfile.mkstemp`` and
    safetensors' writer make 0600 files).
    """
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0666 less the umask, without touching the process-wide umask
    try:
        write(str(tmp))
        os.chmod(tmp, mode)  # writers that replace the file (safetensors) create it 0600
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
        # timm records every create_model keyword (reset_head, features_only...); a config keeps model arguments only
        if (known := known_model_args(base_arch)) is not None:
            cfg["model_args"] = {k: v for k, v in cfg.get("model_args", {}).items() if k in known}
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


def known_model_args(architecture: str) -> frozenset[str] | None:
    """The model arguments a config may carry for a zoo architecture (``resnet18``, ``resnet18_guided``, ...).

    None for an architecture this package does not build (its configs are checked by timm alone).
    """
    from .zoo import model_arg_names

    arch = architecture.split("_")[0]
    return model_arg_names(arch) if arch in ARCHITECTURES else None


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a weights folder, checked as data: known keys and types only.

    Raises:
        FileNotFoundError: the folder has no ``config.json``.
        WeightsConfigError: the file is not JSON (names the line), or a field has the wrong type or an unknown
            model argument (names the key and the valid ones).
    """
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a weights folder: {CONFIG_NAME} is missing (expected {CONFIG_NAME} + {WEIGHTS_NAME}, "
            "as written by consistentzoo.models.save_pretrained or a recipe)"
        )
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise WeightsConfigError(f"{path}, line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise WeightsConfigError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    if not isinstance(cfg, dict):
        raise WeightsConfigError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
    if not isinstance(cfg.get("architecture"), str):
        raise WeightsConfigError(f"{path}: 'architecture' must be a model name string, got {cfg.get('architecture')!r}")
    _check_count(path, "num_classes", cfg.get("num_classes"), minimum=0)
    model_args = cfg.get("model_args", {})
    if not isinstance(model_args, dict):
        raise WeightsConfigError(f"{path}: 'model_args' must be an object of model arguments, got {model_args!r}")
    known = known_model_args(cfg["architecture"])
    for key, value in model_args.items():
        if known is not None and key not in known:
            raise WeightsConfigError(
                f"{path}: model_args key {key!r} is not a model argument of {cfg['architecture']}; valid keys: "
                f"{', '.join(sorted(known))}"
            )
        if key in ("num_classes", "in_chans"):
            _check_count(path, f"model_args.{key}", value, minimum=0 if key == "num_classes" else 1)
        elif key == "global_pool" and not isinstance(value, str):
            raise WeightsConfigError(f"{path}: 'model_args.global_pool' must be a string, got {value!r}")
    if "num_classes" in model_args and model_args["num_classes"] != cfg["num_classes"]:
        raise WeightsConfigError(
            f"{path}: num_classes={cfg['num_classes']} but model_args.num_classes={model_args['num_classes']}"
        )
    if not isinstance(cfg.get("pretrained_cfg", {}), dict):
        raise WeightsConfigError(f"{path}: 'pretrained_cfg' must be an object, got {cfg['pretrained_cfg']!r}")
    return cfg


def _check_count(path: Path, key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WeightsConfigError(f"{path}: {key!r} must be an integer >= {minimum}, got {value!r}")


# pretrained_cfg fields a folder's config.json may set: data about the weights, never where to read them from
_FOLDER_CFG_FIELDS = (
    "input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "pool_size", "label_names",
    "label_descriptions", "license", "description", "paper_ids",
)  # fmt: skip


def folder_pretrained_cfg(name: str, folder: str | Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` for the weights of a folder: the name's cfg, the folder's data, ``file`` = its weights.

    Args:
        name: the model name the folder is loaded as (``resnet18_gc``, ``resnet18_gc.fashion_scenes``).
        folder: the weights folder.
        cfg: its config, as :func:`read_config` returns it.
    """
    from timm.models import resolve_pretrained_cfg

    base, _, tag = name.partition(".")
    out = resolve_pretrained_cfg(base, pretrained_cfg=tag or None).to_dict()
    for key in ("url", "hf_hub_id", "hf_hub_filename", "source", "state_dict"):
        out.pop(key, None)
    saved = cfg.get("pretrained_cfg", {})
    out.update({k: saved[k] for k in _FOLDER_CFG_FIELDS if k in saved})
    in_chans = cfg.get("model_args", {}).get("in_chans")
    if in_chans is not None:
        out["input_size"] = (in_chans, *out["input_size"][1:])
    # the folder's weights are not the registered tag's (unless the name says so)
    out.update(
        num_classes=cfg["num_classes"], file=str(Path(folder) / WEIGHTS_NAME), custom_load=False, tag=tag or None
    )
    return out


def load_state_dict(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file, verifying its sha256 when one is given and that every float is finite.

    Raises:
        WeightsIntegrityError: the hash differs, the file is truncated or not safetensors, or a tensor holds
            NaN or infinite values.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsIntegrityError(f"{path}: only .safetensors weights are loaded (pickled checkpoints are refused)")
    if expected_sha256 is not None and (actual := sha256sum(path)) != expected_sha256:
        raise WeightsIntegrityError(f"{path}: sha256 {actual} does not match the recorded {expected_sha256}")
    try:
        state = load_file(path, device="cpu")
    except (*read_weights_errors(), OSError, ValueError) as e:
        raise WeightsIntegrityError(f"{path}: not a readable safetensors file ({e}); delete it and fetch again") from e
    check_finite(state, source=str(path))
    return {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}


def read_weights_errors() -> tuple[type[BaseException], ...]:
    """What reading a corrupt or truncated safetensors file raises."""
    from safetensors import SafetensorError

    return (SafetensorError,)


def check_finite(state: dict[str, torch.Tensor], *, source: str) -> None:
    """Refuse floating-point weights holding NaN or infinite values, naming the first such tensor."""
    for key, value in state.items():
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise WeightsIntegrityError(
                f"{source}: tensor {key!r} holds {bad} NaN or infinite value(s) of {value.numel()}; refusing to load"
            )


def _kind(t: torch.Tensor) -> str:
    if t.is_complex():
        return "complex"
    if t.is_floating_point():
        return "floating-point"
    return "bool" if t.dtype == torch.bool else "integer"


def check_state_dict(
    state: dict[str, torch.Tensor],
    model: nn.Module,
    *,
    source: str,
    pretrained_cfg: dict[str, Any] | None = None,
    reset_head: bool | None = False,
) -> dict[str, torch.Tensor]:
    """Check a state dict before timm loads it into ``model``; each fault is named with its cause.

    Used as timm's ``pretrained_filter_fn``: it sees the state dict after timm's cleaning (a uniform ``module.``
    prefix removed) and before timm adapts the input conv (``in_chans``) and drops the classifier (``num_classes``
    different from ``pretrained_cfg["num_classes"]``, timm's rule), so those two differences are left to timm.

    Args:
        state: the weights to load.
        model: the built model (before any ``features_only`` wrapping).
        source: where the weights came from (for messages).
        pretrained_cfg: the cfg the weights are loaded with (``num_classes``, ``classifier``, ``first_conv``).
        reset_head: a model built with another (non-zero) ``num_classes`` than the weights': False refuses it,
            True lets timm drop the classifier, None (``timm.create_model``'s contract) lets timm drop it with a
            warning.

    Returns:
        ``state``, unchanged.

    Raises:
        WeightsIntegrityError: a non-finite tensor, or a tensor whose dtype kind (float, integer, bool) differs
            from the model's.
        CheckpointMismatchError: class count of the weights against the config or the request, missing or
            unexpected keys, other shape differences.
    """
    cfg = pretrained_cfg or {}
    check_finite(state, source=source)
    target = model.state_dict()
    for key, value in state.items():
        if key in target and _kind(value) != _kind(target[key]):
            raise WeightsIntegrityError(
                f"{source}: tensor {key!r} is {value.dtype} ({_kind(value)}) where the model has "
                f"{target[key].dtype} ({_kind(target[key])}); refusing to cast it"
            )
    heads = cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    head_keys = {f"{h}.{p}" for h in heads for p in ("weight", "bias")}
    cfg_classes = cfg.get("num_classes")
    for key in sorted(head_keys & state.keys()):
        if cfg_classes is not None and key.endswith(".weight") and state[key].shape[0] != cfg_classes:
            raise CheckpointMismatchError(
                f"{source}: the weights have {state[key].shape[0]} classes ({key} is {tuple(state[key].shape)}) but "
                f"their config says num_classes={cfg_classes}"
            )
    model_classes = getattr(model, "num_classes", cfg_classes)
    resetting = cfg_classes is not None and model_classes != cfg_classes
    if resetting and model_classes and not reset_head:
        message = (
            f"{source} has {cfg_classes} classes but the model was built with num_classes={model_classes}; pass "
            f"num_classes={cfg_classes}, or reset_head=True to load everything but the classifier"
        )
        if reset_head is False:
            raise CheckpointMismatchError(message)
        warnings.warn(f"{message} (loading with a new, untrained classifier, as timm does)", stacklevel=2)
    skip = head_keys if resetting else set()
    missing = [k for k in target if k not in state and k not in skip]
    unexpected = [k for k in state if k not in target and k not in skip]
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"{source} does not fit {_model_label(model)}: {_key_cause(missing, unexpected)}"
            f"{_architecture_hint(state, model)}"
        )
    first = cfg.get("first_conv") or ()
    adapted = {f"{c}.weight" for c in ((first,) if isinstance(first, str) else first)}
    wrong = [k for k in state if k in target and k not in skip | adapted and state[k].shape != target[k].shape]
    if wrong:
        shapes = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in wrong[:3])
        raise CheckpointMismatchError(
            f"{source} does not fit {_model_label(model)}: {len(wrong)} tensor(s) differ in shape (weights vs model): "
            f"{shapes}{_architecture_hint(state, model)}"
        )
    return state


def _model_label(model: nn.Module) -> str:
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    return f"{type(model).__name__} ({arch})" if arch else type(model).__name__


def _key_cause(missing: list[str], unexpected: list[str]) -> str:
    """Why two key sets differ: a prefix on every key, or which keys are missing and unexpected."""
    prefixes = {k.split(".", 1)[0] for k in unexpected}
    if missing and len(prefixes) == 1 and {k.split(".", 1)[-1] for k in unexpected} >= set(missing):
        return f"every weights key starts with '{prefixes.pop()}.', the model's do not (strip that prefix)"
    parts = []
    if missing:
        parts.append(f"{len(missing)} model key(s) missing from the weights (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) in the weights (e.g. {', '.join(unexpected[:3])})")
    return "; ".join(parts)


def _architecture_hint(state: dict[str, torch.Tensor], model: nn.Module) -> str:
    """`` (the weights are a resnet50's)`` when a zoo architecture's shapes match the weights, else empty."""
    import timm

    for arch in ARCHITECTURES:
        with torch.device("meta"):
            other = timm.create_model(arch, num_classes=getattr(model, "num_classes", 1000)).state_dict()
        if other.keys() == state.keys() and all(other[k].shape == v.shape for k, v in state.items() if "fc" not in k):
            return f" (the weights are a {arch}'s)"
    return ""


def load_into(model: nn.Module, state: dict[str, torch.Tensor], *, source: str, reset_head: bool = False) -> None:
    """Load weights into an already built model with the checks and the head rule of the timm path.

    For weights whose tag belongs to another zoo name (a recipe's ``model.init``); ``create_model`` loads through
    timm's own pretrained loading instead.

    Args:
        model: the built model.
        state: weights to load (a uniform ``module.`` prefix is removed, as timm does).
        source: where the weights came from (for messages).
        reset_head: keep the model's freshly initialised classifier when the class counts differ.
    """
    from timm.models import clean_state_dict

    state = clean_state_dict(state)
    head = model.get_classifier()
    names = [n for n, mod in model.named_modules() if mod is head]
    weight = state.get(f"{names[0]}.weight") if names else None
    cfg = {"classifier": names, "num_classes": weight.shape[0] if weight is not None else model.num_classes}
    check_state_dict(state, model, source=source, pretrained_cfg=cfg, reset_head=reset_head)
    if model.num_classes != cfg["num_classes"]:
        state = {k: v for k, v in state.items() if k.rpartition(".")[0] not in names}
    model.load_state_dict(state, strict=model.num_classes == cfg["num_classes"])


def local_weights_file(rec: ZooWeights) -> Path | None:
    """A tag's weights on this machine, unverified: committed in the repository, or in ``$CONSISTENTZOO_WEIGHTS``."""
    candidates = []
    if rec.local_dir:
        candidates.append(REPO_ROOT / rec.local_dir / WEIGHTS_NAME)
    if env := os.environ.get(ENV_WEIGHTS_DIR):
        candidates.append(Path(env) / rec.name / WEIGHTS_NAME)
    return next((path for path in candidates if path.is_file()), None)


def resolve_weights_file(rec: ZooWeights) -> Path:
    """The local path of a tag's verified ``model.safetensors``, downloading it from the Hub when needed.

    Raises:
        WeightsUnavailableError: not published, or the Hub cannot be reached and no local copy exists.
        WeightsIntegrityError: a file whose sha256 differs from the record (a cached download is removed).
    """
    expected = rec.expected_sha256
    if (path := local_weights_file(rec)) is not None:
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
