"""Training and evaluation data for the loop: per-objective views, a resumable sharded batch order, and collation.

Reproducibility rule: every random choice of a sample (crop, flip, GC quadrant and distractors, CGC's recorded
crop) is seeded by ``(seed, epoch, index)`` alone, and the batch order by ``(seed, epoch)``. So a sample looks the same
whatever the number of processes, DataLoader workers or restarts, and the sampler's position is just
``(epoch, step in epoch)``.

Semi-supervised CGC (``data.label_fraction`` with an objective that has an unlabelled term): the rest of the
training split is a second, unlabelled stream with its own :class:`StepBatches` order (salted apart from the labelled
one) whose "epochs" are cycles: it restarts, reshuffled, whenever it runs out, independently of the labelled epoch.
Its samples carry no label (the objective gives them its unlabelled term only) and are seeded by
``(seed, cycle, index, 1)``; its position ``(cycle, step in cycle)`` is saved in the checkpoint's state.

Sharding rule: the global batch of one optimiser step is ``G = per_device × processes × accumulation`` indices of
the epoch's permutation; micro-batch ``m`` of process ``r`` takes chunk ``m · processes + r`` of it. One process with
accumulation ``k`` therefore sees exactly the chunks that ``k`` processes see in one micro-batch each (the reference
of the multi-process test).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2

from ..data import CompositeSampler, few_shot_episodes, labelled_split, load
from ..data.transforms import normalize, to_tv_tensors
from ..transforms import CropFlipParams, draw_crop_flip, replay
from .config import DataConfig, TrainingConfig

if TYPE_CHECKING:
    import datasets

_logger = logging.getLogger(__name__)

__all__ = [
    "Splits",
    "StepBatches",
    "TrainSet",
    "check_labels",
    "collate_views",
    "label_names",
    "load_splits",
    "unlabelled_batch_size",
]


def _sample_seed(*keys: int) -> int:
    return int(np.random.default_rng([int(k) for k in keys]).integers(0, 2**62))


def _image_tensor(row: dict[str, Any]) -> Tensor:
    """uint8 ``[3, H, W]`` of a decoded row."""
    return to_tv_tensors({"id": row["id"], "image": row["image"], "boxes": [], "box_labels": []})["image"]


def _labels_of(ds: datasets.Dataset) -> np.ndarray:
    if "labels" in ds.column_names:
        return np.asarray(ds["labels"])
    return np.asarray(ds["label"])


def _train_view(size: int, augment: str) -> v2.Compose:
    if augment == "pad_crop":
        crop: Any = v2.RandomCrop(size, padding=4)
        steps = [v2.Resize(size, antialias=True), crop]
    else:
        steps = [v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True)]
    return v2.Compose([*steps, v2.RandomHorizontalFlip(), normalize()])


def _center_view(size: int) -> v2.Compose:
    """Resize(256) + CenterCrop(224), scaled to ``size``: CGC's original view and the evaluation input."""
    return v2.Compose([v2.Resize(round(size * 256 / 224), antialias=True), v2.CenterCrop(size), normalize()])


