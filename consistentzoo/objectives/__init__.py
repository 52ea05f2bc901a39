"""Training objectives that make explanations consistent: GC, CGC, SSIM + sparsity and guided-gradient alignment.

Each objective is an ``nn.Module`` called as ``total, parts = loss(model, batch...)``: ``total`` is the scalar to
back-propagate (its map terms reach the parameters through a double backward), ``parts`` the detached terms to log
(always ``ce`` and ``consistency``; ``sparsity`` for SSIM; ``ce_orig``/``ce_aug``/``ce_xe`` for CGC). The model keeps
the mode the caller set (train mode in a training step). The functions on maps (``gc_consistency``,
``cgc_consistency``, ``info_nce``, ``ssim_dissimilarity``, ``lp_sparsity``, ``gradient_error``) are the terms
themselves, usable on given maps.
"""

from .cgc import CGCLoss, cgc_consistency, info_nce
from .gc import GCLoss, draw_quadrants, gc_consistency, make_composite, place_in_quadrant
from .guided import ERRORS, GuidedGradientLoss, gradient_error
from .ssim import SSIMSparsityLoss, lp_sparsity, ssim_dissimilarity

__all__ = [
    "ERRORS",
    "CGCLoss",
    "GCLoss",
    "GuidedGradientLoss",
    "SSIMSparsityLoss",
    "cgc_consistency",
    "draw_quadrants",
    "gc_consistency",
    "gradient_error",
    "info_nce",
    "lp_sparsity",
    "make_composite",
    "place_in_quadrant",
    "ssim_dissimilarity",
]
