"""The one training loop every recipe drives.

``train(cfg, hardware)`` builds the model, objective, data, SGD and step schedule from a
:class:`~consistentzoo.training.config.TrainingConfig`, runs it under Accelerate (one or many GPUs, one CPU, or
several CPU processes under ``torchrun``), evaluates every ``train.eval_every`` steps, checkpoints atomically and
writes the weights folder (``model.safetensors`` + timm ``config.json``), ``metrics.json`` and the resolved
``config.yaml``.

Batch sizes: ``train.batch_size`` is the global batch of the paper. Each optimiser step takes
``per_device = batch_size / (processes × grad_accum)`` samples per micro-batch; CGC's negatives are the other
``per_device − 1`` maps of a micro-batch (never gathered across processes, as in the paper).

Semi-supervised CGC (``data.label_fraction``; see ``consistentzoo.training.data``): every micro-batch of labelled
images (the full objective, CE + λ·CGC) is paired with a micro-batch of the unlabelled stream
(``data.unlabelled_batch_size / (processes × grad_accum)`` images, the λ·CGC term only: they carry no label); both
losses are summed before the backward. The unlabelled stream cycles on its own, and its position is checkpointed.

Evaluation (every ``train.eval_every`` steps and at the end): :func:`consistentzoo.metrics.evaluate.evaluate` on the
evaluation split with the metrics of ``train.eval_metrics`` (default: top-1/top-5, or F1 on multi-label data) and the
saliency method ``train.eval_method``, at sizes scaled from ``data.image_size`` (:func:`eval_config`); the values go
to the trackers and to ``metrics.json`` as ``eval/<metric>``.

Non-finite loss rule (``train.on_nan: stop``, the only rule): the loss is checked on every micro-batch, before its
backward, on every process (one all-reduce of a flag). If any process sees NaN or ±inf, every process stops at that
step: the step, epoch and the ids of each process's batch are logged as an error and written to
``<output>/nan_report.json``, the step is not applied, no checkpoint is written for it (the previous good checkpoint
stays the newest), and :class:`NonFiniteLossError` is raised. Resuming with ``--resume auto`` restarts from that
checkpoint; a NaN that reappears at the same step is in the data or the hyper-parameters, not in chance. A finite
loss does not make the update finite (``optim.lr=1e10`` overflows BatchNorm's running variances): before every
checkpoint and the final weights, every parameter, buffer and optimiser tensor is checked, and a non-finite one stops
the run the same way (:class:`NonFiniteValuesError`, the report naming the tensors).

Output folder: one run per folder (:mod:`consistentzoo.training.outdir`: a lock, and a previous run is refused unless
resumed or overwritten); every file is written through :func:`~consistentzoo.training.checkpoint.write_file` (mode
from the umask, a full disk named as ``disk full while writing <file>``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import (
    CheckpointError,
    TrainerState,
    check_compatible,
    find_resumable,
    load_checkpoint,
    set_rng_state,
    torch_bytes,
    write_checkpoint,
    write_file,
    writing,
)
from .config import ConfigError, TrainingConfig, config_to_dict, config_yaml
from .data import StepBatches, TrainSet, collate_views, label_names, load_splits, unlabelled_batch_size
from .objectives import ObjectiveModule, build_objective
from .outdir import OutputDirError, RunLock, check_output_dir, clear_previous_run

_logger = logging.getLogger(__name__)

__all__ = ["Callback", "EvalCallback", "Hardware", "Loop", "NonFiniteLossError", "eval_config", "evaluate", "train"]

# config fields that may change between a run and its resume (bookkeeping and where the data lives)
_RESUME_FREE = {
    ("train", "max_steps"),
    ("train", "eval_every"),
    ("train", "eval_metrics"),
    ("train", "eval_method"),
    ("train", "checkpoint_every"),
    ("train", "keep_checkpoints"),
    ("train", "log_every"),
    ("train", "max_eval_samples"),
    ("data", "source"),
}
_HASHED_WHEN_SET = {("data", "unlabelled_batch_size")}


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the batch ids."""


class NonFiniteValuesError(NonFiniteLossError):
    """Parameters, buffers or optimiser state became NaN or infinite; the message names the tensors and the step."""


