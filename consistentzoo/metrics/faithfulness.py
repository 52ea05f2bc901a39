"""Faithfulness metrics: RISE insertion / deletion AUC, and average drop / increase / gain.

Insertion and deletion follow Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box
Models" (BMVC 2018) as the CGC authors ran it (blur kernel 11, sigma 5; 224 * 8 pixels per step at 224 px), but
score the (image, step) pairs in batched forward passes instead of one image and one step at a time, each distinct
perturbed image once. The forward passes are the whole cost: on a CPU a batch-1 pass costs little more per image than
a batched one, so the gain over the per-image loop is small there (``benchmarks/metrics.py`` prints it beside the
ceiling any batching could reach).
Average drop / increase follow Chattopadhyay et al., "Grad-CAM++" (WACV 2018); average gain follows eq. 16 of
Torres Figueroa et al., "A Learning Paradigm for Interpretable Gradients" (VISAPP 2024).

Images are given as the model takes them (already normalised); the substrate and the masked images are built
in that space, as RISE, TorchCAM and pytorch-grad-cam do. Every function puts the model in eval mode for the
call and restores its mode afterwards, and runs under ``torch.inference_mode``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._inputs import check_images, check_maps, check_targets, eval_mode

__all__ = [
    "auc",
    "average_drop",
    "average_gain",
    "average_increase",
    "blur",
    "causal_curves",
    "deletion_auc",
    "insertion_auc",
    "masked_confidence",
    "perturbation_chunk",
    "rise_kernel",
]

Substrate = Literal["blur", "black"] | Tensor | Callable[[Tensor], Tensor]


def rise_kernel(size: int = 11, sigma: float = 5.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """The blur kernel of RISE's ``gkern``: a centred unit impulse filtered by ``scipy.ndimage.gaussian_filter``.

    ``gaussian_filter`` (truncate 4, mode "reflect") folds the Gaussian's tails back into the ``size x size``
    window, so this is not a plain truncated Gaussian; it sums to 1. Computed in torch, without scipy.

    Args:
        size: Kernel side (odd).
        sigma: Gaussian standard deviation in pixels.
        dtype: Output dtype.

    Returns:
        ``[size, size]`` kernel.
    """
    if size <= 0 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = int(4.0 * sigma + 0.5)  # scipy's truncate=4.0
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (taps / sigma) ** 2)
    g /= g.sum()
    centre = size // 2
    k1 = torch.zeros(size, dtype=torch.float64)
    for i in range(size):
        for t, wt in zip(range(-radius, radius + 1), g.tolist(), strict=True):
            p = i + t
            # scipy "reflect": (d c b a | a b c d | d c b a), period 2 * size
            p %= 2 * size
            if p >= size:
                p = 2 * size - 1 - p
            if p == centre:
                k1[i] += wt
    return torch.outer(k1, k1).to(dtype)


def blur(images: Tensor, size: int = 11, sigma: float = 5.0) -> Tensor:
    """RISE's blurred substrate: each channel convolved with :func:`rise_kernel`, zero padding ``size // 2``.

    Args:
        images: ``[B, C, H, W]``.
        size: Kernel side (odd).
        sigma: Gaussian standard deviation in pixels.
    """
    c = images.shape[1]
    k = rise_kernel(size, sigma, images.dtype).to(images.device).expand(c, 1, size, size)
    return F.conv2d(images, k, padding=size // 2, groups=c)


def _substrate(images: Tensor, substrate: Substrate) -> Tensor:
    if isinstance(substrate, str):
        if substrate == "blur":
            return blur(images)
        if substrate == "black":
            return torch.zeros_like(images)
        raise ValueError(f"substrate must be 'blur', 'black', a tensor or a callable, got {substrate!r}")
    out = substrate(images) if callable(substrate) else substrate
    if not isinstance(out, Tensor):
        raise TypeError("a substrate callable must return a tensor")
    try:
        return torch.broadcast_to(out.to(images), images.shape)
    except RuntimeError as err:
        raise ValueError(f"substrate of shape {tuple(out.shape)} does not broadcast to {tuple(images.shape)}") from err


def _probs(model: nn.Module, x: Tensor, targets: Tensor | None, batch_size: int) -> tuple[Tensor, Tensor]:
    """Softmax probability of ``targets`` (the arg-max class if None) on ``x``, in chunks; returns (probs, targets).

    Given targets are checked against the number of classes of the first chunk's output (no extra forward pass).
    """
    out, tgt = [], []
    for start in range(0, x.shape[0], batch_size):
        p = model(x[start : start + batch_size]).softmax(-1)
        if start == 0 and targets is not None:
            targets = check_targets(targets, x.shape[0], p.shape[-1]).to(x.device)
        t = p.argmax(-1) if targets is None else targets[start : start + batch_size]
        out.append(p.gather(1, t.unsqueeze(1)).squeeze(1))
        tgt.append(t)
    return torch.cat(out), torch.cat(tgt)


def _last_level_cache_bytes() -> int:
    """Size of the CPU's last-level cache, from Linux's sysfs; 8 MiB where the system does not say."""
    sizes = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes[level] = int(digits) * scale
    return sizes[max(sizes)] if sizes else 8 * 2**20


def perturbation_chunk(images: Tensor, batch_size: int) -> int:
    """Perturbed images per forward pass: ``batch_size``, capped on the CPU so a chunk's input fills 1/8 of the cache.

    On a CPU a convolutional network's first feature maps are several times its input; chunks much larger than the
    last-level cache stream every activation through main memory, and the forward pass slows down per image, while
    chunks of one or two images pay the per-call overhead. ResNet-18 on 1 core with a 32 MiB cache, ms per image:
    224 px: 61 at batch 1, 47-49 at 4-13 (the cap: 6), 61 at 64; 128 px: 27 at 1, 15-16 at 8-64 (the cap: 21)
    (``benchmarks/metrics.py`` prints the figure for its setting). Other devices use ``batch_size`` as given.

    Args:
        images: ``[B, C, H, W]`` (only its device, dtype and per-image size count).
        batch_size: the largest chunk allowed.
    """
    if images.device.type != "cpu":
        return batch_size
    per_image = images[0].numel() * images.element_size()
    return max(1, min(batch_size, _last_level_cache_bytes() // (8 * per_image)))


def auc(curves: Tensor) -> Tensor:
    """Area under equally spaced curves on ``[0, 1]``: ``(sum_i c_i - c_0 / 2 - c_n / 2) / n`` (RISE's ``auc``).

    Args:
        curves: ``[B, n + 1]`` with ``n >= 1``.
    """
    if curves.ndim != 2 or curves.shape[1] < 2:
        raise ValueError(f"curves must have shape [B, n + 1] with n >= 1, got {tuple(curves.shape)}")
    return (curves.sum(1) - curves[:, 0] / 2 - curves[:, -1] / 2) / (curves.shape[1] - 1)


def causal_curves(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    mode: Literal["insertion", "deletion"],
    targets: Tensor | None = None,
    substrate: Substrate | None = None,
    pixels_per_step: int | None = None,
    batch_size: int = 64,
) -> Tensor:
    """RISE insertion or deletion curves: the (image, step) pairs scored in chunks of batched forward passes.

    Pixels are ranked by decreasing saliency (a stable sort: ties keep row-major order). With ``s`` pixels per
    step and ``n = ceil(HW / s)`` steps, point ``i = 0..n`` of the curve is the softmax probability of the target
    class on the image whose ``min(i s, HW)`` top-ranked pixels come from the finish image and the rest from the
    start image. Insertion goes from the substrate (blur by default) to the image, deletion from the image to the
    substrate (black, i.e. zeros in the model's input space, by default).

    The cost is one forward pass per *distinct* perturbed image: a point whose image equals an earlier point's (its
    step changes only pixels where start and finish agree) or the full image (scored once for the target) reuses
    that score. Each image is sorted once; a chunk's inputs are blended into one reused buffer; on the CPU the chunk
    is capped by the cache (:func:`perturbation_chunk`).

    Args:
        model: Classifier returning logits ``[B, K]``.
        images: ``[B, C, H, W]`` as the model takes them.
        maps: ``[B, H, W]`` finite saliency maps at image resolution (negative values allowed: only the order counts).
        mode: ``"insertion"`` or ``"deletion"``.
        targets: Long ``[B]`` classes to score; None uses the class predicted on the full image (RISE).
        substrate: ``"blur"``, ``"black"``, a tensor broadcastable to ``images`` or a callable ``images -> tensor``;
            None means blur for insertion and black for deletion.
        pixels_per_step: Pixels changed per step; None means ``8 * W`` (224 * 8 at 224 px, as the CGC authors).
        batch_size: Most perturbed images per forward pass.

    Returns:
        ``[B, n + 1]`` curves.
    """
    check_images(images)
    check_maps(maps, allow_negative=True)
    check_images(images, maps)
    if mode not in ("insertion", "deletion"):
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    b, c, h, w = images.shape
    hw = h * w
    step = 8 * w if pixels_per_step is None else pixels_per_step
    if not isinstance(step, int) or step <= 0:
        raise ValueError(f"pixels_per_step must be a positive integer, got {pixels_per_step!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if substrate is None:
        substrate = "blur" if mode == "insertion" else "black"
    chunk = perturbation_chunk(images, batch_size)
    n_pts = -(-hw // step) + 1
    counts = (torch.arange(n_pts, device=images.device) * step).clamp_max(hw)
    with eval_mode(model), torch.inference_mode():
        full, targets = _probs(model, images, targets, chunk)
        base = _substrate(images, substrate)
        start, finish = (base, images) if mode == "insertion" else (images, base)
        start, finish = start.reshape(b, c, hw), finish.reshape(b, c, hw)
        order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)
        # changed[b, k]: pixels among the first counts[k] ranked where finish differs from start; two points with
        # the same count show the same image, and the full image is the one with all (insertion) or none (deletion)
        differs = (start != finish).any(1).gather(1, order).cumsum(1)
        changed = torch.cat([differs.new_zeros(b, 1), differs[:, counts[1:] - 1]], dim=1)
        is_full = changed == (differs[:, -1:] if mode == "insertion" else 0)
        first = torch.ones_like(is_full)
        first[:, 1:] = changed[:, 1:] != changed[:, :-1]
        bi, si = (first & ~is_full).nonzero(as_tuple=True)  # image-major: a chunk holds few images
        counts32 = counts.to(torch.int32)
        rank = torch.empty(b, hw, dtype=torch.int32, device=images.device)
        rank.scatter_(1, order, torch.arange(hw, dtype=torch.int32, device=images.device).expand(b, hw))
        curves = full[:, None].expand(b, n_pts).clone()
        scores = images.new_empty(bi.numel())
        x = images.new_empty(min(chunk, bi.numel()), c, hw)
        take = torch.empty(x.shape[0], 1, hw, dtype=torch.bool, device=images.device)
        for j0 in range(0, bi.numel(), chunk):
            jb, js = bi[j0 : j0 + chunk], si[j0 : j0 + chunk]
            n = jb.numel()
            torch.lt(rank[jb], counts32[js, None], out=take[:n, 0])
            torch.index_select(start, 0, jb, out=x[:n])
            torch.where(take[:n], finish[jb], x[:n], out=x[:n])  # blend in place
            p = model(x[:n].view(n, c, h, w)).softmax(-1)
            scores[j0 : j0 + n] = p.gather(1, targets[jb, None]).squeeze(1)
        curves[bi, si] = scores
        # a repeated image takes the score of the first point with the same image (changed is non-decreasing)
        curves = curves.gather(1, torch.searchsorted(changed, changed))
    return curves


def insertion_auc(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None = None,
    substrate: Substrate = "blur",
    pixels_per_step: int | None = None,
    batch_size: int = 64,
) -> Tensor:
    """Insertion AUC (RISE; CGC's IAUC): insert the most salient pixels first into a blurred image.

    ``IAUC_b = auc(c_b)``, ``c_b`` the insertion curve of :func:`causal_curves`, ``auc`` as :func:`auc`.
    Higher is better.

    Args:
        model: Classifier returning logits.
        images: ``[B, C, H, W]`` as the model takes them (the CGC protocol: Resize((224, 224)) + normalise).
        maps: ``[B, H, W]`` saliency maps at image resolution.
        targets: Classes to score; None = predicted on the full image.
        substrate: Start image: ``"blur"`` (kernel 11, sigma 5), ``"black"``, a tensor or a callable.
        pixels_per_step: None = ``8 * W``.
        batch_size: Perturbed images per forward pass.

    Returns:
        ``[B]`` AUC per image, in ``[0, 1]``.
    """
    return auc(causal_curves(model, images, maps, "insertion", targets, substrate, pixels_per_step, batch_size))


def deletion_auc(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None = None,
    substrate: Substrate = "black",
    pixels_per_step: int | None = None,
    batch_size: int = 64,
) -> Tensor:
    """Deletion AUC (RISE): replace the most salient pixels first by black (zeros). Lower is better.

    Args: as :func:`insertion_auc`, with ``substrate="black"`` by default.

    Returns:
        ``[B]`` AUC per image, in ``[0, 1]``.
    """
    return auc(causal_curves(model, images, maps, "deletion", targets, substrate, pixels_per_step, batch_size))


def masked_confidence(
    model: nn.Module, images: Tensor, maps: Tensor, targets: Tensor | None = None, batch_size: int = 64
) -> tuple[Tensor, Tensor]:
    """Target-class softmax probabilities on the image and on the image masked by its min-max scaled map.

    ``S' = (S - min S) / (max S - min S)`` per image (``S' = 0`` for a constant map), ``m = S' ⊙ x``;
    returns ``(p, o) = (softmax(f(x))_c, softmax(f(m))_c)``, ``c`` the target (default: predicted on ``x``).

    Args:
        model: Classifier returning logits.
        images: ``[B, C, H, W]`` as the model takes them.
        maps: ``[B, H, W]`` finite saliency maps at image resolution.
        targets: Long ``[B]`` classes; None = predicted on the full image.
        batch_size: Images per forward pass.
    """
    check_images(images)
    check_maps(maps, allow_negative=True)
    check_images(images, maps)
    flat = maps.flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    span = hi - lo
    scaled = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(flat))
    masked = scaled.view_as(maps).unsqueeze(1).to(images.dtype) * images
    chunk = perturbation_chunk(images, batch_size)
    with eval_mode(model), torch.inference_mode():
        p, targets = _probs(model, images, targets, chunk)
        o, _ = _probs(model, masked, targets, chunk)
    return p, o


def average_drop(
    model: nn.Module, images: Tensor, maps: Tensor, targets: Tensor | None = None, batch_size: int = 64
) -> Tensor:
    """Average drop (Grad-CAM++): ``AD_i = [p_i - o_i]_+ / p_i``, see :func:`masked_confidence`. Lower is better.

    Returns:
        ``[B]`` per-image drop; the paper's AD is its mean (x 100 for %).
    """
    p, o = masked_confidence(model, images, maps, targets, batch_size)
    return (p - o).clamp_min(0) / p.clamp_min(torch.finfo(p.dtype).tiny)


def average_increase(
    model: nn.Module, images: Tensor, maps: Tensor, targets: Tensor | None = None, batch_size: int = 64
) -> Tensor:
    """Average increase in confidence (Grad-CAM++): ``AI_i = 1[p_i < o_i]``. Higher is better.

    Returns:
        ``[B]`` per-image 0.0 / 1.0; the paper's AI is its mean.
    """
    p, o = masked_confidence(model, images, maps, targets, batch_size)
    return (p < o).to(p.dtype)


def average_gain(
    model: nn.Module, images: Tensor, maps: Tensor, targets: Tensor | None = None, batch_size: int = 64
) -> Tensor:
    """Average gain: ``AG_i = [o_i - p_i]_+ / p_i`` (eq. 16 of the interpretable-gradients paper). Higher is better.

    Returns:
        ``[B]`` per-image gain; the paper's AG is its mean.
    """
    p, o = masked_confidence(model, images, maps, targets, batch_size)
    return (o - p).clamp_min(0) / p.clamp_min(torch.finfo(p.dtype).tiny)
