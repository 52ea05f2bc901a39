"""Saliency throughput: consistentzoo's batched methods against pytorch-grad-cam on the same inputs, in one run.

Prints maps/s for both libraries, their ratio (ours / pytorch-grad-cam) and the peak resident-memory increase of each
call (CPU: sampled RSS; CUDA: ``max_memory_allocated``). Random weights, a fixed seed, the same images and targets for
both. Score-CAM needs one forward pass per channel (2048 for ResNet-50) per image, so it runs on ``--scorecam-batch``
images. ``--quick`` is a short version (ResNet-18, 48 px, small batches; about a minute on 2 shared cores).

Usage::

    python benchmarks/saliency.py                 # ResNet-50, batch 16, 224 px
    python benchmarks/saliency.py --quick --json saliency.json
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

import consistentzoo
from consistentzoo import saliency

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class PeakMemory:
    """Peak memory increase (MiB) during the ``with`` block: CUDA allocator peak, else sampled process RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._base = self._peak = self._rss()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._peak = max(self._peak, self._rss())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mib = (torch.cuda.max_memory_allocated() - self._base) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak_mib = (max(self._peak, self._rss()) - self._base) / 2**20


def measure(fn: Callable[[], object], device: torch.device, n_maps: int) -> tuple[float, float]:
    """(maps/s, peak MiB) of one call of ``fn`` after a warm-up call is *not* made (both libraries alike)."""
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return n_maps / seconds, mem.peak_mib


def pgc_runner(method: str, model: torch.nn.Module, layer: torch.nn.Module, images: torch.Tensor, targets: list[int]):
    """A zero-argument callable running pytorch-grad-cam's version of ``method`` (``None`` if it has none)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = {
        "gradcam": pgc.GradCAM,
        "hirescam": pgc.HiResCAM,
        "gradcam++": pgc.GradCAMPlusPlus,
        "xgradcam": pgc.XGradCAM,
        "scorecam": pgc.ScoreCAM,
        "ablationcam": pgc.AblationCAM,
        "fullgrad": pgc.FullGrad,
    }
    wrapped = [ClassifierOutputTarget(t) for t in targets]
    if method in classes:

        def run() -> object:
            kwargs = {} if method == "fullgrad" else {"target_layers": [layer]}
            if method == "fullgrad":
                kwargs["target_layers"] = []
            with classes[method](model, **kwargs) as cam:
                return cam(images, targets=wrapped)

        return run
    if method == "guided_backprop":

        def run_guided() -> object:  # single-image API: one call per image
            guided = pgc.GuidedBackpropReLUModel(model, device=images.device)
            return [guided(images[i : i + 1], targets[i]) for i in range(len(targets))]

        return run_guided
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run: resnet18, 48 px, small batches")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as a flat JSON object")
    parser.add_argument("--model", default=None, help="timm model name (default resnet50; quick: resnet18)")
    parser.add_argument("--batch", type=int, default=None, help="images per call (default 16; quick: 2)")
    parser.add_argument("--size", type=int, default=None, help="image size (default 224; quick: 48)")
    parser.add_argument("--scorecam-batch", type=int, default=None, help="images for Score-CAM (default 1)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    model_name = args.model or ("resnet18" if args.quick else "resnet50")
    batch = args.batch or (2 if args.quick else 16)
    size = args.size or (48 if args.quick else 224)
    score_batch = args.scorecam_batch or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = args.methods.split(",") if args.methods else list(saliency.METHODS)

    torch.manual_seed(0)
    model = consistentzoo.create_model(model_name, num_classes=1000).eval().to(device)
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    targets = torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(2)).tolist()
    layer = model.layer4
    for _ in range(2):  # warm-up: allocator and kernels, so the first method timed is not penalised
        saliency.compute("gradcam", model, images, targets)

    results: dict[str, float | int | str] = {
        "model": model_name,
        "batch": batch,
        "size": size,
        "scorecam_batch": score_batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    header = f"{'method':<16}{'n':>4}{'ours maps/s':>13}{'pgc maps/s':>12}{'ratio':>8}{'ours MiB':>10}{'pgc MiB':>9}"
    print(
        f"{model_name}, {size} px, batch {batch} (Score-CAM {score_batch}), {device}, {torch.get_num_threads()} threads"
    )
    print(header)
    print("-" * len(header))
    for method in methods:
        n = score_batch if method == "scorecam" else batch
        x, t = images[:n], targets[:n]
        ours_rate, ours_mem = measure(lambda: saliency.compute(method, model, x, t), device, n)  # noqa: B023
        runner = pgc_runner(method, model, layer, x, t)
        ref_rate = ref_mem = float("nan")
        if runner is not None:
            ref_rate, ref_mem = measure(runner, device, n)
        ratio = ours_rate / ref_rate if runner is not None else float("nan")
        print(f"{method:<16}{n:>4}{ours_rate:>13.2f}{ref_rate:>12.2f}{ratio:>8.2f}{ours_mem:>10.0f}{ref_mem:>9.0f}")
        key = method.replace("+", "p")
        results.update(
            {
                f"{key}_images": n,
                f"{key}_ours_maps_per_s": ours_rate,
                f"{key}_pgc_maps_per_s": ref_rate,
                f"{key}_ratio": ratio,
                f"{key}_ours_peak_mib": ours_mem,
                f"{key}_pgc_peak_mib": ref_mem,
            }
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, allow_nan=True))


if __name__ == "__main__":
    main()
