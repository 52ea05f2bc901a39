"""The ``explain`` subcommand's functions and the overlay helper write a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from consistentzoo import saliency
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
    )
    assert args.func is run_explain
    assert run_explain(args) == 0
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size == (80, 48)
    assert "gradcam for class" in capsys.readouterr().out
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
        ]
    )
    assert run_explain(args) == 0
    bad = _parser().parse_args(
        ["explain", str(photo), "--model", "resnet18_gc", "--num-classes", "5", "--target", "9", "--out", str(out)]
    )
    with pytest.raises(saliency.InvalidTargetError):
        run_explain(bad)
