"""The base classes every saliency method derives from: input checks, targets, the target layer, hooks.

Two base classes, one method to override in each variant:

- :class:`SaliencyMethod` — override :meth:`SaliencyMethod.attribute` (gradient methods, FullGrad, cMWP).
- :class:`CAMMethod` — a class activation map at one layer; override :meth:`CAMMethod.weights` (one weight per
  channel, the map is ``Σ_k w_k A_k``) or, for element-wise maps, :meth:`CAMMethod.cam`.

The target layer defaults to the ``forward_features`` output of models with timm's interface
(``forward_features``/``forward_head``): the map is taken as ``A = m.forward_features(x); y = m.forward_head(A)``
with no hooks, so it is differentiable and the model's train/eval mode is left as the caller set it. Other models
need ``layer=`` (a module or its dotted name); without it the last ``nn.Conv2d`` is used. Hooks live only inside a
context manager around one forward pass and are removed even when the model raises.

Calling a method leaves the model as it was: its buffers are swapped for copies during the call (BatchNorm in train
mode updates the copies, never the model's running statistics), each module's train/eval flag is restored, and no
hook outlives the call. Gradient-free methods (Score-CAM, Ablation-CAM) run the model in eval mode and under
``torch.no_grad()``: batch statistics would make a channel's weight depend on the other masked images it happens to
share a batch with. Under ``torch.inference_mode()`` the gradient methods leave inference mode for the call (the maps
equal those under ``torch.no_grad()``). The arithmetic after the model (weights, sums, normalisations) is done in at
least float32, and the maps come back in the images' dtype, so half-precision models and ``torch.autocast`` give
finite maps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import ClassVar, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import (
    InvalidImagesError,
    InvalidTargetError,
    LayerNotFoundError,
    NoConvLayerError,
    UnsupportedModelError,
)

#: Per-sample targets: class indices (tensor ``[B]``, list, or one int for the whole batch), ``None`` for the
#: predicted class, or a callable mapping the logits ``[B, N]`` to the scores ``[B]`` to explain.
Targets = Union[Tensor, Sequence[int], int, Callable[[Tensor], Tensor], None]  # noqa: UP007 - a runtime alias
Layer = Union[str, nn.Module, None]  # noqa: UP007 - a runtime alias


def check_images(images: Tensor) -> None:
    """Raise :class:`InvalidImagesError` unless ``images`` is a non-empty floating-point ``[B, C, H, W]`` tensor."""
    if not isinstance(images, Tensor):
        raise InvalidImagesError(f"images must be a torch.Tensor [B, C, H, W], got {type(images).__name__}")
    if images.ndim != 4:
        hint = " (a single image needs images.unsqueeze(0))" if images.ndim == 3 else ""
        raise InvalidImagesError(f"images must have shape [B, C, H, W], got {tuple(images.shape)}{hint}")
    if images.shape[0] == 0:
        raise InvalidImagesError("images is an empty batch")
    if not images.is_floating_point():
        raise InvalidImagesError(
            f"images must be a floating-point tensor (normalised as the model expects), got {images.dtype}"
        )
    finite = torch.isfinite(images)
    if not finite.all():
        bad = ~finite
        rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
        where = ("image " if len(rows) == 1 else "images ") + ", ".join(map(str, rows[:10]))
        raise InvalidImagesError(
            f"images contain {int(bad.sum())} non-finite value(s) (NaN or inf) in {where}: every map of them would "
            "be NaN; check the loading and normalisation of those images"
        )


def wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the arithmetic after the model is done in: at least float32 (fp16 sums overflow, small eps vanish)."""
    return torch.promote_types(dtype, torch.float32)


