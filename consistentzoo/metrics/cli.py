"""``consistentzoo evaluate``: a consistency report card (JSON + markdown) for a zoo or timm model or a checkpoint.

Example::

    consistentzoo evaluate --model resnet50_cgc.in1k --dataset coco --split val2014 --source /data/coco \\
        --methods gradcam hirescam --metrics pg spg ch --out results/resnet50_cgc.json
    accelerate launch recipes/evaluate.py ...   # same flags; each process evaluates a share of the images
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .evaluate import METRICS, EvalConfig, resolve_metrics

logger = logging.getLogger(__name__)

_FLAGS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _methods() -> list[str]:
    from ..saliency import METHODS

    return sorted(METHODS)


def _names(values: list[str]) -> list[str]:
    """``["pg,ch", "spg"]`` -> ``["pg", "ch", "spg"]``."""
    return [v for item in values for v in item.split(",") if v.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The evaluation flags (shared by ``consistentzoo evaluate`` and ``recipes/evaluate.py``)."""
    d = EvalConfig()
    what = p.add_argument_group("what to evaluate")
    what.add_argument(
        "--model",
        required=True,
        help="zoo name or tag (resnet50_cgc.in1k), any timm name (resnet18), or a checkpoint folder "
        "(config.json + model.safetensors, as written by a recipe or save_pretrained)",
    )
    what.add_argument(
        "--pretrained",
        default="true",
        help="'true' (default) for the published weights of the name, 'false' for random weights, or a weights "
        "folder; ignored when --model is a folder",
    )
    what.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the model's)")
    what.add_argument(
        "--tag", default=None, help="the 'tag' field of the results (default: the weight tag loaded; none for random)"
    )
    what.add_argument("--dataset", required=True, help="dataset name of consistentzoo.data (coco, cub200, ...)")
    what.add_argument("--split", required=True, help="split to evaluate (val2014, test, ...)")
    what.add_argument("--source", default=None, help="local folder in the official layout, parquet files or a Hub id")
    what.add_argument("--cache-dir", default=None, help="where the converted dataset is cached")
    what.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    what.add_argument(
        "--methods",
        nargs="+",
        default=["gradcam"],
        metavar="METHOD",
        help=f"saliency methods (space- or comma-separated; default gradcam): {', '.join(_methods())}",
    )
    what.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        metavar="METRIC",
        help="metrics (space- or comma-separated): "
        + "; ".join(f"{s.name} = {s.description}" for s in METRICS.values()),
    )
    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, required=True, help="results JSON (schema_version 1, read by model cards)")
    out.add_argument("--markdown", type=Path, default=None, help="markdown table (default: --out with .md)")
    proto = p.add_argument_group("protocol (defaults: the papers' settings)")
    proto.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"images per batch (default {d.batch_size})"
    )
    proto.add_argument("--loc-size", type=int, default=d.loc_size, help="shorter side for pg/spg/ch (default 448)")
    proto.add_argument(
        "--faith-size", type=int, default=d.faith_size, help="square side for insertion/deletion/ad/ai/ag"
    )
    proto.add_argument("--cls-size", type=int, default=d.cls_size, help="resize for top1/top5/f1 (default 256)")
    proto.add_argument("--cls-crop", type=int, default=d.cls_crop, help="centre crop for top1/top5/f1; 0 = none")
    proto.add_argument("--cgc-size", type=int, default=d.cgc_size, help="resize for the CGC loss (default 256)")
    proto.add_argument("--cgc-crop", type=int, default=d.cgc_crop, help="centre crop for the CGC loss (default 224)")
    proto.add_argument("--cgc-batch", type=int, default=d.cgc_batch, help="images per CGC-loss batch (default 32)")
    proto.add_argument("--tolerance", type=float, default=d.tolerance, help="pointing-game radius in px (default 15)")
    proto.add_argument("--spg-seeds", type=int, default=d.spg_seeds, help="SPG runs for mean ± std (default 5)")
    proto.add_argument("--spg-samples", type=int, default=d.spg_samples, help="SPG points per map (default 100)")
    proto.add_argument(
        "--nqh-size",
        type=int,
        default=None,
        help="side of each nqh composite tile (default: --cls-crop, else --cls-size)",
    )
    proto.add_argument(
        "--ssim-scale",
        type=float,
        nargs=2,
        default=d.ssim_scale,
        metavar=("MIN", "MAX"),
        help="area range of the ssim crop (default 0.5 1; '1 1' with --ssim-flip-p 0 is the identity)",
    )
    proto.add_argument(
        "--ssim-flip-p", type=float, default=d.ssim_flip_p, help="flip probability of the ssim view (default 0.5)"
    )
    proto.add_argument(
        "--seed", type=int, default=d.seed, help="base seed of SPG, CGC augmentations, nqh composites, ssim crops"
    )
    proto.add_argument("--pixels-per-step", type=int, default=None, help="insertion/deletion step (default 8 x side)")
    proto.add_argument("--layer", default=None, help="saliency target layer's dotted name (default: the method's)")
    proto.add_argument(
        "--paired",
        action="store_true",
        help="score an all-zero map as a miss (pg/spg/ch 0, nqh 1) instead of skipping it, so that models are "
        "compared on the same images; the rows say how many maps were all zero",
    )
    hw = p.add_argument_group("hardware")
    hw.add_argument("--num-workers", type=int, default=0, help="data-loading workers per process")
    hw.add_argument("--cpu", action="store_true", help="run on the CPU even where an accelerator is present")
    hw.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``evaluate`` subcommand (its handler is :func:`run_evaluate`)."""
    p = subparsers.add_parser(
        "evaluate",
        help="measure localisation, faithfulness, consistency and accuracy metrics (JSON + markdown)",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run_evaluate)


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser with the evaluation flags (for ``recipes/evaluate.py``)."""
    p = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(p)
    return p


