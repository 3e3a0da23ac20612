"""Sweep summaries on hand-made job directories: statuses, varying overrides, sorting, outputs, curves, plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml
from corpus_io import read_gz_lines

from nmt.cli import sweep_summary
from nmt.experiments import jobs
from nmt.experiments.plots import draw_all, length_buckets, signature_options, training_curve
from nmt.experiments.summary import (
    SweepError,
    collect_jobs,
    model_label,
    summarize,
    to_csv,
    to_json,
    to_markdown,
    write_summary,
)

SIG = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
TRANSFORMER = {"arch": "transformer", "d_model": 32}
RNN_LUONG = {"arch": "rnn", "cell": "gru", "attention": "luong", "score": "dot"}


def make_job(
    root: Path,
    name: str,
    *,
    overrides: list[str],
    model: dict | None = None,
    results: dict | None = None,
    failure: str | None = None,
    metrics: list[dict] | None = None,
    pair: tuple[str, str] = ("de", "en"),
) -> Path:
    """A job directory as nmt-train -m leaves it (only the files that matter for the case)."""
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides), encoding="utf-8")
    data = {"src_lang": pair[0], "tgt_lang": pair[1], "test": ["multi30k/test_2016_flickr"], "hf": {"path": ""}}
    config = {"name": "t", "data": data, "model": model or TRANSFORMER}
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    if metrics is not None:
        (d / "train.log").write_text("training\n", encoding="utf-8")
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics), encoding="utf-8")
    if results is not None:
        (d / "results.json").write_text(json.dumps(results), encoding="utf-8")
    if failure is not None:
        jobs.write_failure(d, ValueError(failure), overrides=overrides)
    return d


def results(dev: float, test: float, *, steps: int = 100, hyp: str = "test/test_2016_flickr.best.hyp") -> dict:
    return {
        "model": "transformer",
        "parameters": 1_234_567,
        "steps": steps,
        "finished": "max_steps",
        "best_dev_bleu_during_training": dev - 1,
        "dev": {"name": "val", "bleu": dev, "chrf": dev + 20, "bleu_signature": SIG},
        "test": [
            {"name": "test_2016_flickr", "bleu": test, "chrf": test + 20, "bleu_signature": SIG, "hypotheses": hyp}
        ],
        "wall_seconds": 1120.4,
        "tokens_per_s": 6863.3,
    }


TRAIN_RECORDS = [
    {"kind": "train", "step": 50, "time": 1000.0, "tgt_tokens": 1000, "tokens_per_s": 100.0},  # 10 s of updates
    {"kind": "valid", "step": 50, "time": 1012.0, "bleu": 5.0},
    {"kind": "train", "step": 100, "time": 5000.0, "tgt_tokens": 3000, "tokens_per_s": 200.0},  # +10 s (resumed)
    {"kind": "valid", "step": 100, "time": 5003.0, "bleu": 9.5},
]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Jobs 0-4 of a train.lr sweep: finished (two), running, failed, damaged results; job 5 never started."""
    root = tmp_path / "sweep"
    base = ["model=transformer", "train.max_steps=100"]
    make_job(root, "0", overrides=[*base, "train.lr=0.001"], results=results(30.0, 31.0), metrics=TRAIN_RECORDS)
    make_job(root, "1", overrides=[*base, "train.lr=0.002"], results=results(35.5, 36.0), metrics=TRAIN_RECORDS)
    make_job(root, "2", overrides=[*base, "train.lr=0.003"], metrics=TRAIN_RECORDS)
    make_job(root, "3", overrides=[*base, "train.lr=0.004"], failure="train.lr | too high: loss diverged")
    d = make_job(root, "4", overrides=[*base, "train.lr=0.005"], metrics=TRAIN_RECORDS[:1])
    (d / "results.json").write_text('{"dev": {"bleu": 3', encoding="utf-8")  # cut off: damaged
    return root


def expected_six() -> list[list[str]]:
    return [["model=transformer", "train.max_steps=100", f"train.lr=0.00{i + 1}"] for i in range(6)]


