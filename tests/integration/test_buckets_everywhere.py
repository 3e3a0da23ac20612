"""BLEU by source length is one table wherever it appears: the training report's ``results.json``, ``nmt-evaluate``
and ``nmt-sweep-summary``'s plot give the same buckets, counts, scores and bootstrap intervals for one model."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from integration_helpers import BIN

from nmt.checkpoint import load_checkpoint
from nmt.experiments.plots import length_buckets
from nmt.experiments.summary import collect_jobs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_training_report_nmt_evaluate_and_sweep_plot_share_their_buckets(
    trained_checkpoint: Path, tmp_path: Path, cli_env
):
    run_dir = trained_checkpoint.parent.parent
    trained = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["test"][0]
    assert trained["buckets"] and all(b["bleu_low"] is not None for b in trained["buckets"] if b["sentences"] > 1)

    out = tmp_path / "eval"
    proc = subprocess.run(
        [BIN / "nmt-evaluate", "-c", trained_checkpoint, "-o", out, "--device", "cpu"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (evaluated,) = json.loads((out / "results.json").read_text(encoding="utf-8"))["test"]
    assert evaluated["buckets"] == trained["buckets"]
    table = (out / f"{evaluated['name']}.buckets.txt").read_text(encoding="utf-8")
    assert "95% CI" in table and f"{trained['buckets'][0]['bleu_low']:.2f}" in table
    # sacrebleu's full report beside the signature, and the decoding time
    assert f"BLEU|{evaluated['bleu_signature']} = {evaluated['bleu']:.2f} " in proc.stdout
    assert "BP = " in proc.stdout and "ratio = " in proc.stdout and "decoded in " in proc.stdout
    assert len(evaluated["bleu_precisions"]) == 4 and evaluated["bleu_ref_len"] > 0

    # The same run as a sweep job: the plot's buckets, recomputed from its hypotheses and the references.
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    config = load_checkpoint(trained_checkpoint)["config"]
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=transformer"]), encoding="utf-8")
    shutil.copy(run_dir / "results.json", job / "results.json")
    (job / "test").mkdir()
    shutil.copy(run_dir / trained["hypotheses"], job / trained["hypotheses"])
    (found,) = collect_jobs(tmp_path / "sweep")
    plotted = length_buckets(found)
    assert plotted is not None
    assert [{**vars(b), "label": b.label} for b in plotted] == trained["buckets"]
