"""One row per job of a sweep: what varied, the model, the scores, the cost; as Markdown, CSV and JSON.

A sweep directory is what ``nmt-train -m`` writes (``<sweep dir>/<job num>/`` per job, ``multirun.yaml`` beside
them); a single run directory works too (one row). Jobs that failed, are still running or have not started are
listed and marked (see :mod:`nmt.experiments.jobs`): a summary of a sweep in progress is the common case.

The dev and test scores are those of ``results.json`` (the best checkpoint, decoded with the run's beam). For a
running job the status says how far it got and its best dev BLEU so far (greedy validation by default, so not
comparable with the finished jobs' beam-search figures, and kept out of the score columns).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.errors import NMTError
from nmt.experiments.jobs import RESULTS, TRACES, JobDir, Status, override_key, override_value, read_job

SORT_KEYS = ("dev_bleu", "dev_chrf", "test_bleu", "test_chrf", "params", "steps", "wall_seconds", "tokens_per_s", "job")
DESCENDING = {"dev_bleu", "dev_chrf", "test_bleu", "test_chrf", "tokens_per_s"}  # bigger is better


class SweepError(NMTError):
    """A sweep directory that cannot be summarised (missing, or holding no job)."""


@dataclass
class Job:
    """A job of the sweep: its number or directory name, and what its directory says (None: never started)."""

    name: str
    dir: JobDir
    expected_overrides: list[str] | None = None  # from multirun.yaml, for jobs that left no directory yet

    @property
    def overrides(self) -> list[str]:
        return self.dir.overrides if self.dir.overrides is not None else (self.expected_overrides or [])


@dataclass
class Summary:
    """The table: ``columns`` (display names, in order) and one dict per job (raw values, keyed as in ``keys``)."""

    sweep_dir: Path
    rows: list[dict[str, Any]]
    varying: list[str]  # override keys whose values differ between jobs (columns of their own)
    test_sets: list[str]  # test set names in the order of the columns
    sort: str = "dev_bleu"
    columns: list[tuple[str, str]] = field(default_factory=list)  # (key in a row, column title)


# ----------------------------------------------------------------------------------------------- collecting
def _looks_like_job(path: Path) -> bool:
    return (path / ".hydra").is_dir() or any((path / name).exists() for name in (*TRACES, RESULTS, "failed.json"))


def find_job_dirs(sweep_dir: Path, *, depth: int = 3) -> list[Path]:
    """Job directories under ``sweep_dir`` (``sweep_dir`` itself when it is a run directory), in job order:
    numbered directories by number, then the others by name. Sub-directories of a job are not searched."""
    if _looks_like_job(sweep_dir):
        return [sweep_dir]
    found: list[Path] = []
    frontier = [sweep_dir]
    for _ in range(depth):
        children = sorted(c for d in frontier for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
        found += [c for c in children if _looks_like_job(c)]
        frontier = [c for c in children if not _looks_like_job(c)]
    return sorted(found, key=lambda p: _job_order(p.relative_to(sweep_dir).as_posix()))


def _job_name(path: Path, root: Path) -> str:
    """The job's directory relative to the sweep (``3``), or the run directory's own name for a single run."""
    return path.relative_to(root).as_posix() if path != root else root.resolve().name


def _job_order(name: str) -> tuple[int, int, str]:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def collect_jobs(sweep_dir: str | Path, *, expected: list[list[str]] | None = None) -> list[Job]:
    """Read every job of a sweep.

    Args:
        sweep_dir: the sweep directory (``hydra.sweep.dir``) or one run directory.
        expected: the overrides of every job the sweep will run, by job number (from ``multirun.yaml``, when
            job directories are named by number): jobs without a directory yet are listed as not started.

    Raises:
        SweepError: ``sweep_dir`` is not a directory, or holds no job and expects none.
    """
    root = Path(sweep_dir)
    if not root.is_dir():
        raise SweepError(f"{root}: no such directory (give a sweep directory, hydra.sweep.dir, or a run directory)")
    jobs = [Job(_job_name(p, root), read_job(p)) for p in find_job_dirs(root)]
    by_name = {j.name: j for j in jobs}
    for num, overrides in enumerate(expected or []):
        if str(num) in by_name:
            by_name[str(num)].expected_overrides = overrides
        else:
            jobs.append(Job(str(num), JobDir(path=root / str(num), status=Status.not_started), overrides))
    if not jobs:
        raise SweepError(
            f"{root} holds no job: expected numbered job directories with .hydra/, train.log or results.json "
            "(is it the directory given as hydra.sweep.dir?)"
        )
    return sorted(jobs, key=lambda j: _job_order(j.name))


# ----------------------------------------------------------------------------------------------- the table
def model_label(config: dict[str, Any] | None, results: dict[str, Any] | None = None) -> str:
    """``transformer``, ``rnn+bahdanau``, ``rnn+luong(dot)``, ``rnn+none`` (an LSTM says ``lstm`` for ``rnn``)."""
    model = (config or {}).get("model") or {}
    arch = model.get("arch") or (results or {}).get("model") or ""
    if arch != "rnn":
        return str(arch)
    cell = "lstm" if model.get("cell") == "lstm" else "rnn"
    attention = model.get("attention", "bahdanau")
    return f"{cell}+luong({model.get('score', 'general')})" if attention == "luong" else f"{cell}+{attention}"


def pair_label(config: dict[str, Any] | None) -> str:
    data = (config or {}).get("data") or {}
    return f"{data['src_lang']}-{data['tgt_lang']}" if data.get("src_lang") and data.get("tgt_lang") else ""


def varying_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job (a key missing from some jobs varies too)."""
    maps = [{override_key(o): override_value(o) for o in j.overrides} for j in jobs]
    keys: list[str] = []
    for m in maps:
        keys += [k for k in m if k not in keys]
    return [k for k in keys if len({m.get(k) for m in maps}) > 1]


