"""The files that say where one job of a sweep stands, read and written in one place.

A job directory (``<sweep dir>/<job num>/``, or any ``nmt-train`` run directory) is:

* **finished** when ``results.json`` is complete (dev scores, test scores, steps): training and testing ended;
* **failed** when ``failed.json`` is there (written by ``nmt-train -m`` when the job raised; see
  :func:`write_failure`) and no newer complete ``results.json`` is;
* **interrupted** when ``interrupted.json`` is there (written when SIGINT/SIGTERM stopped the job after it saved
  a checkpoint; see :func:`write_interruption`) and nothing newer says otherwise: rerunning resumes it;
* **corrupt** when the newest of those three files cannot be read (not JSON, or a ``results.json`` without its
  scores): the job's outcome is unknown until the file is written again (rerunning the job does that);
* **running** when training has left traces (``train.log``, ``metrics.jsonl``, checkpoints) but none of the
  above: a job in progress, or one killed without a chance to say so (SIGKILL, a lost node; rerunning resumes it);
* **not started** when nothing but Hydra's ``.hydra/`` (or nothing at all) is there.

``sweep_job.json`` records the overrides a job was started with. Hydra rewrites ``.hydra/overrides.yaml`` before
the task runs, so without this record a sweep directory reused for a *different* sweep would hand job N the
results of the old job N.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

RESULTS = "results.json"
FAILED = "failed.json"
INTERRUPTED = "interrupted.json"
JOB_RECORD = "sweep_job.json"

# Overrides that may change between two runs of the same sweep without making a finished job a different
# experiment: training limits (a raised train.max_steps trains on), bookkeeping, hardware and launcher choices.
CONTINUATION_KEYS = frozenset(
    {
        "train.max_steps",
        "train.max_epochs",
        "train.patience",
        "train.eval_every",
        "train.save_every",
        "train.log_every",
        "train.keep_last",
        "train.threads",
        "train.num_workers",
        "train.heatmap_sentences",
        "train.matmul_peak_gflops",
        "train.device",
        "data.cache_dir",
        "sweep",
    }
)


class Status(str, Enum):
    finished = "finished"
    running = "running"
    interrupted = "interrupted"
    failed = "failed"
    corrupt = "corrupt"
    not_started = "not started"


def override_key(override: str) -> str:
    """``+experiment=x`` -> ``experiment``; ``~train.lr`` -> ``train.lr``; ``train.lr=1e-3`` -> ``train.lr``."""
    return override.split("=", 1)[0].lstrip("+~")


def override_value(override: str) -> str:
    """The text after the first ``=`` (empty for a deletion such as ``~key``)."""
    return override.split("=", 1)[1] if "=" in override else ""


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when the file is missing, half-written or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_results(run_dir: Path) -> dict[str, Any] | None:
    """``results.json`` when it is complete (dev and test scores, step count), else None."""
    results = read_json(run_dir / RESULTS)
    return results if results is not None and _results_complete(results) else None


def _results_complete(results: dict[str, Any]) -> bool:
    dev = results.get("dev")
    return (
        isinstance(dev, dict)
        and isinstance(dev.get("bleu"), int | float)
        and isinstance(results.get("test"), list)
        and isinstance(results.get("steps"), int)
    )


def damage(path: Path) -> str | None:
    """Why the status file ``path`` cannot be used (None when it reads well or is missing)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return "it is not UTF-8 text"
    except ValueError as e:
        return f"it is not valid JSON ({e})"
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    if not isinstance(value, dict):
        return "it is not a JSON object"
    if path.name == RESULTS and not _results_complete(value):
        return "it lacks the dev BLEU, the test scores or the step count"
    return None


def dev_bleu(results: dict[str, Any]) -> float:
    """What the training task returned for this run: the best dev BLEU seen during training (greedy by default),
    falling back to the final dev BLEU of the best checkpoint."""
    value = results.get("best_dev_bleu_during_training")
    return float(value if isinstance(value, int | float) else results["dev"]["bleu"])


def training_ended(results: dict[str, Any], *, max_steps: int, max_epochs: int = 0, patience: int = 0) -> bool:
    """Whether the run that wrote ``results`` already met the limits of the current config (then rerunning the job
    would train nothing). A raised ``train.max_steps`` makes a finished job resume from its last checkpoint."""
    steps, finished = int(results.get("steps", 0)), str(results.get("finished", ""))
    return (
        steps >= max_steps
        or (finished == "max_epochs" and 0 < max_epochs <= int(results.get("epochs", 0)))
        or (finished == "early_stopping" and patience > 0)
    )


