"""Plots of a sweep: BLEU by model, BLEU by source length, dev BLEU against training time (PNG, matplotlib Agg).

Each plot has one panel per language pair (de-en and en-de scores do not belong on one axis). Jobs are labelled
by model, plus the overrides that vary between jobs of the same model and pair, so two Transformers that differ in
``train.lr`` are told apart.

* **BLEU by model**: dev and test BLEU of every finished job (``results.json``), as bars.
* **BLEU by source length**: for every finished job, its test hypotheses (``results.json`` names the file) scored
  against the references of its first test set (read from the data root) per source-length bucket
  (:func:`nmt.evaluate.bleu_by_length`, with the buckets and bootstrap intervals of ``nmt-evaluate`` and of the
  run's own ``results.json`` by default), scored the way the run scored (the tokenizer and case of its signature).
* **Dev BLEU against training time**: the validation records of ``metrics.jsonl`` (finished and running jobs). The
  time is training time (update time, without validation and checkpoints): each training record covers
  ``tokens / tokens_per_s`` seconds, which also stays right across resumes, where wall-clock time would jump.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmt.errors import NMTError
from nmt.evaluate import BUCKET_WIDTH, LAST_BUCKET
from nmt.experiments.jobs import Status
from nmt.experiments.summary import Job, Summary, model_label, pair_label

if TYPE_CHECKING:
    from nmt.evaluate import Bucket

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- data
def job_labels(jobs: list[Job], summary: Summary) -> dict[str, str]:
    """A short legend label per job: the model, plus varying overrides when several jobs share model and pair."""
    rows = {r["job"]: r for r in summary.rows}
    groups: dict[tuple[str, str], list[str]] = {}
    for j in jobs:
        groups.setdefault((model_label(j.dir.config, j.dir.results), pair_label(j.dir.config)), []).append(j.name)
    labels = {}
    for (model, _), names in groups.items():
        for name in names:
            row = rows.get(name, {})
            extra = [f"{k}={row.get(f'override:{k}')}" for k in summary.varying if row.get(f"override:{k}")]
            distinct = [e for e in extra if not e.startswith(("experiment=", "+experiment="))]
            suffix = ", ".join(distinct) if len(names) > 1 and distinct else (f"job {name}" if len(names) > 1 else "")
            labels[name] = f"{model or 'job ' + name}" + (f" ({suffix})" if suffix else "")
    return labels


def training_curve(job: Job) -> list[tuple[float, float]]:
    """``(training seconds, dev BLEU)`` at every validation of the job (see the module docstring)."""
    train = sorted(job.dir.train, key=lambda r: r["step"])
    valid = sorted((r for r in job.dir.valid if isinstance(r.get("bleu"), int | float)), key=lambda r: r["step"])
    if not valid:
        return []
    clock: list[tuple[int, float]] = []  # (step, training seconds up to it)
    seconds, tokens = 0.0, 0.0
    for r in train:
        rate, total = r.get("tokens_per_s"), r.get("tgt_tokens")
        if not isinstance(rate, int | float) or not isinstance(total, int | float) or rate <= 0:
            clock = []
            break
        seconds += max(total - tokens, 0.0) / rate
        tokens = total
        clock.append((r["step"], seconds))
    if not clock:  # no usable training records: wall-clock time since the first record
        start = min(float(r["time"]) for r in job.dir.train + job.dir.valid if "time" in r)
        return [(float(r.get("time", start)) - start, float(r["bleu"])) for r in valid]
    out = []
    for r in valid:
        before = [(s, t) for s, t in clock if s <= r["step"]]
        step, t = before[-1] if before else (0, 0.0)
        if step < r["step"] and step > 0:  # validation after the last training record: extrapolate its pace
            t = t / step * r["step"]
        out.append((t, float(r["bleu"])))
    return out


def length_buckets(
    job: Job, data_root: Path | None = None, *, width: int = BUCKET_WIDTH, last: int = LAST_BUCKET
) -> list[Bucket] | None:
    """BLEU by source length of the job's first test set, or None (with a warning) when it cannot be computed.

    Buckets of ``width`` source words up to ``last`` words, then one for the rest: by default those of every
    report (:data:`nmt.evaluate.BUCKET_WIDTH`), so the plot shows the buckets of the job's ``results.json``."""
    results = job.dir.results
    config = job.dir.config or {}
    data = config.get("data") or {}
    if results is None or not results.get("test"):
        return None
    test = results["test"][0]
    if (data.get("hf") or {}).get("path"):
        log.warning("job %s: BLEU by length is drawn for file corpora only (this one is a datasets corpus)", job.name)
        return None
    prefixes = data.get("test") or []
    try:
        from nmt.data.corpus import load_parallel, read_lines
        from nmt.evaluate import bleu_by_length

        prefix = next((p for p in prefixes if Path(str(p)).name == test.get("name")), prefixes[0] if prefixes else None)
        if prefix is None:
            raise NMTError("its config names no test set")
        corpus = load_parallel(prefix, data["src_lang"], data["tgt_lang"], data_root)
        hyps = list(read_lines(job.dir.path / test["hypotheses"]))
    except (NMTError, KeyError) as e:
        log.warning("job %s: no BLEU by length (%s)", job.name, e)
        return None
    if len(hyps) != len(corpus):
        log.warning("job %s: %d hypotheses for %d test sentences: no BLEU by length", job.name, len(hyps), len(corpus))
        return None
    tokenize, lowercase = signature_options(test.get("bleu_signature", ""))
    return bleu_by_length(corpus.src, hyps, corpus.tgt, width=width, last=last, tokenize=tokenize, lowercase=lowercase)


