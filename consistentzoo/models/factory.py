"""``create_model`` and ``list_models``: timm's semantics, zoo names, and weights from a folder."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import timm
from torch import nn

from .errors import CheckpointMismatchError, UnknownModelError
from .metadata import list_weights
from .weights import CONFIG_NAME, WEIGHTS_NAME, folder_pretrained_cfg, load_state_dict, read_config
from .zoo import split_zoo_name


def zoo_model_names() -> list[str]:
    """Every registered zoo name (``{arch}[_gmp]_{objective}``)."""
    from . import alexnet, resnet

    return resnet.ZOO_NAMES + alexnet.ZOO_NAMES


def list_models(filter: str = "*", pretrained: bool = False, include_tags: bool | None = None) -> list[str]:
    """Zoo model names matching a wildcard pattern, as ``timm.list_models`` does for timm's.

    Args:
        filter: fnmatch pattern, e.g. ``"resnet50_*"``.
        pretrained: only names whose weights are published (in the repository or on the Hub).
        include_tags: list ``name.tag`` entries (default: same as ``pretrained``). Tags whose weights are not yet
            published are listed only when ``pretrained`` is False.

    Returns:
        Sorted names.
    """
    include_tags = pretrained if include_tags is None else include_tags
    if include_tags:
        names = [w.name for w in list_weights() if w.published or not pretrained]
    else:
        published = {w.zoo_name for w in list_weights() if w.published}
        names = [n for n in zoo_model_names() if n in published or not pretrained]
    return sorted(n for n in names if fnmatch.fnmatch(n, filter))


def _check_name(name: str) -> None:
    base, _, tag = name.partition(".")
    zoo = zoo_model_names()
    if base in zoo:
        tags = [w.name for w in list_weights(base)]
        if tag and name not in tags:
            raise UnknownModelError(name, tags or [w.name for w in list_weights()], kind="weight tag")
    elif not timm.is_model(base):
        raise UnknownModelError(name, zoo + timm.list_models(), kind="model")


def create_model(name: str, pretrained: bool | str | Path = False, **kwargs: Any) -> nn.Module:
    """Build a zoo model (or any timm model), optionally with weights.

    Args:
        name: zoo name with optional tag (``resnet50_cgc``, ``resnet50_cgc.in1k``), or any timm name.
        pretrained: ``True`` loads the tag's weights (repository, ``$CONSISTENTZOO_WEIGHTS`` or the Hub; sha256
            verified); a folder path loads ``config.json`` + ``model.safetensors`` written by a recipe or
            ``save_pretrained``.
        **kwargs: arguments of ``timm.create_model`` (``num_classes``, ``global_pool``, ``features_only``,
            ``in_chans``, ``pretrained_cfg_overlay``, ``checkpoint_path``, ...): the weights are loaded by timm's own
            pretrained loading. With weights, ``reset_head=True`` keeps a fresh classifier when ``num_classes``
            differs from the weights' (without it that is an error).

    Raises:
        UnknownModelError: the name or tag is not registered (the message lists close matches).
        WeightsUnavailableError: weights not published, or the Hub cannot be reached.
        CheckpointMismatchError: the weights do not fit the requested model.
        WeightsIntegrityError: a file that is corrupt, differs from its sha256, or holds non-finite values.
        WeightsConfigError: a folder's ``config.json`` that is not valid JSON or has a bad field.
    """
    _check_name(name)
    if isinstance(pretrained, (str, Path)):
        return _from_folder(name, Path(pretrained), **kwargs)
    if name.partition(".")[0] not in zoo_model_names():
        kwargs.pop("reset_head", None)
    else:  # our API refuses a class count other than the weights' unless asked; timm.create_model follows timm's
        kwargs.setdefault("reset_head", False)
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def _from_folder(name: str, folder: Path, **kwargs: Any) -> nn.Module:
    """Build ``name`` with the architecture arguments saved in ``folder``; timm loads its weights as pretrained."""
    cfg = read_config(folder)
    base = name.partition(".")[0]
    saved_arch = cfg["architecture"]
    zoo = base in zoo_model_names()
    arch = split_zoo_name(base)[0] if zoo else base
    if (saved_arch.split("_")[0] if zoo else saved_arch) != arch:
        raise CheckpointMismatchError(f"{folder} holds a {saved_arch} model (its {CONFIG_NAME}); {name} is a {arch}")
    if not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{folder} has a {CONFIG_NAME} but no {WEIGHTS_NAME}")
    # timm reads the file itself; read it once through our checks first so that a truncated or non-finite file is a
    # WeightsIntegrityError naming it, for stock timm architectures too (zoo ones also pass check_state_dict)
    load_state_dict(folder / WEIGHTS_NAME)
    for key, value in cfg.get("model_args", {}).items():
        if key != "num_classes":
            kwargs.setdefault(key, value)
    pretrained_cfg = folder_pretrained_cfg(name, folder, cfg)
    pretrained_cfg["label_names"] = _folder_label_names(cfg)
    return create_model(base, pretrained=True, pretrained_cfg=pretrained_cfg, **kwargs)


def _folder_label_names(cfg: dict[str, Any]) -> tuple[str, ...] | None:
    """Class names of a weights folder: its ``config.json``'s (timm's save_config_for_hf writes them at the top
    level), else those of the weight tag it records when the class counts agree; never the built name's defaults."""
    names = cfg.get("label_names") or cfg.get("pretrained_cfg", {}).get("label_names")
    if names:
        return tuple(names)
    info = cfg.get("consistentzoo") or {}
    zoo, tag = (info.get("zoo_name") or "").partition(".")[0], info.get("tag")
    rec = next((w for w in list_weights(zoo) if w.tag == tag), None) if zoo and tag else None
    return rec.label_names if rec is not None and rec.num_classes == cfg.get("num_classes") else None


def load_model(
    name_or_folder: str | Path, pretrained: bool | str | Path = True, num_classes: int | None = None
) -> tuple[nn.Module, str, str | None]:
    """Build a model from a zoo name or tag, a timm name, or a weights folder (what the CLI commands take).

    Args:
        name_or_folder: zoo name or tag (``resnet18_cgc.fashion_scenes``), timm name, or a folder holding
            ``config.json`` + ``model.safetensors`` (a recipe's output or :func:`save_pretrained`'s).
        pretrained: as :func:`create_model`; ignored for a folder, whose weights are always loaded.
        num_classes: classifier outputs, or None for the model's own.

    Returns:
        ``(model, name, tag)``: the zoo (or timm) name without tag, and the weight tag or None.
    """
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    folder = Path(name_or_folder)
    if folder.is_dir():
        cfg = read_config(folder)
        info = cfg.get("consistentzoo") or {}
        name = info.get("zoo_name") or cfg["architecture"]
        model = create_model(name, pretrained=folder, **kwargs)
        return model, name.partition(".")[0], info.get("tag")
    model = create_model(str(name_or_folder), pretrained=pretrained, **kwargs)
    name, _, tag = str(name_or_folder).partition(".")
    return model, name, tag or None


def label_names(model: nn.Module) -> tuple[str, ...] | None:
    """The model's class names in output order, or None where nothing records them.

    From ``pretrained_cfg["label_names"]`` (weight tags, and folders whose ``config.json`` has them) when their
    number matches the classifier's, else timm's ImageNet class descriptions for a 1000/1001/11k/21k-class model.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    n = getattr(model, "num_classes", None)
    names = cfg.get("label_names")
    if names and len(names) == n:
        return tuple(names)
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if subset is None:
        return None
    info = ImageNetInfo(subset)
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))