@dataclass
class Hardware:
    """Infrastructure flags of a run (command line, never in the recipe YAML).

    Attributes:
        output_dir: where the weights, metrics, config, checkpoints and logs go.
        mixed_precision: ``no``, ``fp16`` or ``bf16`` (bf16 on GPUs that have it: the map gradients of GC/CGC are
            small and fp16 needs the loss scaler to keep them).
        grad_accum: micro-batches per optimiser step (lowers memory at the same global batch).
        cpu: force the CPU.
        num_workers: DataLoader workers per process.
        resume: ``None`` (fresh), ``"auto"`` (newest good checkpoint in ``output_dir``) or a checkpoint folder.
        log_with: Accelerate tracker (``tensorboard``) or ``None``.
        overwrite: replace a previous run in ``output_dir`` (without it, and without ``resume``, a folder that
            holds a run is refused; see :mod:`consistentzoo.training.outdir`).
    """

    output_dir: Path
    mixed_precision: str = "no"
    grad_accum: int = 1
    cpu: bool = False
    num_workers: int = 4
    resume: str | None = None
    log_with: str | None = "tensorboard"
    overwrite: bool = False


class Callback:
    """Hook called by the loop after every optimiser step (evaluation, tests that interrupt a run, ...)."""

    def on_step_end(self, loop: Loop) -> None:
        """Called with the loop after ``loop.state.step`` steps."""


@dataclass
class Loop:
    """What callbacks see: the accelerator, the unwrapped model, the state and the latest logs."""

    accelerator: Any
    model: nn.Module
    state: TrainerState
    logs: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    def log(self, values: dict[str, float]) -> None:
        """Send values to the trackers at the current step and keep them in the metrics history."""
        self.accelerator.log(values, step=self.state.step)
        self.history.append({"step": self.state.step, **values})


def evaluate(
    model: nn.Module,
    dataset: Any,
    accelerator: Any,
    metrics: Sequence[str],
    method: str = "hirescam",
    config: Any = None,
) -> dict[str, float]:
    """``metrics`` of ``model`` on ``dataset`` through :func:`consistentzoo.metrics.evaluate.evaluate`.

    Every process evaluates its share of the batch plan and the evaluator gathers the per-image values, so every
    process returns the same numbers, those of one process.

    Args:
        model: the unwrapped classifier.
        dataset: the evaluation split (a ``datasets.Dataset`` in the common schema).
        accelerator: the run's accelerator.
        metrics: metric names (``top1``, ``pg``, ...).
        method: saliency method of the metrics on maps.
        config: a :class:`~consistentzoo.metrics.evaluate.EvalConfig` (see :func:`eval_config`).

    Returns:
        ``{"eval/<metric>": value}`` (``eval/<metric>_std`` too where the metric has one, SPG); a metric that
        scored no image has no entry (the evaluator warns).
    """
    from ..metrics.evaluate import evaluate as evaluate_rows

    rows = evaluate_rows(model, dataset, [method], metrics, config=config, accelerator=accelerator)
    out: dict[str, float] = {}
    for row in rows:
        out[f"eval/{row['metric']}"] = float(row["value"])
        if row["std"] is not None:
            out[f"eval/{row['metric']}_std"] = float(row["std"])
    return out


def eval_config(cfg: TrainingConfig, batch_size: int, num_workers: int) -> Any:
    """The evaluator's settings for a run: the papers' protocol sizes scaled from ``data.image_size``.

    At 224 px these are the papers' values: classification Resize(256) + CenterCrop(224) (the training loop's centre
    view), PG/SPG/CH at 448 px with a 15 px pointing radius, faithfulness at 224 px; CGC's temperature is the
    objective's ``tau`` when it has one.
    """
    from ..metrics.evaluate import EvalConfig

    size = cfg.data.image_size
    cls_size = round(size * 256 / 224)
    return EvalConfig(
        batch_size=batch_size,
        loc_size=2 * size,
        faith_size=size,
        cls_size=cls_size,
        cls_crop=size,
        cgc_size=cls_size,
        cgc_crop=size,
        cgc_tau=float(cfg.objective.args.get("tau", 0.5)),
        tolerance=15.0 * size / 224,
        seed=cfg.train.seed,
        num_workers=num_workers,
        progress=False,
    )


