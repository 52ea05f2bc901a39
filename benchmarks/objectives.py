"""Cost of the objectives: seconds per training step and peak memory, as ratios to plain cross-entropy.

Same model (resnet18, train mode, SGD), batch (16) and resolution (128 px) for every mode, measured side by side in
one run: the modes are interleaved round by round and each figure is the median over rounds, so a noisy machine
shifts all modes alike. Floors are counted in image-passes (issue 4): GC 5× (original + a 4× larger composite),
CGC 2× (two views; 3× with the authors' extra CE view), SSIM 2×, guided gradients 2.5× (the paper's 5 passes vs 2).
``cgc_loop`` is CGC with the authors' per-sample Python replay loop instead of the batched replay.

Time: on CPU the ratio uses the process's CPU time (``time.process_time``) with one torch thread by default: other
processes on a shared machine disturb it far less than wall time, and a single thread keeps OpenMP's spin-waiting out
of it; both are reported. On CUDA the wall time.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak resident set size during the step above
the size just before it (sampled every millisecond, after ``malloc_trim``), a coarse but comparable figure.

Usage::

    python benchmarks/objectives.py [--quick] [--json PATH] [--device cpu|cuda] [--rounds N] [--modes a,b]

``--quick`` (under a minute on 2 cores) shrinks the run to batch 8, 64 px, one timed round and the five main modes:
a smoke run of the harness, not the figures the issue asks for.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import threading
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import consistentzoo
from consistentzoo.objectives import CGCLoss, GCLoss, GuidedGradientLoss, SSIMSparsityLoss
from consistentzoo.objectives import cgc as cgc_module
from consistentzoo.transforms import CropFlipParams, draw_crop_flip, replay

FLOORS = {"ce": 1.0, "gc": 5.0, "cgc": 2.0, "cgc_xe": 3.0, "cgc_loop": 2.0, "ssim": 2.0, "guided": 2.5}
FLOORS["guided_separate"] = 2.5
QUICK_MODES = ("ce", "gc", "cgc", "ssim", "guided")


def loop_replay(maps: torch.Tensor, params: CropFlipParams, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The authors' ``perform_gradcam_aug``: per sample, crop, bilinear resize, flip — a Python loop over the batch."""
    h, w = maps.shape[-2:]
    size = size or (h, w)
    boxes = params.pixel_boxes((h, w)).round().long().tolist()
    out = []
    for b, (i, j, bh, bw) in enumerate(boxes):
        crop = maps[b : b + 1, None, i : i + bh, j : j + bw]
        crop = F.interpolate(crop, size=size, mode="bilinear", align_corners=False)[0, 0]
        out.append(crop.flip(-1) if params.flips[b] else crop)
    return torch.stack(out)


class PeakRSS:
    """Peak resident set size above the starting size, sampled in a thread while the ``with`` block runs."""

    def __init__(self) -> None:
        self.peak = 0
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def __enter__(self) -> PeakRSS:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self._start = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self._start)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_steps(model: torch.nn.Module, batch: dict) -> dict[str, Callable[[], torch.Tensor]]:
    """One closure per mode returning the loss to back-propagate."""
    gc, cgc, ssim, guided = GCLoss(), CGCLoss(), SSIMSparsityLoss(), GuidedGradientLoss()
    guided_sep = GuidedGradientLoss(share_forward=False)
    x, y, aug, params = batch["images"], batch["labels"], batch["aug"], batch["params"]

    def cgc_loop() -> torch.Tensor:
        cgc_module.replay = loop_replay
        try:
            return cgc(model, x, aug, params, y)[0]
        finally:
            cgc_module.replay = replay

    return {
        "ce": lambda: F.cross_entropy(model(x), y),
        "gc": lambda: gc(model, x, y, batch["distractors"], batch["quadrants"])[0],
        "cgc": lambda: cgc(model, x, aug, params, y)[0],
        "cgc_xe": lambda: cgc(model, x, aug, params, y, batch["xe"])[0],
        "cgc_loop": cgc_loop,
        "ssim": lambda: ssim(model, x, y, aug, params)[0],
        "guided": lambda: guided(model, x, y)[0],
        "guided_separate": lambda: guided_sep(model, x, y)[0],
    }


