"""The update step on a real Multi30k slice: token-normalised accumulation, non-finite losses skipped (on the
device, in fp32 and fp16), and the GPU's pipelined reading of figures (forced on the CPU) giving the same run."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

import nmt.training.update as update_module
from nmt.config import DataConfig, NMTConfig, Precision, SearchConfig, TokenizerConfig, TrainConfig, TransformerConfig
from nmt.training.trainer import Trainer
from nmt.training.update import TrainingError


def tiny_config(m30k_slice: Path, cache: Path, **train) -> NMTConfig:
    corpus = m30k_slice / "multi30k"
    settings = dict(batch_tokens=512, warmup_steps=1, lr=1e-3, max_nan_steps=3, clip_norm=0.0, threads=1)
    return NMTConfig(
        data=DataConfig(train=str(corpus / "train"), valid=str(corpus / "val"), cache_dir=str(cache)),
        tokenizer=TokenizerConfig(vocab_size=500),
        model=TransformerConfig(d_model=32, ffn_dim=64, heads=2, encoder_layers=1, decoder_layers=2, dropout=0.0),
        train=TrainConfig(**{**settings, **train}),
        search=SearchConfig(beam_size=1),
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")  # data and tokenizer prepared once for the module


@pytest.fixture(scope="module")
def trainer(m30k_slice: Path, cache: Path, tmp_path_factory) -> Trainer:
    torch.set_num_threads(1)
    t = Trainer(tiny_config(m30k_slice, cache), tmp_path_factory.mktemp("run"))
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


def test_a_skipped_update_leaves_weights_adam_moments_and_step_counts_untouched(trainer, monkeypatch):
    """The skip is decided on the device: fused Adam reads the flag (no host read decides it)."""
    batches = iter(trainer.loader)
    trainer.step([next(batches)])  # Adam has state now
    snap = snapshot(trainer)
    assert getattr(trainer.updater.optimizer, "_step_supports_amp_scaling", False)  # the fused kernel
    real = update_module.label_smoothed_nll
    monkeypatch.setattr(update_module, "label_smoothed_nll", lambda *a, **k: _poison(real(*a, **k)))
    trainer.step([next(batches)])
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, snap[0][name]), name
    after = trainer.updater.optimizer.state_dict()["state"]
    for key, values in snap[1]["state"].items():
        for field, tensor in values.items():
            assert torch.equal(after[key][field], tensor), (key, field)
    trainer.state.nan_streak = 0
    restore(trainer, snap)


def _poison(out):
    loss, nll, n = out
    return loss * float("nan"), nll, n


@pytest.fixture(scope="module")
def fp16_trainer(m30k_slice: Path, cache: Path, tmp_path_factory) -> Trainer:
    torch.set_num_threads(1)
    t = Trainer(tiny_config(m30k_slice, cache, precision=Precision.fp16), tmp_path_factory.mktemp("fp16"))
    yield t
    t.close()


def test_fp16_skips_non_finite_updates_keeps_the_scaler_consistent_and_stops_after_too_many(fp16_trainer, monkeypatch):
    # Before the fix the skip path left the scaler "unscaled": the next update raised
    # "unscale_() has already been called on this optimizer since the last update()".
    t = fp16_trainer
    batches = iter(t.loader)
    assert math.isfinite(t.step([next(batches)])["loss"])
    snap = snapshot(t)
    scale = t.updater.scaler.get_scale()
    real = update_module.label_smoothed_nll
    monkeypatch.setattr(update_module, "label_smoothed_nll", lambda *a, **k: _poison(real(*a, **k)))
    for streak in (1, 2):
        figures = t.step([next(batches)])
        assert math.isnan(figures["loss"]) and t.state.nan_streak == streak
    for name, value in t.model.state_dict().items():
        assert torch.equal(value, snap[0][name]), name  # both updates skipped
    assert t.updater.scaler.get_scale() == scale / 4  # update() ran after each skipped step: halved twice
    with pytest.raises(TrainingError, match="not finite for 3 updates in a row"):
        t.step([next(batches)])

    monkeypatch.undo()
    t.state.nan_streak = 0
    figures = t.step([next(batches)])  # the scaler is usable again
    assert math.isfinite(figures["loss"]) and t.state.nan_streak == 0
    assert any(not torch.equal(v, snap[0][k]) for k, v in t.model.state_dict().items())


def test_reading_figures_one_update_late_as_on_a_gpu_gives_the_same_run(m30k_slice, cache, tmp_path, one_thread):
    """On CUDA the loop reads update N's figures after queueing N+1 (no stall); forced here on the CPU, the
    run must end with the same weights, logs and counters as reading each update at once."""
    outcomes = []
    for pipelined in (False, True):
        cfg = tiny_config(m30k_slice, cache, max_steps=7, log_every=3, eval_every=100, save_every=100)
        t = Trainer(cfg, tmp_path / str(pipelined))
        t.pipelined = pipelined
        t.fit()
        records = [json.loads(line) for line in (tmp_path / str(pipelined) / "metrics.jsonl").read_text().splitlines()]
        train = [
            {k: r[k] for k in ("step", "loss", "nll", "grad_norm", "lr", "tgt_tokens")}
            for r in records
            if r["kind"] == "train"
        ]
        outcomes.append((t.model.state_dict(), train, t.state.tgt_tokens, t.state.step))
    (weights, train, tokens, steps), (weights2, train2, tokens2, steps2) = outcomes
    assert [r["step"] for r in train] == [3, 6] and train == train2
    assert tokens == tokens2 > 0 and steps == steps2 == 7
    assert all(torch.equal(weights[k], weights2[k]) for k in weights)
