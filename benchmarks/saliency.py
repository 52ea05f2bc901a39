"""Saliency throughput: consistentzoo's batched methods against pytorch-grad-cam on the same inputs, in one run.

Prints, per method, maps/s for both libraries, their ratio (ours / pytorch-grad-cam) beside its target (issue 15:
Score-CAM and FullGrad at least 2x) with met/missed and, when missed, why; the peak memory increase of each call
(CPU: sampled process RSS; CUDA: ``max_memory_allocated``) and how many images went through the model's first
convolution (full passes; Score-CAM: one per masked copy). Random weights, a fixed seed, the same images and targets
for both libraries. The gradient-free methods run on ``--perturbation-images`` images (a pass per channel and
image). pytorch-grad-cam's tqdm progress bars are switched off (``TQDM_DISABLE``).

Usage::

    python benchmarks/saliency.py --quick            # ResNet-18, 112 px, batch 8, 1 thread (a few minutes)
    python benchmarks/saliency.py                    # ResNet-50, 224 px, batch 16 (the full run; long on a CPU)
    python benchmarks/saliency.py --device cuda --json saliency.json
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before anything imports tqdm: pytorch-grad-cam's bars off

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import consistentzoo  # noqa: E402
from consistentzoo import saliency  # noqa: E402

#: Issue 15's targets: ours / pytorch-grad-cam maps per second.
TARGETS = {"scorecam": 2.0, "fullgrad": 2.0}
#: ``--quick`` is the issue's setting; the default is the full-size run.
PRESETS = {
    "quick": {"model": "resnet18", "size": 112, "batch": 8, "threads": 1, "perturbation_images": 2},
    "full": {"model": "resnet50", "size": 224, "batch": 16, "threads": None, "perturbation_images": 1},
}
GRADIENT_FREE = ("scorecam", "ablationcam")

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


class ForwardCount:
    """Images that go through the model's first convolution inside the ``with`` block: full passes, whichever entry
    point (``forward``, ``forward_features``) ran them (a forward pre-hook, removed on exit)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        self.images = 0

    def __enter__(self) -> ForwardCount:
        def count(_module: torch.nn.Module, inputs: tuple) -> None:
            self.images += inputs[0].shape[0]

        self._handle = self.stem.register_forward_pre_hook(count)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


def measure(fn: Callable[[], object], model: torch.nn.Module, device: torch.device, n_maps: int) -> dict[str, float]:
    """maps/s, peak MiB and images through the model's forward of one call of ``fn`` (no warm-up call, both
    libraries alike)."""
    with PeakMemory(device) as mem, ForwardCount(model) as passes:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"maps_per_s": n_maps / seconds, "seconds": seconds, "peak_mib": mem.peak_mib, "passes": passes.images}


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


