"""The command line every recipe shares: hyper-parameters from the YAML (+ ``--set``), hardware from flags.

A recipe is ``recipe_main("gc")``: it parses the flags, loads and checks the config (every error before any work),
checks that the config's objective is the recipe's, and hands over to :func:`consistentzoo.training.loop.train`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, DiskFullError
from .config import ConfigError, TrainingConfig, load_config
from .loop import Hardware, NonFiniteLossError, train
from .outdir import OutputDirError, check_output_dir

__all__ = ["parse_args", "recipe_main"]


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The recipe flags: ``--config``, ``--set``, smoke-run limits and hardware."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", type=Path, help="recipe YAML (recipes/configs/<tag>.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=0.05 (repeatable)",
    )
    p.add_argument("--output-dir", type=Path, default=None, help="default: runs/<tag>")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimiser steps (smoke runs)")
    p.add_argument("--max-train-samples", type=int, default=None, help="train on a seeded subset of N samples")
    p.add_argument("--resume", default=None, help="'auto' (newest good checkpoint in --output-dir) or a folder")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a previous run in --output-dir (default: refuse it)"
    )
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--num-workers", type=int, default=4, help="DataLoader workers per process")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    p.add_argument("--no-trackers", action="store_true", help="do not write tensorboard logs")
    return p.parse_args(argv)


def resolve(args: argparse.Namespace, objective: str | None) -> tuple[TrainingConfig, Hardware]:
    """The checked config and the hardware flags of parsed arguments.

    Raises:
        ConfigError: a bad config, or a config whose objective is not the recipe's.
        OutputDirError: ``--output-dir`` holds a previous run and neither ``--resume`` nor ``--overwrite`` is given.
    """
    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.max_train_samples is not None:
        overrides.append(f"train.max_train_samples={args.max_train_samples}")
    cfg = load_config(args.config, overrides)
    if objective is not None and cfg.objective.name != objective:
        raise ConfigError(
            f"this recipe trains objective {objective!r} but the config says objective.name={cfg.objective.name!r}; "
            f"use recipes/train_{cfg.objective.name}.py or recipes/finetune.py"
        )
    if args.grad_accum < 1:
        raise ConfigError(f"--grad-accum must be >= 1, got {args.grad_accum}")
    output_dir = args.output_dir or Path("runs") / (cfg.tag or cfg.model.name)
    check_output_dir(output_dir, resume=args.resume, overwrite=args.overwrite)
    hw = Hardware(
        output_dir=output_dir,
        mixed_precision=args.mixed_precision,
        grad_accum=args.grad_accum,
        cpu=args.cpu,
        num_workers=args.num_workers,
        resume=args.resume,
        log_with=None if args.no_trackers else "tensorboard",
        overwrite=args.overwrite,
    )
    return cfg, hw


def recipe_main(objective: str | None, description: str = "", argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse, check, train; returns the final metrics.

    Args:
        objective: the objective this recipe trains, or ``None`` to take it from the config (``finetune.py``).
        description: the recipe's ``--help`` text.
        argv: arguments (default ``sys.argv[1:]``).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(description, argv)
    try:
        cfg, hw = resolve(args, objective)
        metrics = train(cfg, hw)
    except (ConfigError, OutputDirError, CheckpointError, DiskFullError, NonFiniteLossError) as e:
        # the user's input or the machine, not a bug: one line, exit code 2 (argparse's code for bad input)
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return metrics