def _status_note(job: Job) -> str:
    d = job.dir
    if d.status == Status.failed and d.failure:
        return f"{d.failure.get('error', 'error')}: {d.failure.get('message', '')}".strip()
    if d.status == Status.corrupt:
        return f"{d.problem}; rerun the job (the same sweep command) to write it again"
    if d.status == Status.interrupted:
        step = f" at step {d.train[-1]['step']}" if d.train else ""
        return f"stopped by a signal{step}; rerun the sweep to resume ({(d.failure or {}).get('message', '')})"
    if d.status == Status.running:
        parts = [f"step {d.train[-1]['step']}" if d.train else "starting"]
        if d.valid:
            best = max(d.valid, key=lambda r: r.get("bleu", -1.0))
            parts.append(f"best dev BLEU so far {best.get('bleu', 0.0):.2f} (step {best['step']})")
        if d.last_update is not None:
            parts.append(f"last update {_age(time.time() - d.last_update)} ago")
        return ", ".join(parts)
    return ""


def _row(job: Job, varying: list[str], test_sets: list[str]) -> dict[str, Any]:
    d, r = job.dir, job.dir.results or {}
    overrides = {override_key(o): override_value(o) for o in job.overrides}
    row: dict[str, Any] = {
        "job": job.name,
        "status": d.status.value,
        "note": _status_note(job),
        **{f"override:{k}": overrides.get(k, "") for k in varying},
        "model": model_label(d.config, r),
        "pair": pair_label(d.config),
        "dev_bleu": _num(r.get("dev", {}).get("bleu")),
        "dev_chrf": _num(r.get("dev", {}).get("chrf")),
    }
    tests = {t.get("name"): t for t in r.get("test", []) if isinstance(t, dict)}
    for i, name in enumerate(test_sets or [""]):
        suffix = "" if i == 0 else f":{name}"
        row[f"test_bleu{suffix}"] = _num(tests.get(name, {}).get("bleu"))
        row[f"test_chrf{suffix}"] = _num(tests.get(name, {}).get("chrf"))
    steps = r.get("steps", d.train[-1]["step"] if d.train else None)
    row |= {
        "test_set": test_sets[0] if test_sets and test_sets[0] in tests else "",
        "params": r.get("parameters"),
        "steps": steps,
        "wall_seconds": _num(r.get("wall_seconds")),
        "tokens_per_s": _num(r.get("tokens_per_s")),
        "bleu_signature": r.get("dev", {}).get("bleu_signature", ""),
        "path": str(d.path),
        "overrides": job.overrides,
    }
    return row


