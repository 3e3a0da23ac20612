"""The run directory lock: one writer at a time, a message naming the holder, no stale locks, writability checks,
cleanup of a killed run's temporary files. (The same through ``nmt-train`` itself: tests/integration/test_train.py.)"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import subprocess
import sys

import pytest

from nmt.training import rundir
from nmt.training.rundir import LOCK_FILE, RunDirError, RunDirLock, check_writable, holds, remove_leftovers


def hold_from_elsewhere(run_dir, record: dict) -> int:
    """flock the lock file through a descriptor of its own (flock locks belong to the open file, so this conflicts
    with RunDirLock in the same process exactly as another process would)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps(record).encode())
    return fd


def test_a_second_writer_is_refused_with_the_holder_named_and_gets_the_directory_once_it_is_free(tmp_path):
    run_dir = tmp_path / "run"
    fd = hold_from_elsewhere(run_dir, {"pid": 4242, "host": "node7", "started": "2025-01-01 10:00:00 UTC"})
    with pytest.raises(RunDirError) as refused:
        RunDirLock(run_dir).acquire()
    assert str(refused.value) == (
        f"run directory {run_dir} is in use by nmt-train pid 4242 on host node7 since 2025-01-01 10:00:00 UTC; "
        "wait for it to finish or choose another hydra.run.dir"
    )
    assert refused.value.exit_code == 2 and not holds(run_dir)
    os.close(fd)  # the holder ends
    with RunDirLock(run_dir) as lock:
        assert holds(run_dir)
        record = json.loads((run_dir / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"]
        with RunDirLock(tmp_path / "run" / ".." / "run"):  # claimed again by this process (the CLI, then train())
            pass
        assert holds(run_dir)  # the inner claim did not drop the outer one
    assert not holds(run_dir) and lock._fd is None


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # A holder that dies by SIGKILL with the lock held (what nmt-train does is checked end to end in
    # tests/integration/test_train.py; plain flock here keeps this test fast).
    code = (
        "import fcntl, json, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); os.write(fd, json.dumps({'pid': os.getpid()}).encode()); "
        "print('held', flush=True); os.kill(os.getpid(), 9)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir / LOCK_FILE)], capture_output=True, text=True)
    assert proc.returncode == -9 and proc.stdout == "held\n"
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] != os.getpid()  # the dead holder's record stays
    with RunDirLock(run_dir):
        assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_only_rank_0_locks_and_writes(tmp_path):
    run_dir = tmp_path / "run"
    with RunDirLock(run_dir, is_main=False):
        assert holds(run_dir) and not run_dir.exists()


def test_leftover_temporary_files_go_only_while_the_directory_is_held(tmp_path):
    run_dir = tmp_path / "run"
    ckpts = run_dir / "checkpoints"
    ckpts.mkdir(parents=True)
    leftovers = [ckpts / ".last.pt.k2j4h5.tmp", ckpts / ".step_10.pt.x8y9.tmp", ckpts / ".last.pt.4242.link"]
    for p in [*leftovers, ckpts / "step_10.pt", ckpts / "notes.tmp"]:
        p.write_bytes(b"x")
    assert remove_leftovers(run_dir) == [] and all(p.exists() for p in leftovers)  # not held: another run's files
    with RunDirLock(run_dir):
        assert sorted(remove_leftovers(run_dir)) == sorted(leftovers)
    assert sorted(p.name for p in ckpts.iterdir()) == ["notes.tmp", "step_10.pt"]


def test_unwritable_directories_are_clear_errors_naming_them(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("a file where the checkpoint directory goes")
    with pytest.raises(RunDirError, match=r"cannot use the checkpoint directory .*run/checkpoints: it is a file"):
        RunDirLock(tmp_path / "run").acquire()
    with pytest.raises(RunDirError, match=r"cannot write the run directory .*: Not a directory"):
        check_writable(tmp_path / "run" / "checkpoints" / "x", "run directory")
    # /proc refuses new directories even to root (where chmod does not stop writes)
    with pytest.raises(RunDirError, match=r"cannot write the sweep directory /proc/nmt-test: .*hydra\.sweep\.dir"):
        check_writable(rundir.Path("/proc/nmt-test"), "sweep directory", "hydra.sweep.dir")


def test_a_file_system_without_locks_trains_on_with_a_warning(tmp_path, monkeypatch, caplog):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING), RunDirLock(tmp_path / "run"):
        assert holds(tmp_path / "run")
    assert "has no locks" in caplog.text
