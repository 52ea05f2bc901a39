"""Fashion-MNIST scenes end to end: build the scenes, train, evaluate, compare with controls, draw, write the cards.

The README's main job, on 2 CPU cores. A real Fashion-MNIST item on a textured background whose *style* can predict
the class (``consistentzoo.data.fashion_scenes``). Two settings, named by how often the style gives the class away
in the training scenes (``data.load_kwargs.context`` of every config):

- ``shortcut-free`` (context 0.1: the style is uniform, independent of the class): the item is the only reliable
  cue. The main benchmark; tags ``<zoo>.fashion_scenes``. Its in-distribution test split is ``test`` (context 0.1).
- ``spurious-context`` (context 0.9): the GC paper's "hand holding the fish" stress test; tags
  ``<zoo>.fashion_scenes_spurious``. In distribution: ``test_context`` (0.9); out of it: ``test`` (0.1).

Every consistency model is fine-tuned from the CE start of its seed, beside a **CE-only control** fine-tuned from the
same start for the same steps with the same schedule (tags ``..._control``), so that an effect is the objective's and
not the extra steps'. Map metrics are scored on the in-distribution split in the evaluator's paired mode (an all-zero
map is a miss, so every model is scored on the same images), with the count of all-zero maps beside them.

    python recipes/fashion_scenes.py          # quick, shortcut-free: CE start, control and CGC (seed 0), minutes
    python recipes/fashion_scenes.py --smoke  # the same job in miniature (CI)
    python recipes/fashion_scenes.py --full   # both settings, 3 seeds of CE/control/GC/CGC, the others, a λ sweep

Each stage skips work whose output already exists, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch

import consistentzoo
from consistentzoo import data, saliency
from consistentzoo.hub.card import write_card
from consistentzoo.metrics import effect, seed_mean_std, verdict
from consistentzoo.metrics.evaluate import EvalConfig, config_dict, evaluate
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
# 128 px scenes: every protocol size is the training size; the papers' 15 px PG radius at 448 px scales to 4 px.
# Paired: an all-zero map counts as a miss, so every model is scored on the same (image, class) pairs.
EVAL = EvalConfig(
    batch_size=32, loc_size=128, faith_size=128, cls_size=128, cls_crop=None, cgc_size=128, cgc_crop=128,
    cgc_batch=32, nqh_size=128, tolerance=4.0, spg_seeds=3, paired=True,
)  # fmt: skip
EVAL_VERSION = 2  # bump when the evaluation protocol changes: older eval.json files are then measured again


@dataclass(frozen=True)
class Setting:
    """A training distribution: the share of scenes whose background style is the item's class."""

    name: str
    tag: str  # the dataset tag of its weights
    context: float  # as in its configs' data.load_kwargs
    splits: tuple[str, ...]  # scored with every metric; the first is the in-distribution split


SF, SP = "shortcut-free", "spurious-context"
SETTINGS = {
    SF: Setting(SF, "fashion_scenes", 0.1, ("test",)),
    SP: Setting(SP, "fashion_scenes_spurious", 0.9, ("test_context", "test")),
}


@dataclass(frozen=True)
class Run:
    """One trained model: its setting, zoo name, seed, whether it is the CE-only control, and a λ of the sweep."""

    setting: str
    zoo: str
    seed: int = 0
    control: bool = False
    lam: float | None = None  # the λ sweep's value; None = the config's

    @property
    def tag(self) -> str:
        """The weight tag whose config (``recipes/configs/<tag>.yaml``) trains it."""
        return f"{self.zoo}.{SETTINGS[self.setting].tag}" + ("_control" if self.control else "")

    @property
    def label(self) -> str:
        """Its column in the tables."""
        return self.zoo + (" control" if self.control else "") + (f" λ={self.lam:g}" if self.lam is not None else "")

    def folder(self, out: Path) -> Path:
        return (
            out / self.setting / f"seed{self.seed}" / (self.tag + (f"_lam{self.lam:g}" if self.lam is not None else ""))
        )


