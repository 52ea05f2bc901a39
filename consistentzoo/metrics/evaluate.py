"""The evaluator: a model, a dataset, saliency methods and metric names in; one result row per (method, metric) out.

Protocols are those of ``../shared/reference/METHODS.md`` ("Evaluation protocols"):

- ``pg`` / ``spg`` / ``ch`` (GC, CGC): shorter side resized to ``loc_size`` (448), full image; one map per
  (image, ground-truth class) for that class, upsampled bilinearly to the *original* image size and renormalised
  to sum 1; ground truth = union of the class's instance masks (boxes when the dataset has no masks). Pairs whose
  map is all zero, or whose class has no box or mask, are skipped and counted; with ``EvalConfig.paired`` an
  all-zero map is scored as a miss instead (PG/SPG/CH 0, NQH 1), so every model is scored on the same pairs. PG's
  value is the mean of per-class hit rates; SPG's is mean ± std over ``spg_seeds`` seeds of the mean over pairs;
  CH is the mean over pairs.
- ``insertion`` / ``deletion`` / ``ad`` / ``ai`` / ``ag``: input ``Resize((faith_size, faith_size))``; the map of
  the class predicted on the full image, upsampled to the input size.
- ``top1`` / ``top5`` (single-label) and ``f1`` (multi-label: overall and per-class F1 of sigmoid scores):
  ``Resize(cls_size) + CenterCrop(cls_crop)``.
- ``cgc``: the CGC consistency term (:func:`consistentzoo.objectives.cgc_consistency` through
  :class:`~consistentzoo.objectives.CGCLoss`, hirescam, no labels) on held-out batches of ``cgc_batch`` images at
  ``Resize(cgc_size) + CenterCrop(cgc_crop)``, each augmented view drawn from a seeded generator; mean over batches.
- ``nqh`` (GC): a 2x2 composite per image: the image in a random quadrant and 3 distractors drawn as
  :class:`~consistentzoo.data.CompositeSampler` does (single-label: images of other classes; multi-label: one
  positive category ``t`` drawn, distractors without ``t``), seeded by ``(seed, image)`` alone. Every tile is
  ``Resize(max(cls_size, s)) + CenterCrop(s)`` with ``s = nqh_size`` (default the classification crop, so the
  224-px tiles give GC's 448-px composite). The map of the ground-truth (drawn) class on the composite, upsampled
  to the composite size, ReLU'd and renormalised to sum 1, scored by
  :func:`~consistentzoo.metrics.negative_quadrants_heatmap` (mass on the 3 distractor quadrants, lower is better);
  mean over images. Skipped and counted: all-zero maps (scored 1 when paired), images with no usable class
  (``no_class``).
- ``ssim`` (COSE-style SSIM consistency, "Staying Consistent with GradCAM"): the classification input ``x`` and a
  seeded crop + flip of it, ``t(x) = replay(x, draw_crop_flip(scale=ssim_scale, ratio=ssim_ratio,
  flip_p=ssim_flip_p))`` at the same size. Both maps are for the class predicted on ``x``, upsampled to the input
  size and min-max scaled to [0, 1] per map; the map of ``t(x)`` is warped *back* into ``x``'s frame (unflipped,
  resized into the crop box; zero outside it) and :func:`~consistentzoo.metrics.ssim_consistency` (5x5 window)
  compares it with the map of ``x`` over the valid region = the crop box (eroded by the window). Mean over images;
  skipped and counted: pairs of constant maps, empty valid regions.

Batches are planned from the dataset alone: consecutive chunks of ``batch_size`` images, each split by input size,
each carrying its own random seeds. Under Accelerate every process takes every ``num_processes``-th chunk and the
per-image values are gathered before anything is aggregated, so any number of processes gives the numbers of one.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn

from ..errors import UnknownChoiceError
from ._inputs import eval_mode
from .classification import multilabel_f1, topk_accuracy
from .consistency import ssim_consistency
from .faithfulness import average_drop, average_gain, average_increase, deletion_auc, insertion_auc
from .localisation import (
    boxes_to_mask,
    content_heatmap,
    negative_quadrants_heatmap,
    pointing_game,
    stochastic_pointing_game,
)
from .results import PerImageResult, mean_std

if TYPE_CHECKING:
    import datasets
    from accelerate import Accelerator

    from ..data import CompositeSampler
    from ..transforms import CropFlipParams

__all__ = ["METRICS", "EvalConfig", "MetricSpec", "UnknownMetricError", "evaluate", "resolve_metrics"]

logger = logging.getLogger(__name__)

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# keeps seeds of different (seed, chunk) pairs apart for any dataset under a million chunks
_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class MetricSpec:
    """One selectable metric.

    Attributes:
        name: the name users select it by (``pg``, ``insertion``, ...).
        keys: the ``metric`` field(s) of its result rows (the short keys of the papers' tables).
        view: which input it is computed on: ``"loc"``, ``"faith"``, ``"cls"``, ``"cgc"``, ``"nqh"`` (composites)
            or ``"ssim"`` (the classification input and a crop + flip of it).
        needs_method: whether it is computed once per saliency method.
        description: one line for ``--help``.
    """

    name: str
    keys: tuple[str, ...]
    view: str
    needs_method: bool
    description: str


METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        MetricSpec("pg", ("pg",), "loc", True, "pointing game, mean of per-class hit rates (15 px)"),
        MetricSpec("spg", ("spg",), "loc", True, "stochastic pointing game, mean ± std over seeds"),
        MetricSpec("ch", ("ch",), "loc", True, "content heatmap: map mass inside the ground truth"),
        MetricSpec("insertion", ("insertion_auc",), "faith", True, "RISE insertion AUC (blurred start)"),
        MetricSpec("deletion", ("deletion_auc",), "faith", True, "RISE deletion AUC (black substrate)"),
        MetricSpec("ad", ("ad",), "faith", True, "average drop (Grad-CAM++)"),
        MetricSpec("ai", ("ai",), "faith", True, "average increase in confidence (Grad-CAM++)"),
        MetricSpec("ag", ("ag",), "faith", True, "average gain"),
        MetricSpec("top1", ("top1",), "cls", False, "top-1 accuracy (single-label datasets)"),
        MetricSpec("top5", ("top5",), "cls", False, "top-5 accuracy (single-label datasets)"),
        MetricSpec("f1", ("f1_overall", "f1_perclass"), "cls", False, "multi-label F1, overall and per class"),
        MetricSpec("cgc", ("cgc_loss",), "cgc", False, "CGC consistency loss on held-out batches"),
        MetricSpec("nqh", ("nqh",), "nqh", True, "negative quadrants heatmap: map mass on 2x2 composites' distractors"),
        MetricSpec("ssim", ("ssim",), "ssim", True, "SSIM consistency of maps under a crop + flip (COSE-style)"),
    )
}

# other spellings: the metric functions' names and the rows' keys
_ALIASES = {
    "pointing_game": "pg",
    "stochastic_pointing_game": "spg",
    "content_heatmap": "ch",
    "insertion_auc": "insertion",
    "deletion_auc": "deletion",
    "average_drop": "ad",
    "average_increase": "ai",
    "average_gain": "ag",
    "multilabel_f1": "f1",
    "cgc_loss": "cgc",
    "negative_quadrants_heatmap": "nqh",
    "ssim_consistency": "ssim",
}
_FAITH_FNS: dict[str, Callable[..., Tensor]] = {
    "insertion": insertion_auc,
    "deletion": deletion_auc,
    "ad": average_drop,
    "ai": average_increase,
    "ag": average_gain,
}
_LOC_SKIPS = ("zero_map", "empty_mask")
# the map metrics a paired evaluation scores an all-zero map for (EvalConfig.paired)
_ZERO_MAP_METRICS = ("pg", "spg", "ch", "nqh")


class UnknownMetricError(UnknownChoiceError):
    """A metric name that is not one of :data:`METRICS`; the message lists the valid names."""

    def __init__(self, name: str):
        super().__init__(name, METRICS, "metric", plural="metrics")


def resolve_metrics(names: Iterable[str]) -> list[MetricSpec]:
    """The specs of ``names`` (selectable names or aliases such as ``pointing_game``), duplicates dropped.

    Raises:
        UnknownMetricError: a name that is neither; the message lists the valid ones.
    """
    out: list[MetricSpec] = []
    for name in names:
        key = name.strip().lower()
        key = _ALIASES.get(key, key)
        if key not in METRICS:
            raise UnknownMetricError(name)
        if METRICS[key] not in out:
            out.append(METRICS[key])
    return out


@dataclass
class EvalConfig:
    """Settings of one evaluation (the papers' values by default).

    Attributes:
        batch_size: images per chunk of the batch plan (and per saliency call).
        loc_size: shorter side of the PG/SPG/CH input.
        faith_size: side of the square insertion/deletion/AD/AI/AG input.
        cls_size: resize (shorter side) of the classification input.
        cls_crop: centre crop of the classification input; None keeps the full resized image.
        cgc_size: resize (shorter side) of the CGC-loss input.
        cgc_crop: centre crop of the CGC-loss input (batches need one size).
        cgc_batch: images per CGC-loss batch (the others in the batch are the negatives).
        cgc_tau: temperature of the CGC loss.
        tolerance: pointing-game radius in pixels.
        spg_samples: points drawn per map by the stochastic pointing game.
        spg_seeds: number of SPG runs reported as mean ± std.
        seed: base seed of SPG and of the CGC augmentations.
        pixels_per_step: insertion/deletion step; None = ``8 * faith_size``.
        perturb_batch: perturbed images per forward pass in the faithfulness metrics.
        f1_threshold: decision threshold on sigmoid scores for F1.
        nqh_size: side of each square tile of the NQH composite (the composite is twice that); None = ``cls_crop``
            (``cls_size`` without a crop).
        ssim_scale: area range of the SSIM metric's crop, as a fraction of the input (``(1, 1)`` with
            ``ssim_flip_p = 0`` is the identity).
        ssim_ratio: aspect-ratio range of that crop.
        ssim_flip_p: probability of its horizontal flip.
        ssim_window: SSIM window side (COSE: 5).
        layer: saliency target layer (dotted name); None = the method's default.
        mean: input normalisation mean; None = the model's ``pretrained_cfg`` (ImageNet if absent).
        std: input normalisation std; None as ``mean``.
        num_workers: data-loading workers per process.
        progress: show a tqdm bar (main process only).
        paired: score every (image, class) pair of PG/SPG/CH and every NQH composite, an all-zero map as a miss
            (PG/SPG/CH 0, NQH 1: no mass on the object) instead of skipping it, so models are compared on the same
            pairs. Pairs without ground truth (``empty_mask``) are skipped either way: that depends on the data only.
    """

    batch_size: int = 32
    loc_size: int = 448
    faith_size: int = 224
    cls_size: int = 256
    cls_crop: int | None = 224
    cgc_size: int = 256
    cgc_crop: int = 224
    cgc_batch: int = 32
    cgc_tau: float = 0.5
    tolerance: float = 15.0
    spg_samples: int = 100
    spg_seeds: int = 5
    seed: int = 0
    pixels_per_step: int | None = None
    perturb_batch: int = 64
    f1_threshold: float = 0.5
    nqh_size: int | None = None
    ssim_scale: tuple[float, float] = (0.5, 1.0)
    ssim_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    ssim_flip_p: float = 0.5
    ssim_window: int = 5
    layer: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    num_workers: int = 0
    progress: bool = True
    paired: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "loc_size", "faith_size", "cls_size", "cgc_size", "cgc_crop", "cgc_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.cls_crop is not None and self.cls_crop <= 0:
            raise ValueError(f"cls_crop must be a positive integer or None, got {self.cls_crop!r}")
        if self.spg_seeds <= 0 or self.spg_samples <= 0:
            raise ValueError("spg_seeds and spg_samples must be positive")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.nqh_size is not None and (not isinstance(self.nqh_size, int) or self.nqh_size <= 0):
            raise ValueError(f"nqh_size must be a positive integer or None, got {self.nqh_size!r}")
        lo, hi = self.ssim_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"ssim_scale must satisfy 0 < min <= max <= 1, got {self.ssim_scale}")
        if not 0 < self.ssim_ratio[0] <= self.ssim_ratio[1]:
            raise ValueError(f"ssim_ratio must satisfy 0 < min <= max, got {self.ssim_ratio}")
        if not 0 <= self.ssim_flip_p <= 1:
            raise ValueError(f"ssim_flip_p must lie in [0, 1], got {self.ssim_flip_p}")
        if self.ssim_window < 3 or self.ssim_window % 2 == 0:
            raise ValueError(f"ssim_window must be an odd integer >= 3, got {self.ssim_window}")

    @property
    def nqh_tile(self) -> int:
        """Side of one NQH composite tile."""
        return self.nqh_size or self.cls_crop or self.cls_size


@dataclass
class _Sample:
    """One dataset row as tensors at its original size."""

    index: int
    image: Tensor  # uint8 [3, H, W]
    boxes: Tensor  # [N, 4] xyxy
    box_labels: Tensor  # [N]
    masks: Tensor | None  # bool [N, H, W]
    label: int | None
    labels: Tensor | None  # multi-hot [K]

    def classes(self) -> list[int]:
        """The ground-truth classes of the image."""
        if self.labels is not None:
            return self.labels.nonzero().flatten().tolist()
        return [] if self.label is None or self.label < 0 else [self.label]

    def gt_mask(self, cls: int) -> Tensor:
        """Union of the class's instance masks (its boxes when the row has no masks), at the original size."""
        h, w = self.image.shape[-2:]
        sel = self.box_labels == cls
        if self.masks is not None and self.masks.shape[0] == self.box_labels.shape[0]:
            return self.masks[sel].any(0) if sel.any() else torch.zeros(h, w, dtype=torch.bool)
        return boxes_to_mask(self.boxes[sel], h, w, clip=True)


class _Rows(torch.utils.data.Dataset):
    """Dataset rows as :class:`_Sample` (picklable, for DataLoader workers)."""

    def __init__(self, ds: datasets.Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> _Sample:
        from ..data.transforms import to_tv_tensors

        row = self.ds[int(i)]
        row.setdefault("boxes", [])
        row.setdefault("box_labels", [])
        t = to_tv_tensors(row)
        labels = t.get("labels")
        label = t.get("label")
        return _Sample(
            index=int(i),
            image=t["image"].as_subclass(Tensor),
            boxes=t["boxes"].as_subclass(Tensor),
            box_labels=t["box_labels"],
            masks=t["masks"].as_subclass(Tensor) if "masks" in t else None,
            label=None if label is None else int(label),
            labels=None if labels is None else labels,
        )


def _as_list(batch: list[_Sample]) -> list[_Sample]:
    return batch


class _Records(NamedTuple):
    """Everything one process measured, in plain Python objects (cheap to gather)."""

    values: list[tuple[str, str, int, int, int, float]]  # (metric, method, seed, image, class, value)
    skips: list[tuple[str, str, str, int]]  # (metric, method, reason, count)
    f1: list[tuple[int, list[float], list[int]]]  # (image, scores, targets)
    cgc: list[tuple[int, float, int]]  # (batch id, loss, images)


def _transform(size: int | tuple[int, int], crop: int | None, mean: Sequence[float], std: Sequence[float]) -> Any:
    from torchvision.transforms import v2

    from ..data.transforms import normalize

    steps: list[Any] = [v2.Resize(size, antialias=True)]
    if crop is not None:
        steps.append(v2.CenterCrop(crop))
    steps.append(normalize(tuple(mean), tuple(std)))
    return v2.Compose(steps)


def _batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _by_shape(tensors: Sequence[Tensor]) -> list[list[int]]:
    """Indices grouped by tensor shape, groups in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    return list(groups.values())


def _view_geometry(hw: tuple[int, int], size: int | tuple[int, int], crop: int | None) -> tuple[int, ...]:
    """The pixels a ``Resize(size) [+ CenterCrop(crop)]`` view keeps of an ``hw`` image, as a hashable key."""
    from torchvision.transforms.v2.functional._geometry import _compute_resized_output_size

    resized = tuple(size) if isinstance(size, tuple) else tuple(_compute_resized_output_size(hw, [size]))
    return (*resized, *((crop, crop) if crop is not None else resized))


class _Shared:
    """One chunk's inputs, forward passes and maps, shared by every metric that needs the same ones.

    Keys are ``(image index, view geometry)``, so metrics whose views give the same pixels (e.g. the classification
    and localisation inputs of a dataset whose images already have the protocol's size) read one forward pass: its
    logits serve top-1 and the predicted classes, its features every map of a gradient CAM at ``forward_features``
    (one head re-run per set of explained classes, :meth:`~consistentzoo.saliency.CAMMethod.from_activations`).
    Other methods get their maps from :func:`consistentzoo.saliency.compute`, computed once per key and class.
    """

    def __init__(self, model: nn.Module, layer: str | None):
        from ..saliency import CAMMethod, resolve_layer

        self.model, self.layer = model, layer
        self.split = resolve_layer(model, layer) is None  # forward_features / forward_head exist and are the layer
        self.cam = CAMMethod
        self.inputs: dict[Any, Tensor] = {}
        self._feats: dict[Any, Tensor] = {}
        self._logits: dict[Any, Tensor] = {}
        self._maps: dict[Any, Tensor] = {}

    def clear(self) -> None:
        for d in (self.inputs, self._feats, self._logits, self._maps):
            d.clear()

    def _forward(self, keys: list[Any], device: torch.device) -> None:
        todo = list(dict.fromkeys(k for k in keys if k not in self._logits))
        for group in _by_shape([self.inputs[k] for k in todo]):
            x = torch.stack([self.inputs[todo[i]] for i in group]).to(device)
            with torch.no_grad():
                feats = self.model.forward_features(x) if self.split else None
                logits = self.model.forward_head(feats) if self.split else self.model(x)
            for j, i in enumerate(group):
                self._logits[todo[i]] = logits[j]
                if feats is not None:
                    self._feats[todo[i]] = feats[j]

    def logits(self, keys: list[Any], device: torch.device) -> Tensor:
        self._forward(keys, device)
        return torch.stack([self._logits[k] for k in keys])

    def maps(self, method: str, keys: list[Any], classes: list[int], device: torch.device) -> Tensor:
        from .. import saliency

        wanted = [(k, method, c) for k, c in zip(keys, classes, strict=True)]
        todo = list(dict.fromkeys(w for w in wanted if w not in self._maps))
        if todo:
            x = torch.stack([self.inputs[k] for k, _, _ in todo]).to(device)
            t = torch.tensor([c for _, _, c in todo], device=device)
            explainer = saliency.get_method(method, self.model, layer=self.layer)
            if self.split and isinstance(explainer, self.cam) and explainer.uses_gradients:
                self._forward([k for k, _, _ in todo], device)
                with torch.enable_grad():
                    feats = torch.stack([self._feats[k] for k, _, _ in todo]).requires_grad_(True)
                    m, _ = explainer.from_activations(x, feats, self.model.forward_head(feats), t, False)
                m = (torch.relu(m) if explainer.relu else m).detach()
            else:
                m = explainer(x, t).detach()
            for j, w in enumerate(todo):
                self._maps[w] = m[j]
        return torch.stack([self._maps[w] for w in wanted])


class _Evaluator:
    """Runs the batch plan on one process and keeps what it measured."""

    def __init__(
        self,
        model: nn.Module,
        specs: list[MetricSpec],
        methods: list[str],
        cfg: EvalConfig,
        device: torch.device,
        rows: _Rows,
    ):
        self.model, self.specs, self.methods, self.cfg, self.device = model, specs, methods, cfg, device
        self.rows = rows  # random access for the NQH distractors
        pcfg = getattr(model, "pretrained_cfg", None) or {}
        mean = cfg.mean or tuple(pcfg.get("mean", _IMAGENET_MEAN))
        std = cfg.std or tuple(pcfg.get("std", _IMAGENET_STD))
        self.geometry: dict[str, tuple[int | tuple[int, int], int | None]] = {
            "loc": (cfg.loc_size, None),
            "faith": ((cfg.faith_size, cfg.faith_size), None),
            "cls": (cfg.cls_size, cfg.cls_crop),
            "cgc": (cfg.cgc_size, cfg.cgc_crop),
            "nqh": (max(cfg.cls_size, cfg.nqh_tile), cfg.nqh_tile),
            "ssim": (cfg.cls_size, cfg.cls_crop),
        }
        self.views = {view: _transform(size, crop, mean, std) for view, (size, crop) in self.geometry.items()}
        # per chunk: inputs, features/logits and maps shared by every metric whose view gives the same input
        self.shared = _Shared(model, cfg.layer)
        self.by_view: dict[str, list[MetricSpec]] = defaultdict(list)
        for s in specs:
            self.by_view[s.view].append(s)
        self.rec = _Records([], [], [], [])
        self.composites: CompositeSampler | None = None
        if self.by_view["nqh"]:
            from ..data import CompositeSampler

            labels = rows.ds["labels"] if "labels" in rows.ds.column_names else rows.ds["label"]
            # draws depend on (seed, image) only, so chunking and processes never change them
            self.composites = CompositeSampler(labels, seed=cfg.seed)

    def _keys(self, samples: list[_Sample], view: str) -> list[tuple[int, tuple[int, ...]]]:
        """One key per sample for its input in ``view``: views that give the same pixels give the same key."""
        size, crop = self.geometry[view]
        return [(s.index, _view_geometry(tuple(s.image.shape[-2:]), size, crop)) for s in samples]

    def _inputs(self, samples: list[_Sample], view: str) -> list[Tensor]:
        from torchvision import tv_tensors

        keys = self._keys(samples, view)
        for s, key in zip(samples, keys, strict=True):
            if key not in self.shared.inputs:
                self.shared.inputs[key] = self.views[view](tv_tensors.Image(s.image)).as_subclass(Tensor)
        return [self.shared.inputs[k] for k in keys]

    def _logits(self, samples: list[_Sample], view: str) -> Tensor:
        """Logits ``[B, N]`` of the samples' inputs in ``view``, from the forward pass shared by the chunk."""
        self._inputs(samples, view)
        return self.shared.logits(self._keys(samples, view), self.device)

    def _class_maps(self, method: str, samples: list[_Sample], view: str, classes: Sequence[int]) -> Tensor:
        """Maps ``[B, h, w]`` of ``classes`` for the samples' inputs in ``view`` (one shape), shared by the chunk."""
        self._inputs(samples, view)
        return self.shared.maps(method, self._keys(samples, view), list(classes), self.device)

    def _maps(self, method: str, x: Tensor, targets: Tensor | None) -> Tensor:
        from .. import saliency

        return saliency.compute(method, self.model, x, targets, layer=self.cfg.layer).detach()

    def stages(self) -> list[str]:
        """The metric families this evaluation runs on every chunk, in order (the progress bar's steps)."""
        return [view for view in ("loc", "faith", "cls", "cgc", "nqh", "ssim") if self.by_view[view]]

    def chunk(
        self, chunk_id: int, samples: list[_Sample], progress: Callable[[str, bool], None] = lambda stage, done: None
    ) -> None:
        """Measure every requested metric on one chunk of the plan; ``progress(stage, done)`` around each family."""
        run = {
            "loc": lambda: self._localisation(chunk_id, samples),
            "faith": lambda: self._faithfulness(samples),
            "cls": lambda: self._classification(samples),
            "cgc": lambda: self._cgc(chunk_id, samples),
            "nqh": lambda: self._nqh(samples),
            "ssim": lambda: self._ssim(chunk_id, samples),
        }
        self.shared.clear()
        for stage in self.stages():
            progress(stage, False)
            run[stage]()
            progress(stage, True)
        self.shared.clear()

    def _localisation(self, chunk_id: int, samples: list[_Sample]) -> None:
        cfg, specs = self.cfg, self.by_view["loc"]
        inputs = self._inputs(samples, "loc")
        # (sample position, class, ground-truth mask at the original size); classes without ground truth are counted
        pairs: list[tuple[int, int, Tensor]] = []
        n_empty = 0
        for i, s in enumerate(samples):
            for c in s.classes():
                mask = s.gt_mask(c)
                if mask.any():
                    pairs.append((i, c, mask))
                else:
                    n_empty += 1
        for method in self.methods:
            for spec in specs:
                self.rec.skips.append((spec.name, method, "empty_mask", n_empty))
            gens = [
                torch.Generator(device=self.device).manual_seed(cfg.seed + _SEED_STRIDE * k + chunk_id)
                for k in range(cfg.spg_seeds)
            ]
            # one saliency call per batch of pairs whose images share an input size
            for group in _by_shape([inputs[i] for i, _, _ in pairs] if pairs else []):
                for batch in _batches(group, cfg.batch_size):
                    chosen = [samples[pairs[p][0]] for p in batch]
                    maps = self._class_maps(method, chosen, "loc", [pairs[p][1] for p in batch])
                    self._score_pairs(method, specs, [pairs[p] for p in batch], samples, maps, gens)

    def _score_pairs(
        self,
        method: str,
        specs: list[MetricSpec],
        pairs: list[tuple[int, int, Tensor]],
        samples: list[_Sample],
        maps: Tensor,
        gens: list[torch.Generator],
    ) -> None:
        from ..saliency.postprocess import normalize_sum, upsample

        sizes = [tuple(m.shape) for _, _, m in pairs]
        for group in _by_shape([m for _, _, m in pairs]):
            h, w = sizes[group[0]]
            m = normalize_sum(upsample(maps[group], (h, w)).clamp_min(0))
            gt = torch.stack([pairs[p][2] for p in group]).to(self.device)
            images = [samples[pairs[p][0]].index for p in group]
            classes = [pairs[p][1] for p in group]
            for spec in specs:
                if spec.name == "spg":
                    results = [
                        stochastic_pointing_game(m, gt, self.cfg.spg_samples, self.cfg.tolerance, seed=g) for g in gens
                    ]
                elif spec.name == "pg":
                    results = [pointing_game(m, gt, self.cfg.tolerance)]
                else:
                    results = [content_heatmap(m, gt)]
                for seed, res in enumerate(results):
                    for j, v in _scored(res, self.cfg.paired, miss=0.0):
                        self.rec.values.append((spec.name, method, seed, images[j], classes[j], v))
                self.rec.skips.append((spec.name, method, "zero_map", results[0].n_skipped["zero_map"]))

    def _faithfulness(self, samples: list[_Sample]) -> None:
        cfg = self.cfg
        x = torch.stack(self._inputs(samples, "faith")).to(self.device)
        pred = self._logits(samples, "faith").argmax(1)  # the class predicted on the full image (RISE)
        for method in self.methods:
            maps = self._class_maps(method, samples, "faith", pred.tolist())
            if maps.shape[-2:] != x.shape[-2:]:
                from ..saliency.postprocess import upsample

                maps = upsample(maps, tuple(x.shape[-2:]))
            for spec in self.by_view["faith"]:
                fn = _FAITH_FNS[spec.name]
                kw: dict[str, Any] = {"targets": pred, "batch_size": cfg.perturb_batch}
                if spec.name in ("insertion", "deletion"):
                    kw["pixels_per_step"] = cfg.pixels_per_step
                vals = fn(self.model, x, maps, **kw)
                for s, v in zip(samples, vals.tolist(), strict=True):
                    self.rec.values.append((spec.name, method, 0, s.index, -1, float(v)))

    def _classification(self, samples: list[_Sample]) -> None:
        names = {s.name for s in self.by_view["cls"]}
        inputs = self._inputs(samples, "cls")
        for group in _by_shape(inputs):
            for batch in _batches(group, self.cfg.batch_size):
                chosen = [samples[i] for i in batch]
                logits = self._logits(chosen, "cls").float()
                if "f1" in names:
                    scores = logits.sigmoid().cpu()
                    for s, sc in zip(chosen, scores, strict=True):
                        if s.labels is None:
                            raise ValueError(f"row {s.index} has no multi-hot 'labels'; f1 needs them")
                        self.rec.f1.append((s.index, sc.tolist(), s.labels.int().tolist()))
                ks = [int(n[3:]) for n in ("top1", "top5") if n in names]
                if ks:
                    labels = torch.tensor([s.label for s in chosen], device=logits.device)
                    hits = topk_accuracy(logits, labels, ks)
                    for k in ks:
                        for s, v in zip(chosen, hits[k].tolist(), strict=True):
                            self.rec.values.append((f"top{k}", "", 0, s.index, -1, float(v)))

    def _cgc(self, chunk_id: int, samples: list[_Sample]) -> None:
        from ..objectives import CGCLoss
        from ..transforms import replay

        cfg = self.cfg
        loss = CGCLoss(lam=1.0, tau=cfg.cgc_tau, ce="paper")
        x = torch.stack(self._inputs(samples, "cgc"))
        for sub, batch in enumerate(_batches(list(range(len(samples))), cfg.cgc_batch)):
            batch_id = chunk_id * _SEED_STRIDE + sub
            if len(batch) < 2:  # no negatives: InfoNCE is identically 0
                self.rec.cgc.append((batch_id, math.nan, len(batch)))
                continue
            orig = x[batch].to(self.device)
            gen = torch.Generator().manual_seed(cfg.seed + batch_id)
            params = loss.augment.draw(orig.shape[0], tuple(orig.shape[-2:]), generator=gen).to(self.device)
            _, parts = loss(self.model, orig, replay(orig, params), params)
            self.rec.cgc.append((batch_id, float(parts["consistency"]), len(batch)))

    def _has_class(self, s: _Sample) -> bool:
        """Whether the composite sampler can draw a class for the image (multi-label: one absent elsewhere)."""
        sampler = self.composites
        assert sampler is not None
        if sampler.multi_label:
            return bool((sampler.labels[s.index] & sampler.has_negative).any())
        return s.label is not None and s.label >= 0

    def _nqh(self, samples: list[_Sample]) -> None:
        from torchvision import tv_tensors

        from ..objectives import make_composite
        from ..saliency.postprocess import normalize_sum, upsample

        assert self.composites is not None
        usable = [s for s in samples if self._has_class(s)]
        for method in self.methods:
            self.rec.skips.append(("nqh", method, "no_class", len(samples) - len(usable)))
        if not usable:
            return
        draws = [self.composites.draw(s.index) for s in usable]
        view = self.views["nqh"]

        def tile(image: Tensor) -> Tensor:
            return view(tv_tensors.Image(image)).as_subclass(Tensor)

        queries = torch.stack([tile(s.image) for s in usable])
        distractors = torch.stack([torch.stack([tile(self.rows[j].image) for j in d.distractors]) for d in draws])
        quadrants = torch.tensor([d.quadrant for d in draws])
        x = make_composite(queries, distractors, quadrants).to(self.device)
        targets = torch.tensor([d.target for d in draws], device=self.device)
        for method in self.methods:
            maps = normalize_sum(upsample(self._maps(method, x, targets), tuple(x.shape[-2:])).clamp_min(0))
            res = negative_quadrants_heatmap(maps, quadrants.to(self.device))
            for j, v in _scored(res, self.cfg.paired, miss=1.0):
                self.rec.values.append(("nqh", method, 0, usable[j].index, draws[j].target, v))
            self.rec.skips.append(("nqh", method, "zero_map", res.n_skipped["zero_map"]))

    def _ssim(self, chunk_id: int, samples: list[_Sample]) -> None:
        from ..saliency.postprocess import normalize_minmax, upsample
        from ..transforms import CropFlipParams, draw_crop_flip, replay

        cfg = self.cfg
        inputs = self._inputs(samples, "ssim")
        gen = torch.Generator().manual_seed(cfg.seed + chunk_id)
        # one draw per image in chunk order, on the image's own pixel grid (integer boxes there)
        params = [
            draw_crop_flip(1, tuple(t.shape[-2:]), cfg.ssim_scale, cfg.ssim_ratio, cfg.ssim_flip_p, generator=gen)
            for t in inputs
        ]
        for group in _by_shape(inputs):
            x = torch.stack([inputs[i] for i in group]).to(self.device)
            p = CropFlipParams.cat([params[i] for i in group])
            xt = replay(x, p.to(self.device))
            size = tuple(x.shape[-2:])
            chosen = [samples[i] for i in group]
            pred = self._logits(chosen, "ssim").argmax(1)
            for method in self.methods:
                orig = normalize_minmax(
                    upsample(self._class_maps(method, chosen, "ssim", pred.tolist()), size).clamp_min(0)
                )
                moved = normalize_minmax(upsample(self._maps(method, xt, pred), size).clamp_min(0))
                back, valid = _warp_back(moved, p)
                res = ssim_consistency(orig, back, valid, cfg.ssim_window)
                for j, v in zip(res.index.tolist(), res.values.tolist(), strict=True):
                    self.rec.values.append(("ssim", method, 0, samples[group[j]].index, int(pred[j]), float(v)))
                for reason in ("constant_maps", "empty_valid_region"):
                    self.rec.skips.append(("ssim", method, reason, res.n_skipped[reason]))


def _scored(res: PerImageResult, paired: bool, miss: float) -> list[tuple[int, float]]:
    """``(batch position, value)`` of every scored pair; with ``paired``, every all-zero map too, valued ``miss``."""
    out = list(zip(res.index.tolist(), [float(v) for v in res.values.tolist()], strict=True))
    if paired:
        out += [(j, miss) for j in res.skipped["zero_map"].tolist()]
    return sorted(out)


def _warp_back(maps: Tensor, params: CropFlipParams) -> tuple[Tensor, Tensor]:
    """Invert a crop + flip on maps of the transformed images: each map back in the original frame, and where.

    The inverse of :func:`consistentzoo.transforms.replay` at the maps' own size: unflip, resize (bilinear,
    ``align_corners=False``, antialiased when shrinking) to the crop box and paste it there; zero elsewhere.

    Args:
        maps: ``[B, H, W]`` maps of ``replay(x, params)`` for inputs ``x`` of size ``H x W``.
        params: the recorded crops and flips, drawn on that ``H x W`` grid (so the boxes are whole pixels).

    Returns:
        ``(maps_back, valid)``: ``[B, H, W]`` maps and the boolean crop-box masks.
    """
    import torch.nn.functional as F

    b, h, w = maps.shape
    if len(params) != b:
        raise ValueError(f"batch of {b} maps but {len(params)} recorded parameters")
    back = maps.new_zeros(b, h, w)
    valid = torch.zeros(b, h, w, dtype=torch.bool, device=maps.device)
    boxes = params.pixel_boxes((h, w)).round().long().tolist()
    for i, (top, left, bh, bw) in enumerate(boxes):
        m = maps[i].flip(-1) if bool(params.flips[i]) else maps[i]
        if (bh, bw) != (h, w):
            m = F.interpolate(m[None, None], (bh, bw), mode="bilinear", align_corners=False, antialias=True)[0, 0]
        back[i, top : top + bh, left : left + bw] = m
        valid[i, top : top + bh, left : left + bw] = True
    return back, valid


def _check_dataset(ds: datasets.Dataset, specs: list[MetricSpec], methods: list[str]) -> None:
    cols = set(ds.column_names)
    names = {s.name for s in specs}
    if len(ds) == 0:
        raise ValueError("the dataset is empty")
    if "label" not in cols and "labels" not in cols:
        raise ValueError(f"the dataset needs a 'label' or 'labels' column (the common schema); it has {sorted(cols)}")
    if names & {"top1", "top5"} and "label" not in cols:
        raise ValueError("top1/top5 need a single-label dataset ('label' column); use 'f1' for multi-label data")
    if "f1" in names and "labels" not in cols:
        raise ValueError("f1 needs a multi-label dataset ('labels' column); use 'top1'/'top5' for single-label data")
    if any(s.view == "loc" for s in specs) and "boxes" not in cols:
        raise ValueError("pg/spg/ch need ground-truth boxes or masks; the dataset has no 'boxes' column")
    if any(s.needs_method for s in specs) and not methods:
        raise ValueError(f"metrics {sorted(s.name for s in specs if s.needs_method)} need at least one saliency method")


def evaluate(
    model: nn.Module,
    dataset: datasets.Dataset,
    methods: Sequence[str],
    metrics: Sequence[str],
    *,
    config: EvalConfig | None = None,
    accelerator: Accelerator | None = None,
    model_name: str | None = None,
    tag: str | None = None,
    dataset_name: str | None = None,
    split: str | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``model`` on ``dataset``: one result row per (saliency method, metric).

    Args:
        model: a classifier with timm's interface; it is put in eval mode for the run (its mode is restored).
        dataset: a ``datasets.Dataset`` in the common schema (:func:`consistentzoo.data.load`); decoded rows.
        methods: saliency method names (``consistentzoo.saliency.METHODS``), for the metrics on maps.
        metrics: metric names (keys of :data:`METRICS`, or aliases such as ``pointing_game``).
        config: protocol settings; default :class:`EvalConfig` (the papers' values).
        accelerator: an ``accelerate.Accelerator``; each process evaluates its share of the batch plan, the model
            is moved to its device and the results are gathered (every process returns the same rows). None runs
            everything here, on the model's device.
        model_name: the ``model`` field of the rows.
        tag: the ``tag`` field (weight tag, e.g. ``in1k``), or None.
        dataset_name: the ``dataset`` field.
        split: the ``split`` field.

    Returns:
        Rows ``{model, tag, dataset, split, method, metric, value, std, n, skipped}`` (``method`` None for metrics
        on no map; ``std`` over seeds for SPG, else None; ``n`` images or (image, class) pairs scored; ``skipped``
        reason -> count of pairs left out). Rows of ``pg``/``spg``/``ch``/``nqh`` also carry ``paired``
        (:attr:`EvalConfig.paired`) and ``zero_maps``, the pairs whose map was all zero: scored as misses when
        paired (and then not in ``skipped``), skipped otherwise (``skipped["zero_map"]``). Values are fractions
        in [0, 1] (losses for ``cgc_loss``, ``ssim`` in [-1, 1]), never NaN: a metric that scored nothing gets no
        row (a warning says why).

    Raises:
        UnknownMetricError: an unknown metric name.
        consistentzoo.saliency.UnknownMethodError: an unknown method name.
        ValueError: a metric the dataset cannot support (e.g. ``top1`` on multi-label data), or bad settings.
    """
    from .. import saliency

    cfg = config or EvalConfig()
    specs = resolve_metrics(metrics)
    if not specs:
        raise ValueError(f"no metric given; valid metrics: {', '.join(METRICS)}")
    methods = list(dict.fromkeys(methods))
    for method in methods:
        if method not in saliency.METHODS:
            raise saliency.UnknownMethodError(method, saliency.METHODS)
    if not any(s.needs_method for s in specs):
        methods_used: list[str] = []
    else:
        methods_used = methods
    _check_dataset(dataset, specs, methods_used)
    if "mask" in dataset.column_names and not any(s.view == "loc" for s in specs):
        dataset = dataset.remove_columns("mask")  # decoding masks is the costly part of a row

    if accelerator is None:
        rank, world = 0, 1
        device = next(iter(model.parameters())).device
        main = True
    else:
        rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
        main = accelerator.is_local_main_process
        model = model.to(device)

    n = len(dataset)
    chunks = [list(range(i, min(i + cfg.batch_size, n))) for i in range(0, n, cfg.batch_size)]
    mine = list(range(rank, len(chunks), world))
    rows = _Rows(dataset)
    loader = torch.utils.data.DataLoader(
        rows,
        batch_sampler=[chunks[k] for k in mine],
        collate_fn=_as_list,
        num_workers=cfg.num_workers,
    )
    ev = _Evaluator(model, specs, methods_used, cfg, device, rows)
    from tqdm.auto import tqdm

    stages = ev.stages()
    names = {"loc": "pg/spg/ch", "faith": "insertion/deletion/ad/ai/ag", "cls": "accuracy", "cgc": "cgc loss"}
    desc = " ".join(str(p) for p in ("evaluate", model_name, split) if p)
    total = sum(len(chunks[k]) for k in mine) * len(stages)
    # one step per image and metric family (pg/spg/ch, insertion/deletion, ...): the bar counts images x families
    bar = tqdm(total=total, unit="img×family", desc=desc, disable=not (cfg.progress and main))
    with eval_mode(model), bar:
        for chunk_id, samples in zip(mine, loader, strict=True):

            def progress(stage: str, done: bool, n: int = len(samples)) -> None:
                if done:
                    bar.update(n)
                else:
                    bar.set_postfix_str(names.get(stage, stage))

            ev.chunk(chunk_id, samples, progress)

    rec = ev.rec
    if accelerator is not None and world > 1:
        from accelerate.utils import gather_object

        rec = _Records(*(gather_object(list(part)) for part in rec))
    meta = {"model": model_name, "tag": tag, "dataset": dataset_name, "split": split}
    return _aggregate(rec, specs, methods_used, cfg, meta)


def _row(
    meta: dict[str, Any],
    method: str | None,
    metric: str,
    value: float,
    std: float | None,
    n: int,
    skipped: dict[str, int],
) -> dict[str, Any]:
    return {**meta, "method": method or None, "metric": metric, "value": value, "std": std, "n": n, "skipped": skipped}


def _aggregate(
    rec: _Records, specs: list[MetricSpec], methods: list[str], cfg: EvalConfig, meta: dict[str, Any]
) -> list[dict[str, Any]]:
    """Result rows from the gathered per-image records (sorted first, so the order of processes never matters)."""
    values: dict[tuple[str, str, int], list[tuple[int, int, float]]] = defaultdict(list)
    for metric, method, seed, image, cls, v in sorted(rec.values):
        values[(metric, method, seed)].append((image, cls, v))
    skips: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for metric, method, reason, count in rec.skips:
        d = skips[(metric, method)]
        d[reason] = d.get(reason, 0) + count

    rows: list[dict[str, Any]] = []

    def emit(method: str, spec: MetricSpec, key: str, value: float | None, std: float | None, n: int) -> None:
        skipped = dict(skips.get((spec.name, method), {}))
        zero_maps = skipped.get("zero_map") if spec.name in _ZERO_MAP_METRICS else None
        if zero_maps is not None and cfg.paired:
            del skipped["zero_map"]  # scored (as misses), not skipped
        if value is None or n == 0:
            logger.warning("%s (%s): no image was scored (skipped: %s); no result row", key, method or "-", skipped)
            return
        row = _row(meta, method, key, value, std, n, skipped)
        if zero_maps is not None:
            row.update(paired=cfg.paired, zero_maps=zero_maps)
        rows.append(row)

    for spec in specs:
        key = spec.keys[0]
        if spec.needs_method:
            for method in methods:
                if spec.name == "spg":
                    per_seed = [values.get((spec.name, method, k), []) for k in range(cfg.spg_seeds)]
                    n = len(per_seed[0])
                    if n:
                        mean, std = mean_std([math.fsum(v for _, _, v in vals) / len(vals) for vals in per_seed])
                        emit(method, spec, key, mean, std, n)
                    else:
                        emit(method, spec, key, None, None, 0)
                    continue
                vals = values.get((spec.name, method, 0), [])
                if spec.name == "pg" and vals:
                    per_class: dict[int, list[float]] = defaultdict(list)
                    for _, cls, v in vals:
                        per_class[cls].append(v)
                    value = math.fsum(math.fsum(h) / len(h) for h in per_class.values()) / len(per_class)
                else:
                    value = math.fsum(v for _, _, v in vals) / len(vals) if vals else None
                emit(method, spec, key, value, None, len(vals))
        elif spec.name in ("top1", "top5"):
            vals = values.get((spec.name, "", 0), [])
            emit("", spec, key, math.fsum(v for _, _, v in vals) / len(vals) if vals else None, None, len(vals))
        elif spec.name == "f1":
            items = sorted(rec.f1)
            if items:
                res = multilabel_f1(
                    torch.tensor([s for _, s, _ in items]), torch.tensor([t for _, _, t in items]), cfg.f1_threshold
                )
                emit("", spec, "f1_overall", res.of1, None, len(items))
                emit("", spec, "f1_perclass", res.cf1, None, len(items))
        elif spec.name == "cgc":
            batches = sorted(rec.cgc)
            scored = [(v, k) for _, v, k in batches if not math.isnan(v)]
            single = sum(k for _, v, k in batches if math.isnan(v))
            skips[("cgc", "")] = {"single_image_batch": single}
            value = math.fsum(v for v, _ in scored) / len(scored) if scored else None
            emit("", spec, key, value, None, sum(k for _, k in scored))
    return rows


def config_dict(cfg: EvalConfig) -> dict[str, Any]:
    """The settings as a JSON-ready dict (recorded beside the results)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
