"""Classification metrics: top-k accuracy, and multi-label F1 per class and overall (COCO).

The multi-label F1 follows the convention of the multi-label COCO literature the GC paper reports in (CF1 and
OF1 of Wang et al., "CNN-RNN", CVPR 2016; Chen et al., "ML-GCN", CVPR 2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["MultilabelF1", "multilabel_f1", "topk_accuracy"]


def topk_accuracy(logits: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, Tensor]:
    """Whether the label is among the ``k`` highest scores, per image and per ``k``.

    ``hit_k(i) = 1[y_i in top-k(f(x_i))]``; top-1 / top-5 accuracy are the means. Ties are broken by
    ``torch.topk``.

    Args:
        logits: ``[B, K]`` scores (logits or probabilities; only the order counts).
        labels: Long ``[B]`` ground-truth classes.
        ks: Values of ``k``, each in ``[1, K]``.

    Returns:
        ``{k: [B] float 0/1}``.
    """
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must have shape [B, K] with B > 0, got {tuple(logits.shape)}")
    b, n_cls = logits.shape
    labels = torch.as_tensor(labels, device=logits.device)
    if labels.shape != (b,) or labels.is_floating_point() or ((labels < 0) | (labels >= n_cls)).any():
        raise ValueError(f"labels must be {b} integers in [0, {n_cls})")
    if not torch.isfinite(logits).all():
        raise ValueError("logits contain NaN or infinite values")
    if not ks or any(not isinstance(k, int) or not 1 <= k <= n_cls for k in ks):
        raise ValueError(f"ks must be integers in [1, {n_cls}], got {list(ks)}")
    top = logits.topk(max(ks), dim=1).indices
    hit = top == labels.unsqueeze(1)
    return {k: hit[:, :k].any(1).to(logits.dtype) for k in ks}


@dataclass(frozen=True)
class MultilabelF1:
    """Multi-label precision / recall / F1 per class and overall.

    Attributes:
        per_class: ``[K]`` F1 of each class (0 where it has no true and no predicted positive).
        precision: ``[K]`` per-class precision (0 for a class never predicted).
        recall: ``[K]`` per-class recall (0 for a class with no positives).
        cf1: Per-class F1 as the papers report it: ``2 CP CR / (CP + CR)``, CP / CR the means of the above.
        of1: Overall (micro) F1 over all (image, class) decisions: ``2 TP / (2 TP + FP + FN)``.
        macro_f1: Plain mean of ``per_class``.
    """

    per_class: Tensor
    precision: Tensor
    recall: Tensor
    cf1: float
    of1: float
    macro_f1: float


def _safe_div(a: Tensor, b: Tensor) -> Tensor:
    return torch.where(b > 0, a / b.clamp_min(1), torch.zeros_like(a))


def multilabel_f1(scores: Tensor, targets: Tensor, threshold: float = 0.5) -> MultilabelF1:
    """F1 of thresholded multi-label predictions, per class and overall (COCO protocol).

    A class is predicted when its score is ``>= threshold``. With per-class counts ``TP_c, FP_c, FN_c``:
    ``P_c = TP_c / (TP_c + FP_c)``, ``R_c = TP_c / (TP_c + FN_c)``, ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``,
    ``CF1 = 2 mean(P) mean(R) / (mean(P) + mean(R))``, ``OF1 = 2 sum TP / (2 sum TP + sum FP + sum FN)``.
    Undefined ratios (0/0) are 0, never NaN. Give the whole evaluation set at once (or concatenated batches):
    F1 is not a mean of per-batch values.

    Args:
        scores: ``[N, K]`` probabilities (use ``threshold=0.0`` on logits), or booleans.
        targets: ``[N, K]`` booleans or 0/1.
        threshold: Decision threshold on ``scores``.
    """
    scores, targets = torch.as_tensor(scores), torch.as_tensor(targets)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must both be [N, K] with N > 0, got {tuple(scores.shape)} and {tuple(targets.shape)}"
        )
    if scores.is_floating_point() and not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    if not ((targets == 0) | (targets == 1)).all():
        raise ValueError("targets must be 0/1 or boolean")
    pred = scores.bool() if scores.dtype == torch.bool else scores >= threshold
    true = targets.bool().to(pred.device)
    tp = (pred & true).sum(0).double()
    fp = (pred & ~true).sum(0).double()
    fn = (~pred & true).sum(0).double()
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    per_class = _safe_div(2 * tp, 2 * tp + fp + fn)
    cp, cr = float(precision.mean()), float(recall.mean())
    cf1 = 2 * cp * cr / (cp + cr) if cp + cr > 0 else 0.0
    denom = float(2 * tp.sum() + fp.sum() + fn.sum())
    of1 = float(2 * tp.sum()) / denom if denom > 0 else 0.0
    return MultilabelF1(per_class, precision, recall, cf1, of1, float(per_class.mean()))
