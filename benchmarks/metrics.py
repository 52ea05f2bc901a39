"""Time the metrics: batched insertion AUC vs a per-image RISE-style loop, and PG / SPG / CH on many maps.

The authors' RISE evaluation scores one image at a time and one step per forward pass, editing the image in
numpy between steps; ``rise_loop`` below does the same (written here from the protocol, not copied). Both paths
use the same model, substrate (blur 11 / sigma 5), step (224 * 8 px) and score (softmax of the class predicted on
the full image), so their AUCs must agree; the table reports the largest difference next to the times.

    python benchmarks/metrics.py            # 64 images at 224 px, resnet18 (random weights), 1000 maps
    python benchmarks/metrics.py --quick    # 4 images, under a minute on a laptop CPU
    python benchmarks/metrics.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import timm
import torch
from torch import Tensor, nn

from consistentzoo.metrics import (
    auc,
    blur,
    content_heatmap,
    insertion_auc,
    pointing_game,
    stochastic_pointing_game,
)


def rise_loop(model: nn.Module, images: Tensor, maps: Tensor, step: int) -> Tensor:
    """Per-image, per-step insertion AUC in the structure of the RISE authors' ``CausalMetric.single_run``."""
    _, c, h, w = images.shape
    hw = h * w
    n_steps = (hw + step - 1) // step
    out = []
    for i in range(images.shape[0]):
        img = images[i : i + 1]
        with torch.no_grad():
            target = model(img).softmax(-1).argmax(-1).item()
            start = blur(img).numpy().copy()
            finish = img.numpy()
        order = np.argsort(-maps[i].numpy().reshape(hw), kind="stable")
        scores = np.empty(n_steps + 1)
        for k in range(n_steps + 1):
            with torch.no_grad():
                scores[k] = model(torch.from_numpy(start)).softmax(-1)[0, target].item()
            coords = order[step * k : step * (k + 1)]
            start.reshape(1, c, hw)[0, :, coords] = finish.reshape(1, c, hw)[0, :, coords]
        out.append(scores)
    return auc(torch.from_numpy(np.stack(out)))


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def bench_insertion(n_images: int, size: int, batch_size: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=1000).eval()
    images = torch.randn(n_images, 3, size, size)
    maps = torch.rand(n_images, size, size)
    step = 8 * size
    with torch.no_grad():
        model(images[:2])  # warm-up
    t_batched, batched = _timed(insertion_auc, model, images, maps, pixels_per_step=step, batch_size=batch_size)
    t_loop, looped = _timed(rise_loop, model, images, maps, step)
    n_forward = n_images * ((size * size + step - 1) // step + 1)
    return {
        "insertion_images": n_images,
        "insertion_size_px": size,
        "insertion_forwards": n_forward,
        "insertion_batch_size": batch_size,
        "insertion_batched_s": t_batched,
        "insertion_loop_s": t_loop,
        "insertion_speedup": t_loop / t_batched,
        "insertion_max_abs_diff": float((batched.double() - looped).abs().max()),
    }


def bench_localisation(n_maps: int, size: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    yy = torch.arange(size, dtype=torch.float32)
    centres = torch.rand(n_maps, 2, generator=g) * size
    maps = torch.exp(
        -((yy.view(1, -1, 1) - centres[:, 0, None, None]) ** 2 + (yy.view(1, 1, -1) - centres[:, 1, None, None]) ** 2)
        / (2 * (size / 6) ** 2)
    )
    corners = (torch.rand(n_maps, 2, generator=g) * size * 0.6).long()
    masks = torch.zeros(n_maps, size, size, dtype=torch.bool)
    for i, (y, x) in enumerate(corners.tolist()):
        masks[i, y : y + size // 3, x : x + size // 3] = True
    stochastic_pointing_game(maps[:8], masks[:8])  # warm-up
    t_spg, spg = _timed(stochastic_pointing_game, maps, masks, n_samples=100, seed=0)
    t_ch, ch = _timed(content_heatmap, maps, masks)
    t_pg, pg = _timed(pointing_game, maps, masks)
    return {
        "localisation_maps": n_maps,
        "localisation_size_px": size,
        "spg_s": t_spg,
        "ch_s": t_ch,
        "pg_s": t_pg,
        "spg_mean": spg.mean(),
        "ch_mean": ch.mean(),
        "pg_mean": pg.mean(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 images for insertion (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as a flat JSON object")
    parser.add_argument("--images", type=int, default=None, help="images for insertion AUC (default 64, quick 4)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=64, help="perturbed images per forward (batched path)")
    parser.add_argument("--maps", type=int, default=1000, help="maps for PG / SPG / CH")
    args = parser.parse_args()
    n_images = args.images or (4 if args.quick else 64)

    results = {"torch_threads": torch.get_num_threads(), "device": "cpu"}
    results.update(bench_localisation(args.maps, args.size))
    results.update(bench_insertion(n_images, args.size, args.batch_size))

    rows = [
        ("insertion AUC, batched over images and steps", f"{results['insertion_batched_s']:.2f} s"),
        ("insertion AUC, per-image RISE-style loop", f"{results['insertion_loop_s']:.2f} s"),
        ("  speed-up (target >= 5x)", f"{results['insertion_speedup']:.2f}x"),
        ("  max |AUC batched - AUC loop|", f"{results['insertion_max_abs_diff']:.2e}"),
        ("  setting", f"{n_images} images, {args.size} px, {results['insertion_forwards']} forwards, resnet18"),
        (f"SPG (100 samples, 15 px) on {args.maps} maps", f"{results['spg_s'] * 1e3:.0f} ms"),
        (f"CH on {args.maps} maps", f"{results['ch_s'] * 1e3:.0f} ms"),
        (f"PG on {args.maps} maps", f"{results['pg_s'] * 1e3:.0f} ms"),
        ("torch threads", str(results["torch_threads"])),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
