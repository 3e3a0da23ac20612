"""Data-parallel training: ``torchrun --nproc_per_node=2`` on the CPU (gloo), through the real ``nmt-train`` app."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from integration_helpers import BIN, tiny_overrides

from nmt.checkpoint import load_checkpoint

TINY = [
    "name=ddp",
    *tiny_overrides("transformer"),
    "tokenizer.vocab_size=500",
    "train.device=cpu",
    "train.eval_every=4",
    "train.save_every=4",
    "train.log_every=2",
    "train.batch_tokens=512",
    "train.warmup_steps=4",
    "train.threads=1",
    "train.heatmap_sentences=1",
    "search.beam_size=1",
]


def digest(state_dict: dict[str, torch.Tensor]) -> str:
    """The trainer's weights digest, recomputed from a checkpoint."""
    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        h.update(name.encode())
        h.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def torchrun(cwd: Path, env: dict[str, str], *overrides: str) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "nmt.cli.train", *TINY, *overrides]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_two_cpu_ranks_train_in_step_and_resume_with_the_same_world_size(m30k_slice, tmp_path):
    env = {**os.environ, "NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    proc = torchrun(tmp_path, env, cache, "train.max_steps=8")
    assert proc.returncode == 0, proc.stderr[-4000:]

    # Both ranks ran the Hydra app; the run directory's time stamp came from rank 0, so there is one directory.
    (run_dir,) = (tmp_path / "runs" / "ddp").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["world_size"] == 2
    rank0, rank1 = results["rank_weights_sha256"]
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert rank0 == rank1 == digest(last["model"])  # identical weights on both ranks, and those were saved
    assert len(last["loader"]) == len(last["rng"]) == 2  # each rank's data position and random state
    assert last["loader"][0] == last["loader"][1]  # the ranks consumed the same number of (different) batches
    assert not torch.equal(last["rng"][0]["torch"], last["rng"][1]["torch"])  # dropout differs by rank
    log = (run_dir / "train.log").read_text()
    assert "world size 2" in log and log.count("starting a new run") == 1  # only rank 0 writes the log
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 1

    # A different world size cannot take over the run; the same one resumes it.
    single = subprocess.run(
        [str(BIN / "nmt-train"), *TINY, cache, f"hydra.run.dir={run_dir}", "train.max_steps=12"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 2 and "2 process(es)" in single.stderr and "Traceback" not in single.stderr
    proc = torchrun(tmp_path, env, cache, f"hydra.run.dir={run_dir}", "train.max_steps=12")
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 12 and len(set(results["rank_weights_sha256"])) == 1
    assert "RESUMING from" in (run_dir / "train.log").read_text()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
