"""The evaluator end to end on real COCO photos (and a tiny single-label noise dataset) with tiny random-weight
models (CPU, 64 px, 8 images)."""

from __future__ import annotations

import json
import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
from real_data import COCO128 as COCO
from real_data import missing

N_IMAGES = 8
SIZE = 64
# small inputs everywhere; batch 4 so that 8 images make two chunks (one per process in the two-process test)
SMALL = dict(
    batch_size=4,
    loc_size=SIZE,
    faith_size=SIZE,
    cls_size=SIZE,
    cls_crop=SIZE,
    cgc_size=SIZE,
    cgc_crop=SIZE,
    spg_seeds=2,
    progress=False,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf_cache")


@pytest.fixture(scope="module")
def coco(cache: Path):
    """The first images of COCO128 in the common schema (with instance masks)."""
    if not (COCO / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(missing("coco128"))
    pytest.importorskip("pycocotools")
    from consistentzoo.data import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader's DataQualityWarning about the 2 images without annotations
        ds = load("coco", "train2017", source=COCO, cache_dir=cache)
    return ds.select(range(N_IMAGES))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    import consistentzoo

    torch.manual_seed(0)
    return consistentzoo.create_model("resnet18", num_classes=80).eval()


def _cfg(**kw):
    from consistentzoo.metrics.evaluate import EvalConfig

    return EvalConfig(**{**SMALL, **kw})


METRICS_ONE = ["pg", "spg", "ch", "f1", "cgc", "nqh", "ssim"]


@pytest.fixture(scope="module")
def one_process(coco, model) -> list[dict]:
    """Rows of a one-process run with gradcam (shared by the direct-call and the two-process checks)."""
    from consistentzoo.metrics.evaluate import evaluate

    return evaluate(model, coco, ["gradcam"], METRICS_ONE, config=_cfg())


def _by_key(rows: list[dict]) -> dict[tuple[str | None, str], dict]:
    return {(r["method"], r["metric"]): r for r in rows}


def test_cli_writes_json_and_markdown(tmp_path: Path, cache: Path, coco) -> None:
    from consistentzoo.hub.card import load_metrics
    from consistentzoo.metrics.cli import build_parser, run_evaluate
    from consistentzoo.models import get_weights

    out = tmp_path / "res" / "r.json"
    argv = (
        "--model resnet18_gc.coco --pretrained false --num-classes 80 --dataset coco --split train2017 "
        f"--source {COCO} --cache-dir {cache} --limit {N_IMAGES} --methods gradcam --metrics pg,spg ch f1 deletion "
        f"--out {out} --batch-size 4 --loc-size {SIZE} --faith-size {SIZE} --cls-size {SIZE} --cls-crop {SIZE} "
        "--spg-seeds 2 --no-progress --cpu"
    ).split()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run_evaluate(build_parser().parse_args(argv)) == 0

    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1
    assert doc["config"]["loc_size"] == SIZE and doc["config"]["processes"] == 1
    rows = doc["results"]
    assert [r["metric"] for r in rows] == ["pg", "spg", "ch", "f1_overall", "f1_perclass", "deletion_auc"]
    keys = {"model", "tag", "dataset", "split", "method", "metric", "value", "std", "n", "skipped"}
    for r in rows:  # the map metrics also say whether zero maps were misses, and how many there were
        assert set(r) == keys | ({"paired", "zero_maps"} if r["metric"] in ("pg", "spg", "ch") else set())
        assert (r["model"], r["tag"], r["dataset"], r["split"]) == ("resnet18_gc", None, "coco", "train2017")  # random
        assert isinstance(r["value"], float) and 0 <= r["value"] <= 1
    by = _by_key(rows)
    # localisation: one entry per (image, class) pair of the 8 images, each scored or skipped for a reason
    pairs = sum(int(sum(labels)) for labels in coco["labels"])
    for metric in ("pg", "spg", "ch"):
        r = by[("gradcam", metric)]
        assert set(r["skipped"]) == {"zero_map", "empty_mask"}
        assert r["n"] + sum(r["skipped"].values()) == pairs and r["zero_maps"] == r["skipped"]["zero_map"]
        assert r["n"] > 0
    assert by[("gradcam", "pg")]["skipped"] == by[("gradcam", "ch")]["skipped"]
    assert by[("gradcam", "spg")]["std"] is not None and by[("gradcam", "pg")]["std"] is None
    assert by[(None, "f1_overall")]["n"] == by[("gradcam", "deletion_auc")]["n"] == N_IMAGES

    md = out.with_suffix(".md").read_text().splitlines()
    assert md[0].startswith("| model | tag | dataset | split | method | metric | value | std | n | skipped |")
    assert len(md) == 2 + len(rows) and "| gradcam | pg |" in md[2]

    # the model card reads it
    measured = {m.key: m for m in load_metrics(out, get_weights("resnet18_gc.coco"))}
    assert measured["pg"].value == by[("gradcam", "pg")]["value"] and measured["pg"].n == by[("gradcam", "pg")]["n"]


def test_pg_ch_equal_direct_metric_calls(coco, model, one_process) -> None:
    """The evaluator's PG / CH are the metric functions on the protocol's maps, computed here independently."""
    from consistentzoo import saliency
    from consistentzoo.data import eval_transform, to_tv_tensors
    from consistentzoo.metrics import content_heatmap, pointing_game
    from consistentzoo.saliency import normalize_sum, upsample

    rows = _by_key(one_process)
    tf = eval_transform(SIZE)  # shorter side 64, ImageNet normalisation (the model's own)
    hits, masses, classes, zero = [], [], [], 0
    for row in coco:
        t = to_tv_tensors(row)
        h, w = t["image"].shape[-2:]
        cls = t["labels"].nonzero().flatten()
        masks = torch.stack([t["masks"][t["box_labels"] == c].any(0) for c in cls])
        x = tf(t["image"]).as_subclass(torch.Tensor)[None].expand(len(cls), -1, -1, -1)
        maps = normalize_sum(upsample(saliency.compute("gradcam", model, x, cls).detach(), (h, w)))
        pg, ch = pointing_game(maps, masks), content_heatmap(maps, masks)
        assert torch.equal(pg.index, ch.index)
        hits += pg.values.tolist()
        masses += ch.values.tolist()
        classes += cls[pg.index].tolist()
        zero += pg.n_skipped["zero_map"]
    per_class: dict[int, list[float]] = {}
    for c, v in zip(classes, hits, strict=True):
        per_class.setdefault(c, []).append(v)
    pg_value = sum(sum(v) / len(v) for v in per_class.values()) / len(per_class)

    assert rows[("gradcam", "pg")]["n"] == rows[("gradcam", "ch")]["n"] == len(hits)
    assert rows[("gradcam", "pg")]["skipped"] == {"empty_mask": 0, "zero_map": zero}
    assert rows[("gradcam", "pg")]["value"] == pytest.approx(pg_value, abs=1e-12)
    assert rows[("gradcam", "ch")]["value"] == pytest.approx(sum(masses) / len(masses), rel=1e-4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, weights: str, out: str, metrics: list[str]) -> None:
    """One process of a gloo group driven by Accelerate, as ``torchrun`` would start it."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    import datasets
    from accelerate import Accelerator

    import consistentzoo
    from consistentzoo.metrics.evaluate import EvalConfig, evaluate

    acc = Accelerator(cpu=True)
    assert acc.num_processes == world
    model = consistentzoo.create_model("resnet18", num_classes=80)
    model.load_state_dict(torch.load(weights, weights_only=True))
    rows = evaluate(
        model, datasets.load_from_disk(data), ["gradcam"], metrics, config=EvalConfig(**SMALL), accelerator=acc
    )
    Path(f"{out}.{rank}").write_text(json.dumps(rows))
    acc.wait_for_everyone()
    acc.end_training()


def test_two_processes_give_the_numbers_of_one(tmp_path: Path, coco, model, one_process) -> None:
    import torch.multiprocessing as mp

    metrics, one = METRICS_ONE, one_process
    data, weights, out = tmp_path / "ds", tmp_path / "w.pt", tmp_path / "rows.json"
    coco.save_to_disk(str(data))
    torch.save(model.state_dict(), weights)
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(weights), str(out), metrics), nprocs=2, join=True)
    for rank in (0, 1):
        two = json.loads(Path(f"{out}.{rank}").read_text())
        assert [(r["method"], r["metric"], r["n"], r["skipped"]) for r in two] == [
            (r["method"], r["metric"], r["n"], r["skipped"]) for r in one
        ]
        for a, b in zip(one, two, strict=True):
            assert b["value"] == pytest.approx(a["value"], rel=1e-5, abs=1e-7), a["metric"]
            assert (b["std"] is None) == (a["std"] is None)


def test_unknown_names_list_the_valid_ones(coco) -> None:
    from consistentzoo.metrics.evaluate import METRICS, UnknownMetricError, evaluate
    from consistentzoo.saliency import UnknownMethodError

    model = torch.nn.Linear(1, 1)  # never called: names are checked first
    with pytest.raises(UnknownMetricError) as err:
        evaluate(model, coco, ["gradcam"], ["pg", "pointinggame"])
    assert all(name in str(err.value) for name in METRICS)
    with pytest.raises(UnknownMethodError, match="Valid methods: .*gradcam.*hirescam"):
        evaluate(model, coco, ["gradcan"], ["pg"])
    with pytest.raises(ValueError, match="top1/top5 need a single-label dataset"):
        evaluate(model, coco, [], ["top1"])
    with pytest.raises(ValueError, match="need at least one saliency method"):
        evaluate(model, coco, [], ["ch"])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        _cfg(batch_size=0)
    with pytest.raises(ValueError, match="ssim_scale must satisfy"):
        _cfg(ssim_scale=(0.0, 1.0))


def test_cli_rejects_unknown_metric_before_loading(tmp_path: Path) -> None:
    from consistentzoo.metrics.cli import build_parser, run_evaluate
    from consistentzoo.metrics.evaluate import UnknownMetricError

    args = build_parser().parse_args(
        f"--model nosuchmodel --dataset coco --split val --metrics pg,xx --out {tmp_path / 'r.json'}".split()
    )
    with pytest.raises(UnknownMetricError, match="unknown metric 'xx'. Valid metrics: pg, spg, ch, insertion"):
        run_evaluate(args)


def test_report_writers_refuse_bad_rows(tmp_path: Path) -> None:
    from consistentzoo.metrics.report import markdown_table, write_json

    row = dict(model="m", tag=None, dataset="d", split="s", method=None, metric="top1", value=0.5, std=None, n=2)
    with pytest.raises(ValueError, match="lacks \\['skipped'\\]"):
        markdown_table([row])
    with pytest.raises(ValueError, match="Out of range float"):
        write_json([{**row, "skipped": {}, "value": float("nan")}], tmp_path / "x.json")
    assert "| m | - | d | s |  | top1 | 0.5000 |  | 2 | 0 |" in markdown_table([{**row, "skipped": {}}])  # no tag: -


# --- nqh and ssim on a tiny single-label dataset of noise images (no download) ---

TINY_CLASSES = 3


@pytest.fixture(scope="module")
def tiny():
    """8 noise images (64 px, two of them wider) of 3 classes, in the common schema."""
    import datasets
    import numpy as np
    from PIL import Image

    from consistentzoo.data.schema import make_features

    rng = np.random.default_rng(0)
    n = N_IMAGES
    images = [
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE + 16 * (i % 4 == 3), 3), dtype=np.uint8)) for i in range(n)
    ]
    cols = {
        "id": [str(i) for i in range(n)],
        "image": images,
        "label": [i % TINY_CLASSES for i in range(n)],
        "boxes": [[] for _ in range(n)],
        "box_labels": [[] for _ in range(n)],
    }
    return datasets.Dataset.from_dict(cols, features=make_features([f"c{k}" for k in range(TINY_CLASSES)]))


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    import consistentzoo

    torch.manual_seed(0)
    return consistentzoo.create_model("resnet18", num_classes=TINY_CLASSES).eval()


def test_nqh_equals_direct_metric_calls(tiny, tiny_model) -> None:
    """The evaluator's NQH is negative_quadrants_heatmap on composites rebuilt here from the sampler's draws."""
    from torchvision.transforms import v2

    from consistentzoo import saliency
    from consistentzoo.data import CompositeSampler, to_tv_tensors
    from consistentzoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from consistentzoo.metrics import negative_quadrants_heatmap
    from consistentzoo.metrics.evaluate import evaluate
    from consistentzoo.saliency import normalize_sum, upsample

    (row,) = evaluate(tiny_model, tiny, ["gradcam"], ["nqh"], config=_cfg())
    assert row["metric"] == "nqh" and 0 <= row["value"] <= 1

    sampler = CompositeSampler(tiny["label"], seed=0)
    resize = v2.Compose([v2.Resize(SIZE, antialias=True), v2.CenterCrop(SIZE)])
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def tile(i: int) -> torch.Tensor:
        return (resize(to_tv_tensors(tiny[i])["image"]).as_subclass(torch.Tensor).float() / 255 - mean) / std

    comps, targets, quadrants = [], [], []
    for i in range(len(tiny)):
        d = sampler.draw(i)
        assert all(tiny[j]["label"] != d.target for j in d.distractors)
        tiles = list(map(tile, d.distractors))
        tiles.insert(d.quadrant, tile(i))
        comps.append(torch.cat([torch.cat(tiles[:2], -1), torch.cat(tiles[2:], -1)], -2))
        targets.append(d.target)
        quadrants.append(d.quadrant)
    x = torch.stack(comps)
    assert x.shape[-2:] == (2 * SIZE, 2 * SIZE)
    maps = normalize_sum(upsample(saliency.compute("gradcam", tiny_model, x, torch.tensor(targets)), (2 * SIZE,) * 2))
    res = negative_quadrants_heatmap(maps.detach(), torch.tensor(quadrants))
    assert row["n"] == len(res.index) and row["skipped"] == {"no_class": 0, "zero_map": res.n_skipped["zero_map"]}
    assert row["value"] == pytest.approx(res.values.mean().item(), rel=1e-4)


def test_ssim_identity_is_one(tiny, tiny_model) -> None:
    from consistentzoo.metrics.evaluate import evaluate

    rows = evaluate(tiny_model, tiny, ["gradcam"], ["ssim"], config=_cfg(ssim_scale=(1.0, 1.0), ssim_flip_p=0.0))
    (row,) = rows
    assert row["n"] + sum(row["skipped"].values()) == N_IMAGES and row["n"] > 0
    assert row["value"] == pytest.approx(1.0, abs=1e-6)
    # the default crop + flip, and the full image without a crop (two input shapes in a chunk)
    for cfg in (_cfg(), _cfg(cls_crop=None)):
        (row,) = evaluate(tiny_model, tiny, ["gradcam"], ["ssim"], config=cfg)
        assert row["metric"] == "ssim" and -1 <= row["value"] <= 1 and row["value"] < 1
        assert row["n"] + sum(row["skipped"].values()) == N_IMAGES


def test_warp_back_inverts_replay() -> None:
    from consistentzoo.metrics.evaluate import _warp_back
    from consistentzoo.transforms import CropFlipParams, replay

    ramp = 0.3 * torch.arange(32.0)[:, None] + 0.7 * torch.arange(32.0)[None, :]
    maps = ramp.expand(2, -1, -1).contiguous()
    # sample 0: crop rows 8..23, cols 4..27, flipped; sample 1: the full image, flipped
    params = CropFlipParams.from_pixels(
        torch.tensor([8, 0]),
        torch.tensor([4, 0]),
        torch.tensor([16, 32]),
        torch.tensor([24, 32]),
        torch.tensor([True, True]),
        (32, 32),
    )
    back, valid = _warp_back(replay(maps, params), params)
    assert valid[1].all() and torch.equal(back[1], maps[1])
    box = torch.zeros(32, 32, dtype=torch.bool)
    box[8:24, 4:28] = True
    assert torch.equal(valid[0], box) and (back[0][~box] == 0).all()
    assert (back[0] - maps[0])[9:23, 5:27].abs().max() < 0.02  # resampling error only, away from the box edge


def test_metrics_on_one_input_share_its_forward_pass(tiny, tiny_model, monkeypatch) -> None:
    """top-1, the predicted class and the SSIM metric's maps of the untransformed input come from one forward pass per
    chunk and input shape; only the crop + flip view needs a pass of its own. Values equal separate runs."""
    from consistentzoo.metrics.evaluate import evaluate

    cfg = _cfg(cls_crop=None)  # classification and SSIM inputs: the resized image, as localisation's
    separate = evaluate(tiny_model, tiny, ["hirescam"], ["top1"], config=cfg)
    separate += evaluate(tiny_model, tiny, ["hirescam"], ["ssim"], config=cfg)
    calls = []
    real = tiny_model.forward_features
    monkeypatch.setattr(tiny_model, "forward_features", lambda x: calls.append(x.shape[0]) or real(x))
    rows = evaluate(tiny_model, tiny, ["hirescam"], ["top1", "ssim"], config=cfg)
    # 2 chunks of 4 images, each with two input shapes (the wide image): 2 x 2 shared passes + 2 x 2 transformed
    assert len(calls) == 8 and sum(calls) == 2 * N_IMAGES
    assert [(r["metric"], r["value"], r["n"]) for r in rows] == [(r["metric"], r["value"], r["n"]) for r in separate]


# --- paired mode: an all-zero map is a miss, not a skipped pair ---


@pytest.fixture(scope="module")
def boxed():
    """8 noise images (64 px) of 3 classes, each with one box of its class."""
    import datasets
    import numpy as np
    from PIL import Image

    from consistentzoo.data.schema import make_features

    rng = np.random.default_rng(1)
    n = N_IMAGES
    cols = {
        "id": [str(i) for i in range(n)],
        "image": [Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(n)],
        "label": [i % TINY_CLASSES for i in range(n)],
        "boxes": [[[8.0, 8.0, 40.0, 40.0]] for _ in range(n)],
        "box_labels": [[i % TINY_CLASSES] for i in range(n)],
    }
    return datasets.Dataset.from_dict(cols, features=make_features([f"c{k}" for k in range(TINY_CLASSES)]))


@pytest.fixture(scope="module")
def blind_model() -> torch.nn.Module:
    """A random ResNet-18 whose class 0 has a zero classifier row, so every map of class 0 is all zero, and whose
    other rows are positive, so that their maps (ReLU of positive weights times non-negative features) never are."""
    import consistentzoo

    torch.manual_seed(0)
    model = consistentzoo.create_model("resnet18", num_classes=TINY_CLASSES).eval()
    with torch.no_grad():
        model.fc.weight.copy_(torch.arange(TINY_CLASSES, dtype=torch.float32)[:, None] * 0.01)
        model.fc.bias.zero_()
    return model


def test_paired_mode_scores_zero_maps_as_misses(tmp_path: Path, boxed, blind_model) -> None:
    """Skipping drops the class-0 images; paired mode scores them (PG/SPG/CH 0, NQH 1) on the same images."""
    from consistentzoo.metrics.evaluate import evaluate
    from consistentzoo.metrics.report import markdown_table, write_json

    metrics = ["pg", "spg", "ch", "nqh", "top1"]
    skip = _by_key(evaluate(blind_model, boxed, ["hirescam"], metrics, config=_cfg()))
    paired = _by_key(evaluate(blind_model, boxed, ["hirescam"], metrics, config=_cfg(paired=True)))
    zero = sum(1 for label in boxed["label"] if label == 0)  # images 0, 3, 6
    n = len(boxed)
    for metric in ("pg", "spg", "ch"):
        s, p = skip[("hirescam", metric)], paired[("hirescam", metric)]
        expected = (n - zero, {"zero_map": zero, "empty_mask": 0}, zero, False)
        assert (s["n"], s["skipped"], s["zero_maps"], s["paired"]) == expected
        assert (p["n"], p["skipped"], p["zero_maps"], p["paired"]) == (n, {"empty_mask": 0}, zero, True)
    # CH and SPG: the same sum over the scored images, now divided by all of them
    for metric in ("spg", "ch"):
        expected = skip[("hirescam", metric)]["value"] * (n - zero) / n
        assert paired[("hirescam", metric)]["value"] == pytest.approx(expected, rel=1e-6)
    # PG is a mean of per-class hit rates: class 0 (all misses) now counts with rate 0
    assert paired[("hirescam", "pg")]["value"] == pytest.approx(skip[("hirescam", "pg")]["value"] * 2 / 3, rel=1e-9)
    # NQH: a zero map has no mass on the real image, 1
    s, p = skip[("hirescam", "nqh")], paired[("hirescam", "nqh")]
    assert s["n"] == n - zero and p["n"] == n and p["zero_maps"] == s["zero_maps"] == zero
    assert "zero_map" not in p["skipped"] and s["skipped"]["zero_map"] == zero
    expected = (s["value"] * s["n"] + zero) / n
    assert p["value"] == pytest.approx(expected, rel=1e-6)
    # metrics on no map carry no zero-map count; the JSON keeps the counts
    assert "zero_maps" not in paired[(None, "top1")]
    assert f"| 0; all-zero maps scored as misses: {zero} |" in markdown_table([paired[("hirescam", "pg")]])
    doc = json.loads(write_json(list(paired.values()), tmp_path / "r.json").read_text())
    assert {(r["metric"], r.get("zero_maps"), r.get("paired")) for r in doc["results"]} >= {("pg", zero, True)}
