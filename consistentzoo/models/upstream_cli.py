"""``consistentzoo fetch``, ``import-weights`` and ``publish``: the papers' released checkpoints as zoo weights."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .metadata import ZooWeights, get_weights, list_weights

_logger = logging.getLogger(__name__)

# the evaluation a published card shows beside the paper's numbers (GC Table 1 / CGC Tables 1-2; COCO: F1 + maps)
EVAL_METRICS = {"imagenet_1k": ["top1", "pg", "spg", "ch", "insertion"], "coco": ["f1", "pg", "spg", "ch"]}
EVAL_SPLITS = {"imagenet_1k": "validation", "coco": "val2014"}


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fetch``, ``import-weights`` and ``publish`` sub-commands."""
    tags = ", ".join(w.name for w in list_weights() if w.upstream)
    p = subparsers.add_parser(
        "fetch",
        help="download, convert and cache the papers' released checkpoints ahead of time",
        description=f"Download a tag's upstream checkpoint, convert it and cache it. Tags: {tags}.",
    )
    p.add_argument("tags", nargs="*", help="weight tags, e.g. resnet50_gc.in1k")
    p.add_argument("--all", action="store_true", help="every tag with an upstream release")
    p.add_argument("--force", action="store_true", help="download and convert again even when cached")
    _check_flag(p)
    p.set_defaults(func=run_fetch)

    p = subparsers.add_parser(
        "import-weights",
        help="convert a checkpoint you already have (firewall, Drive quota) into the cache",
        description="Convert a downloaded upstream checkpoint with the same checks as `fetch` into the tag's cache "
        "entry, so pretrained=True loads it offline.",
    )
    p.add_argument("tag", help="weight tag, e.g. resnet18_gc.in1k")
    p.add_argument("file", type=Path, help="the checkpoint (.pth.tar of the authors, or torchvision's .pth)")
    _check_flag(p)
    p.set_defaults(func=run_import)

    p = subparsers.add_parser(
        "publish",
        help="(maintainers) fetch or import a tag, evaluate it, write its card and push it to the Hub",
        description="Fetch (or --file import) a tag's upstream checkpoint, optionally evaluate it on a local "
        "ImageNet/COCO copy, push weights + config + metrics + card in one commit, and print the lines to paste "
        "into the tag record.",
    )
    p.add_argument("tag", help="weight tag, e.g. resnet50_gc.in1k")
    p.add_argument("--repo", required=True, help="Hub repository, ORG/NAME")
    p.add_argument("--file", type=Path, help="import this checkpoint instead of downloading it")
    p.add_argument("--eval-data", help="local dataset folder in its official layout: evaluate before publishing")
    p.add_argument("--eval-split", help="split to evaluate (default: validation for ImageNet, val2014 for COCO)")
    p.add_argument("--eval-limit", type=int, help="evaluate the first N images only")
    p.add_argument("--eval-cache-dir", help="where the converted dataset is cached (default: the datasets cache)")
    p.add_argument("--endpoint", help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    p.add_argument("--token", help="write token (default: HF_TOKEN or the saved login)")
    _check_flag(p)
    p.set_defaults(func=run_publish)


def _check_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--skip-check",
        action="store_true",
        help="do not run the photo check on ImageNet tags (for stand-ins without real weights; recorded)",
    )


def run_fetch(args: argparse.Namespace) -> int:
    from .upstream import fetch

    if args.all == bool(args.tags):
        raise SystemExit("consistentzoo fetch: give weight tags or --all (one of the two)")
    records = [w for w in list_weights() if w.upstream] if args.all else [get_weights(t) for t in args.tags]
    failed = []
    for rec in records:  # one tag's failure (a Drive quota, say) does not stop the others
        try:
            _report(rec, fetch(rec, check=not args.skip_check, force=args.force))
        except (KeyError, ValueError, RuntimeError, OSError) as e:  # what `consistentzoo` reports as one line
            failed.append(rec.name)
            sys.stderr.write(f"consistentzoo fetch: {rec.name}: error: {e}\n")
    if len(records) > 1 and failed:
        sys.stderr.write(f"consistentzoo fetch: {len(failed)} of {len(records)} failed: {', '.join(failed)}\n")
    return 2 if failed else 0