def _pretrained(value: str) -> bool | str:
    flag = _FLAGS.get(value.lower())
    if flag is not None:
        return flag
    if not Path(value).is_dir():
        raise FileNotFoundError(f"--pretrained {value!r} is neither true/false nor an existing weights folder")
    return value


def run_evaluate(args: argparse.Namespace) -> int:
    """Build the model and the dataset, evaluate, write the JSON and the markdown table; returns the exit status."""
    from accelerate import Accelerator

    from ..data import load
    from ..models import load_model
    from ..saliency import METHODS, UnknownMethodError
    from .evaluate import config_dict, evaluate
    from .report import markdown_table, write_json, write_markdown

    # check the names before anything slow happens
    metrics = [s.name for s in resolve_metrics(_names(args.metrics))]
    methods = _names(args.methods)
    for m in methods:
        if m not in METHODS:
            raise UnknownMethodError(m, METHODS)
    cfg = EvalConfig(
        batch_size=args.batch_size,
        loc_size=args.loc_size,
        faith_size=args.faith_size,
        cls_size=args.cls_size,
        cls_crop=args.cls_crop or None,
        cgc_size=args.cgc_size,
        cgc_crop=args.cgc_crop,
        cgc_batch=args.cgc_batch,
        tolerance=args.tolerance,
        spg_samples=args.spg_samples,
        spg_seeds=args.spg_seeds,
        seed=args.seed,
        nqh_size=args.nqh_size,
        ssim_scale=tuple(args.ssim_scale),
        ssim_flip_p=args.ssim_flip_p,
        pixels_per_step=args.pixels_per_step,
        layer=args.layer,
        num_workers=args.num_workers,
        progress=not args.no_progress,
        paired=args.paired,
    )
    accelerator = Accelerator(cpu=args.cpu)
    pretrained = _pretrained(args.pretrained)
    model, name, tag = load_model(args.model, pretrained, args.num_classes)
    if pretrained is False and not Path(args.model).is_dir():
        tag = None  # random weights: no weight tag was measured
    # the main process converts (and caches) the dataset first, so the others only read the cache
    with accelerator.main_process_first():
        ds = load(args.dataset, args.split, source=args.source, cache_dir=args.cache_dir)
    if args.limit is not None:
        ds = ds.select(range(min(args.limit, len(ds))))
    rows = evaluate(
        model,
        ds,
        methods,
        metrics,
        config=cfg,
        accelerator=accelerator,
        model_name=name,
        tag=args.tag or tag,
        dataset_name=args.dataset,
        split=args.split,
    )
    if accelerator.is_main_process:
        meta = {"model_arg": args.model, "limit": args.limit, "processes": accelerator.num_processes}
        out = write_json(rows, args.out, config={**config_dict(cfg), **meta})
        md = write_markdown(rows, args.markdown or args.out.with_suffix(".md"))
        print(f"{markdown_table(rows)}\nwrote {out} and {md}")
    accelerator.wait_for_everyone()
    return 0
