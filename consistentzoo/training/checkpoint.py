"""Atomic, verifiable training checkpoints: model + optimiser + scheduler + RNG + sampler positions.

Layout of ``<output>/checkpoints/step_000120/``::

    model.safetensors      the unwrapped model's state dict (never unpickled)
    optimizer.pt           optimiser state (tensors and numbers only; loaded with ``weights_only=True``)
    scheduler.pt           LR scheduler state
    rng_<rank>.pt          torch / numpy / python RNG states of each process
    state.json             step, epoch, step in epoch, unlabelled-stream position, model name, config fingerprint,
                           world size
    config.yaml            the resolved config of the run
    manifest.json          sha256 of every file above — written last

A checkpoint is built in ``.tmp-step_000120/`` and renamed into place only once complete (``os.replace`` of a
directory is atomic on POSIX), so a crash leaves a ``.tmp-*`` folder that is ignored and removed, never a
half-written ``step_*`` that looks valid. A checkpoint is *good* when its manifest exists and every hash matches.

Resume rule: ``resume="auto"`` takes the newest good checkpoint; a newer corrupt one is skipped with a warning in
the log naming it and why. An explicit path must be good, else :class:`CheckpointError`. A checkpoint of another
model (different model name or class count, or a state dict that does not fit) is always a
:class:`CheckpointError`, never a fallback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

_logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "TrainerState",
    "find_resumable",
    "list_checkpoints",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "verify_checkpoint",
    "write_checkpoint",
]

MANIFEST = "manifest.json"
STATE = "state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that is incomplete, corrupt, or from another model or config."""


class DiskFullError(OSError):
    """The disk filled up while writing an output file (``errno`` ENOSPC or EDQUOT); the message names the file."""


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a full disk while writing ``path`` into :class:`DiskFullError` ("disk full while writing <file>")."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        code = _disk_full_errno(e)
        if code is None:
            raise
        free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
        raise DiskFullError(
            code,
            f"disk full while writing {path} ({os.strerror(code)}; {free} bytes free); free some space "
            "and resume with --resume auto",
        ) from e


