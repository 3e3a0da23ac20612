"""metrics.jsonl + TensorBoard: one record per step, the same scalars in the event file, no duplicates on resume."""

from __future__ import annotations

import json

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard_io import hparams_sessions

from nmt.training.metrics import MetricsWriter, attention_figure


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def scalars(run_dir, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_records_reach_jsonl_and_tensorboard_and_a_resume_drops_steps_after_the_checkpoint(tmp_path):
    w = MetricsWriter(tmp_path)
    for step in (10, 20, 30):
        w.log("train", step, {"loss": 10.0 / step, "lr": 1e-3, "note": "text is kept out of TensorBoard"})
    w.log("valid", 20, {"bleu": 1.5})
    w.close()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["kind"], r["step"]) for r in records] == [("train", 10), ("train", 20), ("train", 30), ("valid", 20)]
    assert records[0]["loss"] == 1.0 and records[0]["note"].startswith("text")

    # A run killed after step 30 resumes from its step-20 checkpoint and logs 30 again.
    w = MetricsWriter(tmp_path, resume_step=20)
    w.log("train", 30, {"loss": 0.5, "lr": 1e-3})
    w.close()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["kind"], r["step"], r.get("loss")) for r in records if r["kind"] == "train"] == [
        ("train", 10, 1.0),
        ("train", 20, 0.5),
        ("train", 30, 0.5),
    ]
    assert scalars(tmp_path, "train/loss") == [(10, 1.0), (20, 0.5), (30, 0.5)]  # the old step 30 was purged
    assert scalars(tmp_path, "valid/bleu") == [(20, 1.5)]


def test_disabled_writer_writes_nothing(tmp_path):
    w = MetricsWriter(tmp_path, enabled=False)
    w.log("train", 1, {"loss": 1.0})
    w.close()
    assert list(tmp_path.iterdir()) == []


def test_attention_figure_becomes_a_tensorboard_image(tmp_path):
    weights = torch.softmax(torch.randn(4, 5), dim=-1)
    fig = attention_figure(weights, ["▁ein", "▁Hund", "▁läuft", ".", "</s>"], ["▁a", "▁dog", "▁runs", "</s>"], "x")
    assert len(fig.axes[0].get_xticklabels()) == 5 and len(fig.axes[0].get_yticklabels()) == 4
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 3  # the colour bar; one box per target word's link
    w = MetricsWriter(tmp_path)
    w.figure("attention/dev_0", fig, 7)
    w.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    (image,) = acc.Images("attention/dev_0")
    assert image.step == 7 and image.width > 50 and image.height > 50


def test_hparams_are_written_once_per_run_into_the_run_itself_and_the_final_scores_are_its_scalars(tmp_path):
    settings = {"data.src_lang": "de", "tokenizer.vocab_size": 500, "train.lr": 1e-3, "data.test": ["a", "b"]}
    w = MetricsWriter(tmp_path)
    w.hparams(settings)
    w.log("train", 10, {"loss": 2.0})
    w.close()
    w = MetricsWriter(tmp_path, resume_step=10)  # a resumed session: the run already has its HParams
    w.hparams({**settings, "train.lr": 5.0})
    w.final_scores({"hparam/dev_bleu": 12.5, "hparam/test_bleu": 11.0}, 20)
    w.close()
    assert hparams_sessions(tmp_path / "tensorboard") == [
        {"data.src_lang": "de", "tokenizer.vocab_size": 500.0, "train.lr": 1e-3, "data.test": "['a', 'b']"}
    ]
    assert [p for p in (tmp_path / "tensorboard").iterdir() if p.is_dir()] == []  # no second run
    assert scalars(tmp_path, "hparam/test_bleu") == [(20, 11.0)] and scalars(tmp_path, "hparam/dev_bleu") == [
        (20, 12.5)
    ]
