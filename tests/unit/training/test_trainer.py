"""The update step on a real Multi30k slice: token-normalised accumulation, and non-finite losses skipped."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

import nmt.training.update as update_module
from nmt.config import DataConfig, NMTConfig, SearchConfig, TokenizerConfig, TrainConfig, TransformerConfig
from nmt.training.trainer import Trainer
from nmt.training.update import TrainingError


@pytest.fixture(scope="module")
def trainer(m30k_slice: Path, tmp_path_factory) -> Trainer:
    torch.set_num_threads(1)
    corpus = m30k_slice / "multi30k"
    cfg = NMTConfig(
        data=DataConfig(
            train=str(corpus / "train"), valid=str(corpus / "val"), cache_dir=str(tmp_path_factory.mktemp("cache"))
        ),
        tokenizer=TokenizerConfig(vocab_size=500),
        model=TransformerConfig(d_model=32, ffn_dim=64, heads=2, encoder_layers=1, decoder_layers=2, dropout=0.0),
        train=TrainConfig(batch_tokens=512, warmup_steps=1, lr=1e-3, max_nan_steps=3, clip_norm=0.0, threads=1),
        search=SearchConfig(beam_size=1),
    )
    t = Trainer(cfg, tmp_path_factory.mktemp("run"))
    yield t
    t.close()


def snapshot(t: Trainer) -> tuple[dict, dict]:
    return copy.deepcopy(t.model.state_dict()), copy.deepcopy(t.updater.optimizer.state_dict())


def restore(t: Trainer, snap: tuple[dict, dict]) -> None:
    t.model.load_state_dict(snap[0])
    t.updater.optimizer.load_state_dict(snap[1])


def test_accumulated_batches_update_like_one_batch_of_all_their_examples(trainer, monkeypatch):
    data = trainer.data.train
    first, second = list(range(0, 12)), list(range(100, 130))  # different sizes: normalisation must be per token
    # Plain SGD: the update is lr x gradient, so comparing weights compares gradients (Adam's first step is
    # lr x sign(gradient), blind to the scale and noisy on gradients that are zero in theory, like key biases).
    monkeypatch.setattr(trainer.updater, "optimizer", torch.optim.SGD(trainer.model.parameters(), lr=1.0))
    snap = snapshot(trainer)
    accumulated = trainer.step([data.batch(first), data.batch(second)])
    weights = copy.deepcopy(trainer.model.state_dict())
    restore(trainer, snap)
    merged = trainer.step([data.batch(first + second)])
    assert accumulated["tokens"] == merged["tokens"]
    assert accumulated["loss"] == pytest.approx(merged["loss"], rel=1e-5)
    assert accumulated["grad_norm"] == pytest.approx(merged["grad_norm"], rel=1e-4)
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-6, msg=name)
    restore(trainer, snap)


def test_non_finite_losses_skip_the_update_and_too_many_in_a_row_stop_training(trainer, monkeypatch, caplog):
    batches = iter(trainer.loader)
    snap = snapshot(trainer)
    real = update_module.label_smoothed_nll

    def poisoned(logits, target, **kw):
        loss, nll, n = real(logits, target, **kw)
        return loss * float("nan"), nll, n

    monkeypatch.setattr(update_module, "label_smoothed_nll", poisoned)
    for _ in range(2):
        figures = trainer.step([next(batches)])
        assert math.isnan(figures["loss"])
    assert trainer.state.nan_streak == 2
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, snap[0][name]), name  # no update was applied
    assert "update skipped (2 in a row, limit 3)" in caplog.text
    with pytest.raises(TrainingError, match=r"not finite for 3 updates in a row.*no checkpoint was written yet"):
        trainer.step([next(batches)])

    monkeypatch.undo()
    trainer.state.nan_streak = 0
    figures = trainer.step([next(batches)])
    assert math.isfinite(figures["loss"]) and trainer.state.nan_streak == 0
    assert any(not torch.equal(v, snap[0][k]) for k, v in trainer.model.state_dict().items())
    restore(trainer, snap)