def test_every_status_is_read_from_the_job_files(sweep: Path):
    found = {j.name: j for j in collect_jobs(sweep, expected=expected_six())}
    assert {n: j.dir.status for n, j in found.items()} == {
        "0": jobs.Status.finished,
        "1": jobs.Status.finished,
        "2": jobs.Status.running,
        "3": jobs.Status.failed,
        "4": jobs.Status.corrupt,  # a damaged results.json (written atomically, so never half-written)
        "5": jobs.Status.not_started,
    }
    assert found["5"].overrides[-1] == "train.lr=0.006"  # listed from the sweep's own overrides


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"dev": {"bleu": 3', "it is not valid JSON"),
        (b"\xff\xfe garbage", "it is not UTF-8 text"),
        ("[1, 2]", "it is not a JSON object"),
        ('{"dev": {"bleu": 30.0}}', "it lacks the dev BLEU, the test scores or the step count"),
    ],
)
def test_a_damaged_results_file_makes_the_job_corrupt_naming_the_file(sweep: Path, content, why):
    path = sweep / "0" / "results.json"  # a finished job whose results.json was damaged afterwards
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    job = jobs.read_job(sweep / "0")
    assert job.status == jobs.Status.corrupt and job.problem.startswith(f"results.json: {why}")
    summary = summarize(collect_jobs(sweep), sweep_dir=sweep)
    row = next(r for r in summary.rows if r["job"] == "0")
    assert row["status"] == "corrupt" and row["path"] == str(sweep / "0")
    assert row["note"].startswith(f"results.json: {why}")
    assert row["note"].endswith("; rerun the job (the same sweep command) to write it again")
    assert "| 0 | corrupt: results.json: it " in to_markdown(summary)
    (sweep / "0" / "failed.json").write_text("{", encoding="utf-8")  # a damaged failure marker, newer still
    assert jobs.read_job(sweep / "0").problem.startswith("failed.json: it is not valid JSON")


def test_a_failure_older_than_complete_results_does_not_count(sweep: Path):
    import os

    failed, done = sweep / "3" / "failed.json", sweep / "3" / "results.json"
    done.write_text(json.dumps(results(20.0, 21.0)), encoding="utf-8")
    os.utime(failed, (1, 1))
    assert jobs.read_job(sweep / "3").status == jobs.Status.finished
    os.utime(done, (0, 0))
    assert jobs.read_job(sweep / "3").status == jobs.Status.failed


def test_an_interrupted_job_is_marked_so_until_something_newer_speaks(sweep: Path):
    import os

    d = sweep / "2"  # a running job; then SIGTERM stops it
    jobs.write_interruption(d, message="SIGTERM received: checkpoint saved", exit_code=143, overrides=[])
    job = {j.name: j for j in collect_jobs(sweep)}["2"]
    assert job.dir.status == jobs.Status.interrupted
    row = next(r for r in summarize(collect_jobs(sweep), sweep_dir=sweep).rows if r["job"] == "2")
    assert row["note"].startswith("stopped by a signal at step 100; rerun the sweep to resume")
    jobs.write_failure(d, RuntimeError("out of memory"), overrides=[])  # the resumed run then failed
    os.utime(d / "interrupted.json", (1, 1))
    assert jobs.read_job(d).status == jobs.Status.failed
    (d / "results.json").write_text(json.dumps(results(20.0, 21.0)), encoding="utf-8")  # and a later one finished
    assert jobs.read_job(d).status == jobs.Status.finished


def test_the_table_has_the_varying_overrides_and_puts_the_best_finished_job_first(sweep: Path):
    summary = summarize(collect_jobs(sweep, expected=expected_six()), sweep_dir=sweep)
    assert summary.varying == ["train.lr"]  # model= and train.max_steps are the same everywhere
    assert [r["job"] for r in summary.rows] == ["1", "0", "2", "3", "4", "5"]  # finished by BLEU, then by status
    best = summary.rows[0]
    assert (best["dev_bleu"], best["test_bleu"], best["test_chrf"], best["params"]) == (35.5, 36.0, 56.0, 1_234_567)
    running = next(r for r in summary.rows if r["job"] == "2")
    assert running["steps"] == 100 and running["dev_bleu"] is None
    assert "best dev BLEU so far 9.50 (step 100)" in running["note"]
    failed = next(r for r in summary.rows if r["job"] == "3")
    assert failed["note"].startswith("ValueError: train.lr | too high")
    by_lr = summarize(collect_jobs(sweep), sweep_dir=sweep, sort="train.lr")
    assert [r["job"] for r in by_lr.rows] == ["0", "1", "2", "3", "4"]
    with pytest.raises(SweepError, match="--sort"):
        summarize(collect_jobs(sweep), sweep_dir=sweep, sort="model.d_model")


