"""Training progress: plain lines with step/total, epoch, tok/s, elapsed and ETA off a terminal; on a terminal a bar
on stderr, the same lines in train.log only, and other log lines printed above the bar instead of through it."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest
import torch

from nmt.config import DataConfig, NMTConfig, SearchConfig, TokenizerConfig, TrainConfig, TransformerConfig
from nmt.training.progress import Progress, _duration
from nmt.training.trainer import Trainer

FIGURES = {"loss": 3.0, "lr": 5e-4, "tok/s": 7900.4, "pad eff": 0.93}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def handlers(tmp_path, monkeypatch):
    """``install()`` -> (fake terminal, train.log): sys.stderr becomes a fake terminal, and the root logger gets a
    console handler on it and a train.log file handler, as Hydra sets them up (removed afterwards). Called in the
    test itself: pytest puts its own sys.stderr back between a fixture's setup and the test."""
    root, added = logging.getLogger(), []
    old_level, old_handlers = root.level, root.handlers
    root.handlers = []  # only ours (other tests may leave a tool's stderr handler behind)

    def install() -> tuple[FakeTerminal, Path]:
        terminal = FakeTerminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        added.extend([logging.StreamHandler(sys.stderr), logging.FileHandler(tmp_path / "train.log", encoding="utf-8")])
        for h in added:
            h.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
            root.addHandler(h)
        root.setLevel(logging.INFO)
        return terminal, tmp_path / "train.log"

    yield install
    root.setLevel(old_level)
    root.handlers = old_handlers
    for h in added:
        h.close()


def test_off_a_terminal_every_log_every_steps_a_line_has_step_total_epoch_throughput_elapsed_and_eta(handlers, caplog):
    _, train_log = handlers()
    clock = Clock()
    progress = Progress(total=20, initial=0, every=5, elapsed=60.0, terminal=False, clock=clock)
    assert progress.bar is None
    with caplog.at_level(logging.INFO, logger="nmt"):
        for step in range(1, 11):
            clock.now += 2.0
            progress.update(step, FIGURES, epoch=1 + step // 8)
    progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "step 5/20 (25%) | epoch 1 | loss 3.00 | lr 0.0005 | 7,900 tok/s | pad eff 0.93 | elapsed 1m10s | ETA 30s",
        "step 10/20 (50%) | epoch 2 | loss 3.00 | lr 0.0005 | 7,900 tok/s | pad eff 0.93 | elapsed 1m20s | ETA 20s",
    ]
    assert train_log.read_text().count("| ETA ") == 2  # the file gets them too


def test_a_resumed_session_measures_its_pace_from_its_own_first_step(caplog):
    clock = Clock()
    progress = Progress(total=1000, initial=900, every=50, terminal=False, clock=clock)
    with caplog.at_level(logging.INFO, logger="nmt"):
        clock.now += 30.0
        progress.update(950, FIGURES, epoch=7)
    assert caplog.records[-1].getMessage().startswith("step 950/1000 (95%) | epoch 7 |")
    assert caplog.records[-1].getMessage().endswith("elapsed 30s | ETA 30s")


def test_on_a_terminal_the_bar_is_on_stderr_step_lines_go_to_train_log_only_and_messages_print_above_the_bar(
    handlers,
):
    terminal, train_log = handlers()
    root = logging.getLogger()
    before = list(root.handlers)
    progress = Progress(total=20, initial=0, every=5)  # asks sys.stderr.isatty(): the fake terminal says yes
    assert progress.bar is not None
    log = logging.getLogger("nmt.training.trainer")
    for step in range(1, 11):
        progress.update(step, FIGURES, epoch=1)
        if step == 5:
            log.info("checkpoint: step 5 -> step_5.pt")
    progress.close()
    assert root.handlers == before  # the console handler is given back

    in_file = train_log.read_text()
    assert (
        "step 5/20 (25%) | epoch 1 |" in in_file and "step 10/20 (50%)" in in_file and "checkpoint: step 5" in in_file
    )
    shown = terminal.getvalue()
    assert "upd" in shown and "epoch 1 | loss 3.00" in shown  # the bar and its figures
    assert "step 5/20 (25%)" not in shown  # the plain line is not printed under the bar
    (line,) = [line for line in shown.split("\n") if "checkpoint:" in line]
    assert line.split("\r")[-1] == "[INFO] checkpoint: step 5 -> step_5.pt"  # the bar was cleared first


def test_durations_read_naturally():
    assert [_duration(s) for s in (0, 45.4, 591, 7500, 3 * 86400 + 4 * 3600 + 5)] == [
        "0s",
        "45s",
        "9m51s",
        "2h05m",
        "3d04h",
    ]


def test_a_training_on_a_terminal_writes_its_step_lines_and_messages_to_train_log_but_not_to_stderr(
    m30k_slice: Path, tmp_path, handlers, one_thread
):
    terminal, _ = handlers()
    corpus = m30k_slice / "multi30k"
    cfg = NMTConfig(
        data=DataConfig(train=str(corpus / "train"), valid=str(corpus / "val"), cache_dir=str(tmp_path / "cache")),
        tokenizer=TokenizerConfig(vocab_size=300),
        model=TransformerConfig(d_model=32, ffn_dim=64, heads=2, encoder_layers=1, decoder_layers=2),
        train=TrainConfig(
            batch_tokens=512, max_steps=4, log_every=2, eval_every=4, save_every=2, threads=1, heatmap_sentences=0
        ),
        search=SearchConfig(beam_size=1),
    )
    run_dir = tmp_path / "run"
    Trainer(cfg, run_dir).fit()
    torch.set_num_threads(1)
    in_file = (tmp_path / "train.log").read_text()  # the root's file handler (Hydra's train.log) got everything
    for text in ("step 2/4 (50%) | epoch 1 | loss", "step 4/4 (100%)", "tok/s", "ETA", "checkpoint: step 2", "BLEU"):
        assert text in in_file, text
    shown = terminal.getvalue()
    assert "step 2/4 (50%)" not in shown and "checkpoint: step 2" in shown