def verdict(method: str, ours: dict, ref: dict | None) -> tuple[str, str]:
    """(target column, met/missed with the reason when missed)."""
    target = TARGETS.get(method)
    if target is None or ref is None:
        return "-", ""
    ratio = ours["maps_per_s"] / ref["maps_per_s"]
    if ratio >= target:
        return f">={target:.0f}x", "met"
    why = ""
    if method in GRADIENT_FREE and ours["passes"] and ref["passes"]:
        ours_ms, ref_ms = 1e3 * ours["seconds"] / ours["passes"], 1e3 * ref["seconds"] / ref["passes"]
        why = (
            f" - every masked image is a full forward pass: ours ran {ours['passes']} (constant, zero and duplicate "
            f"channels skipped), pytorch-grad-cam {ref['passes']} ({ref['passes'] / ours['passes']:.2f}x as many); "
            f"per pass ours {ours_ms:.1f} ms, pytorch-grad-cam {ref_ms:.1f} ms ({ref_ms / ours_ms:.2f}x): the passes "
            "themselves are the floor, no batching makes a pass cheaper"
        )
    return f">={target:.0f}x", f"MISSED ({ratio:.2f}x){why}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-18, 112 px, batch 8, 1 thread")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as a flat JSON object")
    parser.add_argument("--model", default=None, help="timm model name (default resnet50; quick: resnet18)")
    parser.add_argument("--batch", type=int, default=None, help="images per call (default 16; quick: 8)")
    parser.add_argument("--size", type=int, default=None, help="image size (default 224; quick: 112)")
    parser.add_argument(
        "--perturbation-images",
        "--scorecam-batch",
        type=int,
        default=None,
        help="images for Score-CAM and Ablation-CAM (default 1; quick: 2)",
    )
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (quick: 1)")
    args = parser.parse_args()
    preset = PRESETS["quick" if args.quick else "full"]
    model_name = args.model or preset["model"]
    batch = args.batch or preset["batch"]
    size = args.size or preset["size"]
    perturbation_images = min(args.perturbation_images or preset["perturbation_images"], batch)
    threads = args.threads or preset["threads"]
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(args.device)
    methods = args.methods.split(",") if args.methods else list(saliency.METHODS)

    torch.manual_seed(0)
    model = consistentzoo.create_model(model_name, num_classes=1000).eval().to(device)
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    targets = torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(2)).tolist()
    layer = model.layer4
    for _ in range(2):  # warm-up: allocator and kernels, so the first method timed is not penalised
        saliency.compute("gradcam", model, images, targets)

    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    results: dict[str, float | int | str] = {
        "model": model_name,
        "batch": batch,
        "size": size,
        "perturbation_images": perturbation_images,
        "device": str(device),
        "machine": machine,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(
        f"{model_name}, {size} px, batch {batch} (Score-CAM, Ablation-CAM: {perturbation_images}), {device} "
        f"({machine}), {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    header = (
        f"{'method':<16}{'n':>3}{'ours maps/s':>12}{'pgc maps/s':>11}{'ratio':>7}{'target':>7}"
        f"{'ours MiB':>9}{'pgc MiB':>8}{'ours passes':>12}{'pgc passes':>11}  verdict"
    )
    print(header)
    print("-" * len(header))
    notes = []
    for method in methods:
        n = perturbation_images if method in GRADIENT_FREE else batch
        x, t = images[:n], targets[:n]
        ours = measure(lambda: saliency.compute(method, model, x, t), model, device, n)  # noqa: B023
        runner = pgc_runner(method, model, layer, x, t)
        ref = measure(runner, model, device, n) if runner is not None else None
        nan = float("nan")
        ratio = ours["maps_per_s"] / ref["maps_per_s"] if ref else nan
        target, outcome = verdict(method, ours, ref)
        short = outcome.split(" - ")[0]
        if " - " in outcome:
            notes.append(f"{method}: {outcome.split(' - ', 1)[1]}")
        print(
            f"{method:<16}{n:>3}{ours['maps_per_s']:>12.2f}{ref['maps_per_s'] if ref else nan:>11.2f}{ratio:>7.2f}"
            f"{target:>7}{ours['peak_mib']:>9.0f}{ref['peak_mib'] if ref else nan:>8.0f}{ours['passes']:>12}"
            f"{ref['passes'] if ref else '-':>11}  {short}".rstrip()
        )
        key = method.replace("+", "p")
        results.update(
            {
                f"{key}_images": n,
                f"{key}_ours_maps_per_s": ours["maps_per_s"],
                f"{key}_pgc_maps_per_s": ref["maps_per_s"] if ref else nan,
                f"{key}_ratio": ratio,
                f"{key}_target": TARGETS.get(method, nan),
                f"{key}_verdict": short,
                f"{key}_ours_peak_mib": ours["peak_mib"],
                f"{key}_pgc_peak_mib": ref["peak_mib"] if ref else nan,
                f"{key}_ours_passes": ours["passes"],
                f"{key}_pgc_passes": ref["passes"] if ref else nan,
            }
        )
    for note in notes:
        print(note)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, allow_nan=True))


if __name__ == "__main__":
    main()
