"""Fashion-MNIST scenes: one real Fashion-MNIST item pasted onto a textured background whose style can leak the class.

A small, controlled localisation benchmark in the spirit of Waterbirds. Each scene is a ``size`` x ``size`` RGB
canvas (64--128 px) holding one Fashion-MNIST item (28 x 28 gray, scaled to 40--75 % of the canvas side, at a
random position, fully inside) over a random crop of one of ten background *styles* -- scikit-image's bundled
``brick``, ``grass``, ``gravel`` and ``moon`` photos, each mapped through a distinct two-colour tint. Style ``c`` is
tied to class ``c``.

Compositing: the item's resized intensity ``I`` in [0, 1] is its alpha, scaled so the body is opaque
(``alpha = min(1, 3 I)``, :data:`ALPHA_GAIN`), over a light-gray rendering of the item itself (``0.35 + 0.65 I``),
so the item keeps its inner detail and shows no texture where it is opaque (very dark items stay partly
translucent). The label, the box (the tight xyxy pixel extent of ``alpha > ALPHA_THRESHOLD``) and the
per-instance mask (``alpha > ALPHA_THRESHOLD``, 0.2) are exact.

The context switch: with probability ``context`` the background style is the item's class, otherwise one of the
nine other styles, uniformly. ``context = 0.1`` therefore makes the style uniform over all ten and independent of
the class: that is the definition of the uncorrelated (out-of-context) test split.

Splits (``load("fashion_scenes", split, source, ...)``):

============= ======================== ============ ==================== ====================================
split         Fashion-MNIST items from default size context (default)    measures
============= ======================== ============ ==================== ====================================
train         train (60000)            12000        0.9                  --
test          test (10000)             2000         0.1 (uncorrelated)   out-of-context accuracy
test_context  test (10000)             2000         0.9                  in-context accuracy
============= ======================== ============ ==================== ====================================

``test`` and ``test_context`` are *paired*: with the same seed they hold the same items at the same positions,
scales and crop offsets; only the background style differs where the context coin differs. The item subset is a
seeded permutation of the source split. Everything is drawn from ``numpy.random.default_rng([seed, source])``, so
the same arguments give byte-identical images; the Arrow file is cached under a fingerprint of all arguments and
of the idx files.

Optional distractors (``distractors=1`` or ``2``; off by default): each scene gets 0..``distractors`` smaller
Fashion-MNIST items (25--40 % of the side) of any class, drawn *behind* the main item so its mask stays exact. They
are not in ``label``/``boxes``/``mask``; the row flags them in ``distractor_boxes`` (their full extent, occluded
parts included) and ``distractor_labels``. Every row also has ``background``, the style index (equal to ``label``
when in context).

``source`` is a folder with the four official idx files (``train-images-idx3-ubyte.gz``, ...), as installed by
Debian's ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``: with ``source=None``,
:func:`consistentzoo.data.load` uses that folder when it exists, else the Hub copy ``zalando-datasets/fashion_mnist``
(``train`` and ``test`` only). :func:`load_fashion_scenes` never tries the Hub: without the folder it says how to
install it.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from .errors import AnnotationFormatError, DatasetUnavailableError, MissingAnnotationError, UnknownDatasetError
from .registry import DatasetSpec, register_dataset
from .schema import LoadReport, encode_mask, fingerprint, make_features, write_dataset

if TYPE_CHECKING:
    import datasets

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
HUB_ID = "zalando-datasets/fashion_mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
LAYOUT = (
    "<root>/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, Fashion-MNIST's four official idx files, e.g. "
    f"{DEBIAN_DIR} from `apt-get install dataset-fashion-mnist`; or the Hub copy {HUB_ID!r}"
)
# split -> (Fashion-MNIST split the items come from, default num_samples, default context)
SPLITS: dict[str, tuple[str, int, float]] = {
    "train": ("train", 12000, 0.9),
    "test": ("test", 2000, 0.1),
    "test_context": ("test", 2000, 0.9),
}
ALPHA_GAIN = 3.0  # alpha = min(1, gain * intensity): the item's body is opaque, its faint rim soft
ALPHA_THRESHOLD = 0.2  # alpha above which a pixel is the item's (mask and box)
ITEM_SCALE = (0.40, 0.75)  # item side as a fraction of the canvas side
DISTRACTOR_SCALE = (0.25, 0.40)
SIZE_RANGE = (64, 128)
_GENERATOR_VERSION = "1"  # bump when the rendering changes, so cached scenes are rebuilt
_CHUNK = 512  # scenes rendered at once (bounds memory; results do not depend on it)

# Ten background styles: (scikit-image photo, dark colour, light colour); style c is tied to class c.
STYLES: tuple[tuple[str, tuple[int, int, int], tuple[int, int, int]], ...] = (
    ("brick", (60, 10, 5), (215, 95, 60)),  # red brick
    ("grass", (5, 45, 10), (110, 200, 60)),  # green grass
    ("gravel", (15, 25, 70), (120, 150, 230)),  # blue gravel
    ("moon", (70, 5, 60), (230, 90, 210)),  # magenta moon
    ("brick", (10, 45, 55), (60, 200, 200)),  # teal brick
    ("grass", (70, 45, 0), (235, 190, 40)),  # yellow grass
    ("gravel", (60, 20, 0), (215, 120, 40)),  # orange gravel
    ("moon", (0, 30, 15), (70, 210, 140)),  # mint moon
    ("brick", (35, 10, 75), (150, 95, 235)),  # violet brick
    ("gravel", (25, 25, 25), (170, 170, 170)),  # gray gravel
)
STYLE_NAMES: tuple[str, ...] = (
    "red brick", "green grass", "blue gravel", "magenta moon", "teal brick",
    "yellow grass", "orange gravel", "mint moon", "violet brick", "gray gravel",
)  # fmt: skip


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one (optionally gzipped) idx file of unsigned bytes: ``[N, 28, 28]`` images or ``[N]`` labels.

    Raises:
        MissingAnnotationError: the file does not exist.
        AnnotationFormatError: the file is not an idx file of unsigned bytes.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingAnnotationError(f"fashion_scenes: {p} not found (expected layout: {LAYOUT})")
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise AnnotationFormatError(f"fashion_scenes: {p} cannot be read ({e})") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise AnnotationFormatError(f"fashion_scenes: {p} is not an idx file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise AnnotationFormatError(f"fashion_scenes: {p} holds {data.size} bytes, its header says {shape}")
    return data.reshape(shape)


def read_fashion_mnist(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``train`` (60000) or ``test`` (10000) from the official idx files under ``root``.

    Returns:
        Images ``[N, 28, 28]`` uint8 and labels ``[N]`` int64.
    """
    if split not in IDX_FILES:
        raise UnknownDatasetError(split, IDX_FILES, kind="Fashion-MNIST split")
    img_file, lab_file = (Path(root) / f for f in IDX_FILES[split])
    images, labels = read_idx(img_file), read_idx(lab_file).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise AnnotationFormatError(f"fashion_scenes: {img_file} {images.shape} and {lab_file} {labels.shape} differ")
    if labels.size and not 0 <= labels.min() <= labels.max() < len(CLASS_NAMES):
        raise AnnotationFormatError(f"fashion_scenes: {lab_file} has labels outside 0..{len(CLASS_NAMES) - 1}")
    return images, labels