def default_eval_metrics(cfg: TrainingConfig, dataset: Any) -> list[str]:
    """``train.eval_metrics``, or the dataset's cheap classification metrics when it is ``null``.

    Raises:
        ConfigError: ``top5`` asked of a model with fewer than 5 classes.
    """
    if cfg.train.eval_metrics is not None:
        if "top5" in cfg.train.eval_metrics and cfg.model.num_classes < 5:
            raise ConfigError(f"config key 'train.eval_metrics': top5 needs >= 5 classes, got {cfg.model.num_classes}")
        return list(cfg.train.eval_metrics)
    if "labels" in dataset.column_names:
        return ["f1"]
    return ["top1", "top5"] if cfg.model.num_classes >= 5 else ["top1"]


class EvalCallback(Callback):
    """Evaluate every ``every`` steps (``0``: never during training; the loop evaluates at the end anyway).

    Args:
        dataset: the evaluation split.
        every: steps between evaluations.
        metrics: metric names of :func:`consistentzoo.metrics.evaluate.evaluate`.
        method: saliency method of the metrics on maps.
        config: the evaluator's settings (:func:`eval_config`).
    """

    def __init__(self, dataset: Any, every: int, metrics: Sequence[str], method: str = "hirescam", config: Any = None):
        self.dataset = dataset
        self.every = every
        self.metrics = list(metrics)
        self.method = method
        self.config = config

    def __call__(self, loop: Loop) -> dict[str, float]:
        values = evaluate(loop.model, self.dataset, loop.accelerator, self.metrics, self.method, self.config)
        loop.log(values)
        _logger.info("step %d: %s", loop.state.step, ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        return values

    def on_step_end(self, loop: Loop) -> None:
        if self.every and loop.state.step % self.every == 0:
            self(loop)


def _fingerprint(cfg: TrainingConfig) -> str:
    import hashlib

    raw = config_to_dict(cfg)
    for section, key in _RESUME_FREE:
        raw[section].pop(key, None)
    # keys added after checkpoints were written hash only when set, so those checkpoints stay resumable
    for section, key in _HASHED_WHEN_SET:
        if raw[section].get(key) is None:
            raw[section].pop(key, None)
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_model(cfg: TrainingConfig) -> nn.Module:
    """The network of ``cfg.model``, from scratch or from ``model.init`` (a weights folder or a zoo tag)."""
    from .. import create_model
    from ..models import (
        UnknownModelError,
        WeightsUnavailableError,
        get_weights,
        load_state_dict,
        resolve_weights_file,
    )
    from ..models.weights import load_into

    m = cfg.model
    if m.init is not None and Path(m.init).is_dir():
        return create_model(m.name, pretrained=m.init, num_classes=m.num_classes, reset_head=m.reset_head, **m.kwargs)
    if m.init is None:
        return create_model(m.name, num_classes=m.num_classes, **m.kwargs)
    # why load by hand: the starting tag (resnet50_ce.in1k) belongs to another zoo name than the model trained
    try:
        rec = get_weights(m.init)
        path = resolve_weights_file(rec)
    except (UnknownModelError, WeightsUnavailableError) as e:
        raise ConfigError(f"config key 'model.init' = {m.init!r}: {e} {init_choices(m.name)}") from e
    # the tag's architecture arguments (a width, a stem) come with its weights; the zoo name keeps its own pooling
    inherited = {k: v for k, v in rec.model_args.items() if k != "global_pool"}
    model = create_model(m.name, num_classes=m.num_classes, **{**inherited, **m.kwargs})
    load_into(model, load_state_dict(path, rec.expected_sha256), source=m.init, reset_head=m.reset_head)
    return model


def init_choices(model_name: str) -> str:
    """What ``model.init`` can be for ``model_name``: the tags of its architecture whose weights are available."""
    from ..models import list_weights
    from ..models.zoo import split_zoo_name

    try:
        arch = split_zoo_name(model_name.partition(".")[0])[0]
    except ValueError:
        arch = None
    tags = [w.name for w in list_weights() if w.published and (arch is None or w.architecture == arch)]
    listed = ", ".join(f"--set model.init={t}" for t in tags) if tags else f"none for {arch or model_name} yet"
    return (
        f"Choices: a tag with weights available ({listed}); a folder with config.json + model.safetensors "
        "(--set model.init=/path/to/run); or --set model.init=null to train from scratch."
    )


def build_optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.SGD:
    """SGD with momentum and weight decay; the classifier in its own group when ``optim.head_lr`` is set."""
    o = cfg.optim
    head = {id(p) for p in model.get_classifier().parameters()} if o.head_lr is not None else set()
    body = [p for p in model.parameters() if id(p) not in head]
    groups: list[dict[str, Any]] = [{"params": body, "lr": o.lr}]
    if head:
        groups.append({"params": [p for p in model.parameters() if id(p) in head], "lr": o.head_lr})
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainingConfig, steps_per_epoch: int) -> Any:
    """The papers' step schedule (×gamma at each milestone epoch), stepped once per optimiser step."""
    s = cfg.schedule
    milestones = [m * steps_per_epoch for m in s.milestones] if s.name == "step" else []

    def factor(step: int) -> float:
        return s.gamma ** sum(step >= m for m in milestones)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def _freeze_bn(model: nn.Module) -> None:
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.eval()


