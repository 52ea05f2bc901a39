"""Typed training configs: YAML in, dataclasses out, every key and type checked before any work starts.

A recipe config (``recipes/configs/<tag>.yaml``) holds the paper's hyper-parameters only; hardware choices
(mixed precision, gradient accumulation, workers, output folder) are command-line flags of the recipe. Any value can
be overridden with ``--set section.key=value`` (the value is read as YAML: ``--set optim.lr=0.05``,
``--set data.source=/data/cub``, ``--set schedule.milestones=[10,20]``).

Numbers: a float field accepts an int, and a string that reads as a number (YAML 1.1 reads ``1e-4`` without a dot as
a string); anything else of the wrong type is a :class:`ConfigError` naming the key, the expected type and the valid
keys of its section.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainingConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "config_yaml",
    "load_config",
    "save_config",
]


class ConfigError(ValueError):
    """A config key that does not exist, or a value of the wrong type or range (raised before any work starts)."""


@dataclass
class ModelConfig:
    """What network to build and where its starting weights come from.

    Attributes:
        name: zoo name (``resnet18_gmp_gc``) or any timm name.
        num_classes: classifier outputs.
        kwargs: extra timm model arguments (``global_pool: max``, ``stem: cifar``).
        init: starting weights: ``null`` (from scratch), a zoo weight tag (``resnet50_ce.in1k``) or a folder
            written by a recipe / ``save_pretrained``; the model takes the architecture arguments recorded with
            them (e.g. the half-width ``channels`` of the Fashion-scenes tags; ``kwargs`` override them, the zoo
            name keeps its pooling).
        reset_head: with ``init``, keep a fresh classifier when the class counts differ (fine-tuning).
        freeze_bn: BatchNorm layers stay in eval mode while training (running statistics frozen): a per-sample
            model, for small per-device batches in fine-tuning.
    """

    name: str = "resnet50_ce"
    num_classes: int = 1000
    kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    reset_head: bool = True
    freeze_bn: bool = False


@dataclass
class DataConfig:
    """Which data, which splits, and the image pipeline.

    Attributes:
        dataset: a name ``consistentzoo.data.load`` knows (``imagenet_1k``, ``cub200``, ``imagefolder``, ...).
        source: Hub id, local folder in the official layout or parquet export; ``null`` for the default Hub copy.
        train_split: split trained on.
        eval_split: split evaluated on every ``train.eval_every`` steps; ``null`` for none.
        image_size: training crop size (224 in the papers; GC composites are twice this).
        augment: training view of CE / GC / guided: ``rrc`` (RandomResizedCrop + flip) or ``pad_crop`` (CIFAR:
            4-pixel padding, random crop, flip).
        load_kwargs: dataset-specific options of ``consistentzoo.data.load`` (``train_per_class``, ``masks``, ...).
        few_shot: images per class for the few-shot protocol (1, 5 or 10; the rest of the split is validation).
        episode: which of the 20 seeded few-shot episodes.
        label_fraction: share of labelled images for semi-supervised training (CGC: 0.01); the split is
            ``consistentzoo.data.labelled_split`` (stratified, seeded by ``train.seed``).
        unlabelled_batch_size: semi-supervised CGC only: global batch of the unlabelled stream (the rest of the
            training split, CGC term only, its own cycling order) added to every optimiser step; ``null`` = the
            labelled ``train.batch_size``, ``0`` = no unlabelled stream (labelled images only). Objectives without an
            unlabelled term (CE, GC, SSIM, guided) train on the labelled share only.
    """

    dataset: str = "imagenet_1k"
    source: str | None = None
    train_split: str = "train"
    eval_split: str | None = "val"
    image_size: int = 224
    augment: str = "rrc"
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    few_shot: int | None = None
    episode: int = 0
    label_fraction: float | None = None
    unlabelled_batch_size: int | None = None


@dataclass
class ObjectiveConfig:
    """The objective and its hyper-parameters.

    Attributes:
        name: ``ce``, ``gc``, ``cgc``, ``ssim`` or ``guided``.
        args: keyword arguments of the objective's ``nn.Module`` (``lam``, ``tau``, ``alpha``, ...); checked against
            its signature.
    """

    name: str = "ce"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """SGD as all four papers use it.

    Attributes:
        lr: learning rate at a global batch of ``train.batch_size``.
        momentum: SGD momentum.
        weight_decay: L2 weight decay (on every parameter, as the authors' code).
        head_lr: a separate learning rate for the classifier (semi-supervised CGC: 5), or ``null``.
        nesterov: Nesterov momentum.
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    head_lr: float | None = None
    nesterov: bool = False


@dataclass
class ScheduleConfig:
    """Learning-rate schedule.

    Attributes:
        name: ``step`` (×``gamma`` at each milestone) or ``constant``.
        milestones: epochs at which the rate is multiplied by ``gamma`` (GC/CGC: 30, 60; guided: 60, 120, 160).
        gamma: the factor.
    """

    name: str = "step"
    milestones: list[int] = field(default_factory=lambda: [30, 60])
    gamma: float = 0.1


@dataclass
class TrainConfig:
    """Length, batch and bookkeeping of the run.

    Attributes:
        epochs: passes over the training split.
        batch_size: global batch per optimiser step (all processes × accumulation), the papers' number.
        seed: seed of the model's initialisation, the data order and every augmentation.
        max_steps: stop after this many optimiser steps (smoke runs; the schedule keeps its full length).
        max_train_samples: train on this many samples of the split (a seeded subset; smoke runs).
        max_eval_samples: evaluate on this many samples.
        eval_every: evaluate every this many steps (and at the end); 0 for only at the end.
        eval_metrics: metric names of ``consistentzoo.metrics.evaluate`` computed at each evaluation (``top1``,
            ``top5``, ``f1``, ``pg``, ``spg``, ``ch``, ``insertion``, ``cgc``, ...); ``null`` = the dataset's
            classification metrics (``top1`` + ``top5`` single-label, ``top5`` only with >= 5 classes; ``f1``
            multi-label), the cheap default. Localisation metrics need boxes in the evaluation split.
        eval_method: the saliency method of the metrics on maps (``hirescam``: the element-wise Grad-CAM of GC/CGC).
        checkpoint_every: write a checkpoint every this many steps (and at the end); 0 for only at the end.
        keep_checkpoints: checkpoints kept (older ones are deleted once a newer one is complete).
        log_every: log the training losses every this many steps.
        on_nan: what a non-finite loss does: ``stop`` (the only rule; see ``consistentzoo.training.loop``).
    """

    epochs: int = 90
    batch_size: int = 256
    seed: int = 0
    max_steps: int | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    eval_every: int = 0
    eval_metrics: list[str] | None = None
    eval_method: str = "hirescam"
    checkpoint_every: int = 5000
    keep_checkpoints: int = 2
    log_every: int = 50
    on_nan: str = "stop"


@dataclass
class TrainingConfig:
    """A complete recipe config.

    Attributes:
        tag: the weight tag the run reproduces (``resnet50_cgc.in1k``), recorded in the output.
        paper: where the setting comes from (free text, for people).
    """

    tag: str = ""
    paper: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_CHOICES = {
    ("data", "augment"): ("rrc", "pad_crop"),
    ("schedule", "name"): ("step", "constant"),
    ("train", "on_nan"): ("stop",),
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, section_keys: list[str]) -> Any:
    """``value`` as type ``tp``, or a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(value, opt, key, section_keys)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    bad = ConfigError(
        f"config key {key!r} must be {_type_name(tp)}, got {type(value).__name__} {value!r} "
        f"(valid keys of this section: {', '.join(section_keys)})"
    )
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]", section_keys) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise bad


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """A dataclass instance from a mapping, checking every key and type."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    valid = list(fields)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {raw!r}")
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; valid keys{' of ' + prefix.rstrip('.') if prefix else ''}: "
            f"{', '.join(valid)}"
        )
    kwargs = {}
    for name, value in raw.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
            continue
        kwargs[name] = _coerce(value, tp, f"{prefix}{name}", valid)
        choices = _CHOICES.get((prefix.rstrip("."), name))
        if choices and kwargs[name] not in choices:
            raise ConfigError(f"config key '{prefix}{name}' must be one of {choices}, got {kwargs[name]!r}")
    return cls(**kwargs)


