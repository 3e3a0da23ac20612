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


@pytest.mark.parametrize("precision", [Precision.fp32, Precision.bf16])
def test_the_default_transformer_with_dropout_traces_into_one_graph_for_every_shape(precision, one_thread):
    """Dynamo alone (no code generation, fast): the default shape with dropout and autocast, as train=cpu trains
    it, must not break the graph (the CPU dropout's random_ did, once per call) nor recompile per shape."""
    from nmt.config import RNNConfig
    from nmt.models import build_model
    from nmt.models.transformer import Transformer
    from nmt.search import autocast
    from nmt.training.runtime import compile_for_training

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dropout=0.1), src_vocab_size=60, tgt_vocab_size=60).train()
    counters.clear()
    try:
        compiled = torch.compile(model, dynamic=True, backend="eager")  # what compile_for_training asks, sans Inductor
        assert isinstance(compile_for_training(model, model), torch._dynamo.eval_frame.OptimizedModule)
        rnn = build_model(RNNConfig(embed_dim=8, hidden_dim=8), src_vocab_size=60, tgt_vocab_size=60)
        assert compile_for_training(rnn, rnn) is rnn  # RNNs train eagerly
        for b, s, t in ((4, 7, 6), (5, 9, 8), (3, 11, 4), (8, 5, 5)):
            src, tgt = torch.randint(4, 60, (b, s)), torch.randint(4, 60, (b, t))
            with autocast(torch.device("cpu"), precision):
                compiled(src, torch.full((b,), s), tgt).float().sum().backward()
        frames, breaks = dict(counters["frames"]), dict(counters["graph_break"])
    finally:
        torch._dynamo.reset()
    assert frames.get("ok") == 1 and not breaks, (frames, list(breaks)[:1])