@contextmanager
def model_state_kept(model: nn.Module, eval_mode: bool = False) -> Iterator[None]:
    """Inside the block the model's buffers are copies and (``eval_mode``) every module is in eval mode; afterwards
    the original buffer tensors, bit-identical, and each module's own train/eval flag are back.

    In-place buffer updates (BatchNorm's running statistics and ``num_batches_tracked`` in train mode) go to the
    copies. Swapping rather than restoring values keeps a graph built inside the block valid for a later backward.
    """
    modes = [(module, module.training) for module in model.modules()]
    swapped: list[tuple[nn.Module, str, Tensor]] = []
    copies: dict[int, Tensor] = {}  # a buffer shared by two modules stays shared
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None:
                swapped.append((module, name, buffer))
                module._buffers[name] = copies.setdefault(id(buffer), buffer.clone())
    try:
        if eval_mode:
            model.eval()
        yield
    finally:
        for module, name, buffer in swapped:
            module._buffers[name] = buffer
        for module, training in modes:
            module.training = training


def _normal_tensor(value: object) -> object:
    # tensors created under inference_mode cannot enter autograd; a clone made outside it can
    return value.clone() if isinstance(value, Tensor) and value.is_inference() else value


def layer_candidates(model: nn.Module) -> list[str]:
    """Dotted names of the model's convolutions and of the blocks that contain one: the valid ``layer=`` values."""
    names = []
    for name, module in model.named_modules():
        if name and any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules()):
            names.append(name)
    return names


def resolve_layer(model: nn.Module, layer: Layer) -> nn.Module | None:
    """The module whose output the map is taken at, or ``None`` for the ``forward_features`` output.

    Args:
        model: the classifier.
        layer: ``None`` (``forward_features`` output when the model has ``forward_features`` and ``forward_head``,
            else the last ``nn.Conv2d``), a dotted module name such as ``"layer4"`` or ``"features.10"``, or a
            module of ``model``.

    Raises:
        LayerNotFoundError: the name or module is not in the model (the message lists candidate layers).
        NoConvLayerError: ``layer=None`` and the model has no convolution.
    """
    if layer is None:
        if callable(getattr(model, "forward_features", None)) and callable(getattr(model, "forward_head", None)):
            return None
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise NoConvLayerError(
                f"{type(model).__name__} has no nn.Conv2d and no forward_features/forward_head: there is no spatial "
                "layer to explain at; pass layer= (a module with a [B, C, h, w] output)"
            )
        return convs[-1]
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise LayerNotFoundError(layer, layer_candidates(model)) from None
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise LayerNotFoundError(f"<{type(layer).__name__} not in the model>", layer_candidates(model))
        return layer
    raise TypeError(f"layer must be None, a dotted module name or an nn.Module, got {type(layer).__name__}")


def resolve_targets(targets: Targets, logits: Tensor) -> Tensor:
    """Class indices ``[B]`` (long, on the logits' device) for ``targets``; ``None`` means the predicted class.

    Raises:
        InvalidTargetError: wrong length, non-integer values, or a class outside ``[0, num_classes)``.
    """
    batch, num_classes = logits.shape
    if targets is None:
        return logits.detach().argmax(dim=1)
    if isinstance(targets, bool):
        raise InvalidTargetError(f"targets must be class indices, got {targets!r}")
    if isinstance(targets, int):
        idx = torch.full((batch,), targets, dtype=torch.long, device=logits.device)
    else:
        idx = torch.as_tensor(targets, device=logits.device)
        if idx.ndim == 0:
            idx = idx.expand(batch)
        if idx.is_floating_point() or idx.dtype == torch.bool or idx.is_complex():
            raise InvalidTargetError(f"targets must be integer class indices, got dtype {idx.dtype}")
        if idx.shape != (batch,):
            raise InvalidTargetError(f"targets must have one class index per image ({batch}), got {tuple(idx.shape)}")
        idx = idx.long()
    bad = (idx < 0) | (idx >= num_classes)
    if bad.any():
        raise InvalidTargetError(
            f"target class {idx[bad][0].item()} is out of range: the model has {num_classes} classes "
            f"(valid indices 0..{num_classes - 1})"
        )
    return idx


