"""The one image opener (``consistentzoo.data.images``) and ``consistentzoo explain`` on hostile or unusual images.

Issue-17 cases covered here ("Images and data folders"):

- 16-bit PNGs (mode ``I;16``) were pure white in ``explain`` and the loaders: scaled 0..65535 -> 0..255.
- ``explain`` ignored EXIF orientation while the loaders applied it: one helper applies it everywhere.
- ``explain`` on a corrupt, 0-byte, truncated or non-image file printed a traceback: one line, exit 2.
- a 20000 x 20000 PNG gave ``DecompressionBombError``: ``ImageTooLargeError`` from the header, nothing allocated.
- a 100000 x 1 PNG (370 bytes) took 125 s and 18 GB: refused up front (side ratio), one line, exit 2.
- ``--size 0`` / ``-5`` explained a 1x1 image and ``--size 100000`` was killed at 24 GB: bounded, exit 2.
- ``--out <directory>`` gave ``IsADirectoryError``: one line, exit 2 (a directory is refused, not written into).
"""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest
from fixtures import data_native as nat
from PIL import Image

from consistentzoo.cli import main
from consistentzoo.data.errors import BadImageError, ImageTooLargeError
from consistentzoo.data.images import MAX_ASPECT, open_image, probe_image


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nat.bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


