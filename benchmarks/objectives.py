"""Cost of the objectives: seconds per training step and peak memory, as ratios to plain cross-entropy.

Same model (resnet18, train mode, SGD), batch (16) and resolution (128 px) for every mode, measured side by side in
one run: the modes are interleaved round by round and each figure is the median over rounds, so a noisy machine
shifts all modes alike. Floors are counted in image-passes (issue 4): GC 5× (original + a 4× larger composite),
CGC 2× (two views; 3× with the authors' extra CE view), SSIM 2×, guided gradients 2.5× (the paper's 5 passes vs 2).
``cgc_loop`` is CGC with the authors' per-sample Python replay loop instead of the batched replay.

Guided gradients against a measured floor: the method needs four passes — the forward pass, the input-gradient
backward with its graph kept (``create_graph=True``), the guided backward and the backward through the input gradient
(a double backward) — whose costs are not the "1 + 1 + 1 + 2 image-passes" of the count above. Each is timed alone
on the plain model (no guided hooks), from step prefixes run in the same rounds: ``F`` (forward), ``F+G`` (forward +
input gradient with graph), ``F+B`` (forward + one plain backward, the cost of the guided backward without its
hooks), ``F+G+D`` (... + the backward through it and the optimiser step), so the floor is
``(F+G+D) + (F+B) − F``. The target is the guided step within 1.1× of that floor.

The replay of recorded crops (``consistentzoo.transforms.replay``) is timed against the authors' per-sample loop and
against one batched ``F.grid_sample`` (the previous implementation), forward + backward on 16 maps of 224 px.

Time: on CPU the ratio uses the process's CPU time (``time.process_time``) with one torch thread by default: other
processes on a shared machine disturb it far less than wall time, and a single thread keeps OpenMP's spin-waiting out
of it; both are reported. On CUDA the wall time.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak resident set size during the step above
the size just before it (sampled every millisecond, after ``malloc_trim``), a coarse but comparable figure.

Usage::

    python benchmarks/objectives.py [--quick] [--json PATH] [--device cpu|cuda] [--rounds N] [--modes a,b]

``--quick`` (under a minute on 2 cores) shrinks the run to batch 8, 64 px, two timed rounds and the five main modes:
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
from consistentzoo.objectives.guided import gradient_error
from consistentzoo.transforms import CropFlipParams, _sample_positions, draw_crop_flip, replay

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


def grid_replay(maps: torch.Tensor, params: CropFlipParams) -> torch.Tensor:
    """The previous batched replay: one bilinear ``F.grid_sample`` at every crop's sample points."""
    h, w = maps.shape[-2:]
    boxes = params.pixel_boxes((h, w)).to(torch.float64)
    rows = _sample_positions(boxes[:, 0], boxes[:, 2], h, h)
    cols = _sample_positions(boxes[:, 1], boxes[:, 3], w, w)
    cols = torch.where(params.flips[:, None], cols.flip(1), cols)
    gy = ((2 * rows + 1) / h - 1)[:, :, None].expand(-1, -1, w)
    gx = ((2 * cols + 1) / w - 1)[:, None, :].expand(-1, h, -1)
    grid = torch.stack([gx, gy], dim=-1).to(maps.dtype)
    return F.grid_sample(maps[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]


def guided_prefixes(model: torch.nn.Module, batch: dict, opt: torch.optim.Optimizer) -> dict[str, Callable[[], None]]:
    """The passes of the guided objective on the plain model, as step prefixes (see the module docstring)."""
    x, y = batch["images"], batch["labels"]
    lam = GuidedGradientLoss().lam
    teacher = torch.randn_like(x)  # stands in for the guided gradient: a constant, as the detached teacher is

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        xi = x.detach().requires_grad_(True)
        return xi, F.cross_entropy(model(xi), y)

    def f() -> None:
        forward()

    def fg() -> None:
        xi, ce = forward()
        torch.autograd.grad(ce, xi, create_graph=True)

    def fb() -> None:
        xi, ce = forward()
        torch.autograd.grad(ce, xi)

    def fgd() -> None:
        opt.zero_grad(set_to_none=True)
        xi, ce = forward()
        (standard,) = torch.autograd.grad(ce, xi, create_graph=True)
        (ce + lam * gradient_error(standard, teacher).mean()).backward()
        opt.step()

    return {"F": f, "F+G": fg, "F+B": fb, "F+G+D": fgd}


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


def timed(fn: Callable[[], None], device: str) -> float:
    """Process CPU seconds of ``fn()`` on the CPU, wall seconds on CUDA (as the time ratios of the table)."""
    if device == "cuda":
        torch.cuda.synchronize()
    with PeakRSS():  # sampled as in measure(), so that the sampler's own CPU time is in both figures
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return wall if device == "cuda" else cpu


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
    fns = {"batched": replay, "loop": loop_replay, "grid": grid_replay}
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):  # interleaved
        for name, fn in fns.items():
            start = time.process_time()
            fn(maps, params).sum().backward()
            runs[name].append(time.process_time() - start)
    times = {name: statistics.median(r) for name, r in runs.items()}
    for fn in (loop_replay, grid_replay):
        torch.testing.assert_close(replay(maps, params), fn(maps, params), atol=1e-4, rtol=1e-4)
    return {"replay_batched_s": times["batched"], "replay_loop_s": times["loop"], "replay_grid_s": times["grid"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="batch 8, 64 px, 2 timed rounds, modes " + ",".join(QUICK_MODES)
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as a flat JSON object")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5, quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: see the docstring)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 16, quick 8)")
    parser.add_argument("--px", type=int, default=None, help="image size (default 128, quick 64)")
    parser.add_argument("--modes", default=None, help="comma-separated subset of " + ",".join(FLOORS))
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
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
    prefixes = guided_prefixes(model, batch, opt) if "guided" in modes else {}
    prefix_times: dict[str, list[float]] = {name: [] for name in prefixes}
    for r in range(rounds + 1):  # round 0 warms up
        for mode in modes:
            s, c, p = measure(steps[mode], opt, device)
            if r:
                seconds[mode].append(s)
                cpu[mode].append(c)
                peaks[mode].append(p)
        for name, fn in prefixes.items():
            t = timed(fn, device)
            if r:
                prefix_times[name].append(t)

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
    notes: list[str] = []

    def verdict(ok: bool, why: str) -> str:
        if ok:
            return "met"
        notes.append(why)
        return f"MISSED, note {len(notes)}"

    print(f"\n{'target':<62}{'measured':>10}  {'limit':>7}  verdict")
    for mode in ("gc", "cgc", "ssim"):
        if mode in modes:
            over = result[f"{mode}_ratio_over_floor"]
            why = f"{mode} costs {over:.2f}x its image-pass floor ({FLOORS[mode]:.0f}x CE)"
            line = f"{mode} step / its image-pass floor ({FLOORS[mode]:.0f}x CE)"
            print(f"{line:<62}{over:>9.2f}x  {'<= 1.1x':>7}  {verdict(over <= 1.1, why)}")
    if prefixes:
        p = {name: statistics.median(v) for name, v in prefix_times.items()}
        passes = {
            "forward (F)": p["F"],
            "input-gradient backward with graph (F+G - F)": p["F+G"] - p["F"],
            "guided backward, as a plain backward (F+B - F)": p["F+B"] - p["F"],
            "backward through it + optimiser step (F+G+D - F+G)": p["F+G+D"] - p["F+G"],
        }
        floor = sum(passes.values())
        guided = statistics.median(cpu["guided"] if device == "cpu" else seconds["guided"])
        ce_time = ce_c if device == "cpu" else ce_s
        result.update({f"guided_pass_{k.split(' (')[0].replace(' ', '_')}_s": v for k, v in passes.items()})
        result.update({"guided_floor_s": floor, "guided_over_measured_floor": guided / floor})
        for name, t in passes.items():
            print(f"  guided pass: {name:<49}{t * 1e3:>8.0f}ms  ({t / ce_time:.2f}x CE)")
        why = (
            f"the guided step costs {guided / floor:.2f}x the sum of its passes measured alone; the rest is the "
            "guided hooks on every ReLU output (a Python call per op in the forward, a clamp per ReLU gradient) and "
            "the gradient error — per-call costs, larger in proportion on --quick's small inputs, where one or two "
            "rounds also leave the ratio noisy (the full run repeats 5 rounds at 128 px)"
        )
        line = f"guided step / sum of its passes ({floor / ce_time:.2f}x CE)"
        print(f"{line:<62}{guided / floor:>9.2f}x  {'<= 1.1x':>7}  {verdict(guided / floor <= 1.1, why)}")
        counted = (
            "more than the 1 + 2 image-passes counted"
            if floor / ce_time > FLOORS["guided"]
            else "no more than the 1 + 2 image-passes counted"
        )
        print(
            f"  (the guided step is {guided / ce_time:.2f}x CE, {guided / ce_time / FLOORS['guided']:.2f}x the counted "
            f"2.5x floor; its passes alone sum to {floor / ce_time:.2f}x CE: the backward with its graph and the "
            f"double backward cost {counted})"
        )
    if "replay_speedup" in result:
        b, lp, g = result["replay_batched_s"], result["replay_loop_s"], result["replay_grid_s"]
        why = f"the batched replay ({b * 1e3:.1f} ms) is not faster than the per-sample loop ({lp * 1e3:.1f} ms)"
        line = "replay, 16 maps 224 px fwd+bwd: per-sample loop / ours"
        print(f"{line:<62}{lp / b:>9.2f}x  {'> 1x':>7}  {verdict(lp > b, why)}")
        print(
            f"  ours (separable gathers) {b * 1e3:.1f} ms, per-sample loop {lp * 1e3:.1f} ms, "
            f"one F.grid_sample {g * 1e3:.1f} ms (CPU time)"
        )
    for i, note in enumerate(notes, 1):
        print(f"note {i}: {note}")
    result["targets_missed"] = len(notes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