@cache
def _textures(size: int) -> np.ndarray:
    """The ten tinted style textures, ``[10, 4 size, 4 size, 3]`` uint8 (texture scale follows the canvas)."""
    from skimage import data as skdata

    side = 4 * size
    out = np.empty((len(STYLES), side, side, 3), dtype=np.uint8)
    for i, (photo, dark, light) in enumerate(STYLES):
        gray = Image.fromarray(np.asarray(getattr(skdata, photo)(), dtype=np.uint8))
        g = np.asarray(gray.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)
        lo, hi = np.percentile(g, (2, 98))
        g = np.clip((g - lo) / max(hi - lo, 1.0), 0.0, 1.0)[..., None]
        rgb = np.asarray(dark, np.float32) * (1 - g) + np.asarray(light, np.float32) * g
        out[i] = np.rint(rgb).astype(np.uint8)
    out.flags.writeable = False
    return out


@cache
def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` linear-interpolation weights (triangle filter, widened when shrinking, like PIL's)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    w = np.maximum(0.0, 1.0 - np.abs((np.arange(n_in) + 0.5)[None, :] - centres[:, None]) / support)
    w /= w.sum(1, keepdims=True)
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


@dataclass(frozen=True)
class SceneParams:
    """Everything random about a set of scenes, drawn up front (rendering is then deterministic).

    Attributes:
        index: Fashion-MNIST index of each scene's item ``[N]``.
        label: its class ``[N]``.
        side: item side in pixels ``[N]``.
        x0: item left column ``[N]``.
        y0: item top row ``[N]``.
        background: style index ``[N]``.
        crop_x: texture crop left column ``[N]``.
        crop_y: texture crop top row ``[N]``.
        d_count: number of distractors per scene ``[N]``.
        d_index: distractor items ``[N, D]`` (the first ``d_count`` of each row are used).
        d_label: their classes ``[N, D]``.
        d_side: distractor sides ``[N, D]``.
        d_x0: distractor left columns ``[N, D]``.
        d_y0: distractor top rows ``[N, D]``.
    """

    index: np.ndarray
    label: np.ndarray
    side: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    background: np.ndarray
    crop_x: np.ndarray
    crop_y: np.ndarray
    d_count: np.ndarray
    d_index: np.ndarray
    d_label: np.ndarray
    d_side: np.ndarray
    d_x0: np.ndarray
    d_y0: np.ndarray


def _check_args(size: int, num_samples: int, pool: int, context: float, distractors: int) -> None:
    if not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
        raise ValueError(f"fashion_scenes: size must be in {SIZE_RANGE[0]}..{SIZE_RANGE[1]}, got {size}")
    if not 1 <= num_samples <= pool:
        raise ValueError(
            f"fashion_scenes: num_samples must be in 1..{pool} (the source split's size), got {num_samples}"
        )
    if not 0.0 <= context <= 1.0:
        raise ValueError(f"fashion_scenes: context is a probability in [0, 1], got {context}")
    if distractors not in (0, 1, 2):
        raise ValueError(f"fashion_scenes: distractors must be 0, 1 or 2, got {distractors}")


def draw_params(
    labels: np.ndarray,
    num_samples: int,
    *,
    size: int = 64,
    seed: int = 0,
    stream: int = 0,
    context: float = 0.9,
    distractors: int = 0,
) -> SceneParams:
    """Draw the random parameters of ``num_samples`` scenes from a pool of Fashion-MNIST items.

    Draws happen in a fixed order (subset, geometry, context coin, crop, then distractors), so ``context`` changes
    only the background styles and ``distractors`` changes nothing about the main items.

    Args:
        labels: classes of the pool's items.
        num_samples: scenes to draw (a seeded subset of the pool, without repetition).
        size: canvas side in pixels (64..128).
        seed: random seed.
        stream: a second seed component, one per source split (0 train, 1 test).
        context: probability that the background style is the item's class.
        distractors: at most this many distractor items per scene (0..2).
    """
    _check_args(size, num_samples, len(labels), context, distractors)
    rng = np.random.default_rng([seed, stream])
    n, tex = num_samples, 4 * size
    index = rng.permutation(len(labels))[:n]
    label = np.asarray(labels)[index].astype(np.int64)
    lo, hi = round(ITEM_SCALE[0] * size), round(ITEM_SCALE[1] * size)
    side = rng.integers(lo, hi + 1, n)
    x0 = (rng.random(n) * (size - side + 1)).astype(np.int64)
    y0 = (rng.random(n) * (size - side + 1)).astype(np.int64)
    coin, other = rng.random(n), rng.integers(0, len(CLASS_NAMES) - 1, n)
    background = np.where(coin < context, label, (label + 1 + other) % len(CLASS_NAMES))
    crop_x = rng.integers(0, tex - size + 1, n)
    crop_y = rng.integers(0, tex - size + 1, n)
    d = distractors
    dlo, dhi = round(DISTRACTOR_SCALE[0] * size), round(DISTRACTOR_SCALE[1] * size)
    d_count = rng.integers(0, d + 1, n) if d else np.zeros(n, np.int64)
    d_index = rng.integers(0, len(labels), (n, d))
    d_side = rng.integers(dlo, dhi + 1, (n, d))
    d_x0 = (rng.random((n, d)) * (size - d_side + 1)).astype(np.int64)
    d_y0 = (rng.random((n, d)) * (size - d_side + 1)).astype(np.int64)
    d_label = np.asarray(labels)[d_index].astype(np.int64)
    return SceneParams(
        index, label, side, x0, y0, background, crop_x, crop_y, d_count, d_index, d_label, d_side, d_x0, d_y0
    )


def _paste(items: np.ndarray, sides: np.ndarray, x0: np.ndarray, y0: np.ndarray, size: int) -> np.ndarray:
    """Each item resized to its side and placed on an empty canvas: intensities ``[B, size, size]`` in [0, 1]."""
    out = np.zeros((len(items), size, size), dtype=np.float32)
    for s in np.unique(sides):
        rows = np.flatnonzero(sides == s)
        m = _resize_matrix(items.shape[-1], int(s))
        small = m @ (items[rows].astype(np.float32) / 255.0) @ m.T
        ys = y0[rows, None] + np.arange(s)
        xs = x0[rows, None] + np.arange(s)
        out[rows[:, None, None], ys[:, :, None], xs[:, None, :]] = small
    return out


def _composite(img: np.ndarray, intensity: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Paint items over ``img`` (float ``[B, S, S, 3]``); returns their alpha."""
    alpha = np.minimum(1.0, ALPHA_GAIN * intensity)
    if keep is not None:
        alpha = alpha * keep[:, None, None]
    fg = (0.35 + 0.65 * intensity) * 255.0
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * fg[..., None]
    return alpha


def _extent(mask: np.ndarray) -> np.ndarray:
    """Tight xyxy boxes ``[B, 4]`` (continuous pixel coordinates) of non-empty masks ``[B, H, W]``."""
    rows, cols = mask.any(2), mask.any(1)
    h, w = mask.shape[1:]
    y1, y2 = rows.argmax(1), h - rows[:, ::-1].argmax(1)
    x1, x2 = cols.argmax(1), w - cols[:, ::-1].argmax(1)
    return np.stack([x1, y1, x2, y2], 1).astype(np.float32)


def render(
    params: SceneParams, items: np.ndarray, size: int, start: int = 0, stop: int | None = None
) -> dict[str, np.ndarray]:
    """Render scenes ``start:stop`` of ``params``.

    Args:
        params: from :func:`draw_params`.
        items: the pool's Fashion-MNIST images ``[M, 28, 28]`` uint8 (the same pool ``params`` was drawn from).
        size: canvas side (the one ``params`` was drawn for).
        start: first scene.
        stop: one past the last scene (default: all).

    Returns:
        ``image`` ``[B, S, S, 3]`` uint8, ``mask`` ``[B, S, S]`` bool (the main item), ``box`` ``[B, 4]`` float32 xyxy,
        ``label`` ``[B]``, ``background`` ``[B]``, ``distractor_boxes`` ``[B, D, 4]`` (rows past ``d_count`` are
        NaN), ``distractor_labels`` ``[B, D]`` (-1 past ``d_count``).
    """
    sl = slice(start, len(params.index) if stop is None else stop)
    bg = _textures(size)
    n = len(params.index[sl])
    r = np.arange(size)
    cy, cx = params.crop_y[sl], params.crop_x[sl]
    img = bg[params.background[sl][:, None, None], (cy[:, None] + r)[:, :, None], (cx[:, None] + r)[:, None, :]]
    img = img.astype(np.float32)
    d = params.d_index.shape[1]
    d_boxes = np.full((n, d, 4), np.nan, dtype=np.float32)
    d_labels = np.full((n, d), -1, dtype=np.int64)
    for j in range(d):
        on = params.d_count[sl] > j
        inten = _paste(items[params.d_index[sl, j]], params.d_side[sl, j], params.d_x0[sl, j], params.d_y0[sl, j], size)
        dmask = _composite(img, inten, on) > ALPHA_THRESHOLD
        has = dmask.any((1, 2))
        d_boxes[has, j] = _extent(dmask[has])
        d_labels[has, j] = params.d_label[sl, j][has]
    inten = _paste(items[params.index[sl]], params.side[sl], params.x0[sl], params.y0[sl], size)
    mask = _composite(img, inten) > ALPHA_THRESHOLD
    if not mask.any((1, 2)).all():
        raise ValueError("fashion_scenes: an item has no pixel above the alpha threshold")
    return {
        "image": np.rint(np.clip(img, 0, 255)).astype(np.uint8),
        "mask": mask,
        "box": _extent(mask),
        "label": params.label[sl],
        "background": params.background[sl],
        "distractor_boxes": d_boxes,
        "distractor_labels": d_labels,
    }


def scene_features(distractors: int = 0) -> datasets.Features:
    """The common schema with per-instance masks, plus ``background`` (and the distractor columns if any)."""
    import datasets

    feats = make_features(CLASS_NAMES, with_mask=True)
    feats["background"] = datasets.ClassLabel(names=list(STYLE_NAMES))
    if distractors:
        feats["distractor_boxes"] = datasets.List(datasets.List(datasets.Value("float32"), length=4))
        feats["distractor_labels"] = datasets.List(datasets.ClassLabel(names=list(CLASS_NAMES)))
    return feats


def _png(arr: np.ndarray) -> dict[str, Any]:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)  # 2x faster than 6, no larger on textures
    return {"bytes": buf.getvalue(), "path": None}


def _rows(split: str, params: SceneParams, items: np.ndarray, size: int, distractors: int) -> Iterator[dict[str, Any]]:
    for start in range(0, len(params.index), _CHUNK):
        out = render(params, items, size, start, start + _CHUNK)
        for k in range(len(out["label"])):
            i = start + k
            row: dict[str, Any] = {
                "id": f"{split}/{i:05d}-fm{int(params.index[i])}",
                "image": _png(out["image"][k]),
                "label": int(out["label"][k]),
                "boxes": [out["box"][k].tolist()],
                "box_labels": [int(out["label"][k])],
                "mask": [encode_mask(out["mask"][k])],
                "background": int(out["background"][k]),
            }
            if distractors:
                on = out["distractor_labels"][k] >= 0
                row["distractor_boxes"] = out["distractor_boxes"][k][on].tolist()
                row["distractor_labels"] = out["distractor_labels"][k][on].tolist()
            yield row


def _resolve(split: str, num_samples: int | None, context: float | None) -> tuple[str, int, float]:
    if split not in SPLITS:
        raise UnknownDatasetError(split, SPLITS, kind="fashion_scenes split")
    base, default_n, default_context = SPLITS[split]
    return base, default_n if num_samples is None else int(num_samples), default_context if context is None else context


def build_scenes(
    items: np.ndarray,
    labels: np.ndarray,
    split: str,
    *,
    origin: str,
    size: int = 64,
    num_samples: int | None = None,
    seed: int = 0,
    context: float | None = None,
    distractors: int = 0,
    files: Sequence[str | os.PathLike] = (),
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Generate (or reuse from the cache) the scenes of ``split`` from a Fashion-MNIST pool.

    Args:
        items: the pool's images ``[M, 28, 28]`` uint8 (Fashion-MNIST train for ``train``, test otherwise).
        labels: their classes ``[M]``.
        split: ``train``, ``test`` or ``test_context``.
        origin: where the pool came from (a folder or a Hub fingerprint), part of the cache key.
        size: canvas side in pixels, 64..128.
        num_samples: scenes in the split (default: 12000 train, 2000 test / test_context).
        seed: random seed; the same arguments give byte-identical images.
        context: probability that the background style is the item's class (default: 0.9 train and
            test_context, 0.1 -- uniform, uncorrelated -- test).
        distractors: at most this many distractor items per scene, 0..2 (default 0).
        files: source files whose size and mtime enter the cache key.
        cache_dir: see :func:`consistentzoo.data.load`.
    """
    base, n, ctx = _resolve(split, num_samples, context)
    params = draw_params(
        labels, n, size=size, seed=seed, stream=tuple(IDX_FILES).index(base), context=ctx, distractors=distractors
    )
    report = LoadReport("fashion_scenes", split)
    key = fingerprint("fashion_scenes", _GENERATOR_VERSION, origin, split, size, n, seed, ctx, distractors, files=files)
    return write_dataset(
        _rows(split, params, items, size, distractors), scene_features(distractors), report, key, cache_dir=cache_dir
    )


def load_local(
    root: Path,
    split: str,
    *,
    size: int = 64,
    num_samples: int | None = None,
    seed: int = 0,
    context: float | None = None,
    distractors: int = 0,
    check_images: str = "header",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Scenes from the idx files under ``root``; see :func:`build_scenes` for the options.

    ``check_images`` is unused (the items are arrays in the idx files); kept for a uniform signature.
    """
    base, _, _ = _resolve(split, num_samples, context)
    items, labels = read_fashion_mnist(root, base)
    files = [Path(root) / f for f in IDX_FILES[base]]
    return build_scenes(
        items,
        labels,
        split,
        origin=str(Path(root).resolve()),
        size=size,
        num_samples=num_samples,
        seed=seed,
        context=context,
        distractors=distractors,
        files=files,
        cache_dir=cache_dir,
    )


def from_hub(ds: datasets.Dataset, split: str, **kw: Any) -> datasets.Dataset:
    """Scenes from the Hub copy ``zalando-datasets/fashion_mnist`` (columns ``image`` 28x28 ``L``, ``label``)."""
    if split not in IDX_FILES:
        raise UnknownDatasetError(split, IDX_FILES, kind=f"fashion_scenes split from the Hub copy {HUB_ID}")
    items = np.stack([np.asarray(im.convert("L"), dtype=np.uint8) for im in ds["image"]])
    labels = np.asarray(ds["label"], dtype=np.int64)
    kw.pop("check_images", None)
    return build_scenes(items, labels, split, origin=f"hub:{ds._fingerprint}", **kw)


def load_fashion_scenes(split: str, source: str | os.PathLike | None = None, **kw: Any) -> datasets.Dataset:
    """:func:`consistentzoo.data.load` for ``fashion_scenes`` with the Debian folder as the default source.

    Args:
        split: ``train``, ``test`` (uncorrelated backgrounds) or ``test_context`` (backgrounds tied to the class).
        source: a folder with the four idx files; default ``/usr/share/datasets/fashion-mnist``.
        **kw: ``size``, ``num_samples``, ``seed``, ``context``, ``distractors``, ``cache_dir``
            (see :func:`build_scenes`).

    Raises:
        DatasetUnavailableError: no ``source`` and the Debian folder is absent.
    """
    from .registry import load

    if source is None:
        if not DEBIAN_DIR.is_dir():
            raise DatasetUnavailableError(
                f"fashion_scenes: Fashion-MNIST not found in {DEBIAN_DIR}. Install it with "
                f"`apt-get install dataset-fashion-mnist`, pass source=<folder with the four idx .gz files>, or "
                f"with network access use the Hub copy: load('fashion_scenes', split) (Hub id {HUB_ID!r})."
            )
        source = DEBIAN_DIR
    return load("fashion_scenes", split, source, **kw)


def save_examples(
    path: str | os.PathLike,
    split: str = "train",
    *,
    per_class: int = 4,
    source: str | os.PathLike | None = None,
    size: int = 64,
    num_samples: int | None = None,
    seed: int = 0,
    context: float | None = None,
    distractors: int = 0,
    upscale: int = 2,
) -> Path:
    """Write a PNG grid of example scenes with their boxes: one row per class, ``per_class`` scenes per row.

    The scenes are the first ``per_class`` of each class among the split's scenes (same arguments as
    :func:`load_fashion_scenes`), rendered directly (no cache). The main item's box is drawn in white, distractor
    boxes in black; each row starts with its class name.

    Args:
        path: output PNG.
        split: ``train``, ``test`` or ``test_context``.
        per_class: scenes per class (columns).
        source: folder with the idx files (default ``/usr/share/datasets/fashion-mnist``).
        size: canvas side.
        num_samples: scenes in the split (see :func:`build_scenes`).
        seed: random seed.
        context: see :func:`build_scenes`.
        distractors: see :func:`build_scenes`.
        upscale: integer zoom of each scene in the grid.

    Returns:
        ``path``.
    """
    base, n, ctx = _resolve(split, num_samples, context)
    items, labels = read_fashion_mnist(DEBIAN_DIR if source is None else source, base)
    params = draw_params(
        labels, n, size=size, seed=seed, stream=tuple(IDX_FILES).index(base), context=ctx, distractors=distractors
    )
    picks = np.concatenate([np.flatnonzero(params.label == c)[:per_class] for c in range(len(CLASS_NAMES))])
    sub = SceneParams(**{k: v[picks] for k, v in vars(params).items()})
    out = render(sub, items, size)
    cell, pad, text_w = size * upscale, 4, 84
    grid = Image.new("RGB", (text_w + per_class * (cell + pad), len(CLASS_NAMES) * (cell + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for k in range(len(picks)):
        c, j = int(sub.label[k]), k - int(np.flatnonzero(sub.label == sub.label[k])[0])
        x, y = text_w + j * (cell + pad), c * (cell + pad)
        grid.paste(Image.fromarray(out["image"][k]).resize((cell, cell), Image.Resampling.NEAREST), (x, y))
        boxes = [(out["box"][k], (255, 255, 255))]
        on = out["distractor_labels"][k] >= 0
        boxes += [(b, (0, 0, 0)) for b in out["distractor_boxes"][k][on]]
        for b, colour in boxes:
            x1, y1, x2, y2 = (float(v) * upscale for v in b)
            draw.rectangle((x + x1, y + y1, x + x2 - 1, y + y2 - 1), outline=colour)
        if j == 0:
            draw.text((2, y + cell // 2 - 6), CLASS_NAMES[c], fill=(0, 0, 0))
    p = Path(path)
    grid.save(p)
    return p


register_dataset(
    DatasetSpec(
        "fashion_scenes",
        load_local,
        tuple(SPLITS),
        (HUB_ID,),
        from_hub,
        LAYOUT,
        aliases=("fashion_mnist_scenes",),
        default_local=(str(DEBIAN_DIR),),
    )
)