def target_scores(targets: Targets, logits: Tensor) -> tuple[Tensor, Tensor | None]:
    """The scores ``s [B]`` to explain and the class indices (``None`` for a callable target).

    The score is the target logit ``s = y[t]`` (not the softmax), as in Grad-CAM and both GC papers.
    """
    if logits.ndim != 2:
        raise UnsupportedModelError(f"the model must return logits [B, num_classes], got shape {tuple(logits.shape)}")
    if callable(targets) and not isinstance(targets, Tensor):
        scores = targets(logits)
        if not isinstance(scores, Tensor) or scores.shape != logits.shape[:1]:
            raise InvalidTargetError(
                f"a callable target must map the logits {tuple(logits.shape)} to scores [{logits.shape[0]}], "
                f"got {getattr(scores, 'shape', type(scores).__name__)}"
            )
        return scores, None
    idx = resolve_targets(targets, logits)
    return logits.gather(1, idx[:, None]).squeeze(1), idx


@contextmanager
def tap_layer(layer: nn.Module, replace: Tensor | None = None, requires_grad: bool = True) -> Iterator[list[Tensor]]:
    """Capture (or replace) the output of ``layer`` during the forward passes inside the ``with`` block.

    The captured tensor is the layer's output as the layer produced it: the model goes on with a clone, so an
    in-place op after the layer (``ReLU(inplace=True)``, ``x += shortcut``) does not alter it. A captured output that
    does not require grad (frozen model) is made a leaf that does, so gradients with respect to it exist.

    Args:
        layer: the module to tap.
        replace: if given, the model continues with this tensor instead of the layer's output.
        requires_grad: make a captured output that does not require grad a leaf that does.

    Yields:
        The list the captured outputs are appended to, one per call of ``layer``.
    """
    captured: list[Tensor] = []

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if replace is not None:
            return replace
        if not isinstance(output, Tensor):
            raise NoConvLayerError(f"layer {type(module).__name__} returns {type(output).__name__}, not a tensor")
        if requires_grad and not output.requires_grad:
            output = output.detach().requires_grad_(True)
        captured.append(output)
        return output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


@dataclass
class CAMInputs:
    """What a CAM variant computes its map from.

    Attributes:
        images: the input batch ``[B, C, H, W]``.
        activations: ``A`` at the target layer ``[B, K, h, w]``.
        gradients: ``∂s/∂A`` ``[B, K, h, w]`` (``None`` for gradient-free methods).
        logits: the model's output ``[B, N]``.
        scores: the explained scores ``s [B]``.
        targets: the class indices ``[B]`` (``None`` for a callable target).
        run_from_layer: ``f(A', idx) -> logits`` runs the model on images ``idx`` with the layer output replaced by
            ``A'`` (perturbation methods).
    """

    images: Tensor
    activations: Tensor
    gradients: Tensor | None
    logits: Tensor
    scores: Tensor
    targets: Tensor | None
    run_from_layer: Callable[[Tensor, Tensor], Tensor]