def signature_options(signature: str) -> tuple[str | None, bool]:
    """The BLEU tokenizer and lowercasing of a sacrebleu signature (``...|case:lc|...|tok:none|...``)."""
    tok = re.search(r"tok:([^|]+)", signature)
    return (tok.group(1) if tok else None), "case:lc" in signature


# ----------------------------------------------------------------------------------------------- drawing
def draw_all(
    jobs: list[Job],
    summary: Summary,
    output_dir: str | Path,
    *,
    data_root: Path | None = None,
    bucket_width: int = BUCKET_WIDTH,
    last_bucket: int = LAST_BUCKET,
) -> list[Path]:
    """Every plot that has data, into ``output_dir``; returns the files written."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = job_labels(jobs, summary)
    finished = [j for j in jobs if j.dir.status == Status.finished]
    written = []
    if finished:
        written.append(plot_bleu_by_model(finished, labels, out / "bleu_by_model.png"))
        buckets = {
            j.name: b for j in finished if (b := length_buckets(j, data_root, width=bucket_width, last=last_bucket))
        }
        with_buckets = [j for j in finished if j.name in buckets]
        if with_buckets:
            written.append(plot_bleu_by_length(with_buckets, buckets, labels, out / "bleu_by_length.png"))
    curves = {j.name: c for j in jobs if (c := training_curve(j))}
    if curves:
        written.append(
            plot_dev_curves([j for j in jobs if j.name in curves], curves, labels, out / "dev_bleu_vs_time.png")
        )
    return written


def _by_pair(jobs: list[Job]) -> dict[str, list[Job]]:
    groups: dict[str, list[Job]] = {}
    for j in jobs:
        groups.setdefault(pair_label(j.dir.config) or "?", []).append(j)
    return dict(sorted(groups.items()))


def _figure(n_panels: int, *, width: float, height: float, sharey: bool = False) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, height), squeeze=False, sharey=sharey)
    return fig, list(axes[0])


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def _test_bleu(job: Job) -> float | None:
    """BLEU on the job's first test set, None when it has none (a sweep without test sets is normal)."""
    tests = (job.dir.results or {}).get("test") or []
    first = tests[0] if tests and isinstance(tests[0], dict) else {}
    bleu = first.get("bleu")
    return float(bleu) if isinstance(bleu, int | float) else None