def _core(setting: str, seed: int, objectives: Sequence[str]) -> list[Run]:
    """The CE start of a seed, its control, and the consistency models fine-tuned from it (in training order)."""
    start = [Run(setting, "resnet18_ce", seed), Run(setting, "resnet18_ce", seed, control=True)]
    return start + [Run(setting, f"resnet18_{o}", seed) for o in objectives]


GC_SWEEP, CGC_SWEEP = (2.5, 250.0), (0.25, 4.0)  # beside the configs' λ (GC 25, CGC 1), seed 0
FULL = [
    *(r for seed in (0, 1, 2) for r in _core(SF, seed, ("gc", "cgc"))),
    Run(SF, "resnet18_ssim"), Run(SF, "resnet18_guided"),
    Run(SF, "resnet18_gmp_ce"), Run(SF, "resnet18_gmp_ce", control=True), Run(SF, "resnet18_gmp_gc"),
    Run(SF, "alexnet_ce"), Run(SF, "alexnet_ce", control=True), Run(SF, "alexnet_gc"),
    *(Run(SF, "resnet18_gc", lam=lam) for lam in GC_SWEEP), *(Run(SF, "resnet18_cgc", lam=lam) for lam in CGC_SWEEP),
    *_core(SP, 0, ("gc", "cgc")),
]  # fmt: skip
QUICK = _core(SF, 0, ("cgc",))
HEADLINE = ("resnet18_ce", "resnet18_gc", "resnet18_cgc")  # shortcut-free seed 0: the weights in the repository


@dataclass(frozen=True)
class Size:
    """How much of everything a mode uses."""

    scenes: tuple[int, int]  # generated: training scenes, scenes per test split
    start_samples: int | None  # training scenes of a CE start (None: its config's)
    finetune_samples: int | None  # training scenes of every fine-tuned run (None: its config's)
    eval_samples: int  # test scenes scored per split, the same for every model


SIZES = {
    "full": Size((12000, 2000), None, None, 200),
    "quick": Size((960, 96), 960, 320, 96),
    "smoke": Size((96, 16), 96, 32, 16),
}

# Each paper's effect: (setting, paper, model, control, metric, claimed direction: +1 higher, -1 lower, 0 kept, claim)
_C = "resnet18_ce control"
EFFECTS = [
    (SF, "GC", "resnet18_gc", _C, "nqh", -1, "GC lowers NQH (GC Table 1, ResNet18: 24.35 → 7.62 %)"),
    (SF, "GC", "resnet18_gc", _C, "spg", +1, "GC raises SPG (GC Table 1: 60.5 → 65.85)"),
    (SF, "GC", "resnet18_gc", _C, "ch", +1, "GC raises CH (GC Table 1: 54.36 → 57.73)"),
    (SF, "GC", "resnet18_gc", _C, "pg", 0, "GC keeps PG (GC Table 1: 79.8 → 80.0)"),
    (SF, "GC", "resnet18_gc", _C, "top1", 0, "GC keeps accuracy (GC Table 1: 69.43 → 67.74)"),
    (SF, "GC (GMP)", "resnet18_gmp_gc", "resnet18_gmp_ce control", "nqh", -1, "GC lowers NQH with GMP (GC Table 1)"),
    (SF, "GC (GMP)", "resnet18_gmp_gc", "resnet18_gmp_ce control", "ch", +1, "GC raises CH with GMP (62.89 → 65.35)"),
    (SF, "GC (AlexNet)", "alexnet_gc", "alexnet_ce control", "nqh", -1, "GC lowers NQH on AlexNet (GC Table 1)"),
    (SF, "GC (AlexNet)", "alexnet_gc", "alexnet_ce control", "ch", +1, "GC raises CH on AlexNet (45.78 → 48.1)"),
    (SF, "CGC", "resnet18_cgc", _C, "cgc_loss", -1, "CGC lowers its own loss on held-out images"),
    (SF, "CGC", "resnet18_cgc", _C, "ch", +1, "CGC raises CH (CGC Table 1, ResNet50: 54.78 → 71.75)"),
    (SF, "CGC", "resnet18_cgc", _C, "insertion_auc", +1, "CGC raises insertion AUC (CGC Table 2)"),
    (SF, "CGC", "resnet18_cgc", _C, "top1", 0, "CGC keeps accuracy (CGC Table 1: 76.13 → 74.6)"),
    (SF, "SSIM", "resnet18_ssim", _C, "ssim", +1, "SSIM raises the COSE-style SSIM consistency of maps"),
    (SF, "SSIM", "resnet18_ssim", _C, "insertion_auc", +1, "SSIM raises insertion AUC (IAUC)"),
    (SF, "SSIM", "resnet18_ssim", _C, "top1", 0, "SSIM keeps accuracy"),
    (SF, "guided", "resnet18_guided", _C, "insertion_auc", +1, "guided raises insertion (VISAPP 2024 Tables 1-2)"),
    (SF, "guided", "resnet18_guided", _C, "top1", 0, "guided keeps accuracy"),
    (SP, "GC", "resnet18_gc", _C, "nqh", -1, "GC lowers NQH under a spurious context"),
    (SP, "GC", "resnet18_gc", _C, "ch", +1, "GC moves the map onto the object under a spurious context"),
    (SP, "CGC", "resnet18_cgc", _C, "ch", +1, "CGC moves the map onto the object under a spurious context"),
]

