"""Gradient-free CAMs: Score-CAM and Ablation-CAM, with the perturbed forward passes batched.

Each image needs one forward pass per channel of the target layer. Both methods stack the (image, channel) pairs
of the whole batch and run them ``batch_size`` at a time, and run no pass that cannot change the map: a channel that
is zero everywhere contributes ``w_k · 0`` whatever its weight, Score-CAM gives constant channels weight 0 (paper) or
scores their shared all-zero mask once (``channel_softmax``), and channels whose masks are equal (``A_j = a A_k + c``
with ``a > 0``) share one pass. Ablation-CAM runs only the part of the model above the target layer
(``forward_head`` for timm-style models).

Both run in eval mode under ``torch.no_grad()`` whatever the caller's mode (each module's mode is restored after the
call): in train mode BatchNorm would normalise each masked image with the statistics of whichever other masked
images share its batch, so the maps would depend on ``batch_size``, and it would update the running statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import CAMInputs, CAMMethod, Layer
from .errors import InvalidTargetError


def _class_indices(inputs: CAMInputs, name: str) -> Tensor:
    if inputs.targets is None:
        raise InvalidTargetError(f"{name} needs class indices as targets (or None), not a callable")
    return inputs.targets


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (forward passes per batch), got {batch_size!r}")
    return batch_size


def _distinct_masks(acts: Tensor, run: Tensor) -> tuple[Tensor, Tensor]:
    """The (image, channel) pairs to run, one per distinct mask, and for each pair of ``run`` its representative.

    Two channels of one image have the same min-max scaled mask when their grids are equal after min-max scaling.

    Args:
        acts: ``[B, K, h, w]``.
        run: boolean ``[B, K]``, the pairs that need a score.

    Returns:
        ``(rows, reps)``: flat ``image * K + channel`` indices to run, and for every ``True`` of ``run`` (in flat order)
        the position of its representative in ``rows``.
    """
    batch, channels = acts.shape[:2]
    flat = acts.flatten(2)
    lo, hi = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
    scaled = (flat - lo) / (hi - lo).clamp_min(torch.finfo(flat.dtype).tiny)
    rows, reps = [], []
    for b in range(batch):
        ks = run[b].nonzero().flatten()
        if len(ks) == 0:
            continue
        unique, inverse = torch.unique(scaled[b, ks], dim=0, return_inverse=True)
        first = torch.full((len(unique),), len(ks), dtype=torch.long, device=acts.device)
        first = first.scatter_reduce(0, inverse, torch.arange(len(ks), device=acts.device), "amin")
        reps.append(inverse + sum(len(r) for r in rows))
        rows.append(b * channels + ks[first])
    empty = torch.zeros(0, dtype=torch.long, device=acts.device)
    return (torch.cat(rows), torch.cat(reps)) if rows else (empty, empty)


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
    needs_autograd = False
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
        self.batch_size = _check_batch_size(batch_size)

    @torch.no_grad()
    def weights(self, inputs: CAMInputs) -> Tensor:
        targets = _class_indices(inputs, self.name)
        images, acts = inputs.images, inputs.activations
        batch, channels = acts.shape[:2]
        paper = self.weighting == "probability"
        flat = acts.flatten(2)
        constant = flat.amax(2) <= flat.amin(2)
        scores = torch.zeros(batch, channels, dtype=acts.dtype, device=acts.device)
        if paper:  # constant channels have weight 0 (the official code skips them): no pass
            run = ~constant
        else:  # a constant channel's mask is 0, the masked image all zero: one pass serves them all
            run = torch.ones_like(constant)
            if constant.any():
                zero_logits = self.model(torch.zeros_like(images[:1])).to(acts.dtype)
                scores = torch.where(constant, zero_logits[0, targets][:, None], scores)
                run = ~constant
        rows, reps = _distinct_masks(acts, run)
        rep_scores = torch.empty(len(rows), dtype=acts.dtype, device=acts.device)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            b, k = chunk // channels, chunk % channels
            rep_scores[start : start + len(chunk)] = self._masked_scores(images, acts[b, k], b, targets[b], paper)
        scores[run] = rep_scores[reps]
        return scores if paper else scores.softmax(dim=1)

    def _masked_scores(self, images: Tensor, channel_maps: Tensor, b: Tensor, targets: Tensor, paper: bool) -> Tensor:
        """The target's score on ``images[b]`` masked by each map of ``channel_maps [n, h, w]``."""
        masks = F.interpolate(channel_maps[:, None], size=images.shape[-2:], mode="bilinear", align_corners=not paper)
        lo = masks.amin(dim=(1, 2, 3), keepdim=True)
        hi = masks.amax(dim=(1, 2, 3), keepdim=True)
        span = (hi - lo).clamp_min(torch.finfo(masks.dtype).tiny) if paper else hi - lo + 1e-8
        masks = ((masks - lo) / span).to(images.dtype)
        # channels-last input: the convolutions' fast path on CPU (~1.15x on ResNets); the values are unchanged
        masked = (images[b] * masks).contiguous(memory_format=torch.channels_last)
        logits = self.model(masked).to(channel_maps.dtype)
        if paper:
            return logits.softmax(dim=1).gather(1, targets[:, None]).squeeze(1)
        return logits.gather(1, targets[:, None]).squeeze(1)


