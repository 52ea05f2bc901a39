"""``consistentzoo list`` and ``consistentzoo info``: what the zoo holds, and one tag's card summary."""

from __future__ import annotations

import argparse
import json

from .factory import create_model, list_models
from .metadata import REPO_ROOT, ZooWeights, get_weights, list_weights
from .reported import PAPERS


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "list",
        help="list zoo models (or weight tags), marking those with weights",
        description="List the zoo's model names ({arch}[_gmp]_{objective}), or with --tags its weight tags "
        "(name.dataset), one per line. Beside each: the weight tags you can load with pretrained=True, or 'no "
        "weights yet' and, for a tag, the recipe command that trains it.",
        epilog="examples: consistentzoo list 'resnet18_*'; consistentzoo list --tags; consistentzoo list --pretrained",
    )
    p.add_argument("pattern", nargs="?", default="*", help="wildcard, e.g. 'resnet50_*' (default: all)")
    p.add_argument("--tags", action="store_true", help="list weight tags (name.tag) instead of model names")
    p.add_argument("--pretrained", action="store_true", help="only entries whose weights are published")
    p.set_defaults(func=run_list)

    p = subparsers.add_parser(
        "info",
        help="summary card of a model or weight tag",
        description="Print a tag's metadata: training objective, dataset, papers and their reported numbers, "
        "where the weights are, and the recipe command that trains them.",
    )
    p.add_argument("name", help="zoo name or tag, e.g. resnet50_cgc or resnet50_cgc.in1k")
    p.add_argument("--build", action="store_true", help="also build the model and run a forward pass")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    p.set_defaults(func=run_info)


def run_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern, pretrained=args.pretrained, include_tags=args.tags or args.pretrained)
    if not names:
        print(f"no zoo entry matches {args.pattern!r}")
        return 0
    width = max(map(len, names)) + 2
    for name in names:
        if "." in name:
            rec = get_weights(name)
            status = f"weights {_source(rec)}" if rec.published else f"no weights yet; train: {rec.recipe_command}"
        else:
            tags = [f"{w.name} ({_source(w)})" for w in list_weights(name) if w.published]
            status = f"weights: {', '.join(tags)}" if tags else "no weights yet"
        print(f"{name:<{width}}{status}")
    return 0


def _source(rec: ZooWeights) -> str:
    """Where a published tag's weights come from, in a few words (what ``pretrained=True`` will do)."""
    if rec.local_dir:
        return "in the repository"
    if rec.hub is not None:
        return "on the Hub"
    return "upstream release, downloaded and converted on first use"


def run_info(args: argparse.Namespace) -> int:
    name = args.name
    if "." not in name:
        tags = list_weights(name)
        create_model(name)  # validates the name (close matches on a typo)
        print(f"{name}: {len(tags)} weight tag(s): {', '.join(t.name for t in tags) or 'none (architecture only)'}")
        if not tags:
            return 0
        name = tags[0].name
    rec = get_weights(name)
    if args.json:
        print(json.dumps(rec.as_dict(), indent=2, default=str))
        return 0
    unpublished = "converted from upstream on first use" if rec.upstream else "not published yet"
    where = f"{rec.hub.repo_id}@{rec.hub.revision}" if rec.hub else (rec.local_dir or unpublished)
    args_text = ", ".join(f"{k}={v}" for k, v in rec.objective_args.items()) or "-"
    lines = [
        f"{rec.name}",
        f"  architecture  {rec.architecture} {rec.model_args or ''}".rstrip(),
        f"  objective     {rec.objective} ({args_text})",
        f"  dataset       {rec.dataset}, {rec.num_classes} classes, input {rec.input_size}",
        f"  parameters    {rec.num_params:,}",
        f"  weights       {where}",
        *([f"  upstream      {rec.upstream.describe()}"] if rec.upstream else []),
        f"  recipe        {rec.recipe_command}",
        f"  licence       {rec.license}",
        "  papers        " + "; ".join(f"{PAPERS[p].title} ({PAPERS[p].venue} {PAPERS[p].year})" for p in rec.papers),
    ]
    if rec.reported:
        lines.append("  reported      paper  table     metric            value  note")
        row = "                {0.paper:6} {0.table:9} {0.metric:16} {0.value:7g}  {1}"
        lines += [row.format(r, r.note[:60]) for r in rec.reported]
    lines += _measured_lines(rec)
    print("\n".join(lines))
    if args.build:
        import torch

        model = create_model(rec.name).eval()
        x = torch.randn(1, *rec.input_size)
        with torch.no_grad():
            feats = model.forward_features(x)
            out = model.forward_head(feats)
        print(
            f"  built         {type(model).__name__}: input {tuple(x.shape)} -> features {tuple(feats.shape)} "
            f"-> logits {tuple(out.shape)} (random weights)"
        )
    return 0


def _measured_lines(rec: ZooWeights) -> list[str]:
    """What was measured for the tag: its card's ``metrics.json`` in the repository, else the record's numbers."""
    from ..hub.card import load_metrics

    path = REPO_ROOT / "model_cards" / rec.name / "metrics.json"
    found = load_metrics(path, rec) if path.is_file() else load_metrics(dict(rec.measured), rec)
    if not found:
        return ["  measured      none yet"]
    where = path.relative_to(REPO_ROOT) if path.is_file() else "the tag record"
    lines = [f"  measured      ({where})"]
    for m in found:
        std = f" ± {m.std:.4g}" if m.std is not None else ""
        on = ", ".join(str(x) for x in (m.dataset, m.split, f"n={m.n}" if m.n else None) if x)
        lines.append(f"                {m.key:24} {m.value:.4g}{std}" + (f"  ({on})" if on else ""))
    return lines