_logger = logging.getLogger("fashion_scenes")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--full",
        action="store_true",
        help="both settings, every model, 3 seeds, a λ sweep (about 1 h 40 min on 2 cores)",
    )
    size.add_argument("--smoke", action="store_true", help="the quick job in miniature, seconds of training (CI)")
    p.add_argument("--out", type=Path, default=None, help="runs folder (default runs/fashion_scenes[_quick|_smoke])")
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


def load_test_scenes(size: Size) -> dict[str, datasets.Dataset]:
    """The scored test scenes of both splits (the same items, only the background differs where the coin does)."""
    return {
        split: data.load("fashion_scenes", split, SOURCE, size=128, num_samples=size.scenes[1]).select(
            range(size.eval_samples)
        )
        for split in ("test", "test_context")
    }


# --- training -----------------------------------------------------------------------------------------------------


def train_run(run: Run, out: Path, size: Size) -> Path:
    """Train one model with its recipe config; a folder that already holds weights is kept as it is."""
    folder = run.folder(out)
    if (folder / "model.safetensors").is_file():
        return folder
    cfg_path = CONFIGS / f"{run.tag}.yaml"
    cfg = load_config(cfg_path)
    overrides = [f"train.seed={run.seed}", f"data.load_kwargs.num_samples={size.scenes[0]}"]
    if cfg.model.init:  # start from the CE start trained here with the same seed, not from published weights
        overrides.append(f"model.init={out / run.setting / f'seed{run.seed}' / cfg.model.init}")
    samples = size.finetune_samples if cfg.model.init else size.start_samples
    if samples:
        overrides.append(f"train.max_train_samples={samples}")
    if run.lam is not None:
        overrides.append(f"objective.args.lam={run.lam}")
    cfg = load_config(cfg_path, overrides)
    _logger.info("training %s (%s, seed %d, %s)", run.label, run.setting, run.seed, cfg.objective.name)
    train(cfg, Hardware(output_dir=folder, cpu=True, num_workers=2, log_with=None))
    return folder


# --- evaluation ---------------------------------------------------------------------------------------------------


def evaluate_run(run: Run, folder: Path, tests: dict[str, datasets.Dataset]) -> list[dict]:
    """Every metric on the setting's scored splits, top-1 on both; kept in ``eval.json``, measured again when the
    protocol version, the number of scenes or the weights (sha256) changed."""
    path = folder / "eval.json"
    config = {
        "protocol": "recipes/fashion_scenes.py",
        "eval_version": EVAL_VERSION,
        "eval_samples": len(tests["test"]),
        "weights_sha256": sha256sum(folder / "model.safetensors"),
    }
    if path.is_file():
        saved = json.loads(path.read_text())
        if all(saved.get("config", {}).get(k) == v for k, v in config.items()):
            return saved["results"]
    model = consistentzoo.create_model(run.zoo, pretrained=folder)
    scored = SETTINGS[run.setting].splits
    tag = run.tag.split(".", 1)[1] + (f"_lam{run.lam:g}" if run.lam is not None else "")  # the sweep's apart
    common = dict(config=EVAL, model_name=run.zoo, tag=tag, dataset_name="fashion_scenes")
    rows = []
    for split in ("test", "test_context"):
        full = split in scored
        rows += evaluate(
            model, tests[split], [METHOD] if full else [], METRICS if full else ["top1"], split=split, **common
        )
    write_json(rows, path, config={**config, "evaluator": config_dict(EVAL)})
    return rows


