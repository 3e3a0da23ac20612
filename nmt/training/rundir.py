"""One training per run directory: an exclusive lock, a writability check at start, and cleanup after a kill.

Two ``nmt-train`` processes on one run directory would both run to the end, interleave their logs and metrics,
and the one that finishes last would silently own every checkpoint. :class:`RunDirLock` takes an exclusive
``flock`` on ``RUN_DIR/nmt-train.lock`` and writes who holds it (pid, host, start time) into the file, so a second
writer is refused with a message that names the first. The kernel releases the lock when the holder exits or is
killed (even by SIGKILL), so a stale file never blocks a restart; the file itself stays (deleting a lock file
races with a process that has just opened it).

Network file systems: Linux implements ``flock`` on NFS with byte-range locks the server keeps, so it works across
hosts, except on mounts with ``local_lock=flock`` or ``nolock`` (where it only sees one host's processes). Where the
file system has no locks at all (``flock`` fails with ENOLCK/EOPNOTSUPP), training goes on with a warning.

Under torchrun rank 0 alone locks and writes; every rank learns its outcome (:func:`nmt.training.distributed.
broadcast_object`), so a refusal stops every rank, not only rank 0.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from nmt.checkpoint import leftover_files
from nmt.errors import NMTError
from nmt.training import distributed

log = logging.getLogger("nmt.training.trainer")

LOCK_FILE = "nmt-train.lock"
CHECKPOINTS = "checkpoints"
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)  # the file system has no flock

# Run directories this process holds (resolved path -> lock). The CLI claims a directory before Hydra writes into
# it and :func:`nmt.training.trainer.train` claims it again: the second claim is a no-op, not a self-conflict.
_held: dict[Path, RunDirLock] = {}


class RunDirError(NMTError):
    """The run directory cannot be used: another process trains in it, or it cannot be written."""

    exit_code = 2  # a user-fixable condition, like every other user error


def check_writable(directory: Path, what: str, option: str = "hydra.run.dir") -> None:
    """Create ``directory`` if needed and write (then delete) a probe file in it.

    Raises:
        RunDirError: it cannot be created or written (read-only file system, no permission, a file in the way).
    """
    if directory.exists() and not directory.is_dir():
        raise RunDirError(f"cannot use the {what} {directory}: it is a file, not a directory; choose another {option}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".nmt-write-test.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(directory) else ""
        raise RunDirError(
            f"cannot write the {what} {directory}: {e.strerror or e}{where}; choose a writable {option}"
        ) from None


class RunDirLock:
    """Hold ``run_dir`` for one training (rank 0 locks; every rank calls :meth:`acquire` under torchrun).

    Args:
        run_dir: the run directory.
        is_main: whether this process is rank 0 (the one that writes).
    """

    def __init__(self, run_dir: str | Path, *, is_main: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self._fd: int | None = None
        self._key: Path | None = None

    def acquire(self) -> RunDirLock:
        """Check that the run directory and its ``checkpoints/`` can be written, and lock it.

        A no-op when this process already holds the directory.

        Raises:
            RunDirError: the directory is not writable, or another process holds it (the message names it).
        """
        key = self.run_dir.resolve()
        if key in _held:
            return self
        error = None
        if self.is_main:
            try:
                check_writable(self.run_dir, "run directory")
                check_writable(self.run_dir / CHECKPOINTS, "checkpoint directory")
                self._fd = _lock(self.run_dir)
            except RunDirError as e:
                error = str(e)
        error = distributed.broadcast_object(error)  # every rank stops when rank 0 cannot have the directory
        if error:
            raise RunDirError(error)
        self._key = key
        _held[key] = self
        return self

    def release(self) -> None:
        """Give the directory up (the kernel does it anyway when the process ends)."""
        if self._key is not None and _held.get(self._key) is self:
            del _held[self._key]
        self._key = None
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holds(run_dir: str | Path) -> bool:
    """Whether this process holds ``run_dir`` (then nobody else writes into it)."""
    return Path(run_dir).resolve() in _held


def _lock(run_dir: Path) -> int | None:
    """flock ``run_dir/nmt-train.lock`` and record the holder in it; None where the file system has no locks."""
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise RunDirError(f"cannot write the run directory {run_dir}: {e.strerror or e} ({path})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _read_holder(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirError(
                f"run directory {run_dir} is in use by {_describe(holder)}; wait for it to finish or choose another "
                "hydra.run.dir"
            ) from None
        if e.errno in _NO_LOCKS:
            log.warning(
                "cannot lock %s (%s): this file system has no locks, so a second nmt-train on this run directory "
                "would not be stopped",
                path, e.strerror,
            )  # fmt: skip
            return None
        raise
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    return fd


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        value = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "another nmt-train process (it is just starting)"
    return f"nmt-train pid {holder['pid']} on host {holder.get('host', '?')} since {holder.get('started', '?')}"


def remove_leftovers(run_dir: str | Path) -> list[Path]:
    """Delete the temporary checkpoint files a killed run left in ``run_dir/checkpoints`` (``.NAME.*.tmp``,
    ``.NAME.*.link``); only while this process holds the directory, so no other writer's file goes.

    Returns:
        The files removed.
    """
    run_dir = Path(run_dir)
    if not holds(run_dir):
        return []
    removed = []
    for path in leftover_files(run_dir / CHECKPOINTS):
        path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) a killed run left: %s", len(removed), ", ".join(p.name for p in removed))
    return removed