def plot_bleu_by_model(jobs: list[Job], labels: dict[str, str], path: Path) -> Path:
    """Dev and test BLEU of each finished job, as paired bars, one panel per language pair (dev bars only for jobs
    without a test set)."""
    groups = _by_pair(jobs)
    width = max(4.0, 1.1 * max(len(g) for g in groups.values()) + 2)
    fig, axes = _figure(len(groups), width=width, height=4.2, sharey=True)  # one BLEU scale for every pair
    dev = {j.name: float((j.dir.results or {})["dev"]["bleu"]) for j in jobs}
    test = {j.name: _test_bleu(j) for j in jobs}
    top = max([*dev.values(), *(b for b in test.values() if b is not None)])
    for ax, (pair, group) in zip(axes, groups.items()):
        group = sorted(group, key=lambda j: -(test[j.name] if test[j.name] is not None else dev[j.name]))
        xs = range(len(group))
        with_test = [x for x, j in zip(xs, group) if test[j.name] is not None]
        bars = [ax.bar([x - 0.2 for x in xs], [dev[j.name] for j in group], width=0.4, label="dev", color="#9bb7d4")]
        if with_test:
            heights = [test[group[x].name] for x in with_test]
            bars.append(ax.bar([x + 0.2 for x in with_test], heights, width=0.4, label="test", color="#1f4e79"))
        for bar in (b for container in bars for b in container):
            ax.annotate(f"{bar.get_height():.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)  # fmt: skip
        ax.set_xticks(list(xs), [labels[j.name] for j in group], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("BLEU")
        ax.set_title(pair, fontsize=10)
        ax.set_ylim(0, max(top, 1.0) * 1.2)  # room for the value labels and the legend
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_bleu_by_length(jobs: list[Job], buckets: dict[str, list[Bucket]], labels: dict[str, str], path: Path) -> Path:
    """Test BLEU per source-length bucket with its 95% bootstrap interval, one line per job (side by side, so the
    intervals do not hide each other), one panel per language pair."""
    from nmt.evaluate import bucket_errors

    groups = _by_pair(jobs)
    fig, axes = _figure(len(groups), width=5.5, height=4.0)
    for ax, (pair, group) in zip(axes, groups.items()):
        order: list[str] = []
        for j in group:
            order += [b.label for b in buckets[j.name] if b.label not in order]
        order.sort(key=lambda label: int(label.split("-")[0].rstrip("+")))
        for k, j in enumerate(group):
            bs = buckets[j.name]
            shift = 0.08 * (k - (len(group) - 1) / 2)
            xs = [order.index(b.label) + shift for b in bs]
            ax.errorbar(xs, [b.bleu for b in bs], yerr=bucket_errors(bs), marker="o", capsize=3, label=labels[j.name])
        counts = {b.label: b.sentences for j in group for b in buckets[j.name]}
        ax.set_xticks(range(len(order)), [f"{lab}\n(n={counts[lab]})" for lab in order], fontsize=8)
        ax.set_xlabel("source length (words)")
        ax.set_ylabel("test BLEU (95% bootstrap interval)")
        ax.set_title(f"{pair}: {(group[0].dir.results or {}).get('test', [{}])[0].get('name', 'test')}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_dev_curves(
    jobs: list[Job], curves: dict[str, list[tuple[float, float]]], labels: dict[str, str], path: Path
) -> Path:
    """Dev BLEU at each validation against training time, one line per job, one panel per language pair."""
    groups = _by_pair(jobs)
    fig, axes = _figure(len(groups), width=5.5, height=4.0)
    longest = max(t for c in curves.values() for t, _ in c)
    unit, scale = ("min", 60.0) if longest < 3 * 3600 else ("h", 3600.0)
    for ax, (pair, group) in zip(axes, groups.items()):
        for j in group:
            c = curves[j.name]
            style = "-" if j.dir.status == Status.finished else "--"
            label = labels[j.name] + ("" if j.dir.status == Status.finished else f" ({j.dir.status.value})")
            ax.plot([t / scale for t, _ in c], [b for _, b in c], style, marker=".", label=label)
        ax.set_xlabel(f"training time ({unit})")
        ax.set_ylabel("dev BLEU (validation)")
        ax.set_title(pair, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