def _check_objective(cfg: TrainingConfig) -> None:
    """Objective name and argument names against the objective's signature."""
    from .objectives import OBJECTIVES

    name = cfg.objective.name
    if name not in OBJECTIVES:
        raise ConfigError(f"config key 'objective.name' must be one of {sorted(OBJECTIVES)}, got {name!r}")
    loss_cls = OBJECTIVES[name].loss_cls
    if loss_cls is None:
        valid: list[str] = []
    else:
        valid = [p for p in inspect.signature(loss_cls.__init__).parameters if p != "self"]
    for key, value in cfg.objective.args.items():
        if key not in valid:
            raise ConfigError(
                f"unknown config key 'objective.args.{key}' for objective {name!r}; valid keys: "
                f"{', '.join(valid) or '(none)'}"
            )
        default = inspect.signature(loss_cls.__init__).parameters[key].default
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, str) and isinstance(default, float):  # YAML 1.1 reads 1e-5 as a string
                try:
                    value = cfg.objective.args[key] = float(value)
                except ValueError:
                    pass
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"config key 'objective.args.{key}' must be a number, got {value!r}")
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"config key 'objective.args.{key}' must be true or false, got {value!r}")


def _in_range(key: str, value: float, *, low: float, high: float = math.inf, low_open: bool = False) -> None:
    """ConfigError unless ``value`` is finite and in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        interval = (
            f"{'(' if low_open else '['}{low:g}, {high:g}]"
            if math.isfinite(high)
            else (f"> {low:g}" if low_open else f">= {low:g}")
        )
        raise ConfigError(f"config key {key!r} must be a finite number {interval}, got {value!r}")


def _check_optim(cfg: TrainingConfig) -> None:
    """Learning rates, momentum, weight decay and the schedule's factor: the ranges SGD is defined on."""
    o, s = cfg.optim, cfg.schedule
    _in_range("optim.lr", o.lr, low=0.0, low_open=True)
    if o.head_lr is not None:
        _in_range("optim.head_lr", o.head_lr, low=0.0, low_open=True)
    _in_range("optim.momentum", o.momentum, low=0.0, high=1.0)
    _in_range("optim.weight_decay", o.weight_decay, low=0.0)
    _in_range("schedule.gamma", s.gamma, low=0.0, high=1.0, low_open=True)
    if any(m < 0 for m in s.milestones):
        raise ConfigError(f"config key 'schedule.milestones' must be epochs >= 0, got {s.milestones}")
    if o.nesterov and o.momentum == 0:
        raise ConfigError("config key 'optim.nesterov' needs 'optim.momentum' > 0 (SGD's rule)")