# --- tables -------------------------------------------------------------------------------------------------------


def summarise(results: dict[Run, list[dict]]) -> list[dict]:
    """One row per (setting, model label, split, metric): mean ± std over seeds, the per-seed values, zero maps."""
    groups: dict[tuple[str, str, str, str], list[tuple[int, dict]]] = defaultdict(list)
    for run, rows in results.items():
        for r in rows:
            groups[(run.setting, run.label, r["split"], r["metric"])].append((run.seed, r))
    table = []
    for (setting, label, split, metric), seeded in groups.items():
        seeded.sort(key=lambda sr: sr[0])
        rows = [r for _, r in seeded]
        values = [r["value"] for r in rows]
        mean, std = seed_mean_std(values)
        zero = [r["zero_maps"] for r in rows if "zero_maps" in r]
        skipped: dict[str, int] = defaultdict(int)
        for r in rows:
            for reason, count in r["skipped"].items():
                skipped[reason] += count
        table.append(
            dict(
                setting=setting, model=label, split=split, metric=metric, mean=mean, std=std, seeds=len(values),
                seed_ids=[seed for seed, _ in seeded], values=values, n=sum(r["n"] for r in rows),
                zero_maps=sum(zero) if zero else None, skipped=dict(skipped),
            )
        )  # fmt: skip
    return table


def _cell(r: dict | None) -> str:
    if r is None:
        return ""
    return f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if r["std"] is not None else "")


def _zero_cell(r: dict | None) -> str:
    """``all-zero maps / pairs scored``, summed over seeds."""
    return "" if r is None or r["zero_maps"] is None else f"{r['zero_maps']} / {r['n']}"


def _skip_cell(r: dict | None) -> str:
    """Pairs left out, summed over seeds, by reason (empty masks, constant SSIM maps, ...); 0 when none."""
    if r is None:
        return ""
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r["skipped"].items() if v) or "0"


