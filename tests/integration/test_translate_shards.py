"""Sharded ``nmt-translate``: ``torchrun`` ranks and ``--shard K/N`` jobs give the output of one process, byte for
byte; an interrupted shard resumes; the errors a user can make."""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import nullcontext
from pathlib import Path

import pytest
from integration_helpers import BIN

from nmt.cli.translate import main
from nmt.sharding import Shard, record_path, shard_path

# Greedy, at most 3 output pieces and 12 source pieces: 20,000 lines of a tiny model in seconds per process.
FAST = ["-b", "1", "--max-len-a", "0", "--max-len-b", "3", "--max-source-len", "12", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def lines_20k(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 20,000 German lines of the Multi30k training set, plus an empty line."""
    import gzip

    with gzip.open(data_root / "multi30k" / "train.de.gz", "rt", encoding="utf-8") as f:
        lines = [line for _, line in zip(range(20_000), f)]
    path = tmp_path_factory.mktemp("shards") / "train.de"
    path.write_text("".join(lines[:100]) + "\n" + "".join(lines[100:]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def single(lines_20k: Path, tiny_checkpoint: Path, m30k_slice: Path) -> Path:
    """The reference: one process, one thread."""
    out = lines_20k.with_name("single.en")
    env = {**os.environ, "NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    translate(env, "-c", tiny_checkpoint, "-i", lines_20k, "-o", out, *FAST)
    return out


def translate(env: dict[str, str], *args, runner: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*(runner or [str(BIN / "nmt-translate")]), *map(str, args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_torchrun_ranks_write_what_one_process_writes(lines_20k, single, tiny_checkpoint, cli_env, tmp_path):
    out = tmp_path / "ranks.en"
    runner = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "nmt.cli.translate"]
    translate(cli_env, "-c", tiny_checkpoint, "-i", lines_20k, "-o", out, *FAST, "--threads", "1", runner=runner)
    assert out.read_bytes() == single.read_bytes()
    assert out.read_text(encoding="utf-8").count("\n") == 20_001
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranks.en"]  # the shards were merged and removed


@pytest.mark.usefixtures("one_thread")
def test_shard_jobs_resume_after_an_interruption_and_merge(lines_20k, single, tiny_checkpoint, tmp_path, capsys):
    """Three --shard jobs (in this process) on the first 3,001 lines; one of them is interrupted."""
    src, out = tmp_path / "part.de", tmp_path / "jobs.en"
    src.write_bytes(b"".join(lines_20k.read_bytes().splitlines(keepends=True)[:3001]))
    common = ["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(out), *FAST]
    for k in range(3):
        assert main([*common, "--shard", f"{k}/3", "--chunk-lines", "400"]) == 0
    # Shard 1 "was killed" while writing its third chunk: its record says two chunks, and a partial line follows.
    shard = Shard(1, 3)
    record = json.loads(record_path(out, shard).read_text())
    lines = shard_path(out, shard).read_bytes().split(b"\n")
    kept = b"".join(line + b"\n" for line in lines[:800])
    shard_path(out, shard).write_bytes(kept + b"a half-written li")
    record.update(done=800, bytes=[len(kept)])
    record_path(out, shard).write_text(json.dumps(record))

    assert main(["--merge", "-o", str(out)]) == 2
    assert "shard 1/3 is incomplete (800 of 1,000 lines)" in capsys.readouterr().err
    assert main([*common, "--shard", "1/3", "--chunk-lines", "70"]) == 0  # resumes; the chunk size may differ
    assert main(["--merge", "-o", str(out)]) == 0
    expected = single.read_bytes().splitlines(keepends=True)[:3001]
    assert out.read_bytes() == b"".join(expected)


def test_sharding_needs_files_and_one_way_to_choose_the_shard(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.de"
    src.write_text("Ein Hund.\n", encoding="utf-8")
    cases = [
        (["-c", tiny_checkpoint, "--shard", "0/2", "-o", tmp_path / "o"], "needs --input FILE"),
        (["-c", tiny_checkpoint, "--shard", "0/2", "-i", src], "needs --output FILE"),
        (["-c", tiny_checkpoint, "--shard", "2/2", "-i", src, "-o", tmp_path / "o"], "0 <= K < N"),
        (["--merge", "-o", tmp_path / "o"], "found no shards"),
        (["-i", src, "-o", tmp_path / "o"], "--checkpoint is required"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) if "K < N" in message else nullcontext() as exit_:
            status = main([*map(str, args)])
        assert (exit_.value.code if exit_ else status) == 2
        assert message in capsys.readouterr().err, args
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun
    monkeypatch.setenv("RANK", "1")
    assert main(["-c", str(tiny_checkpoint), "--shard", "0/2", "-i", str(src), "-o", str(tmp_path / "o")]) == 2
    assert "under torchrun every rank takes its shard from RANK" in capsys.readouterr().err
