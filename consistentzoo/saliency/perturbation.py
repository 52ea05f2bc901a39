"""Gradient-free CAMs: Score-CAM and Ablation-CAM, with the perturbed forward passes batched.

Each image needs one forward pass per channel of the target layer. Both methods stack the (image, channel) pairs
of the whole batch and run them ``batch_size`` at a time, under ``torch.no_grad()``. Ablation-CAM runs only the part
of the model above the target layer (``forward_head`` for timm-style models). The model's train/eval mode is left as
the caller set it: run them in eval mode unless batch statistics are wanted.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import CAMInputs, CAMMethod, Layer
from .errors import InvalidTargetError


def _pairs(flat: Tensor, channels: int, chunk: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """(image index, channel index, flat index) chunks over the flat ``image * channels + channel`` indices."""
    for start in range(0, len(flat), chunk):
        rows = flat[start : start + chunk]
        yield rows // channels, rows % channels, rows


def _class_indices(inputs: CAMInputs, name: str) -> Tensor:
    if inputs.targets is None:
        raise InvalidTargetError(f"{name} needs class indices as targets (or None), not a callable")
    return inputs.targets


class ScoreCAM(CAMMethod):
    r"""Score-CAM (Wang et al., CVPR-W 2020, "Score-CAM: Score-weighted visual explanations for convolutional neural
    networks").

    Each channel, upsampled to the image and min-max scaled to ``[0, 1]``, masks the input; its weight is the model's
    score for the target on the masked image:

    .. math:: H_k = \mathrm{minmax}(\mathrm{up}(A_k)), \qquad w_k = \mathrm{softmax}(f(x \odot H_k))_t, \qquad
              \mathrm{cam} = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big)

    ``weighting="probability"`` (default) is the original paper's code (``haofanwang/Score-CAM``): the target's
    softmax probability, bilinear upsampling with ``align_corners=False``, constant channels skipped (weight 0).
    ``weighting="channel_softmax"`` is pytorch-grad-cam's and TorchCAM's variant: the target logit of each masked
    image, then a softmax over the channels, ``align_corners=True``, no channel skipped. The map is formed at the
    layer's grid (bilinear upsampling commutes with the weighted channel sum).

    Args:
        model: the classifier.
        layer: target layer.
        relu: apply the final ReLU.
        weighting: ``"probability"`` or ``"channel_softmax"``.
        batch_size: masked images per forward pass.
    """

    name = "scorecam"
    uses_gradients = False
    WEIGHTINGS = ("probability", "channel_softmax")

    def __init__(
        self,
        model: nn.Module,
        layer: Layer = None,
        relu: bool = True,
        weighting: str = "probability",
        batch_size: int = 64,
    ) -> None:
        super().__init__(model, layer, relu)
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f"unknown Score-CAM weighting {weighting!r}; valid: {', '.join(self.WEIGHTINGS)}")
        self.weighting = weighting
        self.batch_size = batch_size

    @torch.no_grad()
    def weights(self, inputs: CAMInputs) -> Tensor:
        targets = _class_indices(inputs, self.name)
        images, acts = inputs.images, inputs.activations
        batch, channels = acts.shape[:2]
        paper = self.weighting == "probability"
        scores = torch.zeros(batch * channels, dtype=acts.dtype, device=acts.device)
        pairs = torch.arange(batch * channels, device=acts.device)
        if paper:  # constant channels get weight 0 without a forward pass (as the official code skips them)
            pairs = pairs[(acts.flatten(2).amax(2) > acts.flatten(2).amin(2)).flatten()]
        for b, k, flat in _pairs(pairs, channels, self.batch_size):
            masks = F.interpolate(acts[b, k][:, None], size=images.shape[-2:], mode="bilinear", align_corners=not paper)
            lo = masks.amin(dim=(1, 2, 3), keepdim=True)
            hi = masks.amax(dim=(1, 2, 3), keepdim=True)
            span = (hi - lo).clamp_min(torch.finfo(masks.dtype).tiny) if paper else hi - lo + 1e-8
            masks = (masks - lo) / span
            logits = self.model(images[b] * masks)
            if paper:
                score = logits.softmax(dim=1).gather(1, targets[b][:, None]).squeeze(1)
            else:
                score = logits.gather(1, targets[b][:, None]).squeeze(1)
            scores[flat] = score.to(scores.dtype)
        scores = scores.view(batch, channels)
        return scores if paper else scores.softmax(dim=1)


class AblationCAM(CAMMethod):
    r"""Ablation-CAM (Desai & Ramaswamy, WACV 2020, "Ablation-CAM: Visual explanations for deep convolutional network
    via gradient-free localization").

    Channel ``k`` is set to ``ablation_value`` (0, as in the paper) at the target layer and the drop of the target
    logit is its weight:

    .. math:: w_k = \frac{s - s_{A_k = 0}}{s}, \qquad \mathrm{cam} = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big)

    All (image, channel) ablations of the batch run ``batch_size`` at a time through the model above the layer only.
    The same as pytorch-grad-cam's ``AblationCAM`` on post-ReLU layers (it ablates with 0 when the activations'
    minimum is 0, else with ``-1e7``).

    Args:
        model: the classifier.
        layer: target layer.
        relu: apply the final ReLU.
        ablation_value: the value an ablated channel is set to.
        batch_size: ablated copies per forward pass.
    """

    name = "ablationcam"
    uses_gradients = False
    eps: float = 1e-12

    def __init__(
        self,
        model: nn.Module,
        layer: Layer = None,
        relu: bool = True,
        ablation_value: float = 0.0,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model, layer, relu)
        self.ablation_value = ablation_value
        self.batch_size = batch_size

    @torch.no_grad()
    def weights(self, inputs: CAMInputs) -> Tensor:
        targets = _class_indices(inputs, self.name)
        acts = inputs.activations
        batch, channels = acts.shape[:2]
        ablated = torch.empty(batch * channels, dtype=inputs.scores.dtype, device=acts.device)
        for b, k, flat in _pairs(torch.arange(batch * channels, device=acts.device), channels, self.batch_size):
            modified = acts[b].clone()
            modified[torch.arange(len(b), device=acts.device), k] = self.ablation_value
            logits = inputs.run_from_layer(modified, b)
            ablated[flat] = logits.gather(1, targets[b][:, None]).squeeze(1)
        score = inputs.scores[:, None]
        # the paper divides by the score itself; a zero score would give inf, so it is kept away from 0
        denominator = torch.where(score.abs() < self.eps, torch.full_like(score, self.eps), score)
        return (score - ablated.view(batch, channels)) / denominator
