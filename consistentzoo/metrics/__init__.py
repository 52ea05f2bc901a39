"""Metrics for explanations and classifiers: batched tensors in, per-image values out, aggregation explicit.

Maps are ``[B, H, W]`` at image resolution, masks boolean ``[B, H, W]``. Metrics that skip images (all-zero
maps, empty masks) return a :class:`PerImageResult` that holds only the scored images and lists the skipped
ones; the others return a ``[B]`` tensor.
"""

from .classification import MultilabelF1, multilabel_f1, topk_accuracy
from .compare import Effect, effect, seed_mean_std, verdict
from .consistency import CoseResult, cose, ssim_consistency
from .faithfulness import (
    auc,
    average_drop,
    average_gain,
    average_increase,
    blur,
    causal_curves,
    deletion_auc,
    insertion_auc,
    masked_confidence,
    rise_kernel,
)
from .localisation import (
    boxes_to_mask,
    content_heatmap,
    negative_quadrants_heatmap,
    pointing_game,
    stochastic_pointing_game,
)
from .results import PerImageResult, mean_std
from .robustness import fgsm_accuracy

__all__ = [
    "CoseResult",
    "Effect",
    "MultilabelF1",
    "PerImageResult",
    "auc",
    "average_drop",
    "average_gain",
    "average_increase",
    "blur",
    "boxes_to_mask",
    "causal_curves",
    "content_heatmap",
    "cose",
    "deletion_auc",
    "effect",
    "fgsm_accuracy",
    "insertion_auc",
    "masked_confidence",
    "mean_std",
    "multilabel_f1",
    "negative_quadrants_heatmap",
    "pointing_game",
    "rise_kernel",
    "seed_mean_std",
    "ssim_consistency",
    "stochastic_pointing_game",
    "topk_accuracy",
    "verdict",
]