class AblationCAM(CAMMethod):
    r"""Ablation-CAM (Desai & Ramaswamy, WACV 2020, "Ablation-CAM: Visual explanations for deep convolutional network
    via gradient-free localization").

    Channel ``k`` is set to ``ablation_value`` (0, as in the paper) at the target layer and the drop of the target
    logit is its weight:

    .. math:: w_k = \frac{s - s_{A_k = 0}}{s}, \qquad \mathrm{cam} = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big)

    All (image, channel) ablations of the batch run ``batch_size`` at a time through the model above the layer only;
    channels that are zero everywhere are not run (their term ``w_k · 0`` is 0, their weight is left 0). The map
    equals this definition, computed by zeroing channel ``k`` with a hook and rerunning the whole model, at any layer
    (tests/test_saliency_faults.py).

    Where it agrees with pytorch-grad-cam's ``AblationCAM`` (after its min-max scaling), as measured: to 4e-6 at the
    outputs of ResNet-18's ``layer2``, ``layer3`` and ``layer4`` (random and Fashion-scenes weights) and at AlexNet's
    ``features.11`` (a ReLU) — layers whose output has an exact 0 and is not modified in place afterwards. It differs
    (i) where the layer's output has no exact 0 in the batch: pytorch-grad-cam then ablates with ``-1e7``, not 0; and
    (ii) where an in-place op after the layer overwrites the activations it caches, e.g. a convolution followed by
    ``ReLU(inplace=True)``: at AlexNet's ``features.10`` its min-max map differs from ours by 0.59, ours being the
    definition at that layer's (pre-ReLU) output.

    Args:
        model: the classifier.
        layer: target layer.
        relu: apply the final ReLU.
        ablation_value: the value an ablated channel is set to.
        batch_size: ablated copies per forward pass.
    """

    name = "ablationcam"
    uses_gradients = False
    needs_autograd = False
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
        self.batch_size = _check_batch_size(batch_size)

    @torch.no_grad()
    def weights(self, inputs: CAMInputs) -> Tensor:
        targets = _class_indices(inputs, self.name)
        acts = inputs.activations
        batch, channels = acts.shape[:2]
        # a channel that is zero everywhere adds w_k · 0 to the map whatever w_k is: its weight is left 0, no pass
        rows = (acts.flatten(2) != 0).any(2).flatten().nonzero().flatten()
        ablated = inputs.scores[:, None].repeat(1, channels).flatten()
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            b, k = chunk // channels, chunk % channels
            modified = acts[b].clone()
            modified[torch.arange(len(b), device=acts.device), k] = self.ablation_value
            logits = inputs.run_from_layer(modified, b).to(acts.dtype)
            ablated[chunk] = logits.gather(1, targets[b][:, None]).squeeze(1)
        score = inputs.scores[:, None]
        # the paper divides by the score itself; a zero score would give inf, so it is kept away from 0
        denominator = torch.where(score.abs() < self.eps, torch.full_like(score, self.eps), score)
        return (score - ablated.view(batch, channels)) / denominator
