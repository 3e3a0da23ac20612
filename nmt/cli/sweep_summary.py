"""``nmt-sweep-summary``: one row per job of an ``nmt-train -m`` sweep, as Markdown, CSV and JSON, plus plots.

Examples::

    nmt-sweep-summary multirun/default/2025-01-01_12-00-00
    nmt-sweep-summary runs/reference --output-dir results/ --sort test_bleu
    nmt-sweep-summary runs/reference --sort train.lr --no-plots
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from nmt.cli.common import add_bucket_flags, check_bucket_flags, new_parser, run_cli, setup_logging
from nmt.errors import NMTError
from nmt.experiments.summary import SORT_KEYS, collect_jobs, summarize, to_markdown, write_summary

PROG = "nmt-sweep-summary"
log = logging.getLogger(PROG)

EPILOG = f"""\
status of a job (its directory is SWEEP_DIR/<job number>/):
  finished     results.json is complete: its dev and test scores (best checkpoint, the run's beam) are shown
  running      training left files but no results.json yet: in progress, or killed (rerunning the sweep with
               the same hydra.sweep.dir resumes it from checkpoints/last.pt); the note says the step reached
               and the best dev BLEU so far (greedy validation, so it stays out of the score columns)
  interrupted  SIGINT/SIGTERM stopped it after saving a checkpoint (interrupted.json); rerun the sweep to resume
  failed       failed.json holds the error and its traceback; the note shows the error
  corrupt      the newest of results.json / failed.json / interrupted.json cannot be read (damaged, not JSON);
               the note names the file; rerunning the sweep writes it again
  not started  listed in SWEEP_DIR/multirun.yaml but without a directory yet

columns: the overrides whose values differ between jobs, model (architecture + attention), pair, dev and
test BLEU/chrF (one pair of columns per test set), parameters, updates, wall time, target tokens/s in training.

outputs (in --output-dir, default SWEEP_DIR): summary.md (the table printed), summary.csv (raw numbers),
summary.json (every field, with each job's overrides and directory), and the plots
  bleu_by_model.png     dev and test BLEU of each finished job, one panel per language pair
  bleu_by_length.png    test BLEU by source-length bucket (words; --bucket-width, --last-bucket: by default the
                        buckets of nmt-evaluate and results.json), one line per finished job with 95% bootstrap
                        intervals, from its test hypotheses and the references under the data root
  dev_bleu_vs_time.png  dev BLEU at each validation against training time, finished and running jobs

--sort takes {", ".join(SORT_KEYS)} or an override key that varies (e.g. train.lr).
"""


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, "Summarise a sweep of nmt-train jobs (hydra.sweep.dir): a table and plots.", EPILOG)
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="the sweep directory (or one run directory)")
    p.add_argument("--output-dir", "-o", metavar="DIR", help="where summary.* and the plots go (default SWEEP_DIR)")
    p.add_argument("--sort", default="dev_bleu", metavar="KEY", help="row order (default: dev_bleu, best first)")
    p.add_argument("--data-dir", metavar="DIR", help="data root for the test references (default $NMT_DATA_DIR)")
    add_bucket_flags(p)
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the table")
    return p


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The overrides of every job the sweep in ``sweep_dir`` will run, by job number, from ``multirun.yaml``.

    Only when job directories are named by number (``hydra.sweep.subdir: ${hydra.job.num}``). The basic sweeper's
    jobs are the cartesian product of its sweep overrides (expanded as Hydra does); an Optuna study has
    ``n_trials`` jobs whose overrides are chosen as it goes (listed without overrides). None when unknown.
    """
    try:
        hydra_cfg = (yaml.safe_load((sweep_dir / "multirun.yaml").read_text(encoding="utf-8")) or {})["hydra"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    if str(hydra_cfg.get("sweep", {}).get("subdir", "")) != "${hydra.job.num}":
        return None
    sweeper = hydra_cfg.get("sweeper") or {}
    target = str(sweeper.get("_target_", ""))
    if target.endswith("BasicSweeper"):
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        task = [str(o) for o in (hydra_cfg.get("overrides") or {}).get("task") or []]
        try:
            parsed = OverridesParser.create().parse_overrides(params + task)
            return BasicSweeper.split_arguments(parsed, None)[0]
        except Exception as e:  # a grammar this Hydra cannot parse: list the jobs that exist only
            log.warning(
                "cannot expand the sweep of %s/multirun.yaml (%s): jobs not started are not listed", sweep_dir, e
            )
            return None
    trials = sweeper.get("n_trials")
    return [[] for _ in range(trials)] if isinstance(trials, int) else None


def body(args: argparse.Namespace) -> int:
    check_bucket_flags(args)
    sweep_dir = Path(args.sweep_dir)
    jobs = collect_jobs(sweep_dir, expected=expected_jobs(sweep_dir) if sweep_dir.is_dir() else None)
    summary = summarize(jobs, sweep_dir=sweep_dir, sort=args.sort)
    out = Path(args.output_dir) if args.output_dir else sweep_dir
    try:
        written = write_summary(summary, out)
    except OSError as e:
        raise NMTError(f"cannot write the summary into {out}: {e.strerror or e} (use --output-dir)") from None
    if not args.no_plots:
        from nmt.experiments.plots import draw_all

        root = Path(args.data_dir) if args.data_dir else None
        written += draw_all(
            jobs, summary, out, data_root=root, bucket_width=args.bucket_width, last_bucket=args.last_bucket
        )
    if not args.quiet:
        sys.stdout.write(to_markdown(summary))
        sys.stdout.flush()
    statuses = [r["status"] for r in summary.rows]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    log.info("%d jobs (%s); wrote %s", len(statuses), counts, ", ".join(str(p) for p in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, verbose=not args.quiet)
    return run_cli(PROG, lambda: body(args))


if __name__ == "__main__":
    sys.exit(main())