def _disk_full_errno(e: BaseException) -> int | None:
    """ENOSPC/EDQUOT of an ``OSError``, or of a library error that only quotes it (safetensors' ``SafetensorError:
    ... I/O error: No space left on device (os error 28)``)."""
    if isinstance(e, OSError):
        return e.errno if e.errno in _DISK_FULL else None
    text = str(e)
    for code in _DISK_FULL:
        if f"(os error {code})" in text or os.strerror(code) in text:
            return code
    return None


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it; the file's mode follows the umask; a full disk is named as such.

    Everything a checkpoint holds is serialised in memory first and written here: ``torch.save`` to a full disk
    fails with an opaque ``RuntimeError [enforce fail at inline_container.cc]`` instead of ``ENOSPC``.
    """
    with writing(path), open(path, "wb") as f:
        f.write(data)
        f.flush()
        _fsync(f)


def _fsync(f: IO[bytes]) -> None:
    # where a delayed-allocation file system reports ENOSPC; the tests' seam for a full disk
    os.fsync(f.fileno())


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` of ``obj`` into memory (loadable with ``weights_only=True`` when it holds tensors and numbers)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@dataclass
class TrainerState:
    """Where the loop stands.

    Attributes:
        step: optimiser steps done.
        epoch: current epoch.
        step_in_epoch: optimiser steps done in the current epoch (the sampler's position).
        model_name: the config's model name.
        num_classes: classifier outputs.
        fingerprint: hash of the config fields that must not change across a resume.
        world_size: processes of the run that wrote it.
        unlabelled_cycle: semi-supervised: passes started over the unlabelled stream (its sampler's epoch).
        unlabelled_step: semi-supervised: optimiser steps done in the current unlabelled cycle.
    """

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    model_name: str = ""
    num_classes: int = 0
    fingerprint: str = ""
    world_size: int = 1
    unlabelled_cycle: int = 0
    unlabelled_step: int = 0


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """Every RNG the loop may touch, as tensors and plain numbers (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": (py_version, list(py_internal), py_gauss),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(directory: Path) -> list[Path]:
    """Finished ``step_*`` folders, oldest first (``.tmp-*`` folders are ignored)."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def verify_checkpoint(path: Path) -> TrainerState:
    """The state of a good checkpoint.

    Raises:
        CheckpointError: no manifest (incomplete), a missing file or a hash that differs (corrupt).
    """
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: no {MANIFEST}; the checkpoint is incomplete")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable {MANIFEST} ({e})") from e
    for name, digest in manifest.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{path}: {name} is missing")
        if sha256_file(file) != digest:
            raise CheckpointError(f"{path}: {name} does not match its recorded sha256 (corrupt)")
    return _read_state(path)


def _read_state(path: Path) -> TrainerState:
    """``state.json`` as a :class:`TrainerState`; keys this version does not know mean another version wrote it."""
    raw = json.loads((path / STATE).read_text())
    known = {f.name for f in dataclasses.fields(TrainerState)}
    if not isinstance(raw, dict) or (unknown := sorted(set(raw) - known)):
        what = f"unknown keys {unknown}" if isinstance(raw, dict) else "not a mapping"
        raise CheckpointError(
            f"{path}: checkpoint from another version of consistentzoo ({STATE} has {what}; this version knows "
            f"{', '.join(sorted(known))}); resume it with the version that wrote it, or start a new run"
        )
    return TrainerState(**raw)


def write_checkpoint(
    directory: Path,
    state: TrainerState,
    *,
    is_main: bool,
    rank: int,
    barrier: Callable[[], None],
    write_main: Callable[[Path], None],
    keep: int = 2,
) -> Path:
    """Write ``directory/step_<step>`` atomically, every process taking part.

    Args:
        directory: the run's ``checkpoints`` folder.
        state: the loop's state after the step.
        is_main: this process writes the model, optimiser, scheduler, state and manifest.
        rank: this process's index (its RNG file).
        barrier: waits for every process.
        write_main: ``write_main(tmp_dir)`` writes the main process's files (model, optimiser, scheduler, config).
        keep: checkpoints kept; older ones are removed after the new one is in place.

    Returns:
        The final checkpoint folder.
    """
    final = directory / f"step_{state.step:06d}"
    tmp = directory / f".tmp-{final.name}"
    if is_main:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier()
    try:
        write_file(tmp / f"rng_{rank}.pt", torch_bytes(rng_state()))
        barrier()
        if is_main:
            write_main(tmp)
            write_file(tmp / STATE, json.dumps(state.__dict__, indent=2).encode())
            manifest = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            write_file(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
            _fsync_dir(tmp)
    except DiskFullError as e:
        # free what the half-written checkpoint took; the previous checkpoint stays the newest good one
        shutil.rmtree(tmp, ignore_errors=True)
        previous = list_checkpoints(directory)
        kept = f"the previous checkpoint {previous[-1]} is kept" if previous else "no earlier checkpoint exists"
        raise DiskFullError(e.errno, f"{e.strerror}; {kept}") from e
    if is_main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(directory)
        for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        _logger.info("checkpoint written: %s", final)
    barrier()
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def find_resumable(resume: str | Path, directory: Path) -> Path | None:
    """The checkpoint to resume from.

    Args:
        resume: ``"auto"`` (the newest good checkpoint in ``directory``, or none) or a checkpoint folder.
        directory: the run's ``checkpoints`` folder.

    Raises:
        CheckpointError: an explicit checkpoint that is not good.
    """
    if str(resume) != "auto":
        path = Path(resume)
        verify_checkpoint(path)
        return path
    for path in reversed(list_checkpoints(directory)):
        try:
            verify_checkpoint(path)
        except CheckpointError as e:
            _logger.warning("skipping checkpoint %s and falling back to the previous one: %s", path.name, e)
            continue
        return path
    return None


def check_compatible(state: TrainerState, expected: TrainerState, path: Path) -> None:
    """Raise :class:`CheckpointError` when a checkpoint belongs to another model or config."""
    for key in ("model_name", "num_classes", "fingerprint"):
        if getattr(state, key) != getattr(expected, key):
            raise CheckpointError(
                f"{path} is from another run: {key} is {getattr(state, key)!r}, this run has {getattr(expected, key)!r}"
                " (fingerprinted: model, data, objective, optimiser, schedule, epochs, batch size and seed)"
            )


def load_checkpoint(path: Path, rank: int, world_size: int) -> tuple[TrainerState, dict[str, Any]]:
    """Read a good checkpoint.

    Returns:
        The state and ``{"model": state dict, "optimizer": ..., "scheduler": ..., "rng": ...}``; ``rng`` is this
        process's RNG state, or ``None`` when the world size changed (the per-sample seeding keeps data exact
        anyway).

    Raises:
        CheckpointError: see :func:`verify_checkpoint`.
    """
    from safetensors.torch import load_file

    state = verify_checkpoint(path)
    out: dict[str, Any] = {
        "model": load_file(path / "model.safetensors"),
        "optimizer": torch.load(path / "optimizer.pt", weights_only=True),
        "scheduler": torch.load(path / "scheduler.pt", weights_only=True),
        "rng": None,
    }
    rng_file = path / f"rng_{rank}.pt"
    if state.world_size == world_size and rng_file.is_file():
        out["rng"] = torch.load(rng_file, weights_only=True)
    return state, out
