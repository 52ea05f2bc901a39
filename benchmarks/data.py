"""Is loading the bottleneck? Decode + transform a batch with DataLoader workers vs one resnet18 CE train step.

Prints a table; ``--json PATH`` writes the same figures as a flat JSON object; ``--quick`` runs a short version.
Data: the real COCO128 photos in ``../shared/data/coco128`` (or ``--source``), RandomResizedCrop + flip +
normalise at 224 px, read through ``consistentzoo.data.load`` exactly as training does.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128"


def time_loader(source: Path, batch: int, workers: int, size: int, batches: int, cache: str) -> tuple[float, float]:
    """Seconds for the first batch (worker start-up included) and per batch afterwards."""
    from torch.utils.data import DataLoader, RandomSampler

    from consistentzoo.data import collate, load, train_transform, with_transform

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load("coco", "train2017", source, masks=False, cache_dir=cache)
    ds = with_transform(ds, train_transform(size))
    sampler = RandomSampler(range(len(ds)), replacement=True, num_samples=batch * (batches + 1))
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    t1 = time.perf_counter()
    for _ in range(batches):
        next(it)
    t2 = time.perf_counter()
    return t1 - t0, (t2 - t1) / batches


def time_step(batch: int, size: int, steps: int) -> float:
    """Seconds per resnet18 CE training step (forward, backward, SGD) on one CPU batch."""
    import timm

    model = timm.create_model("resnet18", num_classes=80)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 80, (batch,))
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--quick", action="store_true", help="3 batches / 1 step instead of 10 / 5")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    if not a.source.is_dir():
        raise SystemExit(f"data folder {a.source} not found; pass --source <COCO-layout folder>")
    batches, steps = (3, 1) if a.quick else (10, 5)
    with tempfile.TemporaryDirectory() as cache:
        first, per_batch = time_loader(a.source, a.batch, a.workers, a.size, batches, cache)
    step = time_step(a.batch, a.size, steps)
    res = {
        "batch": a.batch,
        "workers": a.workers,
        "size": a.size,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "data_first_batch_s": round(first, 4),
        "data_per_batch_s": round(per_batch, 4),
        "resnet18_ce_step_s": round(step, 4),
        "data_over_step_ratio": round(per_batch / step, 4),
    }
    width = max(map(len, res))
    print(f"{'figure':<{width}}  value")
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