class TrainSet(torch.utils.data.Dataset):
    """Training samples keyed by ``(epoch, index)``, with the views an objective needs.

    Args:
        ds: a split in the common schema.
        views: ``plain``, ``composite``, ``cgc`` or ``pair`` (see :class:`~.objectives.ObjectiveSpec`).
        image_size: crop size.
        augment: ``rrc`` or ``pad_crop``.
        seed: the run's seed.
        labelled: ``False`` for the unlabelled stream of semi-supervised training: samples carry no label (nor
            CGC's CE-only ``xe`` view) and their random draws are seeded apart from the labelled stream's.
    """

    def __init__(
        self, ds: datasets.Dataset, views: str, image_size: int, augment: str, seed: int, labelled: bool = True
    ):
        self.ds = ds
        self.views = views
        self.size = image_size
        self.seed = seed
        self.labelled = labelled
        self.train_view = _train_view(image_size, augment)
        self.center_view = _center_view(image_size)
        self.multilabel = "labels" in ds.column_names
        self.composites = CompositeSampler(_labels_of(ds), seed=seed) if views == "composite" else None

    def __len__(self) -> int:
        return len(self.ds)

    def _label(self, row: dict[str, Any]) -> dict[str, Tensor]:
        if self.multilabel:
            return {"labels": torch.as_tensor(row["labels"], dtype=torch.float32)}
        return {"label": torch.as_tensor(row["label"], dtype=torch.int64)}

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        # why fork_rng: torchvision's random transforms draw from the global generator; seeding it per sample makes
        # a sample independent of workers, processes and restarts without disturbing the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            keys = (self.seed, epoch, index) if self.labelled else (self.seed, epoch, index, 1)
            torch.manual_seed(_sample_seed(*keys))
            return self._sample(epoch, index)

    def _sample(self, epoch: int, index: int) -> dict[str, Any]:
        row = self.ds[index]
        out: dict[str, Any] = {"id": str(row["id"]), "index": index}
        if self.labelled:
            out.update(self._label(row))
        img = _image_tensor(row)
        if self.views == "cgc":
            orig = self.center_view(img)
            params = draw_crop_flip(1, (self.size, self.size))
            out.update(orig=orig, aug=replay(orig[None], params)[0], params=params)
            if self.labelled:
                out["xe"] = self.train_view(img)
            return out
        out["image"] = self.train_view(img)
        if self.views == "pair":
            params = draw_crop_flip(1, (self.size, self.size))
            out.update(aug=replay(out["image"][None], params)[0], params=params)
        elif self.views == "composite":
            assert self.composites is not None
            draw = self.composites.draw(index, epoch)
            out["distractors"] = torch.stack([self.train_view(_image_tensor(self.ds[j])) for j in draw.distractors])
            out.update(quadrant=torch.tensor(draw.quadrant), target=torch.tensor(draw.target))
        return out