def _bad_files(root: Path) -> dict[str, Path]:
    """Corrupt, empty, truncated and non-image files, each with the reason the opener must give."""
    good = nat.image(root / "good.png", (40, 30), fmt="PNG").read_bytes()
    files = {
        "corrupt_image": root / "random.jpg",
        "empty": root / "empty.png",
        "truncated_image": root / "truncated.png",
        "not_an_image": root / "notes.png",
    }
    files["corrupt_image"].write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    files["empty"].write_bytes(b"")
    files["truncated_image"].write_bytes(good[: len(good) // 2])
    files["not_an_image"].write_text("this is a text file, not a PNG\n")
    return files


# --- the opener --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 257, 32896, 65535])
def test_16bit_png_scaled_to_8bit_not_white(tmp_path, value) -> None:
    path = nat.png16(tmp_path / "deep.png", value)
    assert Image.open(path).mode == "I;16"  # a real 16-bit PNG, as Pillow reads it
    img = open_image(path)
    assert img.mode == "RGB" and img.size == (12, 9)
    # 8-bit value of a 16-bit sample: round(v * 255 / 65535) (v / 257 exactly for these values).
    assert np.all(np.asarray(img) == round(value * 255 / 65535))


def test_exif_orientation_applied(tmp_path) -> None:
    path = nat.exif_jpeg(tmp_path / "rot.jpg", (40, 30), orientation=6)
    assert Image.open(path).size == (40, 30)  # stored landscape
    img = open_image(path)
    # Orientation 6: the stored first row is the displayed right-hand column (EXIF 2.3, tag 0x0112).
    assert img.size == (30, 40)
    arr = np.asarray(img).astype(int)
    assert arr[:, -2:].mean() > 200 and arr[:, :-6].mean() < 30
    assert probe_image(path).width == 30 and probe_image(path).height == 40


@pytest.mark.parametrize("kind", ["corrupt_image", "empty", "truncated_image", "not_an_image"])
def test_unreadable_files_refused_with_reason(tmp_path, kind) -> None:
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(BadImageError) as err:
        open_image(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    expected = {"empty": "corrupt_image", "not_an_image": "corrupt_image"}.get(kind, kind)
    assert err.value.reason == expected


def test_decompression_bomb_refused_from_header(bomb) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for call in (open_image, probe_image):
        with pytest.raises(ImageTooLargeError) as err:
            call(bomb)
        assert err.value.reason == "too_large" and "400000000" in str(err.value)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200  # decoding would need 400 MB (1 byte per pixel once unpacked)


def test_pixel_limit_checked_before_decoding(tmp_path) -> None:
    path = nat.image(tmp_path / "a.png", (100, 100), fmt="PNG")
    with pytest.raises(ImageTooLargeError, match="10000 pixels is more than the limit of 5000"):
        open_image(path, max_pixels=5000)
    assert open_image(path, max_pixels=10000).size == (100, 100)


def test_extreme_aspect_ratio_refused(tmp_path) -> None:
    path = nat.strip_png(tmp_path / "strip.png", 100000, 1)
    assert path.stat().st_size < 1000
    with pytest.raises(ImageTooLargeError) as err:
        open_image(path)
    assert err.value.reason == "extreme_aspect" and "100000x1" in str(err.value)
    edge = nat.image(tmp_path / "edge.png", (int(MAX_ASPECT) * 3, 3), fmt="PNG")
    assert open_image(edge).size == (int(MAX_ASPECT) * 3, 3)  # exactly the limit passes
    assert open_image(path, max_aspect=None).size == (100000, 1)


def test_bytes_and_modes(tmp_path) -> None:
    for mode in ("L", "P", "RGBA", "LA", "1"):
        path = nat.image(tmp_path / f"{mode}.png", (12, 9), mode=mode, fmt="PNG")
        from_bytes = open_image(path.read_bytes())
        assert from_bytes.mode == "RGB" and from_bytes.size == (12, 9)
        assert np.array_equal(np.asarray(from_bytes), np.asarray(Image.open(path).convert("RGB")))
    with pytest.raises(BadImageError, match="0 bytes"):
        open_image(b"")


# --- explain -----------------------------------------------------------------------------------------------------


def _explain(capsys, image: Path, out: Path, *extra: str) -> tuple[int, str]:
    argv = ["explain", str(image), "--model", "resnet18", "--num-classes", "3", "--size", "32", "--out", str(out)]
    rc = main([*argv, *extra])
    err = capsys.readouterr().err
    return rc, err


def _one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("kind", ["corrupt_image", "empty", "truncated_image", "not_an_image"])
def test_explain_bad_file_one_line_exit_2(tmp_path, capsys, kind) -> None:
    path = _bad_files(tmp_path)[kind]
    rc, err = _explain(capsys, path, tmp_path / "o.png")
    _one_line_error(rc, err, str(path))
    assert not (tmp_path / "o.png").exists()


def test_explain_bomb_and_strip_one_line_exit_2(tmp_path, capsys, bomb) -> None:
    rc, err = _explain(capsys, bomb, tmp_path / "o.png")
    _one_line_error(rc, err, str(bomb), "too_large")
    strip = nat.strip_png(tmp_path / "strip.png")
    rc, err = _explain(capsys, strip, tmp_path / "o.png")
    _one_line_error(rc, err, str(strip), "extreme_aspect")


@pytest.mark.parametrize("size", ["0", "-5", "100000"])
def test_explain_size_bounded(tmp_path, capsys, size) -> None:
    photo = nat.image(tmp_path / "p.jpg", (40, 30))
    rc, err = _explain(capsys, photo, tmp_path / "o.png", "--size", size)
    _one_line_error(rc, err, f"--size {size}", "16..2048")


@pytest.mark.parametrize("n", ["0", "-1"])
def test_explain_num_classes_at_least_one(tmp_path, capsys, n) -> None:
    """Issue 17: ``--num-classes 0`` explained class 485 of a 1000-class head (the pooled features)."""
    photo = nat.image(tmp_path / "p.jpg", (40, 30))
    rc, err = _explain(capsys, photo, tmp_path / "o.png", "--num-classes", n)
    _one_line_error(rc, err, f"--num-classes {n}", "at least 1")
    assert not (tmp_path / "o.png").exists()


def test_explain_input_pixels_bounded(tmp_path, capsys) -> None:
    # 20:1 is an allowed side ratio, but at --size 2048 the input would be 40960 x 2048 pixels.
    wide = nat.image(tmp_path / "wide.png", (400, 20), fmt="PNG")
    rc, err = _explain(capsys, wide, tmp_path / "o.png", "--size", "2048")
    _one_line_error(rc, err, "40960x2048", "smaller --size")


def test_explain_out_directory_refused(tmp_path, capsys) -> None:
    photo = nat.image(tmp_path / "p.jpg", (40, 30))
    (tmp_path / "outdir").mkdir()
    rc, err = _explain(capsys, photo, tmp_path / "outdir")
    _one_line_error(rc, err, "is a directory", str(tmp_path / "outdir"))
    assert list((tmp_path / "outdir").iterdir()) == []


def test_explain_reads_16bit_and_exif_like_the_loaders(tmp_path, capsys) -> None:
    from consistentzoo.saliency.cli import _read_image

    deep = nat.png16(tmp_path / "deep.png", 32896, (40, 30))
    rc, _ = _explain(capsys, deep, tmp_path / "deep_out.png", "--random-weights")
    assert rc == 0 and (tmp_path / "deep_out.png").is_file()
    assert np.all(np.asarray(_read_image(deep)) == 128)  # the image explain draws on: grey (it was pure white before)
    rot = nat.exif_jpeg(tmp_path / "rot.jpg", (40, 30), orientation=6)
    rc, _ = _explain(capsys, rot, tmp_path / "rot_out.png", "--random-weights")
    assert rc == 0 and _read_image(rot).size == (30, 40)