def summarize(jobs: list[Job], *, sweep_dir: str | Path, sort: str = "dev_bleu") -> Summary:
    """The table of ``jobs``, sorted by ``sort`` (a key of :data:`SORT_KEYS` or a varying override key)."""
    varying = varying_keys(jobs)
    if sort not in SORT_KEYS and sort not in varying:
        raise SweepError(f"--sort {sort}: choose one of {', '.join(SORT_KEYS)} or a varying override ({varying})")
    test_sets: list[str] = []
    for j in jobs:
        for t in (j.dir.results or {}).get("test", []):
            if isinstance(t, dict) and t.get("name") and t["name"] not in test_sets:
                test_sets.append(t["name"])
    # No job finished yet: the test columns are there all the same; finished jobs without test sets: none.
    finished = any(j.dir.results for j in jobs)
    if finished and not test_sets and sort.startswith("test_"):
        raise SweepError(f"--sort {sort}: the finished jobs have no test set (data.test=[]); sort by dev_bleu instead")
    rows = [_row(j, varying, test_sets) for j in jobs]
    rows = sort_rows(rows, f"override:{sort}" if sort in varying else sort)
    columns = [("job", "job"), ("status", "status")]
    columns += [(f"override:{k}", k) for k in varying]
    columns += [("model", "model"), ("pair", "pair"), ("dev_bleu", "dev BLEU"), ("dev_chrf", "dev chrF")]
    for i, name in enumerate(test_sets or ([] if finished else [""])):
        suffix, title = ("", "test") if i == 0 else (f":{name}", name)
        columns += [(f"test_bleu{suffix}", f"{title} BLEU"), (f"test_chrf{suffix}", f"{title} chrF")]
    columns += [("params", "params"), ("steps", "steps"), ("wall_seconds", "wall time"), ("tokens_per_s", "tok/s")]
    return Summary(Path(sweep_dir), rows, varying, test_sets, sort, columns)


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Finished jobs first, then by ``key`` (scores and speed descending, the rest ascending; blanks last)."""
    order = {s.value: i for i, s in enumerate(Status)}
    descending = key in DESCENDING

    def sort_key(row: dict[str, Any]) -> tuple:
        value = row.get(key)
        blank = value is None or value == ""
        if key == "job":
            return (order[row["status"]], _job_order(row["job"]))
        number = value if isinstance(value, int | float) else _as_float(value)  # override values are strings
        text = "" if number is not None or blank else str(value)
        number = 0.0 if number is None else (-number if descending else number)
        return (order[row["status"]], blank, number, text, _job_order(row["job"]))

    return sorted(rows, key=sort_key)


# ----------------------------------------------------------------------------------------------- output
def format_cell(key: str, value: Any) -> str:
    """How a value reads in the Markdown table (the CSV and JSON keep raw numbers)."""
    if value is None or value == "":
        return ""
    if key == "params":
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"
    if key == "wall_seconds":
        return _duration(float(value))
    if key == "tokens_per_s":
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def to_markdown(summary: Summary, *, note_width: int = 90) -> str:
    """A GitHub Markdown table; failed and running jobs carry their error or progress after the status."""
    lines = [
        "| " + " | ".join(title for _, title in summary.columns) + " |",
        "|" + "|".join("---:" if _numeric(key) else "---" for key, _ in summary.columns) + "|",
    ]
    for row in summary.rows:
        cells = []
        for key, _ in summary.columns:
            cell = format_cell(key, row.get(key))
            if key == "status" and row.get("note"):
                note = row["note"] if len(row["note"]) <= note_width else row["note"][: note_width - 1] + "…"
                cell = f"{cell}: {note}"
            cells.append(cell.replace("|", "\\|").replace("\n", " "))
        lines.append("| " + " | ".join(cells) + " |")
    signatures = sorted({row["bleu_signature"] for row in summary.rows if row.get("bleu_signature")})
    if signatures:
        lines += ["", "BLEU signature" + ("s" if len(signatures) > 1 else "") + ": " + "; ".join(signatures)]
    return "\n".join(lines) + "\n"


def to_csv(summary: Summary) -> str:
    """The displayed columns with raw values, then the status note and the job directory."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    extra = [("note", "note"), ("test_set", "test set"), ("path", "path")]
    writer.writerow([title for _, title in summary.columns + extra])
    for row in summary.rows:
        writer.writerow(["" if row.get(k) is None else _round(row.get(k)) for k, _ in summary.columns + extra])
    return out.getvalue()


def to_json(summary: Summary) -> str:
    value = {
        "sweep_dir": str(summary.sweep_dir),
        "sort": summary.sort,
        "varying": summary.varying,
        "test_sets": summary.test_sets,
        "columns": [{"key": k, "title": t} for k, t in summary.columns],
        "jobs": summary.rows,
    }
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def write_summary(summary: Summary, output_dir: str | Path) -> list[Path]:
    """``summary.md``, ``summary.csv`` and ``summary.json`` in ``output_dir`` (created)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (
        ("summary.md", to_markdown(summary)),
        ("summary.csv", to_csv(summary)),
        ("summary.json", to_json(summary)),
    ):
        (out / name).write_text(text, encoding="utf-8")
        paths.append(out / name)
    return paths


# ----------------------------------------------------------------------------------------------- helpers
def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def _numeric(key: str) -> bool:
    return key.split(":")[0] in {
        "dev_bleu",
        "dev_chrf",
        "test_bleu",
        "test_chrf",
        "params",
        "steps",
        "wall_seconds",
        "tokens_per_s",
    }


def _duration(seconds: float) -> str:
    """``45s``, ``18m40s``, ``2h05m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _age(seconds: float) -> str:
    return _duration(max(seconds, 0.0))