def measure(step: Callable[[], torch.Tensor], opt: torch.optim.Optimizer, device: str) -> tuple[float, float, float]:
    """Wall seconds, process CPU seconds and peak bytes of one training step (loss, backward, optimiser step)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with PeakRSS() as rss:
        start, cpu_start = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        step().backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = torch.cuda.max_memory_allocated() - base if device == "cuda" else rss.peak
    return seconds, cpu_seconds, float(peak)


def replay_speed(batch: int, px: int, repeats: int) -> dict[str, float]:
    """Batched replay vs the per-sample loop on ``[batch, px, px]`` maps, forward + backward (CPU seconds)."""
    gen = torch.Generator().manual_seed(0)
    params = draw_crop_flip(batch, (px, px), generator=gen)
    maps = torch.rand(batch, px, px, generator=gen, requires_grad=True)
    times = {}
    for name, fn in (("batched", replay), ("loop", loop_replay)):
        runs = []
        for _ in range(repeats):
            start = time.process_time()
            fn(maps, params).sum().backward()
            runs.append(time.process_time() - start)
        times[name] = statistics.median(runs)
    torch.testing.assert_close(replay(maps, params), loop_replay(maps, params), atol=1e-4, rtol=1e-4)
    return {"replay_batched_s": times["batched"], "replay_loop_s": times["loop"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="batch 8, 64 px, 1 timed round, modes " + ",".join(QUICK_MODES)
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as a flat JSON object")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5, quick 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: see the docstring)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 16, quick 8)")
    parser.add_argument("--px", type=int, default=None, help="image size (default 128, quick 64)")
    parser.add_argument("--modes", default=None, help="comma-separated subset of " + ",".join(FLOORS))
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    modes = (args.modes or ",".join(QUICK_MODES if args.quick else FLOORS)).split(",")
    unknown = sorted(set(modes) - set(FLOORS))
    if unknown:
        parser.error(f"unknown modes {unknown}; valid: {', '.join(FLOORS)}")
    if "ce" not in modes:
        modes.insert(0, "ce")

    torch.manual_seed(0)
    device = args.device
    if device == "cpu":
        torch.set_num_threads(args.threads)
    model = consistentzoo.create_model("resnet18_ce", num_classes=100).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    b = args.batch or (8 if args.quick else 16)
    px = args.px or (64 if args.quick else 128)
    images = torch.randn(b, 3, px, px, generator=gen)
    params = draw_crop_flip(b, (px, px), generator=gen)
    batch = {
        "images": images.to(device),
        "labels": torch.randint(0, 100, (b,), generator=gen).to(device),
        "distractors": torch.randn(b, 3, 3, px, px, generator=gen).to(device),
        "quadrants": torch.randint(0, 4, (b,), generator=gen).to(device),
        "aug": replay(images, params).to(device),
        "params": params.to(device),
        "xe": torch.randn(b, 3, px, px, generator=gen).to(device),
    }
    steps = make_steps(model, batch)
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    peaks: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds + 1):  # round 0 warms up
        for mode in modes:
            s, c, p = measure(steps[mode], opt, device)
            if r:
                seconds[mode].append(s)
                cpu[mode].append(c)
                peaks[mode].append(p)

    ce_s, ce_m = statistics.median(seconds["ce"]), max(statistics.median(peaks["ce"]), 1.0)
    ce_c = statistics.median(cpu["ce"])
    result: dict[str, float | int | str] = {
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "batch": b,
        "px": px,
        "rounds": rounds,
    }
    rows = []
    for mode in modes:
        s, m, c = statistics.median(seconds[mode]), statistics.median(peaks[mode]), statistics.median(cpu[mode])
        # on a shared CPU the process's CPU time is far less disturbed by other processes than wall time
        ratio = c / ce_c if device == "cpu" else s / ce_s
        result.update(
            {
                f"{mode}_step_s": s,
                f"{mode}_step_cpu_s": c,
                f"{mode}_wall_ratio": s / ce_s,
                f"{mode}_time_ratio": ratio,
                f"{mode}_floor": FLOORS[mode],
                f"{mode}_ratio_over_floor": ratio / FLOORS[mode],
                f"{mode}_peak_mb": m / 2**20,
                f"{mode}_memory_ratio": m / ce_m,
            }
        )
        rows.append((mode, s, s / ce_s, c, ratio, FLOORS[mode], ratio / FLOORS[mode], m / 2**20, m / ce_m))
    if device == "cpu":
        result.update(replay_speed(16, 224, 3 if args.quick else 10))
        result["replay_speedup"] = result["replay_loop_s"] / result["replay_batched_s"]

    print(f"resnet18, batch {b}, {px} px, {device}, {torch.get_num_threads()} threads, median of {rounds} rounds")
    print("time ratio = CPU-time ratio on cpu (robust to other processes), wall ratio on cuda")
    head = ("mode", "wall s", "wall×CE", "cpu s", "time×CE", "floor", "÷floor", "peak MB", "mem×CE")
    print(f"{head[0]:<16}" + "".join(f"{h:>9}" for h in head[1:]))
    for mode, s, wall_ratio, c, ratio, floor, over, mb, mem in rows:
        print(
            f"{mode:<16}{s:>9.3f}{wall_ratio:>9.2f}{c:>9.3f}{ratio:>9.2f}{floor:>9.1f}{over:>9.2f}{mb:>9.0f}{mem:>9.2f}"
        )
    if "replay_speedup" in result:
        print(
            f"replay of 16 maps 224×224 (fwd+bwd, CPU time): batched {result['replay_batched_s'] * 1e3:.1f} ms, "
            f"per-sample loop {result['replay_loop_s'] * 1e3:.1f} ms ({result['replay_speedup']:.1f}× faster)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
