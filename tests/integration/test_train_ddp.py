"""Data-parallel training: ``torchrun --nproc_per_node=2`` on the CPU (gloo).

Two ranks must do what one process does with the same batches (not merely agree with each other, which DDP
guarantees by construction), with and without gradient accumulation (``no_sync``), and a resumed data-parallel run
must end bitwise where an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import ddp_worker
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
    "train.accumulate=2",  # under DDP: no_sync for the first batch of each update
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


def torchrun(cwd: Path, env: dict[str, str], *args: str, module: bool = True) -> subprocess.CompletedProcess:
    target = ["-m", "nmt.cli.train", *TINY] if module else []
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", *target, *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def env(m30k_slice: Path) -> dict[str, str]:
    return {**os.environ, "NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def test_two_cpu_ranks_train_in_step_and_resume_bitwise_with_the_same_world_size(env, tmp_path):
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    proc = torchrun(tmp_path, env, cache, "train.max_steps=12")
    assert proc.returncode == 0, proc.stderr[-4000:]

    # Both ranks ran the Hydra app; the run directory's time stamp came from rank 0, so there is one directory.
    (run_dir,) = (tmp_path / "runs" / "ddp").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["world_size"] == 2 and results["steps"] == 12
    rank0, rank1 = results["rank_weights_sha256"]
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert rank0 == rank1 == digest(last["model"])  # identical weights on both ranks, and those were saved
    assert len(last["loader"]) == len(last["rng"]) == 2  # each rank's data position and random state
    assert last["loader"][0] == last["loader"][1]  # the ranks consumed the same number of (different) batches
    assert not torch.equal(last["rng"][0]["torch"], last["rng"][1]["torch"])  # dropout differs by rank
    log = (run_dir / "train.log").read_text()
    assert "world size 2" in log and log.count("starting a new run") == 1  # only rank 0 writes the log
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 1

    # A different world size cannot take over the run.
    single = subprocess.run(
        [str(BIN / "nmt-train"), *TINY, cache, f"hydra.run.dir={run_dir}", "train.max_steps=16"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 2 and "2 process(es)" in single.stderr and "Traceback" not in single.stderr

    # The same one resumes, from step 8 (as after an interruption there), to bitwise the uninterrupted weights.
    resumed = tmp_path / "resumed"
    step8 = f"train.resume={run_dir / 'checkpoints' / 'step_8.pt'}"
    proc = torchrun(tmp_path, env, cache, f"hydra.run.dir={resumed}", step8, "train.max_steps=12")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "RESUMING from" in (resumed / "train.log").read_text()
    again = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert again["step"] == 12
    different = [k for k in last["model"] if not torch.equal(last["model"][k], again["model"][k])]
    assert not different, f"weights differ after a resume under DDP: {different[:5]}"
    assert json.loads((resumed / "results.json").read_text())["rank_weights_sha256"] == [rank0, rank1]


def test_two_ranks_end_where_one_process_ends_with_both_ranks_batches_accumulated(
    m30k_slice, env, tmp_path, one_thread
):
    cache = tmp_path / "cache"
    single = {
        a: ddp_worker.run(m30k_slice, cache, tmp_path / f"single{a}", accumulate=2 * a) for a in ddp_worker.ACCUMULATE
    }
    worker = Path(ddp_worker.__file__)
    proc = torchrun(tmp_path, env, str(worker), str(m30k_slice), str(cache), str(tmp_path), module=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for a in ddp_worker.ACCUMULATE:
        ranks = [torch.load(tmp_path / f"accumulate{a}_rank{r}.pt", weights_only=True) for r in (0, 1)]
        for name, value in ranks[0]["weights"].items():
            assert torch.equal(value, ranks[1]["weights"][name]), name
        reference = single[a]
        for got, want in zip(ranks[0]["figures"], reference["figures"]):
            assert got["tokens"] == want["tokens"]  # normalised by the target tokens of both ranks
            assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
            assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4)
        for name, value in reference["weights"].items():
            torch.testing.assert_close(ranks[0]["weights"][name], value, rtol=1e-4, atol=1e-6, msg=name)
