"""Model cards: generated from the tag metadata and a metrics JSON, parsed back by huggingface_hub, regenerated."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from PIL import Image

from consistentzoo.hub import CARD_IMAGE_NAME, add_hub_parsers, build_card, load_metrics, metric_key, write_card
from consistentzoo.models import get_weights

REC = get_weights("resnet18_gc.in1k")


def _rows(top1: float = 66.5) -> dict:
    """A metrics JSON in the evaluator's schema, with a row of another model that must be ignored."""
    base = {"model": "resnet18_gc", "tag": "in1k", "dataset": "imagenet-1k", "split": "validation"}
    return {
        "schema_version": 1,
        "results": [
            {**base, "method": None, "metric": "top1", "value": top1, "std": 0.3, "n": 50000, "skipped": {}},
            {**base, "method": "gradcam", "metric": "pointing_game", "value": 81.0, "std": None, "n": 49000},
            {**base, "method": "hirescam", "metric": "content_heatmap", "value": 60.5, "n": 49000},
            {**base, "model": "resnet18_ce", "method": None, "metric": "top1", "value": 1.0},
        ],
    }


def _png(path: Path) -> Path:
    Image.new("RGB", (8, 4), (200, 30, 30)).save(path)
    return path


def test_card_front_matter_and_body_come_from_metadata_and_metrics(tmp_path: Path) -> None:
    path = write_card(REC, tmp_path, _rows(), repo_id="zoo/resnet18_gc.in1k")
    card = ModelCard.load(path)
    data = card.data
    assert data.library_name == "timm" and data.license == REC.license and data.datasets == [REC.dataset]
    assert {"timm", "objective-gc", "grad-cam"} <= set(data.tags)
    results = {r.metric_type: r for r in data.eval_results}
    assert set(results) == {"top1", "pg", "ch_hirescam"}  # the other model's row is not this card's
    assert results["top1"].metric_value == 66.5 and results["top1"].dataset_split == "validation"
    assert results["pg"].metric_name == "pointing game"
    text = card.text
    # measured beside reported: the paper's 67.74 top-1 (GC Table 1) sits in the same row as ours
    top1_row = next(line for line in text.splitlines() if line.startswith("| top-1 accuracy"))
    assert "66.5 ± 0.3" in top1_row and "67.74 (AAAI 2021, Table 1" in top1_row
    spg_row = next(line for line in text.splitlines() if line.startswith("| stochastic pointing game"))
    assert "| — |" in spg_row  # reported but not measured
    assert "Explainable Models with Consistent Interpretations" in text  # the method's paper
    assert REC.recipe_command in text
    assert 'timm.create_model("hf-hub:zoo/resnet18_gc.in1k", pretrained=True)' in text
    assert 'torch.hub.load("consistentzoo/consistentzoo", "resnet18_gc", pretrained=True' in text
    assert 'consistentzoo.create_model("resnet18_gc.in1k", pretrained=True)' in text
    assert "Figure not produced yet" in text


def test_rerunning_updates_the_card_and_keeps_the_figure(tmp_path: Path) -> None:
    write_card(REC, tmp_path, _rows(66.5), image=_png(tmp_path / "grid.png"))
    assert (tmp_path / CARD_IMAGE_NAME).is_file()
    path = write_card(REC, tmp_path, _rows(68.25))  # new metrics, no figure given: the earlier figure stays
    card = ModelCard.load(path)
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["top1"] == 68.25
    assert "66.5" not in card.text
    assert f"]({CARD_IMAGE_NAME})" in card.text and "beside the cross-entropy baseline `resnet18_ce.in1k`" in card.text


def test_card_without_measurements_and_without_paper_numbers() -> None:
    rec = get_weights("resnet18_gmp_ce.in1k")
    card = build_card(rec)
    assert card.data.eval_results is None and "Nothing has been measured" in card.text
    assert "It is the baseline of" in card.text and "global max pooling" in card.text
    # a flat {key: value} mapping (ZooWeights.measured style) is accepted too
    card = build_card(rec, {"top1": 12.5})
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("top1", 12.5)]


def test_metric_keys_line_up_with_the_papers_keys() -> None:
    assert metric_key("pointing_game", "gradcam") == "pg"
    assert metric_key("content_heatmap", "hirescam") == "ch_hirescam"
    assert metric_key("insertion_auc", "gradcam++") == "insertion_auc_gradcampp"
    assert metric_key("top1", "gradcam") == "top1"
    reported = {r.metric for rec in [REC] for r in rec.reported}
    assert {"top1", "pg", "ch"} <= reported


@pytest.mark.parametrize(
    ("metrics", "match"),
    [
        ({"schema_version": 2, "results": []}, "schema_version 2"),
        ({"results": [{"metric": "top1"}]}, "needs 'metric' and 'value'"),
        ({"results": [{"metric": "top1", "value": float("nan")}]}, "not a finite number"),
        ({"results": [{"model": "alexnet_gc", "metric": "top1", "value": 1.0}]}, r"\['alexnet_gc'\], none for"),
        (42, "expected a metrics JSON object or list"),
    ],
)
def test_bad_metrics_are_refused(metrics: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_metrics(metrics, REC)  # type: ignore[arg-type]


def test_non_png_figure_is_refused(tmp_path: Path) -> None:
    (tmp_path / "grid.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a png")
    with pytest.raises(ValueError, match="not a PNG"):
        write_card(REC, tmp_path / "card", image=tmp_path / "grid.jpg")
    assert not (tmp_path / "card" / "README.md").exists()


def test_card_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="consistentzoo")
    add_hub_parsers(parser.add_subparsers(dest="command", required=True))
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(_rows()))
    args = parser.parse_args(["card", "resnet18_gc.in1k", "--metrics", str(metrics), "--out-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "README.md")
    assert ModelCard.load(tmp_path / "README.md").data.model_name == "resnet18_gc.in1k"
    with pytest.raises(SystemExit):
        parser.parse_args(["card", "--metrics", str(metrics)]).func(parser.parse_args(["card"]))