def _check_model(cfg: TrainingConfig) -> None:
    """A classifier of at least two classes, and model arguments the architecture takes (built on the meta device)."""
    m = cfg.model
    if m.num_classes < 2:
        raise ConfigError(
            f"config key 'model.num_classes' must be >= 2, got {m.num_classes} (0 or less builds no classifier; "
            "with 1 class the cross-entropy is 0 whatever the model does)"
        )
    if m.kwargs:
        _check_model_kwargs(m.name, m.kwargs)


def _check_model_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    import torch

    from ..models import create_model
    from ..models.errors import UnknownModelError

    try:
        with torch.device("meta"):
            model = create_model(name)
    except UnknownModelError as e:
        raise ConfigError(f"config key 'model.name': {e}") from None
    # the class's own arguments, and those its **kwargs hand to the base classes (ZooResNet -> timm's ResNet)
    names: set[str] = set()
    takes_any = False
    for klass in type(model).__mro__:
        if klass is torch.nn.Module or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
        if not takes_any:
            break
    # set by the config's own keys (model.num_classes) or by the zoo builder itself
    valid = sorted(names - {"num_classes", "block", "layers", "device", "dtype"})
    unknown = [k for k in kwargs if k not in valid]
    if unknown and not takes_any:
        raise ConfigError(
            f"unknown config key 'model.kwargs.{unknown[0]}' for {name} ({type(model).__name__}); valid keys: "
            f"{', '.join(valid)}"
        )
    try:
        with torch.device("meta"):
            create_model(name, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as e:
        raise ConfigError(f"config key 'model.kwargs' {kwargs} does not build {name}: {e}") from None


def _check_data(cfg: TrainingConfig) -> None:
    """Image size, and ``data.load_kwargs`` against the dataset loader's signature (before anything loads)."""
    from ..data import get_spec, load
    from ..errors import UnknownChoiceError

    d = cfg.data
    if d.image_size < 8:
        raise ConfigError(f"config key 'data.image_size' must be >= 8 (pixels), got {d.image_size}")
    try:
        spec = get_spec(d.dataset)
    except UnknownChoiceError as e:
        raise ConfigError(f"config key 'data.dataset': {e}") from None
    valid: set[str] = set()
    takes_any = False
    # load()'s own options, then the dataset's local reader and Hub converter (either may receive the rest)
    for fn, skip in ((load, 3), (spec.local, 2), (spec.from_hub, 2)):
        if fn is None:
            continue
        params = list(inspect.signature(fn).parameters.values())[skip:]
        takes_any |= fn is not load and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        valid |= {
            p.name for p in params if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        }
    unknown = [k for k in d.load_kwargs if k not in valid]
    if unknown and not takes_any:
        raise ConfigError(
            f"unknown config key 'data.load_kwargs.{unknown[0]}' for dataset {spec.name!r}; valid keys: "
            f"{', '.join(sorted(valid))}"
        )


def _check_values(cfg: TrainingConfig) -> None:
    t = cfg.train
    for key in ("epochs", "batch_size"):
        if getattr(t, key) < 1:
            raise ConfigError(f"config key 'train.{key}' must be >= 1, got {getattr(t, key)}")
    for key in ("max_steps", "max_train_samples", "max_eval_samples"):
        if getattr(t, key) is not None and getattr(t, key) < 1:
            raise ConfigError(f"config key 'train.{key}' must be >= 1 or null, got {getattr(t, key)}")
    if cfg.data.few_shot is not None and cfg.data.few_shot not in (1, 5, 10):
        raise ConfigError(f"config key 'data.few_shot' must be 1, 5, 10 or null, got {cfg.data.few_shot}")
    if cfg.data.label_fraction is not None and not 0 < cfg.data.label_fraction < 1:
        raise ConfigError(f"config key 'data.label_fraction' must lie in (0, 1), got {cfg.data.label_fraction}")
    _check_optim(cfg)
    _check_model(cfg)
    _check_data(cfg)
    _check_unlabelled(cfg)
    _check_eval(cfg)


def _check_unlabelled(cfg: TrainingConfig) -> None:
    from .objectives import OBJECTIVES

    n = cfg.data.unlabelled_batch_size
    if n is None or n == 0:
        return
    if n < 0:
        raise ConfigError(f"config key 'data.unlabelled_batch_size' must be >= 0 or null, got {n}")
    if cfg.data.label_fraction is None:
        raise ConfigError("config key 'data.unlabelled_batch_size' needs 'data.label_fraction' (semi-supervised)")
    if not OBJECTIVES[cfg.objective.name].unlabelled:
        valid = sorted(k for k, v in OBJECTIVES.items() if v.unlabelled)
        raise ConfigError(
            f"config key 'data.unlabelled_batch_size': objective {cfg.objective.name!r} has no unlabelled term "
            f"(objectives with one: {', '.join(valid)}); leave it null"
        )


def _check_eval(cfg: TrainingConfig) -> None:
    from ..metrics.evaluate import UnknownMetricError, resolve_metrics
    from ..saliency import METHODS

    if cfg.train.eval_metrics is not None:
        if not cfg.train.eval_metrics:
            raise ConfigError("config key 'train.eval_metrics' must name at least one metric, or be null")
        try:
            resolve_metrics(cfg.train.eval_metrics)
        except UnknownMetricError as e:
            raise ConfigError(f"config key 'train.eval_metrics': {e}") from None
    if cfg.train.eval_method not in METHODS:
        raise ConfigError(
            f"config key 'train.eval_method' must be one of {', '.join(METHODS)}, got {cfg.train.eval_method!r}"
        )


def config_from_dict(raw: dict[str, Any]) -> TrainingConfig:
    """Build and check a :class:`TrainingConfig` from a plain mapping (as read from YAML).

    Raises:
        ConfigError: an unknown key, a value of the wrong type or outside its range (``optim.lr`` > 0,
            ``optim.momentum`` in [0, 1], ``optim.weight_decay`` >= 0, ``schedule.gamma`` in (0, 1],
            ``model.num_classes`` >= 2, ``data.image_size`` >= 8), a ``model.kwargs`` key the architecture does not
            take, a ``data.load_kwargs`` key the dataset's loader does not take, an unknown objective or objective
            argument.
    """
    cfg = _build(TrainingConfig, raw, "")
    _check_objective(cfg)
    _check_values(cfg)
    return cfg


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values read as YAML) to a raw config mapping.

    Raises:
        ConfigError: an override without ``=``, or a dotted path through a value that is not a mapping.
    """
    raw = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. optim.lr=0.05)")
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(e)})") from None
    return raw


def _yaml_problem(e: yaml.YAMLError) -> str:
    """``line L, column C: problem`` of a YAML error (1-based, as editors count)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainingConfig:
    """Read a recipe YAML, apply overrides and check everything.

    Args:
        path: the YAML file; ``None`` starts from the defaults.
        overrides: ``section.key=value`` strings.

    Raises:
        FileNotFoundError: the YAML does not exist.
        ConfigError: see :func:`config_from_dict`.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a recipe config must be a YAML mapping")
    return config_from_dict(apply_overrides(raw, overrides or []))


def config_to_dict(cfg: TrainingConfig) -> dict[str, Any]:
    """The config as plain data (for YAML, trackers and the checkpoint's fingerprint)."""
    return dataclasses.asdict(cfg)


def config_yaml(cfg: TrainingConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: TrainingConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (what the run actually used, overrides applied)."""
    path = Path(path)
    path.write_text(config_yaml(cfg))
    return path
