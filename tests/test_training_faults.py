"""Training runs under bad input and faults (issue 17, "Training runs" and the training lines of "Clear messages").

Cases, each a test below:
- ``--set optim.lr=.nan`` / ``lr=1e10`` (NaN / inf weights in a checkpoint whose manifest says it is good): the lr is
  a ConfigError; a finite lr whose update overflows, or any non-finite value, stops before a checkpoint is written;
- ``optim.momentum=5``, ``weight_decay=-1``, ``schedule.gamma=-1``, ``model.num_classes=0``/``-1``/``1``,
  ``data.image_size=0``, ``num_classes: "ten"``, unknown ``model.kwargs``, a loader option the loader does not take
  (``load_kwargs: {size: 128}`` on an ImageFolder), malformed YAML: ConfigError naming the key (file and line);
- ``num_classes`` below the labels, one-class data: named when the data loads, before the first step;
- re-running into an existing ``--output-dir``: refused unless ``--resume``/``--overwrite``; two runs into one folder:
  the second is refused naming the holder's pid, host and start time;
- a full disk while a checkpoint is written: "disk full while writing <file>", the previous checkpoint kept;
- output files follow the umask (they were 0600);
- a ``state.json`` with an unknown key: "checkpoint from another version";
- a micro-batch of one image with BatchNorm in train mode: said so;
- ``model.init`` naming a tag whose weights are not available: the available ``--set model.init=...`` choices.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training_support import tiny_config, write_config, write_imagefolder

from consistentzoo.training import checkpoint as checkpoint_module
from consistentzoo.training.checkpoint import (
    CheckpointError,
    DiskFullError,
    find_resumable,
    list_checkpoints,
    verify_checkpoint,
)
from consistentzoo.training.config import ConfigError, config_from_dict, load_config
from consistentzoo.training.loop import Callback, Hardware, Loop, NonFiniteValuesError, train
from consistentzoo.training.outdir import OutputDirError, RunLock
from consistentzoo.training.recipe import parse_args, resolve

HW = {"cpu": True, "num_workers": 0, "log_with": None}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagefolder(tmp_path_factory.mktemp("folder"))


def _hw(out: Path, **kw: object) -> Hardware:
    return Hardware(output_dir=out, **HW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("optim.lr=.nan", ["'optim.lr'", "finite", "> 0"]),
        ("optim.lr=-0.1", ["'optim.lr'", "> 0"]),
        ("optim.momentum=5", ["'optim.momentum'", "[0, 1]", "5"]),
        ("optim.weight_decay=-1", ["'optim.weight_decay'", ">= 0"]),
        ("schedule.gamma=-1", ["'schedule.gamma'", "(0, 1]"]),
        ("model.num_classes=0", ["'model.num_classes'", ">= 2", "no classifier"]),
        ("model.num_classes=-1", ["'model.num_classes'", ">= 2"]),
        ("model.num_classes=1", ["'model.num_classes'", ">= 2", "cross-entropy is 0"]),
        ("model.num_classes=ten", ["'model.num_classes'", "int", "'ten'", "kwargs"]),
        ("data.image_size=0", ["'data.image_size'", ">= 8"]),
        ("model.kwargs.foo=1", ["'model.kwargs.foo'", "channels", "global_pool", "drop_rate"]),
        ("model.kwargs.checkpoint_path=/etc/passwd", ["'model.kwargs.checkpoint_path'", "channels"]),
        ("data.load_kwargs.size=128", ["'data.load_kwargs.size'", "imagefolder", "cache_dir", "check_images"]),
        ("data.dataset=imgfolder", ["'data.dataset'", "imagefolder"]),
    ],
)
def test_bad_value_is_a_config_error_naming_key_and_range(tmp_path: Path, override: str, names: list[str]) -> None:
    path = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, "ce"))
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    for name in names:
        assert name in str(info.value), (name, str(info.value))


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  name: resnet18_ce\n  num_classes: [3\ndata: {}\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML: line \d+, column \d+"):
        load_config(path)
    with pytest.raises(ConfigError, match="override 'optim.lr=\\[1': the value is not valid YAML"):
        load_config(None, ["optim.lr=[1"])


def test_num_classes_below_the_labels_is_named_when_the_data_loads(tmp_path: Path, data: Path) -> None:
    """num_classes=2 on 3-class data: named at load time (was IndexError 'Target 2 is out of bounds' mid-run)."""
    raw = tiny_config(data, "ce", max_steps=1)
    raw["model"]["num_classes"] = 2
    with pytest.raises(ConfigError, match=r"'model.num_classes' is 2 .* labels 0\.\.2 \(3 classes\).*num_classes=3"):
        train(config_from_dict(raw), _hw(tmp_path / "out"))
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_one_class_data_is_refused(tmp_path: Path) -> None:
    folder = write_imagefolder(tmp_path / "one", classes=1)
    raw = tiny_config(folder, "ce", max_steps=1)
    with pytest.raises(ConfigError, match="holds 1 class"):
        train(config_from_dict(raw), _hw(tmp_path / "out"))


class _Poison(Callback):
    """Sets one weight to NaN after ``step`` steps: the values check, not the loss check, must catch it."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, loop: Loop) -> None:
        if loop.state.step == self.step:
            with torch.no_grad():
                loop.model.fc.bias[0] = float("nan")


