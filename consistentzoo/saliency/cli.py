"""``consistentzoo explain IMAGE --model NAME --out overlay.png``: one image's saliency map drawn over it."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from PIL import Image

from ..data.images import open_image
from . import METHODS, get_method
from .overlay import save_figure

logger = logging.getLogger(__name__)

_FLAGS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: this map explains an untrained model"


def add_explain_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``explain`` subcommand (its handler is :func:`run_explain`)."""
    p = subparsers.add_parser(
        "explain",
        help="draw a saliency map of one image over it (PNG)",
        description="Compute a saliency map for one image with a zoo (or timm) model and draw it over the image, "
        "titled with the model, the explained class and its probability, beside a colour bar. A weight tag "
        "(resnet18_cgc.fashion_scenes) or a timm name loads its trained weights, as `evaluate` does; a weights "
        "folder loads the folder's.",
    )
    p.add_argument("image", type=Path, help="image file (any format PIL reads)")
    p.add_argument(
        "--model",
        required=True,
        help="zoo tag (resnet18_cgc.fashion_scenes), zoo or timm name, or a weights folder (config.json + "
        "model.safetensors, as written by a recipe or save_pretrained)",
    )
    p.add_argument(
        "--pretrained",
        default="true",
        help="'true' (default) for the name's trained weights, a weights folder, or 'false' for random weights "
        "(the same as --random-weights); ignored when --model is a folder",
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="explain an untrained model (random weights): for testing the tool, not for looking at explanations",
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


def _pretrained(value: str, random_weights: bool) -> bool | str:
    if random_weights:
        return False
    flag = _FLAGS.get(value.lower())
    if flag is not None:
        return flag
    if not Path(value).is_dir():
        raise FileNotFoundError(f"--pretrained {value!r} is neither true/false nor an existing weights folder")
    return value


def _read_image(path: Path) -> Image.Image:
    """The image file as RGB (the one place explain opens images): EXIF-rotated, 16-bit scaled, size-bounded.

    Raises:
        FileNotFoundError: no such file.
        BadImageError: not a usable image (the CLI prints one line and exits 2).
    """
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    return open_image(path)


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


def _check_arguments(args: argparse.Namespace) -> None:
    """``--size`` within :data:`SIZE_RANGE`, ``--out`` not a directory and ``--num-classes`` at least 1, before any
    work (ValueError: exit 2)."""
    if args.num_classes is not None and args.num_classes < 1:
        raise ValueError(
            f"--num-classes {args.num_classes}: a map explains one of the classifier's outputs, so it needs at least 1 "
            "(leave it out to use the model's own)"
        )
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


def _load(args: argparse.Namespace) -> tuple[torch.nn.Module, str, bool]:
    """The model, the name it is shown under, and whether its weights are random."""
    from ..models import WeightsUnavailableError, load_model

    pretrained = _pretrained(args.pretrained, args.random_weights)
    is_folder = Path(args.model).is_dir()
    try:
        model, name, tag = load_model(args.model, pretrained, args.num_classes)
    except WeightsUnavailableError as e:
        raise WeightsUnavailableError(f"{e} (`--random-weights` explains an untrained model instead)") from e
    except OSError as e:  # a timm name whose weights cannot be downloaded here
        if pretrained is not True or is_folder:
            raise
        raise WeightsUnavailableError(
            f"the weights of {args.model} could not be had ({e}); `--random-weights` explains an untrained model"
        ) from e
    shown = str(args.model) if is_folder else ".".join(p for p in (name, tag) if p)
    if isinstance(pretrained, str) and not is_folder:
        shown = f"{shown} ({pretrained})"
    return model.eval(), shown, pretrained is False and not is_folder


def run_explain(args: argparse.Namespace) -> int:
    """Build the model, compute the map for the image, write the titled overlay PNG; returns the exit status."""
    from ..models import label_names

    _check_arguments(args)
    image = _read_image(args.image)  # before the model: a bad image or size fails fast
    _check_input_pixels(image, args.size)
    model, shown, random_weights = _load(args)
    if random_weights:
        print(f"consistentzoo explain: warning: {RANDOM_WEIGHTS_WARNING} ({args.model})", file=sys.stderr)
    x = _preprocess(image, args.size, model)
    method = get_method(args.method, model, layer=args.layer)
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    target = int(probs.argmax()) if args.target is None else args.target
    maps = method(x, [target])  # raises InvalidTargetError for a class outside the model's outputs
    names = label_names(model)
    cls = f"class {target}" + (f" '{names[target]}'" if names else " (no class names recorded)")
    prob = float(probs[target])
    how = "predicted" if args.target is None else "asked for"
    title = f"{shown}, {args.method}\n{how} {cls}, p = {prob:.3f}"
    if random_weights:
        title = f"{RANDOM_WEIGHTS_WARNING}\n{title}"
    out = save_figure(args.out, image, maps[0], title, alpha=args.alpha, colormap=args.colormap)
    h, w = maps.shape[1:]
    row, col = divmod(int(maps[0].flatten().argmax()), w)
    y, x_px = (row + 0.5) * image.height / h, (col + 0.5) * image.width / w
    peak = (
        f"peak of the {h}x{w} map at row {row}, column {col} (0-based), about pixel x={x_px:.0f}, y={y:.0f} of the "
        f"{image.width}x{image.height} image"
        if maps[0].max() > 0
        else f"the {h}x{w} map is all zero: no evidence for this class"
    )
    print(f"{shown}: {how} {cls}, probability {prob:.3f}\n{args.method}: {peak}\nwrote {out}")
    return 0
