"""``consistentzoo push`` and ``consistentzoo card``: parsers and runners that ``consistentzoo/cli.py`` mounts."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..models.metadata import list_weights

_logger = logging.getLogger(__name__)

MODEL_CARDS_DIR = Path("model_cards")


def add_hub_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``push`` and ``card`` sub-commands; each sets ``func`` to its runner (``args -> exit code``).

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "push",
        help="upload a weights folder with its configs, metrics and a generated card to the Hub (one commit)",
        description="Upload model.safetensors + config.json + training config(s) + metrics.json + README.md card "
        "in one commit; prints the commit's revision and the weights' sha256 and records them in <folder>/hub.json.",
    )
    p.add_argument("folder", type=Path, help="weights folder (config.json + model.safetensors)")
    p.add_argument("repo_id", help="Hub repository, owner/name (created if missing)")
    p.add_argument(
        "--tag", help="weight tag the card describes, e.g. resnet18_gc.fashion_scenes (default: from config)"
    )
    p.add_argument("--metrics", type=Path, help="metrics JSON (default: <folder>/metrics.json if present)")
    p.add_argument("--training-config", type=Path, nargs="+", help="resolved training config(s) (default: *.yaml)")
    p.add_argument("--image", type=Path, help="PNG grid of Grad-CAM overlays for the card")
    p.add_argument("--revision", help="existing branch to commit to (default: main)")
    p.add_argument("--token", help="write token (default: HF_TOKEN or the saved login)")
    p.add_argument("--endpoint", help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--message", help="commit message")
    p.add_argument("--retries", type=int, default=2, help="extra commit attempts after a 5xx answer (default: 2)")
    p.set_defaults(func=run_push)

    c = subparsers.add_parser(
        "card",
        help="generate model cards from the tag metadata and a metrics JSON",
        description="Write <out>/README.md (front matter with model-index, method, metrics vs paper, figure, how to "
        "load, recipe) for each tag; re-running replaces the card.",
    )
    c.add_argument("tags", nargs="*", help="weight tags, e.g. resnet50_cgc.in1k")
    c.add_argument("--all", action="store_true", help="every registered weight tag")
    c.add_argument("--metrics", type=Path, help="metrics JSON (rows of other models are ignored)")
    c.add_argument("--image", type=Path, help="PNG grid of Grad-CAM overlays (one tag only)")
    c.add_argument("--out-dir", type=Path, help="card folder (one tag only; default: model_cards/<tag>)")
    c.add_argument("--repo-id", help="Hub repository the card describes (default: the tag's)")
    c.set_defaults(func=run_card)


def run_push(args: argparse.Namespace) -> int:
    """Run ``consistentzoo push``; prints the :class:`~consistentzoo.hub.PushResult` as JSON."""
    from .push import push

    result = push(
        args.folder,
        args.repo_id,
        revision=args.revision,
        token=args.token,
        endpoint=args.endpoint,
        tag=args.tag,
        metrics=args.metrics,
        training_config=args.training_config,
        image=args.image,
        private=args.private,
        commit_message=args.message,
        retries=args.retries,
    )
    sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
    return 0


def run_card(args: argparse.Namespace) -> int:
    """Run ``consistentzoo card``; prints the path of each card written."""
    from ..models.metadata import get_weights
    from .card import load_metrics, write_card

    if args.all == bool(args.tags):
        raise SystemExit("consistentzoo card: give weight tags or --all (one of the two)")
    records = list_weights() if args.all else [get_weights(t) for t in args.tags]
    if len(records) > 1 and (args.image or args.out_dir):
        raise SystemExit("consistentzoo card: --image and --out-dir take one tag")
    for rec in records:
        metrics = None
        if args.metrics is not None:
            try:
                metrics = load_metrics(args.metrics, rec) and args.metrics
            except ValueError:
                if len(records) == 1:
                    raise
                _logger.info("%s has no rows for %s: its card shows the paper's numbers only", args.metrics, rec.name)
        out_dir = args.out_dir or MODEL_CARDS_DIR / rec.name
        path = write_card(rec, out_dir, metrics, image=args.image, repo_id=args.repo_id)
        sys.stdout.write(f"{path}\n")
    return 0