def test_non_finite_weights_are_never_checkpointed(tmp_path: Path, data: Path) -> None:
    cfg = config_from_dict(tiny_config(data, "ce", max_steps=4, checkpoint_every=2))
    with pytest.raises(NonFiniteValuesError, match=r"after step 2 .* in 1 tensors \(fc\.bias\)"):
        train(cfg, _hw(tmp_path), callbacks=[_Poison(2)])
    assert list_checkpoints(tmp_path / "checkpoints") == []
    assert not (tmp_path / "model.safetensors").exists()
    report = json.loads((tmp_path / "nan_report.json").read_text())
    assert report["step"] == 2 and report["batches"][0]["tensors"] == ["fc.bias"]
    assert len(report["batches"][0]["ids"]) == 4  # the step's batch


def test_overflowing_lr_leaves_no_non_finite_checkpoint(tmp_path: Path, data: Path) -> None:
    """``optim.lr=1e10`` is finite, so the config takes it; step 2 overflows BatchNorm's running variances while the
    loss is still finite: stopped before that checkpoint, and every checkpoint that exists is finite."""
    cfg = config_from_dict(tiny_config(data, "ce", max_steps=4, checkpoint_every=1))
    cfg.optim.lr = 1e10
    with pytest.raises(NonFiniteValuesError, match="after step 2 .*running_var"):
        train(cfg, _hw(tmp_path))
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_000001"]
    for ckpt in list_checkpoints(tmp_path / "checkpoints"):
        verify_checkpoint(ckpt)
        for name, tensor in load_file(ckpt / "model.safetensors").items():
            assert torch.isfinite(tensor).all(), (ckpt.name, name)
    assert not (tmp_path / "model.safetensors").exists()


def test_existing_output_dir_is_refused_unless_resumed_or_overwritten(tmp_path: Path, data: Path) -> None:
    cfg = config_from_dict(tiny_config(data, "ce", max_steps=2, checkpoint_every=1))
    train(cfg, _hw(tmp_path))
    before = (tmp_path / "model.safetensors").read_bytes()
    with pytest.raises(OutputDirError, match="already holds a run .*--resume auto.*--overwrite"):
        train(cfg, _hw(tmp_path))
    assert (tmp_path / "model.safetensors").read_bytes() == before
    path = write_config(tmp_path.parent / f"{tmp_path.name}.yaml", tiny_config(data, "ce"))
    with pytest.raises(OutputDirError, match="already holds a run"):  # the recipe refuses before any work
        resolve(parse_args("", ["--config", str(path), "--output-dir", str(tmp_path)]), "ce")
    short = config_from_dict(tiny_config(data, "ce", max_steps=1, checkpoint_every=1))
    train(short, _hw(tmp_path, overwrite=True))
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_000001"]  # the old run is gone
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 1


def test_a_second_run_into_the_same_folder_names_the_holder(tmp_path: Path, data: Path) -> None:
    cfg = config_from_dict(tiny_config(data, "ce", max_steps=1))
    with RunLock(tmp_path):
        with pytest.raises(OutputDirError) as info:
            train(cfg, _hw(tmp_path))
    message = str(info.value)
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "started 20" in message
    assert not (tmp_path / "checkpoints").exists()
    train(cfg, _hw(tmp_path))  # the lock is free again
    with RunLock(tmp_path):  # and the finished run released it
        pass


_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("outdir", sys.argv[1])
outdir = importlib.util.module_from_spec(spec)
spec.loader.exec_module(outdir)
lock = outdir.RunLock(sys.argv[2])
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_run_in_another_process_is_named_and_its_kill_frees_the_folder(tmp_path: Path, data: Path) -> None:
    import sys

    from consistentzoo.training import outdir

    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, outdir.__file__, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        cfg = config_from_dict(tiny_config(data, "ce", max_steps=1))
        with pytest.raises(OutputDirError, match=f"in use by another training run \\(pid {child.pid} on host "):
            train(cfg, _hw(tmp_path))
    finally:
        child.kill()  # kill -9: the kernel drops the lock with the process
        child.wait()
    assert train(cfg, _hw(tmp_path))["steps"] == 1


