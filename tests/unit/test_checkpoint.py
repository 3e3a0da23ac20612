"""Checkpoint files: atomic links, clear refusals of truncated, damaged, foreign and code-running files, and clear
errors for writes that fail (a full disk) with the previous file intact."""

from __future__ import annotations

import errno
import os
import pickle
import random
import shutil
import subprocess
import zipfile

import pytest
import torch
from checkpoint_damage import damage_record

from nmt.checkpoint import leftover_files, link_checkpoint, load_checkpoint, save_checkpoint
from nmt.errors import CheckpointError


def minimal(step: int = 3) -> dict:
    return {"step": step, "config": {"name": "x"}, "model": {"w": torch.arange(6.0)}, "tokenizer": {"joint": b"sp"}}


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(minimal(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated or corrupt"):
        load_checkpoint(path)


def test_garbage_and_foreign_files_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    for seed in range(20):  # junk bytes of many shapes, each a clear error rather than an unpickler crash
        garbage.write_bytes(random.Random(seed).randbytes(512))
        with pytest.raises(CheckpointError, match=r"garbage\.pt"):
            load_checkpoint(garbage)
    garbage.write_bytes(pickle.dumps([1, 2, 3]))  # a plain pickle, not a zip archive
    with pytest.raises(CheckpointError, match=r"garbage\.pt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)  # a torch file, but not ours
    with pytest.raises(CheckpointError, match="not an nmt checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


class _WritesMarker:
    """Unpickling this calls open(marker, "w"): what a malicious checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_code_running_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    state = {**minimal(), "format": "nmt-checkpoint-1", "payload": _WritesMarker(str(marker))}
    torch.save(state, path)
    with zipfile.ZipFile(path) as z:  # the payload really is in the file as a pickled global call
        assert any(b"open" in z.read(n) for n in z.namelist() if n.endswith(".pkl"))
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the unsafe load this guards against does run the payload
    assert marker.exists()


def test_link_checkpoint_replaces_target_atomically(tmp_path):
    a, b, last = tmp_path / "step_1.pt", tmp_path / "step_2.pt", tmp_path / "last.pt"
    save_checkpoint(minimal(1), a)
    save_checkpoint(minimal(2), b)
    link_checkpoint(a, last)
    assert load_checkpoint(last)["step"] == 1
    link_checkpoint(b, last)
    assert load_checkpoint(last)["step"] == 2
    b.unlink()  # rotation deletes old step files: last.pt must survive
    assert load_checkpoint(last)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_1.pt"]  # no temporary left behind


# --------------------------------------------------------------------------------------------- damaged bytes
@pytest.mark.parametrize("how", ["zeroed", "flipped", "random"])
def test_damaged_tensor_bytes_inside_an_intact_zip_are_refused_naming_the_file(tmp_path, how):
    path = tmp_path / "best.pt"
    state = minimal()
    state["model"] = {"w": torch.randn(4096)}
    save_checkpoint(state, path)
    damage_record(path, "data/0", how)
    damaged = torch.load(path, weights_only=True)["model"]["w"]  # what torch.load alone does: no complaint
    assert not torch.equal(damaged, state["model"]["w"])
    with pytest.raises(CheckpointError, match=r"best\.pt is damaged: record '.*data/0' .* CRC-32"):
        load_checkpoint(path)


def test_a_damaged_pickle_record_is_refused_too(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(minimal(), path)
    damage_record(path, "data.pkl", "flipped")
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        load_checkpoint(path)


# --------------------------------------------------------------------------------------------- full disk
@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 256 KiB tmpfs (root only; skipped where mounting is not permitted)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_while_saving_says_so_and_keeps_the_previous_checkpoint(tiny_filesystem):
    path = tiny_filesystem / "last.pt"
    save_checkpoint(minimal(1), path)
    big = {**minimal(2), "model": {"w": torch.zeros(200_000)}}  # 800 kB: more than the file system holds
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*last\.pt: the disk is full .*intact"):
        save_checkpoint(big, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tiny_filesystem.iterdir()] == ["last.pt"]  # the temporary file is gone


def test_a_failed_write_reported_by_torch_names_the_disk_error(tmp_path, monkeypatch):
    """Where no tmpfs can be mounted: the same path through a write that raises ENOSPC (torch wraps it in a
    RuntimeError "unexpected pos", keeping the OSError only as the context)."""
    path = tmp_path / "last.pt"
    save_checkpoint(minimal(1), path)
    real_save = torch.save

    class FullFile:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            pass

    monkeypatch.setattr(torch, "save", lambda obj, f: real_save(obj, FullFile(f)))
    with pytest.raises(CheckpointError, match=r"the disk is full .*the previous last\.pt is intact"):
        save_checkpoint(minimal(2), path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_read_only_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "checkpoints"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*checkpoints/last\.pt"):
        save_checkpoint(minimal(), blocker / "last.pt")


def test_leftover_temporary_files_are_found(tmp_path):
    save_checkpoint(minimal(), tmp_path / "last.pt")
    (tmp_path / ".last.pt.abcd1234.tmp").write_bytes(b"half")
    (tmp_path / ".last.pt.123.link").write_bytes(b"")
    (tmp_path / "notes.tmp").write_text("not ours: no leading dot")
    assert [p.name for p in leftover_files(tmp_path)] == [".last.pt.123.link", ".last.pt.abcd1234.tmp"]
