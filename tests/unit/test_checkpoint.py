"""Checkpoint files: atomic links, and clear refusals of truncated, corrupt, foreign and code-running files."""

from __future__ import annotations

import pickle
import random
import zipfile

import pytest
import torch

from nmt.checkpoint import link_checkpoint, load_checkpoint, save_checkpoint
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