def run_import(args: argparse.Namespace) -> int:
    from .upstream import import_file

    rec = get_weights(args.tag)
    _report(rec, import_file(rec, args.file, check=not args.skip_check))
    return 0


def _report(rec: ZooWeights, path: Path) -> None:
    from .upstream import read_provenance

    prov = read_provenance(rec) or {}
    sys.stdout.write(
        f"{rec.name}: {path}\n  from {prov.get('downloaded_from')} (sha256 {prov.get('file_sha256')}; "
        f"{prov.get('hash_check')})\n  photo check: {_behaviour_text(prov.get('behaviour_check', {}))}\n"
    )


def _behaviour_text(behaviour: dict[str, Any]) -> str:
    return "passed" if behaviour.get("passed") else f"skipped ({behaviour.get('skipped', 'not recorded')})"


def publish(
    rec: ZooWeights,
    repo_id: str,
    *,
    file: str | Path | None = None,
    eval_data: str | None = None,
    eval_split: str | None = None,
    eval_limit: int | None = None,
    eval_cache_dir: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    check: bool = True,
) -> Any:
    """Fetch or import a tag's upstream weights, optionally evaluate them, and push them with a generated card.

    Returns:
        The :class:`~consistentzoo.hub.PushResult` (revision and sha256 to record in the tag's ``hub``).
    """
    from ..hub import push
    from .upstream import PROVENANCE_NAME, entry_dir, fetch, import_file
    from .weights import CONFIG_NAME

    weights = import_file(rec, file, check=check) if file else fetch(rec, check=check)
    with tempfile.TemporaryDirectory(prefix="cz-publish-") as tmp:
        folder = Path(tmp)
        for name in (weights.name, CONFIG_NAME, PROVENANCE_NAME):
            shutil.copyfile(entry_dir(rec) / name, folder / name)
        metrics = None
        if eval_data:
            metrics = folder / "metrics.json"
            _evaluate(rec, folder, eval_data, eval_split, eval_limit, eval_cache_dir, metrics)
        return push(folder, repo_id, tag=rec, metrics=metrics, endpoint=endpoint, token=token)


def _evaluate(
    rec: ZooWeights, folder: Path, source: str, split: str | None, limit: int | None, cache_dir: str | None, out: Path
) -> None:
    """Run the zoo's evaluator (``recipes/evaluate.py``'s code) on the converted weights."""
    from ..metrics.cli import build_parser, run_evaluate

    if rec.dataset not in EVAL_METRICS:
        raise ValueError(f"{rec.name}: no evaluation protocol for {rec.dataset}; valid: {sorted(EVAL_METRICS)}")
    argv = [
        "--model", str(folder), "--tag", rec.tag, "--dataset", rec.dataset,
        "--split", split or EVAL_SPLITS[rec.dataset], "--source", source,
        "--methods", "gradcam", "--metrics", *EVAL_METRICS[rec.dataset], "--out", str(out), "--no-progress",
    ]  # fmt: skip
    if limit is not None:
        argv += ["--limit", str(limit)]
    if cache_dir is not None:
        argv += ["--cache-dir", str(cache_dir)]
    status = run_evaluate(build_parser().parse_args(argv))
    if status:
        raise RuntimeError(f"the evaluation of {rec.name} on {source} failed (exit status {status})")


def run_publish(args: argparse.Namespace) -> int:
    rec = get_weights(args.tag)
    result = publish(
        rec, args.repo, file=args.file, eval_data=args.eval_data, eval_split=args.eval_split,
        eval_limit=args.eval_limit, eval_cache_dir=args.eval_cache_dir, endpoint=args.endpoint, token=args.token,
        check=not args.skip_check,
    )  # fmt: skip
    sys.stdout.write(
        f"published {rec.name} to {result.repo_id} at {result.endpoint}\n"
        f"revision: {result.revision}\n"
        f"sha256: {result.sha256}\n"
        "paste into the tag's record (make_weights(...) in consistentzoo/models/"
        f"{'alexnet' if rec.architecture == 'alexnet' else 'resnet'}.py):\n"
        f'    hub=HubLocation("{result.repo_id}", "{result.revision}", "{result.sha256}"),\n'
        + json.dumps(result.as_dict())
        + "\n"
    )
    return 0
