"""Fashion-MNIST scenes end to end: build the scenes, train, evaluate, draw, write the cards — on 2 CPU cores.

The README's main job. A real Fashion-MNIST item on a textured background whose style predicts the class in 90 % of
the training scenes and is unrelated to it in the test scenes (``consistentzoo.data.fashion_scenes``): a model can
lean on the context, and the explanation metrics say whether it does.

    python recipes/fashion_scenes.py                 # quick: CE then CGC (seed 0), a few minutes; prints the table
    python recipes/fashion_scenes.py --smoke         # the same job in miniature (CI): a few steps, a few scenes
    python recipes/fashion_scenes.py --full          # every recipes/configs/*.fashion_scenes.yaml; CE/GC/CGC x 3 seeds

Each stage skips work whose output already exists, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datasets
import torch

import consistentzoo
from consistentzoo import data, saliency
from consistentzoo.hub.card import write_card
from consistentzoo.metrics.evaluate import EvalConfig, evaluate
from consistentzoo.metrics.report import write_json
from consistentzoo.models import get_weights, save_pretrained
from consistentzoo.models.weights import sha256sum
from consistentzoo.training.config import load_config
from consistentzoo.training.loop import Hardware, train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "configs"
SOURCE = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
METHOD = "hirescam"  # the element-wise Grad-CAM both GC papers train and evaluate with
METRICS = ["top1", "pg", "spg", "ch", "nqh", "insertion", "deletion", "cgc", "ssim"]
# 128 px scenes: every protocol size is the training size; the papers' 15 px PG radius at 448 px scales to 4 px
EVAL = EvalConfig(
    batch_size=32, loc_size=128, faith_size=128, cls_size=128, cls_crop=None, cgc_size=128, cgc_crop=128,
    cgc_batch=32, nqh_size=128, tolerance=4.0, spg_seeds=3,
)  # fmt: skip
FULL = {  # tag -> seeds; consistency models start from the CE model of the same architecture and seed
    "resnet18_ce": (0, 1, 2), "resnet18_gc": (0, 1, 2), "resnet18_cgc": (0, 1, 2),
    "resnet18_ssim": (0,), "resnet18_guided": (0,),
    "resnet18_gmp_ce": (0,), "resnet18_gmp_gc": (0,), "alexnet_ce": (0,), "alexnet_gc": (0,),
}  # fmt: skip
QUICK = {"resnet18_ce": (0,), "resnet18_cgc": (0,)}
# (train scenes, test scenes generated; scenes the CE model trains on, the others a third; test scenes evaluated)
SIZES = {"full": (12000, 2000, None, 400), "quick": (960, 96, 960, 96), "smoke": (96, 16, 96, 16)}
HEADLINE = ("resnet18_ce", "resnet18_gc", "resnet18_cgc")  # the weights committed to the repository

_logger = logging.getLogger("fashion_scenes")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the whole fashion_scenes zoo (about an hour on 2 cores)")
    size.add_argument("--smoke", action="store_true", help="the quick job in miniature, seconds of training (CI)")
    p.add_argument("--out", type=Path, default=None, help="runs folder (default runs/fashion_scenes[_quick|_smoke])")
    p.add_argument("--train-samples", type=int, default=None,
                   help="scenes the CE model trains on, a third of it the others (quick 960, smoke 96)")  # fmt: skip
    p.add_argument("--eval-samples", type=int, default=None, help="test scenes evaluated (quick 96, full 400)")
    p.add_argument("--scenes", type=int, nargs=2, default=None, metavar=("TRAIN", "TEST"),
                   help="scenes generated per split (default: full 12000 2000, quick 960 96, smoke 96 16)")  # fmt: skip
    p.add_argument(
        "--cards", type=Path, default=None, help="model card folder (default: <out>/cards; --full: model_cards)"
    )
    p.add_argument("--publish", action="store_true", help="copy the headline seed-0 weights (fp16) to weights/<tag>/")
    return p.parse_args()


@contextmanager
def stage(name: str, timings: dict[str, dict[str, float]]) -> Iterator[None]:
    """Record the wall-clock and CPU seconds (this process and its finished workers) of one stage of the job."""

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    wall, used = time.perf_counter(), cpu()
    yield
    t = timings.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
    t["wall_s"] += time.perf_counter() - wall
    t["cpu_s"] += cpu() - used
    _logger.info("%s: %.0f s (%.0f CPU s)", name, t["wall_s"], t["cpu_s"])


def scenes(split: str, n: int) -> datasets.Dataset:
    return data.load("fashion_scenes", split, SOURCE, size=128, num_samples=n)


def run_name(zoo: str) -> str:
    return f"{zoo}.fashion_scenes"


def train_one(zoo: str, seed: int, out: Path, train_samples: int | None, train_scenes: int) -> Path:
    """Train one model with its recipe config; a folder that already holds weights is kept as it is."""
    folder = out / f"seed{seed}" / run_name(zoo)
    if (folder / "model.safetensors").is_file():
        return folder
    overrides = [f"train.seed={seed}", f"data.load_kwargs.num_samples={train_scenes}"]
    cfg_path = CONFIGS / f"{run_name(zoo)}.yaml"
    cfg = load_config(cfg_path)
    if cfg.model.init:  # start from the CE model trained here with the same seed, not from published weights
        overrides.append(f"model.init={out / f'seed{seed}' / cfg.model.init}")
    if train_samples:
        overrides.append(f"train.max_train_samples={train_samples // (1 if cfg.objective.name == 'ce' else 3)}")
    cfg = load_config(cfg_path, overrides)
    _logger.info("training %s seed %d (%s)", zoo, seed, cfg.objective.name)
    train(cfg, Hardware(output_dir=folder, cpu=True, num_workers=2, log_with=None))
    return folder


def evaluate_one(zoo: str, folder: Path, test: datasets.Dataset, test_context: datasets.Dataset) -> list[dict]:
    """Evaluation rows of one trained model: the metrics on out-of-context scenes, accuracy in context too."""
    path = folder / "eval.json"
    if path.is_file():
        return json.loads(path.read_text())["results"]
    model = consistentzoo.create_model(zoo, pretrained=folder)
    common = dict(config=EVAL, model_name=zoo, tag="fashion_scenes", dataset_name="fashion_scenes")
    rows = evaluate(model, test, [METHOD], METRICS, split="test", **common)
    rows += evaluate(model, test_context, [], ["top1"], split="test_context", **common)
    write_json(rows, path, config={"protocol": "recipes/fashion_scenes.py", "eval_samples": len(test)})
    return rows


def summarise(results: dict[str, list[list[dict]]]) -> list[dict]:
    """Mean ± std over seeds of every (model, split, metric): one row each."""
    table = []
    for zoo, runs in results.items():
        values: dict[tuple[str, str], list[float]] = defaultdict(list)
        for rows in runs:
            for r in rows:
                values[(r["split"], r["metric"])].append(r["value"])
        for (split, metric), vals in values.items():
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)) if len(vals) > 1 else None
            table.append(dict(model=zoo, split=split, metric=metric, mean=mean, std=std, seeds=len(vals)))
    return table


def markdown(table: list[dict]) -> str:
    """Models as columns, metrics as rows (mean ± std over seeds)."""
    models = list(dict.fromkeys(r["model"] for r in table))
    keys = list(dict.fromkeys((r["split"], r["metric"]) for r in table))
    cell = {(r["model"], r["split"], r["metric"]): r for r in table}
    lines = ["| metric (split) | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for split, metric in keys:
        row = []
        for m in models:
            r = cell.get((m, split, metric))
            row.append("" if r is None else f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if r["std"] is not None else ""))
        lines.append(f"| {metric} ({split}) | " + " | ".join(row) + " |")
    seeds = ", ".join(f"{m} {max(r['seeds'] for r in table if r['model'] == m)}" for m in models)
    return "\n".join(lines) + f"\n\nSeeds per model: {seeds}. Lower is better for nqh, deletion and cgc.\n"


def overlay_grid(path: Path, folders: dict[str, Path], test: datasets.Dataset, n: int = 6) -> Path:
    """Rows of test scenes; columns: the scene with its box, then each model's Grad-CAM (element-wise) overlay."""
    from PIL import Image, ImageDraw
    from torchvision.transforms.v2.functional import normalize, pil_to_tensor

    rows = [test[i] for i in range(n)]
    images = torch.stack([pil_to_tensor(r["image"].convert("RGB")).float() / 255 for r in rows])
    labels = torch.tensor([r["label"] for r in rows])
    tiles = []
    for r in rows:
        im = r["image"].convert("RGB")
        ImageDraw.Draw(im).rectangle(r["boxes"][0], outline=(255, 255, 255))
        tiles.append([im])
    for zoo, folder in folders.items():
        model = consistentzoo.create_model(zoo, pretrained=folder).eval()
        cfg = model.pretrained_cfg
        maps = saliency.compute(METHOD, model, normalize(images, cfg["mean"], cfg["std"]), targets=labels)
        for row, r, m in zip(tiles, rows, maps, strict=True):
            row.append(saliency.overlay(r["image"], m))
    side, head = rows[0]["image"].size[0], 16
    grid = Image.new("RGB", (side * len(tiles[0]), head + side * n), "white")
    draw = ImageDraw.Draw(grid)
    for j, title in enumerate(["scene + box", *folders]):
        draw.text((j * side + 3, 2), title, fill=(0, 0, 0))
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            grid.paste(tile.resize((side, side)), (j * side, head + i * side))
    grid.save(path)
    _logger.info("overlay grid (columns: scene, %s) -> %s", ", ".join(folders), path)
    return path


