"""The one way the package opens an image file: bounded, EXIF-rotated, 16-bit aware, RGB out.

Every loader (:mod:`consistentzoo.data`) and ``consistentzoo explain`` go through :func:`open_image` (decode) or
:func:`probe_image` (header only). Both refuse, with :class:`~consistentzoo.data.errors.BadImageError`:

- files that are not images, empty, corrupt or truncated (``reason`` ``corrupt_image`` / ``truncated_image``);
- images larger than ``max_pixels`` (default Pillow's ``Image.MAX_IMAGE_PIXELS``, about 89 Mpixel) or with a side
  ratio above ``max_aspect`` (default :data:`MAX_ASPECT`): ``reason`` ``too_large`` / ``extreme_aspect``. The
  size is read from the header, before any pixel is decoded, so a 20000 x 20000 "decompression bomb" or a
  100000 x 1 strip costs nothing; Pillow's own ``DecompressionBombError`` is reported the same way (so a
  ``max_pixels`` above twice ``Image.MAX_IMAGE_PIXELS`` needs that global raised too).

Decoding applies the EXIF orientation (``PIL.ImageOps.exif_transpose``) and scales 16-bit grey images (modes
``I;16*`` and ``I``, e.g. 16-bit PNGs) from 0..65535 to 0..255; Pillow's plain ``convert("RGB")`` clips them
at 255, which turns every such image white.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadImageError, ImageTooLargeError

MAX_ASPECT = 20.0
"""Longest side / shortest side allowed by default (panoramas up to 20:1; a 100000 x 1 strip is refused)."""

WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
"""Modes whose values span 0..65535 (16-bit greyscale); Pillow's ``convert("RGB")`` would clip them at 255."""

_EXIF_ORIENTATION = 0x0112
_ROTATED = (5, 6, 7, 8)  # orientations that swap width and height
# What Pillow's decoders raise on bad data (zlib / struct errors surface from some plugins unwrapped).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)

ImageSource = str | os.PathLike | bytes | BinaryIO


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: displayed size (after EXIF rotation), Pillow mode and format."""

    width: int
    height: int
    mode: str
    format: str | None

    @property
    def needs_rescale(self) -> bool:
        """True for 16-bit modes, which a plain ``convert("RGB")`` would saturate."""
        return self.mode in WIDE_MODES


def _name(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, str | os.PathLike):
        return str(source)
    return "<image bytes>"


def _open(source: ImageSource, name: str) -> Image.Image:
    """``Image.open`` with Pillow's own bomb check turned into :class:`ImageTooLargeError`."""
    if isinstance(source, bytes | bytearray):
        if not source:
            raise BadImageError(name, "corrupt_image", "the data is empty (0 bytes)")
        source = io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        p = Path(source)
        if not p.is_file():
            raise BadImageError(name, "missing_file", "no such file" if not p.exists() else "not a regular file")
        if p.stat().st_size == 0:
            raise BadImageError(name, "corrupt_image", "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Sizes between Pillow's limit and twice it only warn; _check_size below decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(name, "too_large", str(e)) from e
    except UnidentifiedImageError as e:
        raise BadImageError(name, "corrupt_image", "not an image file Pillow can read") from e
    except _DECODE_ERRORS as e:
        raise BadImageError(name, "corrupt_image", f"unreadable header ({e})") from e


def _check_size(im: Image.Image, name: str, max_pixels: int | None, max_aspect: float | None) -> None:
    w, h = im.size
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if w < 1 or h < 1:
        raise BadImageError(name, "corrupt_image", f"the header gives an empty size {w}x{h}")
    if limit is not None and w * h > limit:
        raise ImageTooLargeError(
            name, "too_large", f"{w}x{h} = {w * h} pixels is more than the limit of {limit} (max_pixels)"
        )
    if max_aspect is not None and max(w, h) / min(w, h) > max_aspect:
        raise ImageTooLargeError(
            name,
            "extreme_aspect",
            f"{w}x{h} has a side ratio of {max(w, h) / min(w, h):.0f}:1, more than the limit of {max_aspect:g}:1 "
            "(max_aspect)",
        )


def probe_image(
    source: ImageSource,
    *,
    decode: bool = False,
    max_pixels: int | None = None,
    max_aspect: float | None = MAX_ASPECT,
    name: str | None = None,
) -> ImageInfo:
    """Read an image's header (and, with ``decode``, every pixel) without keeping it.

    Args:
        source: a file path, the file's bytes, or an open binary file.
        decode: also decode the pixels (catches corruption past the header; costs a full decode).
        max_pixels: largest ``width * height``; None means Pillow's ``Image.MAX_IMAGE_PIXELS``.
        max_aspect: largest longest-side / shortest-side ratio; None for no limit.
        name: how to name the image in errors (default the path).

    Returns:
        The displayed size (after EXIF rotation), mode and format.

    Raises:
        BadImageError: the file is missing, empty, not an image, corrupt or truncated.
        ImageTooLargeError: too many pixels or too extreme a side ratio.
    """
    name = _name(source, name)
    with _open(source, name) as im:
        _check_size(im, name, max_pixels, max_aspect)
        w, h = im.size
        if im.getexif().get(_EXIF_ORIENTATION) in _ROTATED:
            w, h = h, w
        info = ImageInfo(w, h, im.mode, im.format)
        if decode:
            _load(im, name)
    return info


def _load(im: Image.Image, name: str) -> None:
    try:
        im.load()
    except _DECODE_ERRORS as e:
        reason = "truncated_image" if "truncated" in str(e) else "corrupt_image"
        raise BadImageError(name, reason, str(e)) from e


def to_rgb(im: Image.Image) -> Image.Image:
    """A decoded image as 8-bit RGB: 16-bit grey is scaled by 255/65535 (not clipped), other modes go through
    Pillow's ``convert("RGB")`` (alpha dropped, palette and CMYK converted)."""
    if im.mode in WIDE_MODES:
        arr = np.asarray(im, dtype=np.float64)
        grey = np.clip(np.rint(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2), mode="RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def open_image(
    source: ImageSource,
    *,
    max_pixels: int | None = None,
    max_aspect: float | None = MAX_ASPECT,
    name: str | None = None,
) -> Image.Image:
    """Open, check, decode, EXIF-rotate and convert an image to 8-bit RGB.

    Args:
        source: a file path, the file's bytes, or an open binary file.
        max_pixels: largest ``width * height``, checked from the header before decoding; None means Pillow's
            ``Image.MAX_IMAGE_PIXELS``.
        max_aspect: largest longest-side / shortest-side ratio; None for no limit.
        name: how to name the image in errors (default the path).

    Returns:
        A loaded ``PIL.Image.Image`` in mode ``RGB``, upright as its EXIF orientation says.

    Raises:
        BadImageError: the file is missing, empty, not an image, corrupt or truncated.
        ImageTooLargeError: too many pixels or too extreme a side ratio.
    """
    name = _name(source, name)
    with _open(source, name) as im:
        _check_size(im, name, max_pixels, max_aspect)
        _load(im, name)
        upright = ImageOps.exif_transpose(im)
        return to_rgb(upright)


def to_png_bytes(im: Image.Image) -> bytes:
    """An image encoded as PNG (what the loaders store when a file's own encoding would decode wrongly)."""
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
