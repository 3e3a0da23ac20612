"""Every model can learn: it memorises 64 real Multi30k pairs (greedy output = the references) in bounded steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from corpus_io import read_gz_lines
from model_variants import greedy, rnn, transformer

from nmt.config import Cell, LuongScore, Norm
from nmt.data.batch import Batch, collate
from nmt.models import build_model
from nmt.training.loss import label_smoothed_nll

MODELS = {
    "rnn_bahdanau": (rnn("bahdanau", embed_dim=64, hidden_dim=64), 1e-2),
    "rnn_luong_dot": (rnn("luong", score=LuongScore.dot, embed_dim=64, hidden_dim=64), 1e-2),
    "rnn_luong_general": (rnn("luong", embed_dim=64, hidden_dim=64), 1e-2),
    "rnn_luong_concat": (rnn("luong", score=LuongScore.concat, embed_dim=64, hidden_dim=64), 1e-2),
    "rnn_none_lstm": (rnn("none", cell=Cell.lstm, embed_dim=64, hidden_dim=64), 1e-2),
    "transformer_pre": (transformer(d_model=64, ffn_dim=128), 3e-3),
    "transformer_post": (transformer(d_model=64, ffn_dim=128, norm=Norm.post), 3e-3),
}
MAX_STEPS = 200  # each model needs 50-70 at these sizes


@pytest.fixture(scope="module")
def pairs(data_root: Path) -> tuple[Batch, list[list[int]], int]:
    """The first 64 training pairs (de -> en) over a whitespace vocabulary built from them."""
    de = read_gz_lines(data_root / "multi30k/train.de.gz", 64)
    en = read_gz_lines(data_root / "multi30k/train.en.gz", 64)
    vocab: dict[str, int] = {}
    for line in de + en:
        for word in line.split():
            vocab.setdefault(word, len(vocab) + 4)  # after the four specials
    src = [[vocab[w] for w in line.split()] for line in de]
    tgt = [[vocab[w] for w in line.split()] for line in en]
    return collate(src, tgt, list(range(64))), tgt, len(vocab) + 4


@pytest.mark.parametrize("name", list(MODELS))
def test_memorises_64_real_pairs(name: str, pairs: tuple[Batch, list[list[int]], int], one_thread: None) -> None:
    batch, references, vocab = pairs
    cfg, lr = MODELS[name]
    torch.manual_seed(0)
    model = build_model(cfg, src_vocab_size=vocab, tgt_vocab_size=vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    max_len = batch.tgt_out.size(1) + 2
    hyps: list[list[int]] = []
    for step in range(1, MAX_STEPS + 1):
        model.train()
        loss, _, n = label_smoothed_nll(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out, smoothing=0.0)
        optimizer.zero_grad()
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if loss.item() / n < 0.05 and step % 10 == 0:
            with torch.no_grad():
                hyps = greedy(model.eval(), batch.src, batch.src_lengths, max_len)
            if hyps == references:
                break
    else:
        wrong = sum(h != r for h, r in zip(hyps, references))
        pytest.fail(f"{name}: {wrong}/64 greedy outputs differ after {MAX_STEPS} steps (loss {loss.item() / n:.3f})")
    assert loss.item() / n < 0.05
