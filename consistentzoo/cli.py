"""The ``consistentzoo`` command: one subcommand per package that has something to run."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .hub import cli as hub_cli
from .metrics import cli as metrics_cli
from .models import cli as models_cli
from .models import upstream_cli
from .saliency import cli as saliency_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consistentzoo",
        description="Image classifiers trained for consistent explanations: list, inspect and explain zoo models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    models_cli.add_parsers(subparsers)
    saliency_cli.add_explain_parser(subparsers)
    metrics_cli.add_parsers(subparsers)
    hub_cli.add_hub_parsers(subparsers)
    upstream_cli.add_parsers(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (KeyError, ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"consistentzoo {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
