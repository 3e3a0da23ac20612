"""``nmt-train -m`` sweeps end to end: a 3-job sweep, its summary, a rerun that trains nothing, failure isolation.

Tiny Transformers on the Multi30k slice (2,000 training pairs), a few updates each, through the installed console
scripts. The sweep job logic itself (:func:`nmt.cli.train.sweep_job`) is also checked in-process for the cases a
real run cannot provoke cheaply (an unexpected exception, a signal, a directory of another sweep).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from integration_helpers import BIN, tiny_overrides

from nmt.cli.train import FAILED_JOB_VALUE, sweep_job
from nmt.errors import NMTError
from nmt.experiments import jobs

TINY = [
    *tiny_overrides("transformer"),
    "tokenizer.vocab_size=500",
    "train.max_steps=4",
    "train.eval_every=2",
    "train.save_every=2",
    "train.log_every=2",
    "train.batch_tokens=1024",
    "train.warmup_steps=2",
    "train.threads=1",
    "train.heatmap_sentences=0",
    "train.matmul_peak_gflops=100",  # skip the start-up matmul measurement
    "search.beam_size=1",
]
LRS = "train.lr=1e-3,2e-3,3e-3"


@pytest.fixture(scope="module")
def env(m30k_slice: Path) -> dict[str, str]:
    return {**os.environ, "NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")  # the tokenizer is trained once for every sweep of the module


def sweep(sweep_dir: Path, cache: Path, env: dict[str, str], *overrides: str) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "nmt-train"), "-m", f"hydra.sweep.dir={sweep_dir}", f"data.cache_dir={cache}", *TINY, *overrides]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def summarize(sweep_dir: Path, out: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run(
        [str(BIN / "nmt-sweep-summary"), str(sweep_dir), "--output-dir", str(out), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((out / "summary.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def three_jobs(tmp_path_factory, cache, env) -> Path:
    sweep_dir = tmp_path_factory.mktemp("sweep") / "lr"
    proc = sweep(sweep_dir, cache, env, LRS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return sweep_dir


def test_a_three_job_sweep_is_summarised_as_three_rows_with_bleu(three_jobs, env, tmp_path):
    proc, summary = summarize(three_jobs, tmp_path, env)
    rows = summary["jobs"]
    assert [r["job"] for r in sorted(rows, key=lambda r: r["job"])] == ["0", "1", "2"]
    assert all(r["status"] == "finished" for r in rows)
    for r in rows:
        assert all(isinstance(r[k], float) and 0.0 <= r[k] <= 100.0 for k in ("dev_bleu", "test_bleu", "test_chrf"))
        assert r["model"] == "transformer" and r["pair"] == "de-en" and r["steps"] == 4 and r["params"] > 0
    # only the swept key varies, so it is the only override column; rows come best dev BLEU first
    assert summary["varying"] == ["train.lr"]
    assert sorted(r["override:train.lr"] for r in rows) == ["0.001", "0.002", "0.003"]
    assert [r["dev_bleu"] for r in rows] == sorted((r["dev_bleu"] for r in rows), reverse=True)
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 3 and "train.lr" in table[0] and "test BLEU" in table[0]
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").startswith(table[0])
    assert len((tmp_path / "summary.csv").read_text(encoding="utf-8").splitlines()) == 1 + 3
    for plot in ("bleu_by_model.png", "bleu_by_length.png", "dev_bleu_vs_time.png"):
        assert (tmp_path / plot).read_bytes()[:4] == b"\x89PNG", plot


def test_rerunning_the_sweep_trains_nothing(three_jobs, cache, env):
    watched = [three_jobs / str(n) / name for n in range(3) for name in ("checkpoints/last.pt", "metrics.jsonl")]
    before = {p: p.stat().st_mtime_ns for p in watched}
    proc = sweep(three_jobs, cache, env, LRS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("already finished") == 3, log[-3000:]
    assert "training finished" not in log and "step 2 |" not in log
    assert {p: p.stat().st_mtime_ns for p in watched} == before


def test_a_failed_job_is_recorded_and_the_others_still_run(tmp_path, cache, env):
    sweep_dir = tmp_path / "sweep"
    # job 0 names a test set that does not exist: it fails while reading data, after the config was accepted
    proc = sweep(
        sweep_dir, cache, env, "train.max_steps=2", "data.test=[multi30k/no_such_set],[multi30k/test_2016_flickr]"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    failure = json.loads((sweep_dir / "0" / "failed.json").read_text(encoding="utf-8"))
    assert failure["error"] == "DataError" and "no_such_set" in failure["message"] and failure["user_error"]
    assert "Traceback" in failure["traceback"] and "data.test=[multi30k/no_such_set]" in failure["overrides"]
    assert jobs.read_results(sweep_dir / "1") is not None
    _, summary = summarize(sweep_dir, tmp_path / "out", env, "--no-plots")
    by_job = {r["job"]: r for r in summary["jobs"]}
    assert by_job["0"]["status"] == "failed" and "no_such_set" in by_job["0"]["note"]
    assert by_job["1"]["status"] == "finished" and by_job["1"]["test_bleu"] is not None


# ------------------------------------------------------------------------------------- sweep_job in-process
LIMITS = {"max_steps": 4, "max_epochs": 0, "patience": 0}


def test_an_unexpected_error_is_recorded_with_its_traceback_and_returns_the_sentinel(tmp_path):
    def body() -> float:
        raise RuntimeError("CUDA out of memory (simulated)")

    value = sweep_job(body, tmp_path, overrides=["train.lr=0.1"], num=3, limits=LIMITS)
    assert value == FAILED_JOB_VALUE and math.isinf(value) and not math.isnan(value)
    failure = json.loads((tmp_path / "failed.json").read_text(encoding="utf-8"))
    assert failure["error"] == "RuntimeError" and not failure["user_error"]
    assert "in body" in failure["traceback"] and failure["overrides"] == ["train.lr=0.1"]
    # a retry that succeeds clears the failure
    assert sweep_job(lambda: 12.5, tmp_path, overrides=["train.lr=0.1"], num=3, limits=LIMITS) == 12.5
    assert not (tmp_path / "failed.json").exists()


def test_a_signal_stops_the_whole_sweep(tmp_path):
    class Interrupted(NMTError):
        exit_code = 130

    def body() -> float:
        raise Interrupted("SIGINT received: checkpoint saved")

    with pytest.raises(SystemExit) as stopped:
        sweep_job(body, tmp_path, overrides=[], num=0, limits=LIMITS)
    assert stopped.value.code == 130 and not (tmp_path / "failed.json").exists()
    assert jobs.read_job(tmp_path).status == jobs.Status.interrupted
    assert jobs.read_json(tmp_path / "interrupted.json")["exit_code"] == 130
    # the rerun that resumes it clears the mark
    assert sweep_job(lambda: 7.0, tmp_path, overrides=[], num=0, limits=LIMITS) == 7.0
    assert not (tmp_path / "interrupted.json").exists()


def test_a_finished_job_returns_its_dev_bleu_unless_its_limits_were_raised(tmp_path):
    results = {
        "dev": {"bleu": 30.0},
        "test": [],
        "steps": 4,
        "finished": "max_steps",
        "best_dev_bleu_during_training": 28.5,
    }
    (tmp_path / "results.json").write_text(json.dumps(results), encoding="utf-8")

    def body() -> float:
        raise AssertionError("a finished job must not train")

    assert sweep_job(body, tmp_path, overrides=[], num=0, limits=LIMITS) == 28.5
    assert sweep_job(lambda: 31.0, tmp_path, overrides=[], num=0, limits={**LIMITS, "max_steps": 8}) == 31.0


def test_a_directory_of_another_sweep_is_left_alone(tmp_path):
    jobs.write_job_record(tmp_path, num=1, overrides=["train.lr=0.001", "train.max_steps=4"])

    def body() -> float:
        raise AssertionError("must not train in another sweep's directory")

    value = sweep_job(body, tmp_path, overrides=["train.lr=0.005", "train.max_steps=4"], num=1, limits=LIMITS)
    assert value == FAILED_JOB_VALUE and not (tmp_path / "failed.json").exists()
    # a raised limit (or another launcher preset) is the same experiment continued
    same = ["train.lr=0.001", "train.max_steps=8", "+sweep=cpu_parallel"]
    assert sweep_job(lambda: 7.0, tmp_path, overrides=same, num=1, limits=LIMITS) == 7.0


def test_a_job_another_process_trains_in_is_skipped_without_touching_its_files(tmp_path, caplog):
    """A second copy of the same sweep (same hydra.sweep.dir) reaches a job the first one is training."""
    jobs.write_job_record(tmp_path, num=2, overrides=["train.lr=0.001"])
    record = (tmp_path / jobs.JOB_RECORD).read_text()
    holder = os.open(tmp_path / "nmt-train.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first copy holds the job's directory

    def body() -> float:
        raise AssertionError("must not train in a directory another process trains in")

    try:
        value = sweep_job(body, tmp_path, overrides=["train.lr=0.001"], num=2, limits=LIMITS)
    finally:
        os.close(holder)
    assert value == FAILED_JOB_VALUE and "job 2 not run: run directory" in caplog.text
    assert not (tmp_path / "failed.json").exists() and (tmp_path / jobs.JOB_RECORD).read_text() == record
    assert sweep_job(lambda: 7.0, tmp_path, overrides=["train.lr=0.001"], num=2, limits=LIMITS) == 7.0  # now free