def publish(folder: Path, zoo: str) -> str:
    """Copy seed-0 weights as fp16 into weights/<tag>/ and return their sha256 (paste it into the tag table)."""
    target = REPO / "weights" / run_name(zoo)
    model = consistentzoo.create_model(zoo, pretrained=folder)
    save_pretrained(model, target, half=True, zoo={"tag": "fashion_scenes"})
    shutil.copy(folder / "config.yaml", target / "config.yaml")
    return sha256sum(target / "model.safetensors")


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    mode = "full" if args.full else "smoke" if args.smoke else "quick"
    plan = FULL if args.full else QUICK
    out = args.out or REPO / "runs" / ("fashion_scenes" if args.full else f"fashion_scenes_{mode}")
    train_scenes, test_scenes, train_samples, eval_samples = SIZES[mode]
    train_samples = args.train_samples or train_samples
    eval_samples = args.eval_samples or eval_samples
    train_scenes, test_scenes = args.scenes or (max(train_scenes, train_samples or 0), max(test_scenes, eval_samples))
    cards = args.cards or (REPO / "model_cards" if args.full else out / "cards")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, dict[str, float]] = {}

    # Scenes first: every later stage reads the same cached Arrow files.
    with stage("scenes", timings):
        test = scenes("test", test_scenes).select(range(eval_samples))
        test_context = scenes("test_context", test_scenes).select(range(eval_samples))
        data.fashion_scenes.save_examples(out / "scenes.png", "train", per_class=3, source=SOURCE, size=128, upscale=1)

    # Train in plan order (CE before the models that start from it), then evaluate each run.
    results: dict[str, list[list[dict]]] = defaultdict(list)
    folders: dict[str, dict[int, Path]] = defaultdict(dict)
    for zoo, seeds in plan.items():
        for seed in seeds:
            with stage(f"train {zoo} seed {seed}", timings):
                folders[zoo][seed] = train_one(zoo, seed, out, train_samples, train_scenes)
            with stage(f"evaluate {zoo} seed {seed}", timings):
                results[zoo].append(evaluate_one(zoo, folders[zoo][seed], test, test_context))

    # Aggregate over seeds, draw the maps, write one card per tag from its seed-0 evaluation.
    with stage("figures and cards", timings):
        table = summarise(results)
        text = markdown(table)
        (out / "results.md").write_text(text)
        overlay_grid(out / "gradcam_overlays.png", {z: f[0] for z, f in folders.items()}, test)
        for zoo, f in folders.items():
            baseline = zoo.rsplit("_", 1)[0] + "_ce"  # each card compares with the CE model it started from
            pair = {m: folders[m][0] for m in dict.fromkeys((baseline, zoo)) if m in folders}
            figure = overlay_grid(out / f"overlays_{zoo}.png", pair, test)
            card = write_card(get_weights(run_name(zoo)), cards / run_name(zoo), f[0] / "eval.json", image=figure)
            shutil.copy(f[0] / "eval.json", card.parent / "metrics.json")  # what the card's numbers were read from
    summary = {"mode": mode, "eval_samples": eval_samples, "rows": table, "timings": timings}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    if args.publish:
        for zoo in HEADLINE:
            print(f"{run_name(zoo)}: sha256 {publish(folders[zoo][0], zoo)}")
    print(f"\nFashion-MNIST scenes, {eval_samples} test scenes, {METHOD} maps ({out}):\n\n{text}")
    spent = ", ".join(f"{name} {t['wall_s']:.0f} s" for name, t in timings.items())
    print(f"Wall time per stage (reused stages count ~0): {spent}.")
    print(
        "What this shows: how much each model's Grad-CAM sits on the item rather than on the background that "
        "predicted the class during training, after a few CPU-minutes of training. What it cannot show: anything "
        "about ImageNet-scale training; differences within one std over seeds are not effects."
    )


if __name__ == "__main__":
    main(parse_args())
