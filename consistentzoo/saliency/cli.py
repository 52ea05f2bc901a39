"""``consistentzoo explain IMAGE --model NAME --out overlay.png``: one image's saliency map drawn over it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from PIL import Image

from ..data.images import open_image
from . import METHODS, get_method
from .overlay import save_overlay

logger = logging.getLogger(__name__)

_FLAGS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def add_explain_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``explain`` subcommand (its handler is :func:`run_explain`)."""
    p = subparsers.add_parser(
        "explain",
        help="draw a saliency map of one image over it (PNG)",
        description="Compute a saliency map for one image with a zoo (or timm) model and write it over the image.",
    )
    p.add_argument("image", type=Path, help="image file (any format PIL reads)")
    p.add_argument("--model", required=True, help="zoo name or tag (resnet50_cgc.in1k) or a timm name")
    p.add_argument(
        "--pretrained",
        default="false",
        help="'true' for the tag's published weights, a folder written by save_pretrained, or 'false' (default)",
    )
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the model's)")
    p.add_argument("--method", default="gradcam", choices=sorted(METHODS), help="saliency method (default gradcam)")
    p.add_argument("--target", type=int, default=None, help="class index to explain (default: the predicted class)")
    p.add_argument("--layer", default=None, help="target layer's dotted name (default: forward_features output)")
    p.add_argument(
        "--size", type=int, default=224, help="resize the shorter side to this many pixels, 16..2048 (default 224)"
    )
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity (default 0.5)")
    p.add_argument("--colormap", default="jet", help="matplotlib colormap (default jet)")
    p.add_argument("--out", type=Path, required=True, help="output PNG path")
    p.set_defaults(func=run_explain)


def _pretrained(value: str) -> bool | str:
    flag = _FLAGS.get(value.lower())
    if flag is not None:
        return flag
    if not Path(value).exists():
        raise FileNotFoundError(f"--pretrained {value!r} is neither true/false nor an existing weights folder")
    return value


def _preprocess(image: Image.Image, size: int, model: torch.nn.Module) -> torch.Tensor:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = torch.tensor(cfg.get("mean", _IMAGENET_MEAN)).view(3, 1, 1)
    std = torch.tensor(cfg.get("std", _IMAGENET_STD)).view(3, 1, 1)
    scale = size / min(image.size)
    resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    pixels = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8)
    x = pixels.view(resized.height, resized.width, 3).permute(2, 0, 1).float() / 255
    return ((x - mean) / std)[None]


SIZE_RANGE = (16, 2048)  # --size bounds: below 16 a CNN has no feature map left; above, see MAX_INPUT_PIXELS
MAX_INPUT_PIXELS = 2048 * 2048  # largest resized input (about 1 GB of first-layer activations on a ResNet-50)


def _check_size_and_out(args: argparse.Namespace) -> None:
    """``--size`` within :data:`SIZE_RANGE` and ``--out`` not a directory, before any work (ValueError: exit 2)."""
    lo, hi = SIZE_RANGE
    if not lo <= args.size <= hi:
        raise ValueError(f"--size {args.size} is out of range; the shorter side must be {lo}..{hi} pixels")
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a directory; give the PNG file to write, e.g. {args.out / 'map.png'}")


def _check_input_pixels(image: Image.Image, size: int) -> None:
    w, h = (max(1, round(v * size / min(image.size))) for v in image.size)
    if w * h > MAX_INPUT_PIXELS:
        raise ValueError(
            f"image {image.width}x{image.height} resized to --size {size} would be {w}x{h} = {w * h} pixels, more "
            f"than {MAX_INPUT_PIXELS}; give a smaller --size"
        )


def run_explain(args: argparse.Namespace) -> int:
    """Build the model, compute the map for the image, write the overlay PNG; returns the exit status."""
    import consistentzoo

    _check_size_and_out(args)
    if not args.image.is_file():
        raise FileNotFoundError(f"image {args.image} does not exist")
    image = open_image(args.image)  # EXIF-rotated, 16-bit scaled, size-bounded; BadImageError (exit 2) if unusable
    _check_input_pixels(image, args.size)
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    model = consistentzoo.create_model(args.model, pretrained=_pretrained(args.pretrained), **kwargs).eval()
    x = _preprocess(image, args.size, model)
    method = get_method(args.method, model, layer=args.layer)
    with torch.no_grad():
        logits = model(x)
    target = int(logits.argmax(1)) if args.target is None else args.target
    maps = method(x, [target])
    out = save_overlay(args.out, image, maps[0], alpha=args.alpha, colormap=args.colormap)
    prob = logits.softmax(1)[0, target].item() if 0 <= target < logits.shape[1] else float("nan")
    print(f"{args.method} for class {target} (p={prob:.3f}) at {tuple(maps.shape[1:])} -> {out}")
    return 0