def test_full_disk_names_the_file_and_keeps_the_previous_checkpoint(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = checkpoint_module._fsync

    def fsync(f) -> None:  # noqa: ANN001
        if "step_000002" in f.name and f.name.endswith("optimizer.pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(f)

    monkeypatch.setattr(checkpoint_module, "_fsync", fsync)
    cfg = config_from_dict(tiny_config(data, "ce", max_steps=3, checkpoint_every=1))
    with pytest.raises(
        DiskFullError, match=r"disk full while writing .*step_000002/optimizer\.pt.*step_000001 is kept"
    ):
        train(cfg, _hw(tmp_path))
    ckpts = tmp_path / "checkpoints"
    assert [p.name for p in list_checkpoints(ckpts)] == ["step_000001"]
    assert not list(ckpts.glob(".tmp-*"))  # the half-written one is removed to free space
    assert find_resumable("auto", ckpts) == ckpts / "step_000001"
    monkeypatch.setattr(checkpoint_module, "_fsync", real)
    assert train(cfg, _hw(tmp_path, resume="auto"))["steps"] == 3


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return run.returncode == 0


def test_full_disk_for_real_on_a_small_tmpfs(tmp_path: Path, data: Path) -> None:
    """The same on a real 1.6 MB file system (root only): one checkpoint (~1.5 MB) fits, the second does not."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1600k"):
        pytest.skip("needs root and tmpfs to mount a small file system")
    try:
        cfg = config_from_dict(tiny_config(data, "ce", max_steps=3, checkpoint_every=1, keep_checkpoints=1))
        with pytest.raises(DiskFullError, match="disk full while writing .*step_000002") as info:
            train(cfg, _hw(disk / "run"))
        assert "step_000001 is kept" in str(info.value)
        assert [p.name for p in list_checkpoints(disk / "run" / "checkpoints")] == ["step_000001"]
        verify_checkpoint(disk / "run" / "checkpoints" / "step_000001")
        # the final weights (written by save_pretrained through safetensors) when only the last checkpoint fits
        shutil.rmtree(disk / "run")
        cfg = config_from_dict(tiny_config(data, "ce", max_steps=1, checkpoint_every=0))
        with pytest.raises(DiskFullError, match=r"disk full while writing .*run/model\.safetensors"):
            train(cfg, _hw(disk / "run"))
        verify_checkpoint(disk / "run" / "checkpoints" / "step_000001")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_output_files_follow_the_umask(tmp_path: Path, data: Path) -> None:
    cfg = config_from_dict(tiny_config(data, "ce", max_steps=1, checkpoint_every=1))
    old = os.umask(0o027)
    try:
        train(cfg, _hw(tmp_path))
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".run.lock"]
    assert {"model.safetensors", "config.json", "optimizer.pt", "manifest.json"} <= {p.name for p in files}
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {"0o640"}, modes


def test_state_from_another_version_is_named(tmp_path: Path, data: Path) -> None:
    cfg = config_from_dict(tiny_config(data, "ce", max_steps=1, checkpoint_every=1))
    train(cfg, _hw(tmp_path))
    ckpt = tmp_path / "checkpoints" / "step_000001"
    state = json.loads((ckpt / "state.json").read_text())
    (ckpt / "state.json").write_text(json.dumps({**state, "ema_decay": 0.999}))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["state.json"] = checkpoint_module.sha256_file(ckpt / "state.json")  # a good checkpoint otherwise
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"checkpoint from another version .*'ema_decay'"):
        find_resumable(ckpt, tmp_path / "checkpoints")


def test_a_micro_batch_of_one_with_batchnorm_is_named(tmp_path: Path, data: Path) -> None:
    raw = tiny_config(data, "ce", max_steps=1)
    raw["train"]["batch_size"] = 2
    with pytest.raises(ConfigError, match="micro-batch of 1 image.*BatchNorm.*model.freeze_bn=true"):
        train(config_from_dict(raw), _hw(tmp_path, grad_accum=2))


def test_init_tag_without_weights_lists_the_choices(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config that starts from unpublished weights (resnet50_ce.in1k for cub200) says what model.init can be."""
    monkeypatch.delenv("CONSISTENTZOO_WEIGHTS", raising=False)
    from consistentzoo.models import list_weights

    published = [w.name for w in list_weights() if w.published and w.architecture == "resnet18"]
    raw = tiny_config(data, "ce", max_steps=1)
    raw["model"]["init"] = "resnet18_ce.in1k"
    with pytest.raises(ConfigError) as info:
        train(config_from_dict(raw), _hw(tmp_path))
    message = str(info.value)
    assert "'model.init' = 'resnet18_ce.in1k'" in message and "model.init=null" in message and "folder" in message
    for name in published:
        assert f"--set model.init={name}" in message


def test_recipe_reports_bad_input_in_one_line_with_exit_code_2(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from consistentzoo.training.recipe import recipe_main

    path = write_config(tmp_path / "c.yaml", tiny_config(data, "ce"))
    with pytest.raises(SystemExit) as info:
        recipe_main("ce", argv=["--config", str(path), "--set", "optim.momentum=5", "--output-dir", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("error: config key 'optim.momentum'")
