"""One small adapter per objective: which views the data must produce, and how a batch becomes the loss call.

The objectives (``consistentzoo.objectives``) take the model as their first argument and call
``forward_features``/``forward_head`` themselves, so the loss — not the bare network — is what DDP must wrap:
:class:`ObjectiveModule` holds both and its ``forward(batch)`` is the whole loss. DDP then sees one forward per step
(its bookkeeping runs), the double backward of GC/CGC/guided reduces the parameter gradients once, and Accelerate's
autocast covers every pass of the objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..objectives import CGCLoss, GCLoss, GuidedGradientLoss, SSIMSparsityLoss

__all__ = ["OBJECTIVES", "CrossEntropyLoss", "ObjectiveModule", "ObjectiveSpec", "build_objective"]

Batch = dict[str, Any]


class CrossEntropyLoss(nn.Module):
    r"""The baseline objective: :math:`\mathrm{CE}(f(x), y)`, or ``bce_weight · BCEWithLogits`` on multi-hot labels.

    Args:
        multilabel: multi-hot labels (COCO) with binary cross-entropy.
        bce_weight: factor of the BCE term (the GC authors' COCO code uses 80).
        label_smoothing: label smoothing of the single-label cross-entropy.
    """

    def __init__(self, multilabel: bool = False, bce_weight: float = 1.0, label_smoothing: float = 0.0):
        super().__init__()
        self.multilabel = multilabel
        self.bce_weight = bce_weight
        self.label_smoothing = label_smoothing

    def forward(self, model: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(total, {"ce": ...})`` for a batch of images and labels."""
        logits = model(images)
        if self.multilabel:
            ce = self.bce_weight * F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        else:
            ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return ce, {"ce": ce.detach()}


def _labels(batch: Batch) -> Tensor | None:
    return batch["labels"] if "labels" in batch else batch.get("label")


def _call_plain(loss: nn.Module, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
    return loss(model, batch["image"], _labels(batch))


def _call_gc(loss: nn.Module, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
    targets = batch["target"] if "labels" in batch else None
    return loss(model, batch["image"], _labels(batch), batch["distractors"], batch["quadrant"], targets)


def _call_cgc(loss: nn.Module, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
    return loss(model, batch["orig"], batch["aug"], batch["params"], labels=_labels(batch), xe=batch.get("xe"))


def _call_ssim(loss: nn.Module, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
    return loss(model, batch["image"], _labels(batch), batch["aug"], batch["params"])


@dataclass(frozen=True)
class ObjectiveSpec:
    """How the loop drives one objective.

    Attributes:
        name: config name (``objective.name``).
        loss_cls: the objective's ``nn.Module``; its ``__init__`` arguments are ``objective.args``.
        views: what each training sample holds (see ``consistentzoo.training.data``): ``plain`` (one training
            view), ``composite`` (GC: the image, 3 distractors, a quadrant), ``cgc`` (orig, aug + recorded crop/flip,
            xe), ``pair`` (SSIM: a training view and its recorded re-crop).
        call: ``call(loss, model, batch) -> (total, parts)``.
        unlabelled: the objective has a term without labels (CGC's contrastive term), so semi-supervised training
            can feed it an unlabelled stream (a batch without ``label``/``labels`` gets that term only).
    """

    name: str
    loss_cls: type[nn.Module]
    views: str
    call: Callable[[nn.Module, nn.Module, Batch], tuple[Tensor, dict[str, Tensor]]]
    unlabelled: bool = False


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "ce": ObjectiveSpec("ce", CrossEntropyLoss, "plain", _call_plain),
    "gc": ObjectiveSpec("gc", GCLoss, "composite", _call_gc),
    "cgc": ObjectiveSpec("cgc", CGCLoss, "cgc", _call_cgc, unlabelled=True),
    "ssim": ObjectiveSpec("ssim", SSIMSparsityLoss, "pair", _call_ssim),
    "guided": ObjectiveSpec("guided", GuidedGradientLoss, "plain", _call_plain),
}


class ObjectiveModule(nn.Module):
    """The model and its objective as one module whose ``forward(batch)`` returns ``(total, parts)``.

    Args:
        model: the classifier (its parameters are this module's parameters).
        spec: the objective's adapter.
        loss: the objective module.
    """

    def __init__(self, model: nn.Module, spec: ObjectiveSpec, loss: nn.Module):
        super().__init__()
        self.model = model
        self.loss = loss
        self.spec = spec

    def forward(self, batch: Batch, unlabelled: Batch | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective on one batch, in the model's current mode.

        Args:
            batch: a labelled batch (the full objective).
            unlabelled: semi-supervised: a batch without labels, whose loss (the objective's unlabelled term, CGC:
                ``λ · L_CGC``) is added to the total; its parts are reported as ``unlabelled_<part>``. Both go
                through one forward of this module, so DDP sees one forward per step.
        """
        total, parts = self.spec.call(self.loss, self.model, batch)
        if unlabelled is not None:
            if "label" in unlabelled or "labels" in unlabelled:
                raise ValueError("the unlabelled batch carries labels; it must feed the unlabelled term only")
            extra, extra_parts = self.spec.call(self.loss, self.model, unlabelled)
            total = total + extra
            parts = {**parts, **{f"unlabelled_{k}": v for k, v in extra_parts.items()}}
        return total, parts


def build_objective(name: str, args: dict[str, Any], image_size: int) -> tuple[ObjectiveSpec, nn.Module]:
    """The adapter and loss module of ``objective.name`` with ``objective.args``.

    CGC and SSIM get their default augmentation at ``image_size`` (they only use it when the data gives no
    augmented view, which the training data always does).

    Raises:
        KeyError: an unknown objective (the message lists the valid ones).
    """
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}")
    spec = OBJECTIVES[name]
    kwargs = dict(args)
    if name in ("cgc", "ssim") and "augment" not in kwargs:
        from ..transforms import RandomResizedCropFlip

        kwargs["augment"] = RandomResizedCropFlip(size=image_size)
    return spec, spec.loss_cls(**kwargs)