def collate_views(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, concatenate recorded crop/flip parameters, keep ids and indices as lists."""
    out: dict[str, Any] = {}
    for key, value in samples[0].items():
        values = [s[key] for s in samples]
        if isinstance(value, CropFlipParams):
            out[key] = CropFlipParams.cat(values)
        elif isinstance(value, Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


@dataclass
class StepBatches:
    """The micro-batches of one process, step by step, for one epoch (see the module docstring).

    Attributes:
        num_samples: size of the training set.
        per_device: micro-batch size of one process.
        num_processes: processes.
        rank: this process.
        accumulation: micro-batches per optimiser step.
        seed: the run's seed.
        salt: keeps the permutations of different streams apart (labelled 7, unlabelled 13).
    """

    num_samples: int
    per_device: int
    num_processes: int
    rank: int
    accumulation: int
    seed: int
    salt: int = 7

    @property
    def global_batch(self) -> int:
        return self.per_device * self.num_processes * self.accumulation

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (the incomplete last global batch is dropped)."""
        return self.num_samples // self.global_batch

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[list[list[tuple[int, int]]]]:
        """For each step from ``start_step``: this process's micro-batches as lists of ``(epoch, index)`` keys."""
        perm = np.random.default_rng([self.seed, epoch, self.salt]).permutation(self.num_samples)
        for step in range(start_step, self.steps_per_epoch):
            chunk = perm[step * self.global_batch : (step + 1) * self.global_batch]
            micro = []
            for m in range(self.accumulation):
                c = m * self.num_processes + self.rank
                micro.append([(epoch, int(i)) for i in chunk[c * self.per_device : (c + 1) * self.per_device]])
            yield micro


def _subset(ds: datasets.Dataset, n: int | None, seed: int) -> datasets.Dataset:
    if n is None or n >= len(ds):
        return ds
    return ds.select(np.sort(np.random.default_rng([seed, 11]).permutation(len(ds))[:n]))


class Splits(NamedTuple):
    """The datasets of a run.

    Attributes:
        train: the (labelled) training set.
        evaluation: the evaluation set, or ``None``.
        unlabelled: semi-supervised: the rest of the training split (labels never read), or ``None``.
    """

    train: datasets.Dataset
    evaluation: datasets.Dataset | None
    unlabelled: datasets.Dataset | None = None


def unlabelled_batch_size(cfg: TrainingConfig) -> int:
    """Global batch of the unlabelled stream: 0 when the run has none (no ``data.label_fraction``, an objective
    without an unlabelled term, or ``data.unlabelled_batch_size: 0``)."""
    from .objectives import OBJECTIVES

    spec = OBJECTIVES.get(cfg.objective.name)
    if cfg.data.label_fraction is None or spec is None or not spec.unlabelled:
        return 0
    n = cfg.data.unlabelled_batch_size
    return cfg.train.batch_size if n is None else n


def check_labels(ds: datasets.Dataset, num_classes: int, where: str, *, train: bool = False) -> None:
    """Labels fit a classifier of ``num_classes`` outputs (checked when the data loads, not mid-run).

    Args:
        ds: a split in the common schema.
        num_classes: the config's ``model.num_classes``.
        where: the split, for messages (``"cub200 train"``).
        train: the training split also needs two classes at least (one class teaches nothing: the loss is 0).

    Raises:
        ConfigError: a label outside ``[0, num_classes)``, a multi-hot vector of another length, or one class only.
    """
    from .config import ConfigError

    if len(ds) == 0:
        raise ConfigError(f"the {where} split is empty")
    labels = _labels_of(ds)
    if labels.ndim == 2:  # multi-hot
        if labels.shape[1] != num_classes:
            raise ConfigError(
                f"config key 'model.num_classes' is {num_classes} but the {where} split has {labels.shape[1]} "
                f"classes (multi-label); set --set model.num_classes={labels.shape[1]}"
            )
        present = int((labels.sum(axis=0) > 0).sum())
    else:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            n = _num_classes_of(ds, high + 1)
            raise ConfigError(
                f"config key 'model.num_classes' is {num_classes} but the {where} split has labels {low}..{high} "
                f"({n} classes); set --set model.num_classes={n}"
            )
        present = len(np.unique(labels))
    if train and present < 2:
        raise ConfigError(
            f"the {where} split holds {present} class: a classifier learns nothing from one class (its loss is 0 "
            "from the start); add images of other classes"
        )


def _num_classes_of(ds: datasets.Dataset, default: int) -> int:
    feature = ds.features.get("label")
    return len(feature.names) if getattr(feature, "names", None) else default


def label_names(ds: datasets.Dataset) -> list[str] | None:
    """Class names in output order, when the split carries them."""
    from ..data import class_names

    try:
        return class_names(ds)
    except (KeyError, AttributeError):
        return None


def load_splits(cfg: TrainingConfig) -> Splits:
    """The training, evaluation and unlabelled splits, after few-shot / semi-supervised / size limits.

    Few-shot (``data.few_shot``): episode ``data.episode`` of ``few_shot_episodes`` on the training split; the
    episode's other images are the evaluation set (the CGC paper's protocol). Semi-supervised
    (``data.label_fraction``): ``labelled_split`` keeps the labelled share as the training set; the complement is the
    unlabelled stream when the objective has an unlabelled term (:func:`unlabelled_batch_size`), else it is dropped
    (the CE baseline of the semi-supervised table). ``train.max_train_samples`` caps both sets.
    """
    d: DataConfig = cfg.data
    train = load(d.dataset, d.train_split, d.source, **d.load_kwargs)
    evaluation = unlabelled = None
    if d.few_shot is not None:
        episode = few_shot_episodes(_labels_of(train), d.few_shot, num_episodes=d.episode + 1, seed=cfg.train.seed)[
            d.episode
        ]
        train, evaluation = train.select(episode.train), train.select(episode.val)
    elif d.eval_split is not None:
        evaluation = load(d.dataset, d.eval_split, d.source, **d.load_kwargs)
    if d.label_fraction is not None:
        labelled, rest = labelled_split(_labels_of(train), d.label_fraction, seed=cfg.train.seed)
        if unlabelled_batch_size(cfg):
            unlabelled = _subset(train.select(rest), cfg.train.max_train_samples, cfg.train.seed)
            _logger.info(
                "label_fraction=%s: %d labelled images, %d unlabelled for the %s term only",
                d.label_fraction,
                len(labelled),
                len(unlabelled),
                cfg.objective.name,
            )
        else:
            _logger.warning(
                "label_fraction=%s: training on the %d labelled images only", d.label_fraction, len(labelled)
            )
        train = train.select(labelled)
    train = _subset(train, cfg.train.max_train_samples, cfg.train.seed)
    check_labels(train, cfg.model.num_classes, f"{d.dataset} {d.train_split}", train=True)
    if evaluation is not None:
        evaluation = _subset(evaluation, cfg.train.max_eval_samples, cfg.train.seed)
        check_labels(evaluation, cfg.model.num_classes, f"{d.dataset} {d.eval_split or d.train_split}")
    return Splits(train, evaluation, unlabelled)
