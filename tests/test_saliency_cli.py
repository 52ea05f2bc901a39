"""The ``explain`` subcommand's functions and the overlay helper write a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from consistentzoo import saliency
from consistentzoo.saliency import cli as saliency_cli
from consistentzoo.saliency.cli import add_explain_parser, run_explain


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consistentzoo")
    add_explain_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_overlay_png(tmp_path: Path) -> None:
    image = torch.rand(3, 40, 60)
    path = saliency.save_overlay(tmp_path / "sub" / "o.png", image, torch.rand(5, 7))
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (60, 40) and png.mode == "RGB"
    zero = saliency.overlay(np.zeros((8, 8, 3), np.uint8), torch.zeros(2, 2))
    assert zero.size == (8, 8)
    with pytest.raises(ValueError, match="alpha"):
        saliency.overlay(image, torch.rand(5, 7), alpha=2.0)


def test_explain_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "overlay.png"
    args = _parser().parse_args(
        ["explain", str(photo), "--model", "resnet18_gc", "--num-classes", "5", "--size", "64", "--out", str(out)]
        + ["--random-weights"]
    )
    assert args.func is run_explain
    assert run_explain(args) == 0
    with Image.open(out) as png:  # the overlay with a title above and a colour bar beside it
        assert png.format == "PNG" and png.width > 80 and png.height > 48
    assert "resnet18_gc: predicted class" in capsys.readouterr().out
    args = _parser().parse_args(
        [
            "explain",
            str(photo),
            "--model",
            "alexnet_gc",
            "--num-classes",
            "5",
            "--size",
            "64",
            "--method",
            "guided_backprop",
            "--target",
            "2",
            "--out",
            str(out),
            "--random-weights",
        ]
    )
    assert run_explain(args) == 0
    bad = _parser().parse_args(
        ["explain", str(photo), "--model", "resnet18_gc", "--num-classes", "5", "--target", "9", "--out", str(out)]
        + ["--random-weights"]
    )
    with pytest.raises(saliency.InvalidTargetError):
        run_explain(bad)


def _square_photo(tmp_path: Path, side: int = 64) -> Path:
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(photo)
    return photo


def test_explain_weight_tag_loads_its_weights_by_default(tmp_path: Path, capsys, monkeypatch) -> None:
    import consistentzoo
    from consistentzoo.cli import main

    titles: list[str] = []
    real = saliency_cli.save_figure
    monkeypatch.setattr(saliency_cli, "save_figure", lambda *a, **k: titles.append(a[3]) or real(*a, **k))
    tag = "resnet18_cgc.fashion_scenes"
    photo, out = _square_photo(tmp_path), tmp_path / "o.png"
    assert main(["explain", str(photo), "--model", tag, "--size", "64", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    # oracle: the committed weights through create_model, the image as a normalised tensor (64 px: no resize)
    model = consistentzoo.create_model(tag, pretrained=True).eval()
    x = torch.from_numpy(np.asarray(Image.open(photo), dtype=np.float32) / 255).permute(2, 0, 1)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        probs = model(x[None]).softmax(1)[0]
    cls = int(probs.argmax())
    name = consistentzoo.get_weights(tag).label_names[cls]
    assert f"predicted class {cls} '{name}', probability {float(probs[cls]):.3f}" in captured.out
    assert "RANDOM" not in captured.err and "RANDOM" not in titles[0]
    assert tag in titles[0] and f"'{name}', p = {float(probs[cls]):.3f}" in titles[0]
    # the peak explained: row/column of the map grid and the pixel it covers
    maps = saliency.compute("gradcam", model, x[None], targets=torch.tensor([cls]))
    h, w = maps.shape[1:]
    row, col = divmod(int(maps[0].flatten().argmax()), w)
    assert f"peak of the {h}x{w} map at row {row}, column {col} (0-based)" in captured.out
    assert f"about pixel x={(col + 0.5) * 64 / w:.0f}, y={(row + 0.5) * 64 / h:.0f} of the 64x64 image" in captured.out
    # the same weights from a weights folder (class names from the tag the folder records)
    folder = consistentzoo.models.metadata.REPO_ROOT / "weights" / tag
    assert main(["explain", str(photo), "--model", str(folder), "--size", "64", "--out", str(out)]) == 0
    assert f"predicted class {cls} '{name}', probability {float(probs[cls]):.3f}" in capsys.readouterr().out


def test_explain_random_weights_only_when_asked(tmp_path: Path, capsys, monkeypatch) -> None:
    from consistentzoo.cli import main

    titles: list[str] = []
    real = saliency_cli.save_figure
    monkeypatch.setattr(saliency_cli, "save_figure", lambda *a, **k: titles.append(a[3]) or real(*a, **k))
    photo, out = _square_photo(tmp_path, 32), tmp_path / "o.png"
    # a zoo name without published weights: an error that says how to get weights or ask for random ones
    assert main(["explain", str(photo), "--model", "resnet18_guided", "--size", "32", "--out", str(out)]) == 2
    assert "no published weights" in (err := capsys.readouterr().err) and "--random-weights" in err
    assert not out.exists() and not titles
    for flags in (["--random-weights"], ["--pretrained", "false"]):
        argv = ["explain", str(photo), "--model", "resnet18_gc", "--num-classes", "3", "--size", "32", "--out"]
        assert main([*argv, str(out), *flags]) == 0
        assert "warning: RANDOM WEIGHTS" in capsys.readouterr().err
        assert titles.pop().startswith("RANDOM WEIGHTS") and out.is_file()