def _check_finite(total: Tensor, batch_ids: list[str], accelerator: Any, state: TrainerState, out: Path) -> None:
    """Stop every process when any process's loss is not finite (see the module docstring)."""
    from accelerate.utils import gather_object

    bad = torch.tensor(0.0 if torch.isfinite(total.detach()).all() else 1.0, device=accelerator.device)
    if float(accelerator.reduce(bad, "sum")) == 0:
        return
    ids = gather_object([{"rank": accelerator.process_index, "loss": float(total.detach()), "ids": batch_ids}])
    report = {"step": state.step + 1, "epoch": state.epoch, "step_in_epoch": state.step_in_epoch, "batches": ids}
    message = f"non-finite loss at step {state.step + 1} (epoch {state.epoch}); batch ids per process: {ids}"
    _report_nan(accelerator, out, report, message)
    raise NonFiniteLossError(message + "; the step was not applied and training stopped (rule: train.on_nan=stop)")


def _non_finite_tensors(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of the model's parameters and buffers, and of the optimiser's state tensors, holding NaN or ±inf."""
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    names = {id(p): n for n, p in model.named_parameters()}
    for param, slots in optimizer.state.items():
        for slot, v in slots.items():
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                bad.append(f"optimizer.{names.get(id(param), '?')}.{slot}")
    return bad


def _check_values(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch_ids: list[str], accelerator: Any, state: TrainerState,
    out: Path,
) -> None:  # fmt: skip
    """Before a checkpoint or the weights are written: every parameter, buffer and optimiser tensor is finite.

    A finite loss does not make the step's update finite (``optim.lr=1e10`` overflows the weights); the NaN rule
    then applies as for the loss: report, no checkpoint, :class:`NonFiniteValuesError`.
    """
    from accelerate.utils import gather_object

    bad = _non_finite_tensors(model, optimizer)
    flag = torch.tensor(float(bool(bad)), device=accelerator.device)
    if float(accelerator.reduce(flag, "sum")) == 0:
        return
    ids = gather_object([{"rank": accelerator.process_index, "tensors": bad, "ids": batch_ids}])
    report = {"step": state.step, "epoch": state.epoch, "step_in_epoch": state.step_in_epoch, "batches": ids}
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    message = (
        f"non-finite values after step {state.step} (epoch {state.epoch}) in {len(bad)} tensors ({shown}); batch "
        f"ids of the step per process: {[b['ids'] for b in ids]}"
    )
    _report_nan(accelerator, out, report, message)
    raise NonFiniteValuesError(
        message + "; no checkpoint or weights were written for it and training stopped (rule: train.on_nan=stop); "
        "lower optim.lr or check the data"
    )


def _report_nan(accelerator: Any, out: Path, report: dict[str, Any], message: str) -> None:
    if accelerator.is_main_process:
        _logger.error(message)
        write_file(out / "nan_report.json", json.dumps(report, indent=2).encode())


def _flat_config(cfg: TrainingConfig) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, values in config_to_dict(cfg).items():
        if not isinstance(values, dict):
            flat[section] = values
            continue
        for key, value in values.items():
            flat[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def _epoch_loader(
    dataset: TrainSet, order: StepBatches, epoch: int, start: int, workers: int
) -> Iterator[list[dict[str, Any]]]:
    """This process's micro-batches of one epoch from step ``start``, grouped per optimiser step."""
    micro = [mb for step in order.epoch(epoch, start) for mb in step]
    if not micro:
        return
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=micro, collate_fn=collate_views, num_workers=workers, persistent_workers=False
    )
    it = iter(loader)
    for _ in range(len(micro) // order.accumulation):
        yield [next(it) for _ in range(order.accumulation)]


def _cycling_loader(
    dataset: TrainSet, order: StepBatches, cycle: int, start: int, workers: int
) -> Iterator[list[dict[str, Any]]]:
    """The unlabelled stream: :func:`_epoch_loader` over cycles ``cycle, cycle + 1, ...`` from step ``start``."""
    while True:
        yield from _epoch_loader(dataset, order, cycle, start, workers)
        cycle, start = cycle + 1, 0


def train(cfg: TrainingConfig, hw: Hardware, callbacks: Iterable[Callback] = ()) -> dict[str, Any]:
    """Train, checkpoint and write the weights folder; returns the final metrics (also in ``metrics.json``).

    Raises:
        ConfigError: the global batch does not split over processes × accumulation, a micro-batch of one image with
            BatchNorm, labels outside ``model.num_classes``, or a ``model.init`` whose weights are not available.
        OutputDirError: ``output_dir`` holds a previous run (without ``resume``/``overwrite``), or is in use.
        CheckpointError: ``resume`` names a bad checkpoint, or one of another run or version.
        DiskFullError: the disk filled up while writing a checkpoint or the weights.
        NonFiniteLossError: the loss, or (:class:`NonFiniteValuesError`) a weight became NaN or infinite.
    """
    from accelerate import Accelerator

    out = Path(hw.output_dir)
    # Initialise Accelerate first: it reads torchrun's / accelerate's environment and decides devices and processes.
    accelerator = Accelerator(
        cpu=hw.cpu,
        mixed_precision=hw.mixed_precision,
        gradient_accumulation_steps=hw.grad_accum,
        log_with=hw.log_with,
        project_dir=str(out),
    )
    # One run per folder: lock it, then refuse a previous run there unless resumed or overwritten.
    lock = _claim_output_dir(out, hw, accelerator)
    try:
        return _train(cfg, hw, accelerator, out, list(callbacks))
    finally:
        if lock is not None:
            lock.release()


def _claim_output_dir(out: Path, hw: Hardware, accelerator: Any) -> RunLock | None:
    """The main process locks ``out`` and checks it (see :mod:`~.outdir`); every process raises the same error."""
    from accelerate.utils import broadcast_object_list

    lock, error = None, None
    if accelerator.is_main_process:
        try:
            lock = RunLock(out)
            lock.acquire()
            check_output_dir(out, resume=hw.resume, overwrite=hw.overwrite)
            if hw.overwrite:
                clear_previous_run(out)
        except OutputDirError as e:
            error = str(e)
    error = broadcast_object_list([error])[0] if accelerator.num_processes > 1 else error
    if error is not None:
        if lock is not None:
            lock.release()
        raise OutputDirError(error)
    return lock


def _needs_batch_of_two(model: nn.Module, cfg: TrainingConfig) -> bool:
    """BatchNorm in train mode estimates its statistics from the micro-batch: one image is not a batch."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return has_bn and not cfg.model.freeze_bn


def _train(cfg: TrainingConfig, hw: Hardware, accelerator: Any, out: Path, callbacks: list[Callback]) -> dict[str, Any]:
    from accelerate.utils import set_seed

    world, rank = accelerator.num_processes, accelerator.process_index
    per_device, rest = divmod(cfg.train.batch_size, world * hw.grad_accum)
    if rest or per_device < 1:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} does not split into {world} processes × {hw.grad_accum} "
            "accumulation steps; change --grad-accum or the number of processes"
        )
    # Seed before building the model so that the seed also fixes the initial weights (identical on every process).
    set_seed(cfg.train.seed)
    model = build_model(cfg).to(accelerator.device)
    if per_device == 1 and _needs_batch_of_two(model, cfg):
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} over {world} processes × {hw.grad_accum} accumulation steps "
            f"is a micro-batch of 1 image, and {cfg.model.name}'s BatchNorm layers in train mode need at least 2 "
            "(their statistics come from the batch); raise train.batch_size, lower --grad-accum, or set "
            "model.freeze_bn=true"
        )
    spec, loss = build_objective(cfg.objective.name, cfg.objective.args, cfg.data.image_size)

    # Data: every process loads the same split; the batch order shards it (see consistentzoo.training.data).
    with accelerator.main_process_first():
        train_ds, eval_ds, unlabelled_ds = load_splits(cfg)
    names = label_names(train_ds)
    dataset = TrainSet(train_ds, spec.views, cfg.data.image_size, cfg.data.augment, cfg.train.seed)
    order = StepBatches(len(dataset), per_device, world, rank, hw.grad_accum, cfg.train.seed)
    if order.steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is larger than the {len(dataset)} training images")
    # Semi-supervised: the unlabelled stream, sharded like the labelled one but with its own order and cycle.
    unl_dataset = unl_order = None
    if unlabelled_ds is not None:
        unl_global = unlabelled_batch_size(cfg)
        unl_per_device, rest = divmod(unl_global, world * hw.grad_accum)
        if rest or unl_per_device < 1:
            raise ConfigError(
                f"data.unlabelled_batch_size={unl_global} does not split into {world} processes × {hw.grad_accum} "
                "accumulation steps"
            )
        unl_dataset = TrainSet(
            unlabelled_ds, spec.views, cfg.data.image_size, cfg.data.augment, cfg.train.seed, labelled=False
        )
        unl_order = StepBatches(len(unl_dataset), unl_per_device, world, rank, hw.grad_accum, cfg.train.seed, salt=13)
        if unl_order.steps_per_epoch == 0:
            raise ConfigError(
                f"data.unlabelled_batch_size={unl_global} is larger than the {len(unl_dataset)} unlabelled images"
            )
    total_steps = cfg.train.epochs * order.steps_per_epoch
    if cfg.train.max_steps is not None:
        total_steps = min(total_steps, cfg.train.max_steps)

    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, order.steps_per_epoch)
    state = TrainerState(
        model_name=cfg.model.name, num_classes=cfg.model.num_classes, fingerprint=_fingerprint(cfg), world_size=world
    )

    # Resume before prepare(): the states load into the plain model and optimiser, and DDP then starts from them.
    ckpt_dir = out / "checkpoints"
    if hw.resume is not None and (path := find_resumable(hw.resume, ckpt_dir)) is not None:
        _resume(path, model, optimizer, scheduler, state, rank, world)

    # Wrap the objective, not the bare network: the loss calls forward_features/forward_head itself, and DDP must
    # see one forward per step for its gradient bookkeeping (the double backward then reduces once).
    objective, optimizer = accelerator.prepare(ObjectiveModule(model, spec, loss), optimizer)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_file(out / "config.yaml", config_yaml(cfg).encode())
    if hw.log_with:
        accelerator.init_trackers("train", config=_flat_config(cfg))

    eval_cb = None
    if eval_ds is not None:
        eval_cb = EvalCallback(
            eval_ds,
            cfg.train.eval_every,
            default_eval_metrics(cfg, eval_ds),
            cfg.train.eval_method,
            eval_config(cfg, per_device, hw.num_workers),
        )
    loop = Loop(accelerator, model, state)
    callbacks = [c for c in (eval_cb,) if c is not None] + callbacks
    step_ids: list[str] = []

    def save_main(tmp: Path) -> None:
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        write_file(tmp / "model.safetensors", save(tensors))
        write_file(tmp / "optimizer.pt", torch_bytes(optimizer.optimizer.state_dict()))
        write_file(tmp / "scheduler.pt", torch_bytes(scheduler.state_dict()))
        write_file(tmp / "config.yaml", config_yaml(cfg).encode())

    def checkpoint() -> None:
        _check_values(model, optimizer.optimizer, step_ids, accelerator, state, out)
        write_checkpoint(
            ckpt_dir,
            state,
            is_main=accelerator.is_main_process,
            rank=rank,
            barrier=accelerator.wait_for_everyone,
            write_main=save_main,
            keep=cfg.train.keep_checkpoints,
        )

    from tqdm.auto import tqdm

    progress = tqdm(total=total_steps, initial=state.step, disable=not accelerator.is_local_main_process, desc="train")
    started, seen, window, last_parts = time.perf_counter(), 0, [], {}
    unlabelled = None
    if unl_dataset is not None and unl_order is not None:
        unlabelled = _cycling_loader(
            unl_dataset, unl_order, state.unlabelled_cycle, state.unlabelled_step, hw.num_workers
        )
    # The loop: epochs of optimiser steps, each of grad_accum micro-batches; the sampler resumes mid-epoch.
    while state.step < total_steps:
        for micro_batches in _epoch_loader(dataset, order, state.epoch, state.step_in_epoch, hw.num_workers):
            objective.train()
            if cfg.model.freeze_bn:
                _freeze_bn(model)
            parts_sum: dict[str, float] = {}
            step_ids = []
            unl_batches = next(unlabelled) if unlabelled is not None else [None] * len(micro_batches)
            for batch, unl_batch in zip(micro_batches, unl_batches, strict=True):
                batch = _to_device(batch, accelerator.device)
                ids = list(batch["id"])
                if unl_batch is not None:
                    unl_batch = _to_device(unl_batch, accelerator.device)
                    ids += unl_batch["id"]
                with accelerator.accumulate(objective):
                    total, parts = objective(batch) if unl_batch is None else objective(batch, unl_batch)
                    _check_finite(total, ids, accelerator, state, out)
                    step_ids += ids
                    accelerator.backward(total)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                for k, v in {"loss": total.detach(), **parts}.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + float(v) / hw.grad_accum
                seen += batch["image" if "image" in batch else "orig"].shape[0] * world
            scheduler.step()
            state.step += 1
            state.step_in_epoch += 1
            window.append(parts_sum)
            last_parts = parts_sum
            progress.update(1)
            progress.set_postfix(loss=f"{parts_sum['loss']:.4f}")
            if cfg.train.log_every and state.step % cfg.train.log_every == 0:
                loop.log(
                    {f"train/{k}": sum(w[k] for w in window) / len(window) for k in window[0]}
                    | {"train/lr": scheduler.get_last_lr()[0]}
                )
                window = []
            if state.step_in_epoch == order.steps_per_epoch:
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
            if unl_order is not None:
                state.unlabelled_step += 1
                if state.unlabelled_step == unl_order.steps_per_epoch:
                    state.unlabelled_cycle, state.unlabelled_step = state.unlabelled_cycle + 1, 0
            for cb in callbacks:
                cb.on_step_end(loop)
            if state.step == total_steps:
                break
            if cfg.train.checkpoint_every and state.step % cfg.train.checkpoint_every == 0:
                checkpoint()
    progress.close()
    checkpoint()

    # Final evaluation and the weights folder: model.safetensors + timm config.json + metrics.json + config.yaml.
    evaluated = [h for h in loop.history if h["step"] == state.step and any(k.startswith("eval/") for k in h)]
    final = evaluated[-1] if evaluated else eval_cb(loop) if eval_cb is not None else {}
    wall = time.perf_counter() - started
    metrics = {
        "tag": cfg.tag,
        "steps": state.step,
        "epoch": state.epoch + state.step_in_epoch / order.steps_per_epoch,
        "world_size": world,
        "per_device_batch": per_device,
        "grad_accum": hw.grad_accum,
        "mixed_precision": hw.mixed_precision,
        "train_last": last_parts,
        "eval": final,
        **_eval_facts(cfg, evaluated=eval_ds is not None),
        "history": loop.history,
        "wall_s": wall,
        "samples_per_s": seen / wall if wall > 0 and seen else math.nan,
    }
    if unl_order is not None:
        metrics["unlabelled"] = {
            "images": unl_order.num_samples,
            "batch_size": unl_order.global_batch,
            "steps_per_cycle": unl_order.steps_per_epoch,
            "cycle": state.unlabelled_cycle,
            "step_in_cycle": state.unlabelled_step,
        }
    if accelerator.is_main_process:
        _write_outputs(model, cfg, out, metrics, names)
    accelerator.wait_for_everyone()
    # why not end_training(): it also destroys the process group, and a process may train again (tests, sweeps)
    for tracker in accelerator.trackers:
        tracker.finish()
    return metrics


def _resume(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, state: TrainerState, rank: int,
    world: int,
) -> None:  # fmt: skip
    """Load a checkpoint of this run into the plain model, optimiser, scheduler, RNGs and ``state``.

    Raises:
        CheckpointError: the checkpoint is of another model, config or version, or does not fit the model.
    """
    saved, blobs = load_checkpoint(path, rank, world)
    check_compatible(saved, state, path)
    try:
        model.load_state_dict(blobs["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the saved model does not fit {state.model_name}: {e}") from e
    optimizer.load_state_dict(blobs["optimizer"])
    scheduler.load_state_dict(blobs["scheduler"])
    if blobs["rng"] is not None:
        set_rng_state(blobs["rng"])
    state.step, state.epoch, state.step_in_epoch = saved.step, saved.epoch, saved.step_in_epoch
    state.unlabelled_cycle, state.unlabelled_step = saved.unlabelled_cycle, saved.unlabelled_step
    _logger.info("resumed from %s at step %d", path, state.step)


def _eval_facts(cfg: TrainingConfig, *, evaluated: bool) -> dict[str, Any]:
    """What the final evaluation in ``metrics.json`` was measured on (the card quotes it beside the values)."""
    if not evaluated:
        return {"eval_method": cfg.train.eval_method, "eval_dataset": None, "eval_split": None}
    split = cfg.data.eval_split or f"{cfg.data.train_split} (few-shot rest)"
    return {"eval_method": cfg.train.eval_method, "eval_dataset": cfg.data.dataset, "eval_split": split}


def _write_outputs(
    model: nn.Module, cfg: TrainingConfig, out: Path, metrics: dict[str, Any], names: list[str] | None
) -> None:
    from ..models import save_pretrained

    with writing(out / "model.safetensors"):
        save_pretrained(model, out, zoo=weights_facts(cfg, names))
    write_file(out / "metrics.json", json.dumps(metrics, indent=2, default=float).encode())
    write_file(out / "config.yaml", config_yaml(cfg).encode())


def weights_facts(cfg: TrainingConfig, names: list[str] | None) -> dict[str, Any]:
    """What ``config.json`` records under ``consistentzoo`` about how the weights were made (the card reads it).

    The true dataset (name and source, as the config gives it), the start point (``model.init``: a tag or a
    folder, ``None`` from scratch), the class names in output order, the input size, and the weight tag only when it
    fits the run: a config copied from a zoo tag and pointed at other data (``--set data.dataset=imagefolder``) no
    longer produces that tag's weights.
    """
    from ..models import UnknownModelError, get_weights

    tag = None
    zoo_name, dot, dataset_tag = cfg.tag.partition(".")
    if cfg.tag and dot and zoo_name == cfg.model.name:
        try:
            rec = get_weights(cfg.tag)
        except UnknownModelError:
            tag = dataset_tag  # a tag of one's own (resnet18_ce.my_shoes)
        else:
            fits = rec.dataset == cfg.data.dataset and rec.num_classes == cfg.model.num_classes
            tag = dataset_tag if fits else None
            if not fits:
                _logger.warning(
                    "the config's tag %s is %s with %d classes, but this run trained on %s with %d: config.json "
                    "records no tag (set tag: <model>.<your_tag> in the config to name these weights)",
                    cfg.tag, rec.dataset, rec.num_classes, cfg.data.dataset, cfg.model.num_classes,
                )  # fmt: skip
    # the source and start folder as the config gives them: config.json is published, absolute paths are private
    return {
        "tag": tag,
        "objective": cfg.objective.name,
        "objective_args": cfg.objective.args,
        "dataset": cfg.data.dataset,
        "data_source": cfg.data.source,
        "init": cfg.model.init,
        "label_names": names,
        "input_size": [3, cfg.data.image_size, cfg.data.image_size],
        "recipe_config": "config.yaml",
    }
