"""``train.compile`` on the CPU: the Transformer compiles into one graph for batches of every shape (no graph
break, a bounded number of recompiles) and trains like the eager model. Inductor's first compile costs tens of
seconds of CPU time; later runs hit its on-disk cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from nmt.config import (
    DataConfig,
    NMTConfig,
    Precision,
    Schedule,
    SearchConfig,
    TokenizerConfig,
    TrainConfig,
    TransformerConfig,
)
from nmt.training.trainer import Trainer

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None, reason="Inductor needs a C++ compiler on the CPU"
)
UPDATES = 6


def run(m30k_slice: Path, run_dir: Path, *, compile: bool) -> tuple[list[dict], dict, list[tuple[int, int]]]:
    corpus = m30k_slice / "multi30k"
    cfg = NMTConfig(
        data=DataConfig(
            train=str(corpus / "train"), valid=str(corpus / "val"), cache_dir=str(run_dir.parent / "cache")
        ),
        tokenizer=TokenizerConfig(vocab_size=500),
        model=TransformerConfig(
            d_model=32, ffn_dim=64, heads=2, encoder_layers=1, decoder_layers=1, dropout=0.0, alignment_layer=0
        ),
        train=TrainConfig(
            batch_tokens=512,
            schedule=Schedule.constant,
            warmup_steps=0,
            lr=0.2,
            precision=Precision.fp32,
            compile=compile,
            threads=1,
            matmul_peak_gflops=1.0,
        ),
        search=SearchConfig(beam_size=1),
    )
    trainer = Trainer(cfg, run_dir)
    # Plain SGD: weights then compare gradients (Adam's normalisation blows up the noise of gradients that are zero
    # in theory, like the key biases', into differences of the order of the learning rate).
    trainer.updater.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.2)
    try:
        batches = iter(trainer.loader)
        figures, shapes = [], []
        for _ in range(UPDATES):
            batch = next(batches)
            shapes.append((batch.src.size(0), batch.tgt_in.size(1)))
            figures.append(trainer.step([batch]))
            trainer.state.step += 1
        return figures, trainer.model.state_dict(), shapes
    finally:
        trainer.close()


def test_the_compiled_transformer_trains_like_eager_with_one_graph_for_every_batch_shape(
    m30k_slice, tmp_path, one_thread
):
    eager, eager_weights, shapes = run(m30k_slice, tmp_path / "eager", compile=False)
    counters.clear()
    try:
        compiled, weights, same_shapes = run(m30k_slice, tmp_path / "compiled", compile=True)
        frames, breaks = dict(counters["frames"]), dict(counters["graph_break"])
    finally:
        torch._dynamo.reset()
    assert same_shapes == shapes and len(set(shapes)) >= UPDATES - 1  # (batch, length) shapes differ
    assert frames.get("ok") == 1 and not breaks  # one graph, compiled once: no recompile, no graph break
    for got, want in zip(compiled, eager):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-3)
    for name, value in eager_weights.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-3, atol=1e-5, msg=name)
