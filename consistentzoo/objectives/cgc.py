"""CGC: contrastive Grad-CAM consistency (Pillai, Abbasi Koohpayegani & Pirsiavash, CVPR 2022)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..transforms import CropFlipParams, RandomResizedCropFlip, replay
from ._cam import check_model, forward_cam, normalise_sum, upsample

__all__ = ["CGCLoss", "cgc_consistency", "info_nce"]


def info_nce(query: Tensor, positive: Tensor, tau: float) -> Tensor:
    """InfoNCE with the other queries as negatives, as the CGC code computes it.

    For L2-normalised rows, the logits of query ``i`` are ``[<q_i, p_i>, <q_i, q_j> for j ≠ i] / τ`` and the loss is
    the cross-entropy against index 0, averaged over the batch. A batch of one has no negatives (loss 0).

    Args:
        query: ``[B, D]`` L2-normalised (CGC: the augmented views' maps).
        positive: ``[B, D]`` L2-normalised (CGC: the replayed maps of the original views).
        tau: temperature.
    """
    b = query.shape[0]
    pos = (query * positive).sum(1, keepdim=True)
    sim = query @ query.T
    off_diagonal = ~torch.eye(b, dtype=torch.bool, device=query.device)
    neg = sim[off_diagonal].view(b, b - 1)
    logits = torch.cat([pos, neg], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=query.device))


def cgc_consistency(
    orig_cam: Tensor,
    aug_cam: Tensor,
    params: CropFlipParams,
    size: tuple[int, int],
    tau: float = 0.5,
    negatives: bool = True,
) -> Tensor:
    """CGC's consistency term on raw maps.

    Both maps are upsampled bilinearly to ``size``, normalised (``cam/(Σ+1e-8)+1e-8``); the original's map gets
    the recorded crop + flip (``replay``); both are flattened and L2-normalised. With ``negatives`` the term is
    :func:`info_nce` (augmented maps as queries); without, the "w/o negatives" ablation ``MSE(q, p)`` (mean over
    elements, ``F.mse_loss``).

    Args:
        orig_cam: ``[B, h, w]`` maps of the original views.
        aug_cam: ``[B, h, w]`` maps of the augmented views.
        params: the recorded crop + flip taking each original view to its augmented view.
        size: the map resolution the term is computed at (the image size, 224 in the paper).
        tau: temperature.
        negatives: InfoNCE (True) or the MSE ablation (False).
    """
    orig = replay(normalise_sum(upsample(orig_cam, size)), params)
    aug = normalise_sum(upsample(aug_cam, size))
    positive = F.normalize(orig.flatten(1), dim=1)
    query = F.normalize(aug.flatten(1), dim=1)
    if not negatives:
        return F.mse_loss(query, positive)
    return info_nce(query, positive, tau)


class CGCLoss(nn.Module):
    r"""CGC objective: cross-entropy plus λ · InfoNCE between the maps of augmented views and replayed maps.

    .. math::
        L_{CGC} = -\frac{1}{n}\sum_i \log
            \frac{\exp(\langle g(T_i x_i), T_i g(x_i)\rangle/\tau)}
                 {\exp(\langle g(T_i x_i), T_i g(x_i)\rangle/\tau) + \sum_{j\ne i}\exp(\langle g(T_i x_i),
                 g(T_j x_j)\rangle/\tau)}

    where ``g`` is the element-wise Grad-CAM (``ReLU(Σ_k ∂y_t/∂A_k ⊙ A_k)``) of the class ``t`` predicted on the
    original view ``x_i`` (for both views — no labels needed), upsampled to the image size, normalised to sum 1,
    flattened and L2-normalised; ``T_i`` is the recorded random resized crop + flip. Negatives are the *other
    augmented* maps of the local batch (the code's choice; the paper's formula contrasts ``T_i g(x_i)``), never
    gathered across processes. Total (authors' code): ``CE(xe) + CE(orig) + CE(aug) + λ·L_CGC``; the paper writes a
    single ``L_CE`` on the query (original) image (``ce="paper"``). Without labels only ``λ·L_CGC`` is returned.

    Paper: Pillai, Abbasi Koohpayegani & Pirsiavash, "Consistent Explanations by Contrastive Learning", CVPR 2022;
    code ``UCDvision/CGC`` (``models/resnet_multigpu_cgc.py``). Defaults are the paper's ImageNet run (τ = 0.5,
    λ = 1 for ResNet18; 0.5 for ResNet50), not the code's argparse defaults (τ = 0.01, λ = 1000).

    Args:
        lam: weight λ of the contrastive term.
        tau: temperature τ.
        ce: ``"authors"`` (CE on every view given: xe, orig, aug) or ``"paper"`` (CE on orig only).
        negatives: InfoNCE (True) or the "w/o negatives" ablation: MSE between the L2-normalised pair.
        map_size: resolution of the maps in the term; ``None`` means the original view's size (224 in the paper).
        method: the differentiable saliency method (``"hirescam"`` is the authors' element-wise Grad-CAM).
        augment: draws the augmented view in the loss when none is given (its scale, ratio and flip_p; the crop is
            resized back to the original view's size): default scale 0.08–1, ratio 3/4–4/3, drawn on the view's own
            pixel grid, flip 0.5. The authors crop the PIL
            image in the data loader (antialiased); pass ``aug``/``params`` from the loader to reproduce that.
    """

    def __init__(
        self,
        lam: float = 1.0,
        tau: float = 0.5,
        ce: Literal["authors", "paper"] = "authors",
        negatives: bool = True,
        map_size: tuple[int, int] | None = None,
        method: str = "hirescam",
        augment: RandomResizedCropFlip | None = None,
    ):
        super().__init__()
        if ce not in ("authors", "paper"):
            raise ValueError(f"ce must be 'authors' (CE on xe, orig and aug) or 'paper' (CE on orig); got {ce!r}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0; got {tau}")
        self.lam = lam
        self.tau = tau
        self.ce = ce
        self.negatives = negatives
        self.map_size = map_size
        self.method = method
        self.augment = augment if augment is not None else RandomResizedCropFlip(size=224)

    def forward(
        self,
        model: nn.Module,
        orig: Tensor,
        aug: Tensor | None = None,
        params: CropFlipParams | None = None,
        labels: Tensor | None = None,
        xe: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the loss for a batch (every forward pass in the model's current mode).

        Args:
            model: a zoo classifier (``forward_features``/``forward_head``).
            orig: ``[B, C, H, W]`` original views (Resize 256 + CenterCrop 224).
            aug: ``[B, C, H, W]`` augmented views, ``params`` applied to ``orig``; ``None`` draws them here.
            params: the crop + flip of each augmented view (required with ``aug``).
            labels: ``[B]`` class indices, or ``None`` for an unlabelled batch (contrastive term only).
            xe: ``[B, C, H, W]`` the authors' extra training view, used for a CE term only (``ce="authors"``).

        Returns:
            ``(total, parts)`` with parts ``ce`` (0 without labels), ``consistency`` (the unweighted CGC term) and
            ``ce_xe``/``ce_orig``/``ce_aug`` for the CE terms computed; detached.
        """
        check_model(model)
        if (aug is None) != (params is None):
            raise ValueError("pass aug together with its params, or neither (the loss then draws them)")
        if aug is None:
            params = self.augment.draw(orig.shape[0], tuple(orig.shape[-2:])).to(orig.device)
            aug = replay(orig, params)
        if len(params) != orig.shape[0] or aug.shape[0] != orig.shape[0]:
            raise ValueError(
                f"orig, aug and params must have the same batch size; got {orig.shape[0]}, "
                f"{aug.shape[0]}, {len(params)}"
            )
        o = forward_cam(model, orig, None, self.method)
        a = forward_cam(model, aug, o.targets, self.method)
        size = self.map_size or tuple(orig.shape[-2:])
        term = cgc_consistency(o.cam, a.cam, params, size, self.tau, self.negatives)
        parts: dict[str, Tensor] = {"consistency": term.detach()}
        ce = term.new_zeros(())
        if labels is not None:
            terms = {"ce_orig": F.cross_entropy(o.logits, labels)}
            if self.ce == "authors":
                terms["ce_aug"] = F.cross_entropy(a.logits, labels)
                if xe is not None:
                    terms["ce_xe"] = F.cross_entropy(model(xe), labels)
            ce = sum(terms.values())
            parts.update({k: v.detach() for k, v in terms.items()})
        parts["ce"] = ce.detach()
        return ce + self.lam * term, parts

    def extra_repr(self) -> str:
        return (
            f"lam={self.lam}, tau={self.tau}, ce={self.ce!r}, negatives={self.negatives}, "
            f"map_size={self.map_size}, method={self.method!r}"
        )