def test_markdown_csv_and_json_carry_the_same_rows(sweep: Path, tmp_path: Path):
    summary = summarize(collect_jobs(sweep, expected=expected_six()), sweep_dir=sweep)
    md = to_markdown(summary).splitlines()
    header = md[0]
    assert header.startswith("| job | status | train.lr | model | pair | dev BLEU | dev chrF | test BLEU | test chrF |")
    best = "| 1 | finished | 0.002 | transformer | de-en | 35.50 | 55.50 | 36.00 | 56.00 | 1.23M | 100 | 18m40s |"
    assert md[2] == best + " 6,863 |"
    failed = next(line for line in md if line.startswith("| 3 |"))
    assert "train.lr \\| too high" in failed and failed.count(" | ") == header.count(" | ")
    assert md[-1] == f"BLEU signature: {SIG}"
    rows = list(csv.DictReader(io.StringIO(to_csv(summary))))
    assert [r["job"] for r in rows] == ["1", "0", "2", "3", "4", "5"]
    assert rows[0]["test BLEU"] == "36.0" and rows[0]["params"] == "1234567" and rows[5]["status"] == "not started"
    value = json.loads(to_json(summary))
    assert value["varying"] == ["train.lr"] and value["jobs"][0]["overrides"][-1] == "train.lr=0.002"
    written = write_summary(summary, tmp_path / "out")
    assert [p.name for p in written] == ["summary.md", "summary.csv", "summary.json"]


@pytest.mark.parametrize(
    ("model", "label"),
    [
        (TRANSFORMER, "transformer"),
        ({"arch": "rnn", "attention": "bahdanau"}, "rnn+bahdanau"),
        (RNN_LUONG, "rnn+luong(dot)"),
        ({"arch": "rnn", "cell": "lstm", "attention": "none"}, "lstm+none"),
    ],
)
def test_model_labels_name_the_attention(model: dict, label: str):
    assert model_label({"model": model}) == label


def test_training_time_comes_from_update_time_not_the_wall_clock(sweep: Path):
    job = next(j for j in collect_jobs(sweep) if j.name == "0")
    # 1000 tokens at 100/s, then 2000 more at 200/s; the hour-long gap of the resume does not count
    assert training_curve(job) == [(10.0, 5.0), (20.0, 9.5)]


def test_bleu_by_length_scores_the_hypotheses_against_the_test_references(tmp_path: Path, m30k_slice: Path):
    refs = read_gz_lines(m30k_slice / "multi30k" / "test_2016_flickr.en.gz")
    root = tmp_path / "sweep"
    perfect = make_job(root, "0", overrides=["model=transformer"], results=results(40.0, 41.0))
    (perfect / "test").mkdir()
    (perfect / "test" / "test_2016_flickr.best.hyp").write_text("".join(r + "\n" for r in refs), encoding="utf-8")
    luong = make_job(root, "1", overrides=["model=rnn_luong"], model=RNN_LUONG, results=results(20.0, 21.0))
    (luong / "test").mkdir()
    short = "".join(" ".join(r.split()[:3]) + "\n" for r in refs)
    (luong / "test" / "test_2016_flickr.best.hyp").write_text(short, encoding="utf-8")
    found = collect_jobs(root)
    buckets = length_buckets(found[0], m30k_slice)
    assert buckets and all(b.bleu == pytest.approx(100.0) for b in buckets)
    assert sum(b.sentences for b in buckets) == len(refs) == 100
    assert all(b.hi is None or b.hi - b.lo == 5 for b in buckets) and buckets[-1].label == "25+"
    assert max(b.bleu for b in length_buckets(found[1], m30k_slice, width=10, last=50)) < 50.0
    assert length_buckets(found[0], tmp_path / "elsewhere") is None  # references not found: no plot, no crash
    written = draw_all(found, summarize(found, sweep_dir=root), tmp_path / "plots", data_root=m30k_slice)
    assert sorted(p.name for p in written) == ["bleu_by_length.png", "bleu_by_model.png"]  # no metrics: no curve
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_signature_options():
    assert signature_options(SIG) == ("13a", False)
    assert signature_options("nrefs:1|case:lc|eff:no|tok:none|smooth:exp|version:2.6.0") == ("none", True)