def markdown(table: list[dict], setting: str, models: Sequence[str]) -> str:
    """Models as columns, metrics per split as rows (mean ± std over seeds), then the all-zero map counts."""
    rows = [r for r in table if r["setting"] == setting and r["model"] in models]
    cell = {(r["model"], r["split"], r["metric"]): r for r in rows}
    keys = list(dict.fromkeys((r["split"], r["metric"]) for r in rows))
    lines = ["| metric (split) | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for split, metric in keys:
        lines.append(
            f"| {metric} ({split}) | " + " | ".join(_cell(cell.get((m, split, metric))) for m in models) + " |"
        )
    for split in SETTINGS[setting].splits:
        for metric, what in (("pg", "pg/spg/ch"), ("nqh", "nqh")):
            counts = [_zero_cell(cell.get((m, split, metric))) for m in models]
            lines.append(f"| all-zero maps scored as misses, {what} ({split}) | " + " | ".join(counts) + " |")
        for metric, what in (("pg", "pg/spg/ch"), ("nqh", "nqh"), ("ssim", "ssim")):
            counts = [_skip_cell(cell.get((m, split, metric))) for m in models]
            lines.append(f"| pairs skipped, {what} ({split}) | " + " | ".join(counts) + " |")
    seeds = ", ".join(f"{m} {max(r['seeds'] for r in rows if r['model'] == m)}" for m in models)
    notes = "Lower is better for nqh, deletion and cgc. Std over seeds (n − 1); counts summed over seeds."
    return "\n".join(lines) + f"\n\nSeeds per model: {seeds}. {notes}\n"


def effects(table: list[dict], specs: Sequence[tuple] = EFFECTS) -> list[dict]:
    """Each paper effect measured: control and model means, the difference, its SE and the verdict, per scored split."""
    by = {(r["setting"], r["model"], r["split"], r["metric"]): r for r in table}
    out = []
    for setting, paper, model, control, metric, direction, claim in specs:
        for split in SETTINGS[setting].splits:
            a, b = by.get((setting, model, split, metric)), by.get((setting, control, split, metric))
            if a is None or b is None:
                continue
            # seed k of both started from the CE start of seed k: paired over seeds when the seeds match
            e = effect(a["values"], b["values"], paired=a["seed_ids"] == b["seed_ids"])
            out.append(
                dict(
                    setting=setting, paper=paper, claim=claim, model=model, control=control, split=split,
                    metric=metric, direction=direction, control_mean=b["mean"], model_mean=a["mean"], diff=e.diff,
                    se=e.se, z=e.z, p=e.p, paired=e.paired, seeds=e.seeds, verdict=verdict(e, direction),
                )
            )  # fmt: skip
    return out


def paper_verdicts(rows: list[dict]) -> list[dict]:
    """Per (setting, paper): reproduced when every directional effect is, not reproduced when none is, else mixed;
    untestable when no effect has a standard error (one seed each)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for e in rows:
        if e["direction"] != 0:
            groups[(e["setting"], e["paper"])].append(e)
    out = []
    for (setting, paper), es in groups.items():
        tested = [e for e in es if e["se"] is not None]
        hits = sum(e["verdict"] == "reproduced" for e in tested)
        if not tested:
            word = "untestable here (one seed each)"
        elif hits == len(tested):
            word = "reproduced"
        elif hits == 0:
            word = "not reproduced"
        else:
            word = "mixed"
        out.append(dict(setting=setting, paper=paper, verdict=word, reproduced=hits, tested=len(tested)))
    return out


def effects_markdown(rows: list[dict]) -> str:
    """The effects table: the claim, control and model means, the difference in standard errors, p, the verdict."""
    lines = [
        "| setting | paper's claim | split | metric | control | model | difference | SE | z (SEs) | p | seeds "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in rows:
        se = "" if e["se"] is None else f"{e['se']:.3f}" + (" (paired)" if e["paired"] else "")
        z = "" if e["z"] is None else f"{e['z']:+.1f}"
        p = "" if e["p"] is None else f"{e['p']:.2g}"
        lines.append(
            f"| {e['setting']} | {e['claim']} | {e['split']} | {e['metric']} | {e['control_mean']:.3f} "
            f"| {e['model_mean']:.3f} | {e['diff']:+.3f} | {se} | {z} | {p} | {e['seeds'][0]}/{e['seeds'][1]} "
            f"| {e['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def paper_verdicts_markdown(rows: list[dict]) -> str:
    lines = ["| setting | paper | effects reproduced (of those with a standard error) | verdict |", "|---|---|---|---|"]
    lines += [f"| {v['setting']} | {v['paper']} | {v['reproduced']} / {v['tested']} | {v['verdict']} |" for v in rows]
    return "\n".join(lines) + "\n"


def sweep_markdown(table: list[dict]) -> str:
    """The λ sweep (shortcut-free, seed 0) beside the seed-0 control: one row per (objective, λ)."""
    split, metrics = SETTINGS[SF].splits[0], ("top1", "pg", "ch", "nqh", "insertion_auc", "cgc_loss")
    seed0 = _seed0(table)
    lines = [
        "| model | λ | " + " | ".join(f"{m} ({split})" for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for label, lam in _sweep_points():
        vals = [seed0.get((label, split, m)) for m in metrics]
        if all(v is None for v in vals):
            continue
        name = "CE-only control" if label == _C else label.split(" ")[0]
        lines.append(f"| {name} | {lam:g} | " + " | ".join("" if v is None else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def _seed0(table: list[dict]) -> dict[tuple[str, str, str], float]:
    """Seed-0 values of the shortcut-free models: (model label, split, metric) -> value."""
    return {
        (r["model"], r["split"], r["metric"]): r["values"][r["seed_ids"].index(0)]
        for r in table
        if r["setting"] == SF and 0 in r["seed_ids"]
    }


def _sweep_points() -> list[tuple[str, float]]:
    """(model label, λ) of the sweep, the control as λ = 0 and the configs' λ included, sorted by λ per objective."""
    points = [("resnet18_ce control", 0.0)]
    for zoo, sweep in (("resnet18_gc", GC_SWEEP), ("resnet18_cgc", CGC_SWEEP)):
        main = load_config(CONFIGS / f"{zoo}.fashion_scenes.yaml").objective.args["lam"]
        points += sorted([(zoo, main), *((f"{zoo} λ={lam:g}", lam) for lam in sweep)], key=lambda p: p[1])
    return points


# --- figures ------------------------------------------------------------------------------------------------------


def overlay_grid(
    path: Path, models: dict[str, tuple[str, Path]], test: datasets.Dataset, title: str, n: int = 4
) -> Path:
    """Rows of test scenes; columns: the scene with its box, then each model's map of the class it predicts.

    Args:
        models: column label -> (zoo name, weights folder).
    """
    from PIL import ImageDraw
    from torchvision.transforms.v2.functional import normalize, pil_to_tensor

    names = data.fashion_scenes.CLASS_NAMES
    rows = [test[i] for i in range(min(n, len(test)))]
    images = torch.stack([pil_to_tensor(r["image"].convert("RGB")).float() / 255 for r in rows])
    panels = []
    for r in rows:
        im = r["image"].convert("RGB")
        ImageDraw.Draw(im).rectangle(r["boxes"][0], outline=(255, 255, 255))
        style = data.fashion_scenes.STYLE_NAMES[r["background"]]
        panels.append([(im, None, f"scene: true {names[r['label']]}\nbackground: {style}\n(box: the item)")])
    for label, (zoo, folder) in models.items():
        model = consistentzoo.create_model(zoo, pretrained=folder).eval()
        x = normalize(images, model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
        with torch.no_grad():
            prob = model(x).softmax(1)
        pred = prob.argmax(1)
        maps = saliency.compute(METHOD, model, x, targets=pred)
        for row, r, m, c, p in zip(panels, rows, maps, pred.tolist(), prob.max(1).values.tolist(), strict=True):
            text = f"{label}\ntrue {names[r['label']]} | pred {names[c]} {p:.2f}\nexplained: {names[c]} (predicted)"
            row.append((r["image"], m, text))
    saliency.save_grid(path, panels, title)
    _logger.info("overlay grid (columns: scene, %s) -> %s", ", ".join(models), path)
    return path


def sweep_figure(path: Path, table: list[dict]) -> Path | None:
    """Map metrics and top-1 against λ for GC and CGC (shortcut-free, seed 0); λ = 0 is the control."""
    from matplotlib.figure import Figure

    split = SETTINGS[SF].splits[0]
    seed0, points = _seed0(table), _sweep_points()
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    drawn = False
    for ax, zoo in zip(axes, ("resnet18_gc", "resnet18_cgc"), strict=True):
        pts = [(lam, label) for label, lam in points if label.split(" ")[0] == zoo and (label, split, "pg") in seed0]
        control = {m: seed0.get(("resnet18_ce control", split, m)) for m in ("pg", "ch", "nqh", "top1")}
        if len(pts) < 2:
            ax.set_axis_off()
            continue
        drawn = True
        lams = [lam for lam, _ in pts]
        for metric, style in (("pg", "o-"), ("ch", "s-"), ("nqh", "^-"), ("top1", "k--")):
            ax.plot(lams, [seed0[(label, split, metric)] for _, label in pts], style, label=metric)
            if control[metric] is not None:
                ax.axhline(control[metric], color=ax.lines[-1].get_color(), lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xticks(lams, [f"{lam:g}" for lam in lams])
        ax.minorticks_off()
        ax.set_xlabel("λ (weight of the consistency term)")
        ax.set_ylabel(f"value on {split} (paired)")
        ax.set_title(f"{zoo.split('_')[1].upper()}: dotted = CE-only control, same steps")
        ax.legend(fontsize=8)
    if not drawn:
        return None
    fig.suptitle("λ sweep, shortcut-free setting, seed 0: localisation (pg, ch ↑; nqh ↓) and top-1 against λ")
    fig.savefig(path, dpi=100)
    return path


# --- the job ------------------------------------------------------------------------------------------------------


def publish(folder: Path, zoo: str) -> str:
    """Copy seed-0 weights as fp16 into weights/<tag>/ and return their sha256 (paste it into the tag table)."""
    target = REPO / "weights" / f"{zoo}.fashion_scenes"
    model = consistentzoo.create_model(zoo, pretrained=folder)
    save_pretrained(model, target, half=True, zoo={"tag": "fashion_scenes"})
    shutil.copy(folder / "config.yaml", target / "config.yaml")
    return sha256sum(target / "model.safetensors")


def write_cards(
    runs: Sequence[Run],
    out: Path,
    cards: Path,
    tests: dict[str, datasets.Dataset],
    table: list[dict],
    measured: list[dict],
    command: str,
) -> None:
    """One card per seed-0 tag: its seed-0 metrics, the comparison over seeds with its CE start and its control
    (with the paper effects measured on it, ``measured`` from :func:`effects`), and a figure of the three."""
    for run in runs:
        if run.seed != 0 or run.lam is not None:
            continue
        setting = SETTINGS[run.setting]
        arch = run.zoo.rsplit("_", 1)[0]
        start, control = Run(run.setting, f"{arch}_ce"), Run(run.setting, f"{arch}_ce", control=True)
        trio = list(dict.fromkeys((start, control, run)))
        cols = {r.label: (r.zoo, r.folder(out)) for r in trio if r.folder(out).is_dir()}
        split = setting.splits[0]
        title = (
            f"{run.tag}: {setting.name} setting, {split} scenes (in distribution), {METHOD} map of the predicted class"
        )
        figure = overlay_grid(out / "figures" / f"{run.tag}.png", cols, tests[split], title)
        mine = [e for e in measured if e["setting"] == run.setting and e["model"] == run.label]
        comparison = (
            f"Measured by `{command}` in the {setting.name} setting (training context "
            f"{setting.context}), {len(tests['test'])} test scenes per split, paired mode, mean ± std over seeds:\n\n"
            + markdown(table, run.setting, list(cols))
            + (
                "\nThe papers' effects on this model, against the CE-only control:\n\n" + effects_markdown(mine)
                if mine
                else ""
            )
        )
        card = write_card(
            get_weights(run.tag), cards / run.tag, run.folder(out) / "eval.json", image=figure, comparison=comparison
        )
        shutil.copy(run.folder(out) / "eval.json", card.parent / "metrics.json")  # what the card's numbers came from


def reading(table: list[dict]) -> str:
    """One line: what the CGC model did against its control on the shortcut-free test scenes, and what that carries."""
    split = SETTINGS[SF].splits[0]
    cell = {(r["model"], r["metric"]): r for r in table if r["setting"] == SF and r["split"] == split}
    pairs = [(m, cell.get((_C, m)), cell.get(("resnet18_cgc", m))) for m in ("top1", "pg", "ch", "nqh", "cgc_loss")]
    parts = ", ".join(f"{m} {c['mean']:.3f} → {g['mean']:.3f}" for m, c, g in pairs if c and g)
    seeds = min((min(c["seeds"], g["seeds"]) for _, c, g in pairs if c and g), default=0)
    scope = (
        "one seed of a brief run: a smoke reading, not an effect" if seeds < 2 else "the effects table says which hold"
    )
    return f"Reading: CGC against its CE-only control (same start, same steps), {SF} {split} scenes: {parts} ({scope})."


def results_markdown(runs: Sequence[Run], table: list[dict], measured: list[dict]) -> str:
    """Per setting the side-by-side table, then the effects against the controls, the verdict per paper, the sweep."""
    sections = []
    for setting in SETTINGS:
        models = list(dict.fromkeys(r.label for r in runs if r.setting == setting and r.lam is None))
        if models:
            head = f"### {setting} (training context {SETTINGS[setting].context})\n\n"
            sections.append(head + markdown(table, setting, models))
    text = "\n".join(sections) + "\n### Effects against the CE-only control\n\n" + effects_markdown(measured)
    text += "\n### Verdict per paper\n\n" + paper_verdicts_markdown(paper_verdicts(measured))
    if any(r.lam is not None for r in runs):
        text += "\n### λ sweep (shortcut-free, seed 0)\n\n" + sweep_markdown(table)
    return text


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    mode = "full" if args.full else "smoke" if args.smoke else "quick"
    runs, size = (FULL if args.full else QUICK), SIZES[mode]
    out = args.out or REPO / "runs" / ("fashion_scenes" if args.full else f"fashion_scenes_{mode}")
    cards = args.cards or (REPO / "model_cards" if args.full else out / "cards")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, dict[str, float]] = {}

    with stage("scenes", timings):  # every later stage reads the same cached Arrow files
        tests = load_test_scenes(size)
        for setting in {r.setting for r in runs}:
            context = SETTINGS[setting].context
            data.fashion_scenes.save_examples(
                out / f"scenes_{setting}.png", "train", per_class=3, source=SOURCE, size=128, upscale=1, context=context
            )
    # Train everything first (starts before the models fine-tuned from them), then evaluate with the same code.
    for run in runs:
        with stage(f"train {run.setting} {run.label} seed {run.seed}", timings):
            train_run(run, out, size)
    results: dict[Run, list[dict]] = {}
    for run in runs:
        with stage(f"evaluate {run.setting} {run.label} seed {run.seed}", timings):
            results[run] = evaluate_run(run, run.folder(out), tests)

    with stage("figures and cards", timings):
        table = summarise(results)
        measured = effects(table)  # once: the table, the cards and results.json read it
        text = results_markdown(runs, table, measured)
        (out / "results.md").write_text(text)
        if any(r.lam is not None for r in runs):
            sweep_figure(out / "lambda_sweep.png", table)
        seed0 = [r for r in runs if r.seed == 0 and r.lam is None and r.setting == SF]
        labels = ("resnet18_ce", "resnet18_ce control", "resnet18_gc", "resnet18_cgc")
        cols = {r.label: (r.zoo, r.folder(out)) for r in seed0 if r.label in labels}
        split = SETTINGS[SF].splits[0]
        title = f"{SF} setting, {split} scenes (in distribution), seed 0: {METHOD} map of each model's predicted class"
        overlay_grid(out / "gradcam_overlays.png", cols, tests[split], title)
        command = "python recipes/fashion_scenes.py" + {"full": " --full", "smoke": " --smoke", "quick": ""}[mode]
        write_cards(runs, out, cards, tests, table, measured, command)
    summary = {
        "mode": mode,
        "eval_samples": size.eval_samples,
        "rows": table,
        "effects": measured,
        "paper_verdicts": paper_verdicts(measured),
        "timings": timings,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    if args.full:  # the benchmark's tables and figures beside the cards, where the README shows them from
        bench = cards / "fashion_scenes_benchmark"
        bench.mkdir(parents=True, exist_ok=True)
        for name in ("results.md", "results.json", "gradcam_overlays.png", "lambda_sweep.png"):
            if (out / name).is_file():
                shutil.copy(out / name, bench / name)
    if args.publish:
        for zoo in HEADLINE:
            print(f"{zoo}.fashion_scenes: sha256 {publish(Run(SF, zoo).folder(out), zoo)}")
    print(
        f"\nFashion-MNIST scenes, {size.eval_samples} test scenes per split, {METHOD} maps, paired ({out}):\n\n{text}"
    )
    print(reading(table))
    spent = ", ".join(f"{name} {t['wall_s']:.0f} s" for name, t in timings.items())
    print(f"Wall time per stage (reused stages count ~0): {spent}.")


if __name__ == "__main__":
    main(parse_args())
