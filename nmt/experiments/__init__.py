"""Experiments: what a sweep of ``nmt-train -m`` jobs left behind, as tables and plots.

:mod:`nmt.experiments.jobs` reads and writes the files that say where a job stands (results, failures, the
overrides it was started with); :mod:`nmt.experiments.summary` turns a sweep directory into one row per job
(Markdown, CSV, JSON); :mod:`nmt.experiments.plots` draws BLEU by model, BLEU by source length and dev BLEU
against training time. ``nmt-sweep-summary`` (:mod:`nmt.cli.sweep_summary`) is the command line.
"""

from nmt.experiments.jobs import JobDir, Status, read_job, read_results
from nmt.experiments.summary import Summary, SweepError, collect_jobs, summarize

__all__ = ["JobDir", "Status", "Summary", "SweepError", "collect_jobs", "read_job", "read_results", "summarize"]