class SaliencyMethod:
    """Base class of every saliency method: tensors in, maps ``[B, h, w]`` out.

    Subclasses override :meth:`attribute`. Calling the method checks the images (finite ``[B, C, H, W]`` floats),
    runs :meth:`attribute` with gradients enabled (gradient-free methods: under ``torch.no_grad()`` in eval mode)
    and the model's state kept (:func:`model_state_kept`), applies the final ReLU (unless ``relu=False``) and detaches
    the result unless ``create_graph=True``. An all-zero map is a valid result (nothing supports the target class);
    maps are never NaN.

    Args:
        model: the classifier (left as it was: parameters, buffers, train/eval modes, hooks).
        layer: the target layer (see :func:`resolve_layer`); ignored by input-resolution methods.
        relu: apply the final ReLU. ``relu=False`` gives the signed map (the SSIM-consistency paper takes Grad-CAM
            without its final ReLU).
    """

    #: Name in ``consistentzoo.saliency.METHODS``.
    name: ClassVar[str] = ""
    #: ``"feature"`` (the layer's grid) or ``"input"`` (the image size).
    resolution: ClassVar[str] = "feature"
    #: Whether ``create_graph=True`` gives a map differentiable with respect to the model's parameters.
    differentiable: ClassVar[bool] = False
    #: Whether the method needs autograd; gradient-free methods run under ``torch.no_grad()`` in eval mode.
    needs_autograd: ClassVar[bool] = True

    def __init__(self, model: nn.Module, layer: Layer = None, relu: bool = True) -> None:
        self.model = model
        self.layer = layer
        self.relu = relu

    def __call__(self, images: Tensor, targets: Targets = None, create_graph: bool = False) -> Tensor:
        """Maps ``[B, h, w]`` of ``targets`` for ``images``.

        Args:
            images: float ``[B, C, H, W]``, normalised as the model expects.
            targets: class per image (tensor ``[B]``, list, one int), ``None`` for the predicted class, or a callable
                ``logits [B, N] -> scores [B]``.
            create_graph: keep the graph so that a loss on the maps back-propagates into the model's parameters.

        Returns:
            Unnormalised maps ``[B, h, w]`` in the images' dtype.

        Raises:
            InvalidImagesError: not a non-empty floating-point ``[B, C, H, W]`` tensor, or NaN/inf values.
            UnsupportedModelError: a gradient method on a model created under ``torch.inference_mode()``.
        """
        check_images(images)
        if create_graph and not self.differentiable:
            differentiable = ", ".join(n for n, c in _registry().items() if c.differentiable)
            raise ValueError(f"{self.name} is not differentiable; create_graph=True works for: {differentiable}")
        with ExitStack() as stack:
            if self.needs_autograd:
                if torch.is_inference_mode_enabled():  # leave it locally: the gradient methods need autograd
                    stack.enter_context(torch.inference_mode(False))
                    images, targets = _normal_tensor(images), _normal_tensor(targets)
                stack.enter_context(torch.enable_grad())
            else:
                stack.enter_context(torch.no_grad())
            stack.enter_context(model_state_kept(self.model, eval_mode=not self.needs_autograd))
            try:
                maps = self.attribute(images, targets, create_graph)
            except RuntimeError as error:
                if "Inference tensors" not in str(error):
                    raise
                raise UnsupportedModelError(
                    f"{self.name} needs autograd, but the model's parameters or buffers were created under "
                    "torch.inference_mode() (inference tensors cannot be used by autograd): create or load the model "
                    "outside inference mode (torch.no_grad() is enough to save memory), or use a gradient-free "
                    "method (scorecam, ablationcam)"
                ) from error
            if self.relu:
                maps = F.relu(maps)
            maps = maps.to(images.dtype)
        return maps if create_graph else maps.detach()

    def attribute(self, images: Tensor, targets: Targets, create_graph: bool) -> Tensor:
        """The signed map ``[B, h, w]`` before the final ReLU: the one method a variant overrides."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, layer={self.layer!r}, relu={self.relu})"


class CAMMethod(SaliencyMethod):
    """A class activation map at one layer: ``cam = Σ_k w_k A_k`` with per-channel weights ``w [B, K]``.

    Subclasses override :meth:`weights` (or :meth:`cam` for element-wise maps). Gradients ``∂s/∂A`` are taken with
    ``torch.autograd.grad`` (``create_graph`` passed through), never with ``.backward()``, so parameters' ``.grad``
    are left untouched.
    """

    #: Whether :meth:`weights` needs ``∂s/∂A``.
    uses_gradients: ClassVar[bool] = True

    def attribute(self, images: Tensor, targets: Targets, create_graph: bool) -> Tensor:
        layer = resolve_layer(self.model, self.layer)
        activations, logits = self._forward(images, layer)
        rerun = lambda a, rows: self._run_from_layer(images, layer, a, rows)  # noqa: E731
        return self.from_activations(images, activations, logits, targets, create_graph, rerun)[0]

    def from_activations(
        self,
        images: Tensor,
        activations: Tensor,
        logits: Tensor,
        targets: Targets,
        create_graph: bool,
        run_from_layer: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """The signed map of a forward pass the caller already ran, and the explained classes.

        One forward then serves both a loss on the logits and the map (the training objectives need both).

        Args:
            images: the input batch.
            activations: the target layer's output ``[B, K, h, w]``, part of the graph that gave ``logits``.
            logits: ``[B, N]``.
            targets: as in :meth:`__call__`.
            create_graph: keep the graph of ``∂s/∂A`` (a loss on the map trains the model).
            run_from_layer: reruns the model from given activations (perturbation methods); None refuses them.

        Returns:
            The map before the final ReLU ``[B, h, w]``, and the class per image (None for a callable target).
        """
        scores, idx = target_scores(targets, logits)
        gradients = None
        if self.uses_gradients:
            (gradients,) = torch.autograd.grad(scores.sum(), activations, create_graph=create_graph)
            if not create_graph:
                activations = activations.detach()
        else:
            activations, logits, scores = activations.detach(), logits.detach(), scores.detach()
        wide = wide_dtype(activations.dtype)
        rerun = run_from_layer or _no_rerun
        if wide != activations.dtype:  # half precision or autocast: the weights in float32, reruns in the model's dtype
            layer_dtype, narrow_rerun = activations.dtype, rerun
            rerun = lambda a, rows: narrow_rerun(a.to(layer_dtype), rows)  # noqa: E731
        inputs = CAMInputs(
            images=images,
            activations=activations.to(wide),
            gradients=None if gradients is None else gradients.to(wide),
            logits=logits.to(wide_dtype(logits.dtype)),
            scores=scores.to(wide_dtype(scores.dtype)),
            targets=idx,
            run_from_layer=rerun,
        )
        return self.cam(inputs), idx

    def cam(self, inputs: CAMInputs) -> Tensor:
        """The signed map ``Σ_k w_k A_k`` ``[B, h, w]``; override for maps that are not a weighted channel sum."""
        weights, acts = self.weights(inputs), inputs.activations
        if torch.is_autocast_enabled(acts.device.type):  # autocast would run einsum's matmul in half precision
            return (weights[:, :, None, None] * acts).sum(dim=1)
        return torch.einsum("bk,bkhw->bhw", weights, acts)

    def weights(self, inputs: CAMInputs) -> Tensor:
        """Channel weights ``[B, K]``."""
        raise NotImplementedError

    def _forward(self, images: Tensor, layer: nn.Module | None) -> tuple[Tensor, Tensor]:
        if layer is None:
            activations = self.model.forward_features(images)
            if isinstance(activations, Tensor) and self.uses_gradients and not activations.requires_grad:
                activations = activations.detach().requires_grad_(True)
            _check_spatial(activations, "forward_features")
            return activations, self.model.forward_head(activations)
        with tap_layer(layer, requires_grad=self.uses_gradients) as captured:
            logits = self.model(images)
        if not captured:
            raise NoConvLayerError(f"the layer {type(layer).__name__} was not called in the model's forward pass")
        activations = captured[-1]
        _check_spatial(activations, type(layer).__name__)
        return activations, logits

    def _run_from_layer(self, images: Tensor, layer: nn.Module | None, activations: Tensor, rows: Tensor) -> Tensor:
        if layer is None:
            return self.model.forward_head(activations)
        with tap_layer(layer, replace=activations):
            return self.model(images[rows])


def _no_rerun(activations: Tensor, rows: Tensor) -> Tensor:
    raise UnsupportedModelError("this map was asked for from given activations: perturbation methods cannot rerun")


def _check_spatial(activations: Tensor, where: str) -> None:
    if not isinstance(activations, Tensor) or activations.ndim != 4:
        shape = tuple(activations.shape) if isinstance(activations, Tensor) else type(activations).__name__
        raise NoConvLayerError(
            f"the {where} output must be a spatial map [B, C, h, w] to explain, got {shape}; pass layer= (a "
            "convolutional layer or block)"
        )


def _registry() -> dict[str, type[SaliencyMethod]]:
    from . import METHODS

    return METHODS
