"""``nmt-train`` end to end through the installed console script, on a real Multi30k slice with tiny models.

What a run must leave behind (checkpoints, metrics.jsonl, TensorBoard scalars and attention images, results.json),
exact resume after SIGKILL and SIGTERM, "nothing to do" on a finished run, clear errors, and checkpoint averaging.
The data-parallel run lives in test_train_ddp.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from integration_helpers import BIN, tiny_overrides
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard_io import hparams_sessions

from nmt.checkpoint import load_checkpoint, load_for_inference
from nmt.experiments.jobs import Status, read_job

TINY_MODELS = {name: tiny_overrides(name) for name in ("transformer", "rnn_bahdanau", "rnn_luong")}


def command(run_dir: Path, cache: Path, model: str, *overrides: str) -> list[str]:
    return [
        str(BIN / "nmt-train"),
        f"hydra.run.dir={run_dir}",
        f"model={model}",
        *TINY_MODELS[model],
        f"data.cache_dir={cache}",
        "tokenizer.vocab_size=500",
        "train.max_steps=20",
        "train.eval_every=10",
        "train.save_every=10",
        "train.log_every=5",
        "train.batch_tokens=1024",
        "train.warmup_steps=10",
        "train.lr=2e-3",
        "train.threads=1",
        "train.heatmap_sentences=2",
        "search.beam_size=2",
        *overrides,
    ]


@pytest.fixture(scope="module")
def env(m30k_slice: Path) -> dict[str, str]:
    return {**os.environ, "NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")  # shared: the tokenizer is trained once for the module


def run(cmd: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env, cache) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    out = {}
    for model in TINY_MODELS:
        run_dir = tmp_path_factory.mktemp(model)
        out[model] = (run_dir, run(command(run_dir, cache, model), env))
    return out


@pytest.mark.parametrize("model", list(TINY_MODELS))
def test_a_short_run_leaves_checkpoints_metrics_tensorboard_and_results(runs, model):
    run_dir, proc = runs[model]
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpts = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.pt", "last.pt", "step_10.pt", "step_20.pt"]
    last = load_checkpoint(ckpts / "last.pt")
    assert last["step"] == 20 and last["trainer"]["finished"] == "max_steps" and last["config"]["model"]["arch"]
    assert (run_dir / ".hydra" / "config.yaml").exists() and list((run_dir / "tokenizer").glob("*.model"))
    log = (run_dir / "train.log").read_text()
    assert "starting a new run" in log and "checkpoint: step 10" in log and "validation step 20" in log
    # Not a terminal (stderr is a pipe): a progress line every train.log_every updates, in train.log too.
    assert "step 5/20 (25%) | epoch 1 | loss " in log and "step 20/20 (100%)" in log
    assert " tok/s | " in log and "| elapsed " in log and "| ETA " in log

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    valid = [r for r in records if r["kind"] == "valid"]
    assert [r["step"] for r in train] == [5, 10, 15, 20] and [r["step"] for r in valid] == [10, 20]
    assert all(0 <= r["bleu"] <= 100 and r["ppl"] > 1 and "BLEU" not in r["bleu_signature"] for r in valid)
    assert all(r["tokens_per_s"] > 0 and 0 < r["padding_efficiency"] <= 1 and r["lr"] > 0 for r in train)
    assert train[-1]["loss"] < train[0]["loss"]  # it learns something even in 20 updates
    assert len((run_dir / "valid" / "step_20.hyp").read_text().splitlines()) == 100

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "valid/bleu", "valid/ppl"} <= set(
        tags["scalars"]
    )
    assert [e.step for e in acc.Scalars("valid/bleu")] == [10, 20]
    assert {"attention/dev_0", "attention/dev_1"} <= set(tags["images"])
    assert [e.step for e in acc.Images("attention/dev_0")] == [10, 20]

    results = json.loads((run_dir / "results.json").read_text())
    (test,) = results["test"]
    # HParams: once, in the run itself (no second run in a subdirectory), with data and tokenizer keys; the test
    # BLEU is among the run's scalars (the HParams tab's metric columns).
    assert [p for p in (run_dir / "tensorboard").iterdir() if p.is_dir()] == []
    (settings,) = hparams_sessions(run_dir / "tensorboard")
    assert settings["data.src_lang"] == "de" and settings["tokenizer.vocab_size"] == 500 and settings["train.lr"] > 0
    assert settings["model.arch"] == last["config"]["model"]["arch"] and "search.beam_size" in settings
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("hparam/test_bleu")] == [(20, round(test["bleu"], 4))]
    assert {"hparam/dev_bleu", "hparam/test_chrf", "hparam/best_step"} <= set(acc.Tags()["scalars"])
    assert test["name"] == "test_2016_flickr" and test["sentences"] == 100
    assert test["bleu_signature"].startswith("nrefs:1|") and "chrf" in test
    assert results["parameters"] > 0 and results["steps"] == 20 and results["tokens_per_s"] > 0
    assert len((run_dir / test["hypotheses"]).read_text().splitlines()) == 100


def test_rerunning_a_finished_run_says_there_is_nothing_to_do_and_mends_a_damaged_results_file(runs, env, cache):
    run_dir, _ = runs["transformer"]
    before = (run_dir / "checkpoints" / "last.pt").stat().st_mtime_ns
    results = (run_dir / "results.json").read_text()
    (run_dir / "results.json").write_text(results[: len(results) // 2])  # damaged after the run
    assert read_job(run_dir).status == Status.corrupt  # not "running"
    proc = run(command(run_dir, cache, "transformer"), env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "NOTHING TO DO" in proc.stdout + proc.stderr and "train.max_steps" in proc.stdout + proc.stderr
    assert (run_dir / "checkpoints" / "last.pt").stat().st_mtime_ns == before
    assert read_job(run_dir).status == Status.finished
    assert json.loads((run_dir / "results.json").read_text())["dev"]["bleu"] == json.loads(results)["dev"]["bleu"]
    assert len(hparams_sessions(run_dir / "tensorboard")) == 1  # the run appears once in TensorBoard's HParams


def test_averaging_the_last_checkpoints_gives_a_loadable_mean(runs, tmp_path):
    run_dir, _ = runs["rnn_luong"]
    out = tmp_path / "avg.pt"
    proc = subprocess.run(
        [BIN / "nmt-average", "--last", run_dir, "--output", out], capture_output=True, text=True, timeout=120
    )  # no N: as many as the run keeps (train.keep_last 3; this short run saved 2)
    assert proc.returncode == 0, proc.stderr
    model, tokenizer, cfg = load_for_inference(out)
    a, b = (load_checkpoint(run_dir / "checkpoints" / f"step_{n}.pt")["model"] for n in (10, 20))
    for name, tensor in model.state_dict().items():
        assert torch.allclose(tensor, (a[name] + b[name]) / 2, atol=1e-6), name
    assert cfg.model.attention.value == "luong" and tokenizer.tgt_vocab_size == 500


def test_a_corrupt_last_checkpoint_is_a_clear_error_not_a_traceback(runs, env, cache, tmp_path):
    source, _ = runs["rnn_bahdanau"]
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    data = (source / "checkpoints" / "last.pt").read_bytes()
    (run_dir / "checkpoints" / "last.pt").write_bytes(data[: len(data) // 3])
    proc = run(command(run_dir, cache, "rnn_bahdanau"), env)
    assert proc.returncode == 2  # a user error (nmt.errors: one exit-status convention for every tool)
    assert "truncated or corrupt" in proc.stderr and "last.pt" in proc.stderr and "Traceback" not in proc.stderr


def test_config_mistakes_exit_nonzero_with_a_message(env, tmp_path):
    proc = run([str(BIN / "nmt-train"), f"hydra.run.dir={tmp_path}", "train.lr=-1"], env)
    assert proc.returncode == 2
    assert "train.lr must be positive, got -1.0" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------- one writer per run
def test_a_second_nmt_train_on_a_busy_run_directory_is_refused_and_a_killed_one_leaves_no_stale_lock(
    env, cache, tmp_path
):
    run_dir = tmp_path / "run"
    long = ["train.max_steps=100000", "train.eval_every=100000", "train.save_every=100000"]
    first = subprocess.Popen(
        command(run_dir, cache, "transformer", *long), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        log = run_dir / "train.log"  # the lock is taken before Hydra writes; a line in the log: our task runs
        deadline = time.monotonic() + 180
        while not (log.exists() and log.stat().st_size) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None and log.stat().st_size, first.stderr.read() if first.poll() is not None else ""
        lock = json.loads((run_dir / "nmt-train.lock").read_text())
        assert lock["pid"] == first.pid
        overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
        leftovers = [run_dir / "checkpoints" / ".last.pt.q1w2e3r4.tmp", run_dir / "checkpoints" / ".last.pt.99.link"]
        for p in leftovers:
            p.write_bytes(b"what a killed run leaves")

        second = run(command(run_dir, cache, "transformer", "train.max_steps=5"), env)
        assert second.returncode == 2
        assert second.stderr.strip() == (
            f"nmt-train: error: run directory {run_dir} is in use by nmt-train pid {first.pid} on host "
            f"{lock['host']} since {lock['started']}; wait for it to finish or choose another hydra.run.dir"
        )
        assert first.poll() is None  # the first goes on, its files untouched by the second
        assert (run_dir / ".hydra" / "overrides.yaml").read_text() == overrides
        assert "in use" not in (run_dir / "train.log").read_text()
        assert all(p.exists() for p in leftovers)  # not the refused process's to delete
    finally:
        first.kill()
        first.wait(60)
    # SIGKILLed with the lock held: a new start gets the directory and removes what the killed run left.
    third = subprocess.Popen(command(run_dir, cache, "transformer", *long), env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while any(p.exists() for p in leftovers) and third.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert third.poll() is None, third.stderr.read()
        assert not any(p.exists() for p in leftovers)
        assert json.loads((run_dir / "nmt-train.lock").read_text())["pid"] == third.pid
    finally:
        third.kill()
        third.wait(60)


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only tmpfs (root sees EROFS there, where chmod would not stop it); skipped where mounting is not
    permitted."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)]).returncode
    ):
        pytest.skip("mounting a read-only tmpfs is not permitted here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("case", ["checkpoints is a file", "read-only working dir"])
def test_an_unwritable_run_directory_is_one_line_at_start(case, env, cache, tmp_path, request):
    run_dir, cwd = tmp_path / "run", None
    if case == "checkpoints is a file":
        run_dir.mkdir()
        (run_dir / "checkpoints").write_text("in the way")
        message = f"cannot use the checkpoint directory {run_dir / 'checkpoints'}: it is a file, not a directory"
    cmd = command(run_dir, cache, "transformer")
    if case == "read-only working dir":  # Hydra's default runs/<name>/<time>, relative to the working directory
        cwd = request.getfixturevalue("read_only_dir")
        cmd = [c for c in cmd if not c.startswith("hydra.run.dir=")]
        message = "cannot write the run directory runs/default/"
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=cwd)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nmt-train: error: {message}"), proc.stderr


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(env, cache, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    # 700 kB: room for the config, log and tokenizer, not for a checkpoint of the tiny Transformer (~0.9 MB)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mount)]).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        proc = run(command(mount / "run", cache, "transformer", "train.heatmap_sentences=0"), env)
        leftovers = sorted(p.name for p in (mount / "run" / "checkpoints").iterdir())
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert re.fullmatch(  # best.pt (the first validation) or step_10.pt, whichever is written first
        rf"nmt-train: error: cannot write checkpoint {mount}/run/checkpoints/(best|step_10)\.pt: the disk is full "
        r"\(No space left on device\); free some space or set another run directory",
        proc.stderr.strip().splitlines()[-1],
    ), proc.stderr[-1000:]
    assert leftovers == []  # no half-written temporary file


# --------------------------------------------------------------------------------------------- exact resume
def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"training ended (rc {proc.returncode}) before {path.name} appeared:\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} did not appear in {timeout} s")
        time.sleep(0.01)


def test_sigkill_and_sigterm_then_resume_give_bitwise_the_weights_of_an_uninterrupted_run(env, cache, tmp_path):
    # Dropout on (the tiny Transformer has 0.1), two evaluations, five step checkpoints.
    extra = ["train.max_steps=40", "train.eval_every=20", "train.save_every=10", "train.heatmap_sentences=0"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proc = run(command(straight, cache, "transformer", *extra), env)
    assert proc.returncode == 0, proc.stderr[-2000:]

    cmd = command(resumed, cache, "transformer", *extra)
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(resumed / "checkpoints" / "step_10.pt", first)
    first.send_signal(signal.SIGKILL)
    assert first.wait(60) == -signal.SIGKILL

    second = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(resumed / "checkpoints" / "step_30.pt", second)
    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 128 + signal.SIGTERM  # saved a checkpoint and exited
    interrupted_at = load_checkpoint(resumed / "checkpoints" / "last.pt")["step"]
    assert 30 <= interrupted_at < 40
    assert "SIGTERM received" in second.stderr.read()
    assert read_job(resumed).status == Status.interrupted  # not "running" for a summary

    third = run(cmd, env)
    assert third.returncode == 0, third.stderr[-2000:]
    assert read_job(resumed).status == Status.finished and not (resumed / "interrupted.json").exists()
    log = (resumed / "train.log").read_text()
    assert "RESUMING from" in log and f"step {interrupted_at}," in log

    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 40
    assert a["model"].keys() == b["model"].keys()
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not different, f"weights differ after resume: {different[:5]}"
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    train_steps = [json.loads(line)["step"] for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert steps == train_steps  # each step logged once, as in the uninterrupted run
    assert len(hparams_sessions(resumed / "tensorboard")) == 1  # three sessions, one run in TensorBoard's HParams


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.mark.parametrize("model", ["rnn_bahdanau", "rnn_luong"])
def test_an_rnn_resumed_from_a_step_checkpoint_ends_bitwise_at_the_uninterrupted_weights(
    runs, env, cache, tmp_path, model
):
    # The RNN presets keep dropout (random streams), validate at step 10 (the plateau schedule reacts) and decode.
    straight, proc = runs[model]
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = tmp_path / "resumed"
    step10 = f"train.resume={straight / 'checkpoints' / 'step_10.pt'}"
    again = run(command(resumed, cache, model, step10), env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "RESUMING from" in (resumed / "train.log").read_text()
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 20
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not different, f"weights differ after resume: {different[:5]}"
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert all(
        torch.equal(a["optimizer"]["state"][k]["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])
        for k in a["optimizer"]["state"]
    )
