"""Two CPU processes (torchrun, gloo) train like one process on the same data, for CE, GC and CGC.

- CE and GC: BatchNorm frozen (``model.freeze_bn``), so the model is per-sample and two processes of batch 2 must
  equal one process on the combined batch of 4.
- CGC: BatchNorm in train mode and negatives per process, so the reference is one process with gradient
  accumulation 2: it sees the same two per-process chunks (see ``consistentzoo.training.data``), each with its own
  BatchNorm statistics and its own negatives, and averages their gradients as DDP does.
- Semi-supervised CGC (``cgc_semi``): the same, with the unlabelled stream sharded alongside (labelled + unlabelled
  batch through one DDP forward).

GC and CGC back-propagate through ``torch.autograd.grad(..., create_graph=True)`` inside DDP: the loop wraps the
whole objective in DDP (``ObjectiveModule``), so DDP sees one forward per step and reduces the parameter gradients
once, in the final backward.

Run as a script under torchrun, this file is the two-process side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training_support import tiny_config, write_imagefolder

from consistentzoo.training.config import config_from_dict
from consistentzoo.training.loop import Hardware, train

CASES = {
    "ce": ({}, {"freeze_bn": True}, 1),
    "gc": ({"lam": 25.0}, {"freeze_bn": True}, 1),
    "cgc": ({"lam": 1.0, "tau": 0.5}, {}, 2),
    "cgc_semi": ({"lam": 1.0, "tau": 0.5}, {}, 2),
}


def _config(data: Path, case: str) -> dict:
    args, model, _ = CASES[case]
    raw = tiny_config(data, case.removesuffix("_semi"), args, max_steps=2)
    raw["model"].update(model)
    if case.endswith("_semi"):
        raw["data"].update(label_fraction=0.5, unlabelled_batch_size=4)
    raw["optim"]["lr"] = 0.2
    return raw


def _params(folder: Path) -> dict[str, torch.Tensor]:
    state = load_file(folder / "model.safetensors")
    return {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    data = write_imagefolder(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", __file__, str(data), str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    initial = _initial_params(data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process: the same float reduction order in the kernels
    try:
        for objective, (_, _, accum) in CASES.items():
            ref = tmp_path / f"ref_{objective}"
            hw = Hardware(ref, cpu=True, grad_accum=accum, num_workers=0, log_with=None)
            train(config_from_dict(_config(data, objective)), hw)
            a, b = _params(tmp_path / "ddp" / objective), _params(ref)
            assert a.keys() == b.keys()
            worst = max(float((a[k] - b[k]).abs().max()) for k in a)
            assert worst < 1e-5, f"{objective}: parameters differ by {worst}"
            moved = max(float((a[k] - initial[k]).abs().max()) for k in a)
            assert moved > 1e-3, f"{objective}: two steps did not move the parameters"
    finally:
        torch.set_num_threads(threads)


def _initial_params(data: Path) -> dict[str, torch.Tensor]:
    """The parameters every run starts from (seeded initialisation)."""
    from accelerate.utils import set_seed

    from consistentzoo.training.loop import build_model

    set_seed(0)
    model = build_model(config_from_dict(_config(data, "ce")))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ddp_main(data: Path, out: Path) -> None:
    """The two-process side: CE, GC, CGC and semi-supervised CGC, two steps each, batch 2 per process."""
    for objective in CASES:
        metrics = train(
            config_from_dict(_config(data, objective)),
            Hardware(out / objective, cpu=True, num_workers=0, log_with=None),
        )
        assert metrics["world_size"] == 2 and metrics["per_device_batch"] == 2, metrics


if __name__ == "__main__":
    _ddp_main(Path(sys.argv[1]), Path(sys.argv[2]))