def test_expected_jobs_expand_the_basic_sweep_like_hydra(tmp_path: Path):
    hydra = {
        "sweep": {"dir": str(tmp_path), "subdir": "${hydra.job.num}"},
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": ["train.lr=1e-3,2e-3", "model=transformer,rnn_luong", "train.max_steps=5"]},
    }
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra}), encoding="utf-8")
    assert sweep_summary.expected_jobs(tmp_path) == [
        ["train.lr=0.001", "model=transformer", "train.max_steps=5"],
        ["train.lr=0.001", "model=rnn_luong", "train.max_steps=5"],
        ["train.lr=0.002", "model=transformer", "train.max_steps=5"],
        ["train.lr=0.002", "model=rnn_luong", "train.max_steps=5"],
    ]
    hydra["sweeper"] = {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", "n_trials": 3}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra}), encoding="utf-8")
    assert sweep_summary.expected_jobs(tmp_path) == [[], [], []]


def test_the_command_line_prints_the_table_and_reports_errors_without_a_traceback(sweep, tmp_path, capsys):
    assert sweep_summary.main([str(sweep), "--output-dir", str(tmp_path / "out"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| job | status | train.lr |") and (tmp_path / "out" / "summary.csv").exists()
    assert sweep_summary.main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "nmt-sweep-summary: error:" in err and "no such directory" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert sweep_summary.main([str(tmp_path / "empty")]) == 2
    assert "holds no job" in capsys.readouterr().err


def test_changed_overrides_ignore_continuation_keys():
    old = ["train.lr=0.001", "train.max_steps=100", "+sweep=cpu_parallel"]
    assert jobs.changed_overrides(old, ["train.lr=0.001", "train.max_steps=400"]) == []
    assert jobs.changed_overrides(old, ["train.lr=0.002", "model.dropout=0.1"]) == [
        "(no model.dropout) -> model.dropout=0.1",
        "train.lr=0.001 -> train.lr=0.002",
    ]


def test_training_ended_follows_the_current_limits():
    done = {"steps": 100, "finished": "max_steps", "epochs": 3}
    assert jobs.training_ended(done, max_steps=100)
    assert not jobs.training_ended(done, max_steps=200)
    stopped = {"steps": 60, "finished": "early_stopping"}
    assert jobs.training_ended(stopped, max_steps=200, patience=5)
    assert not jobs.training_ended(stopped, max_steps=200, patience=0)


def test_a_sweep_without_test_sets_is_summarised_and_drawn(tmp_path: Path, capsys):
    root = tmp_path / "sweep"
    for name, lr, dev in (("0", "1e-3", 30.0), ("1", "2e-3", 32.5)):
        no_test = {**results(dev, 0.0), "test": []}  # data.test=[]: nmt-train's results.json has "test": []
        job = make_job(root, name, overrides=[f"train.lr={lr}"], results=no_test, metrics=TRAIN_RECORDS)
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text(encoding="utf-8"))
        config["data"]["test"] = []
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert sweep_summary.main([str(root), "--output-dir", str(tmp_path / "out")]) == 0  # was a TypeError
    table = capsys.readouterr().out
    assert (
        table.splitlines()[0]
        == "| job | status | train.lr | model | pair | dev BLEU | dev chrF | params | steps | wall time | tok/s |"
    )
    assert table.splitlines()[2].startswith("| 1 | finished | 2e-3 | transformer | de-en | 32.50 |")
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert written == ["bleu_by_model.png", "dev_bleu_vs_time.png"]  # no test hypotheses: no BLEU by length
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["test_sets"] == []
    # A test column to sort by does not exist here: one line, exit 2 (it was accepted and ignored).
    assert sweep_summary.main([str(root), "--sort", "test_bleu", "--no-plots"]) == 2
    assert "--sort test_bleu: the finished jobs have no test set" in capsys.readouterr().err