def read_overrides(run_dir: Path) -> list[str] | None:
    """The job's overrides: from ``sweep_job.json``, else Hydra's ``.hydra/overrides.yaml``; None if neither."""
    record = read_json(run_dir / JOB_RECORD)
    if record is not None and isinstance(record.get("overrides"), list):
        return [str(o) for o in record["overrides"]]
    try:
        value = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return [str(o) for o in value] if isinstance(value, list) else None


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The job's composed config (``.hydra/config.yaml``) as plain data, or None."""
    try:
        value = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return value if isinstance(value, dict) else None


def changed_overrides(old: list[str], new: list[str]) -> list[str]:
    """Overrides (``key=value``) that differ between two runs of a job, leaving out :data:`CONTINUATION_KEYS`."""
    a = {override_key(o): o for o in old if override_key(o) not in CONTINUATION_KEYS}
    b = {override_key(o): o for o in new if override_key(o) not in CONTINUATION_KEYS}
    return sorted(
        f"{a.get(k, f'(no {k})')} -> {b.get(k, f'(no {k})')}" for k in a.keys() | b.keys() if a.get(k) != b.get(k)
    )


def write_job_record(run_dir: Path, *, num: int | None, overrides: list[str]) -> None:
    """Remember what this job is (see the module docstring); written when a sweep job starts."""
    record = {"num": num, "overrides": overrides, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_json(run_dir / JOB_RECORD, record)


def write_failure(run_dir: Path, error: BaseException, *, overrides: list[str]) -> Path:
    """``failed.json``: the error, its traceback and the overrides, so a sweep summary can mark the job."""
    from nmt.errors import NMTError

    record = {
        "status": "failed",
        "error": type(error).__name__,
        "message": str(error),
        "user_error": isinstance(error, NMTError),
        "overrides": overrides,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    }
    return _write_json(run_dir / FAILED, record)


def write_interruption(run_dir: Path, *, message: str, exit_code: int, overrides: list[str]) -> Path:
    """``interrupted.json``: a signal stopped the job (its checkpoint is saved), so a summary does not take it for
    a job still running."""
    record = {
        "status": "interrupted",
        "message": message,
        "exit_code": exit_code,
        "overrides": overrides,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return _write_json(run_dir / INTERRUPTED, record)


def clear_failure(run_dir: Path) -> None:
    """Forget an earlier failure or interruption: the job is being tried again."""
    (run_dir / FAILED).unlink(missing_ok=True)
    (run_dir / INTERRUPTED).unlink(missing_ok=True)


def _write_json(path: Path, value: dict[str, Any]) -> Path:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass
class JobDir:
    """What a job directory says about its job (every field may be missing for a job that did not get far)."""

    path: Path
    status: Status
    overrides: list[str] | None = None
    config: dict[str, Any] | None = None
    results: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None  # failed.json, or interrupted.json for an interrupted job
    problem: str | None = None  # a corrupt job: which file (in ``path``) is damaged, and how
    valid: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl validation records
    train: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl training records
    last_update: float | None = None  # newest mtime of the files training writes (seconds since the epoch)


TRACES = ("train.log", "metrics.jsonl", "checkpoints", "tokenizer", "valid")


def read_job(path: Path) -> JobDir:
    """Everything a summary needs from one job directory; tolerant of missing, partial and garbled files."""
    results = read_results(path)
    # The newest of results.json, failed.json and interrupted.json speaks for the job (a failed retry of an
    # interrupted job is failed; a job finished after a failed try is finished); a damaged one makes it corrupt.
    files = [(Status.finished, RESULTS), (Status.failed, FAILED), (Status.interrupted, INTERRUPTED)]
    found = [(_mtime(path / name), status, name) for status, name in files if (path / name).exists()]
    newest = max(found, key=lambda f: (f[0], f[1] == Status.finished), default=None)
    failure, problem = None, None
    train, valid = read_metrics(path / "metrics.jsonl")
    names = (*TRACES, RESULTS, FAILED, INTERRUPTED)
    mtimes = [p.stat().st_mtime for p in (path / name for name in names) if p.exists()]
    if newest is not None and (why := damage(path / newest[2])):
        status, problem = Status.corrupt, f"{newest[2]}: {why}"
    elif newest is not None:
        status = newest[1]
        failure = read_json(path / newest[2]) if status != Status.finished else None
    elif any((path / name).exists() for name in TRACES):
        status = Status.running
    else:
        status = Status.not_started
    return JobDir(
        path=path,
        status=status,
        overrides=read_overrides(path),
        config=read_config(path),
        results=results,
        failure=failure,
        problem=problem,
        valid=valid,
        train=train,
        last_update=max(mtimes, default=None),
    )


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training and validation records of ``metrics.jsonl`` (a line cut off by a running writer is skipped)."""
    train: list[dict[str, Any]] = []
    valid: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return train, valid
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            {"train": train, "valid": valid}.get(record.get("kind"), []).append(record)
    return train, valid


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
