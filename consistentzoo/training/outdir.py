"""One run per output folder: a previous run is never overwritten silently, and a running one is locked.

Rules (checked before any work):

- A folder that already holds a run (``config.yaml``, ``checkpoints/``, ``model.safetensors`` or ``metrics.json``)
  is refused unless the run resumes (``--resume auto`` / a checkpoint) or ``--overwrite`` is given; ``--overwrite``
  removes the previous run's files (only those: other files in the folder are left alone).
- A running training holds an exclusive lock on ``<output>/.run.lock`` (``fcntl.flock``: the kernel releases it when
  the process ends, ``kill -9`` included) and writes its pid, host and start time into it; a second run into the same
  folder is refused with those three facts.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import shutil
import socket
from pathlib import Path
from typing import IO, Any

__all__ = ["LOCK_NAME", "RUN_FILES", "OutputDirError", "RunLock", "check_output_dir", "clear_previous_run"]

LOCK_NAME = ".run.lock"
#: What a run writes into its output folder (the weights folder, the resolved config, metrics, checkpoints).
RUN_FILES = ("config.yaml", "checkpoints", "model.safetensors", "config.json", "metrics.json", "nan_report.json")
_MARKERS = ("config.yaml", "checkpoints", "model.safetensors", "metrics.json")


class OutputDirError(ValueError):
    """The output folder holds a previous run (and neither resume nor overwrite was asked), or another run is in it."""


def previous_run(out: Path) -> list[str]:
    """The files of a previous run in ``out`` (empty when there is none)."""
    return [name for name in _MARKERS if (out / name).exists()]


def check_output_dir(out: str | Path, *, resume: str | None, overwrite: bool) -> None:
    """Refuse a folder that holds a previous run unless it is resumed or overwritten.

    Raises:
        OutputDirError: a previous run is there, and ``resume`` is None and ``overwrite`` False; or both are given.
    """
    out = Path(out)
    if resume is not None and overwrite:
        raise OutputDirError("--resume and --overwrite contradict each other: resume continues the run, overwrite "
                             "starts it again; give one")  # fmt: skip
    found = previous_run(out)
    if found and resume is None and not overwrite:
        raise OutputDirError(
            f"{out} already holds a run ({', '.join(found)}); pass --resume auto to continue it, --overwrite to "
            "replace it, or choose another --output-dir"
        )


def clear_previous_run(out: Path) -> None:
    """Remove the files of a previous run (``RUN_FILES``) from ``out``; nothing else."""
    for name in RUN_FILES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


class RunLock:
    """An exclusive, non-blocking lock on ``<out>/.run.lock`` that records who holds it.

    Args:
        out: the run's output folder (created if needed).
    """

    def __init__(self, out: str | Path):
        self.path = Path(out) / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`OutputDirError` naming the pid, host and start time of the holder."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the lock is held
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.seek(0)
            holder = _describe(f.read())
            f.close()
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise OutputDirError(
                f"{self.path.parent} is in use by another training run ({holder}; lock file {self.path}); wait for "
                "it to end or choose another --output-dir"
            ) from None
        f.seek(0)
        f.truncate()
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}))
        f.flush()
        self._file = f

    def release(self) -> None:
        """Release the lock (the file stays; its content only matters while it is locked)."""
        if self._file is not None:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on host {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown: it has not written its pid yet"
