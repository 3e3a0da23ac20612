"""The model variants every model test runs over, at small sizes, and a greedy decoder built on decode_step."""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.config import AttentionType, Cell, LuongScore, Norm, Positions, RNNConfig, TransformerConfig
from nmt.models import build_model
from nmt.models.base import Seq2Seq
from nmt.specials import BOS_ID, EOS_ID


def rnn(attention: str, **kw: object) -> RNNConfig:
    base = {"embed_dim": 16, "hidden_dim": 24, "dropout": 0.0, "attention": AttentionType(attention)}
    return RNNConfig(**{**base, **kw})


def transformer(**kw: object) -> TransformerConfig:
    base = {"d_model": 32, "ffn_dim": 48, "heads": 4, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.0}
    return TransformerConfig(**{**base, **kw})


VARIANTS = {
    "rnn_bahdanau": lambda: rnn("bahdanau"),
    "rnn_luong_dot": lambda: rnn("luong", score=LuongScore.dot),
    "rnn_luong_general": lambda: rnn("luong", score=LuongScore.general),
    "rnn_luong_concat": lambda: rnn("luong", score=LuongScore.concat),
    "rnn_luong_nofeed": lambda: rnn("luong", score=LuongScore.general, input_feeding=False),
    "rnn_none": lambda: rnn("none"),
    "rnn_bahdanau_lstm2": lambda: rnn("bahdanau", cell=Cell.lstm, encoder_layers=2, decoder_layers=2),
    "rnn_luong_lstm2": lambda: rnn("luong", cell=Cell.lstm, decoder_layers=2),
    "transformer_pre": lambda: transformer(),
    "transformer_post": lambda: transformer(norm=Norm.post),
    "transformer_learned": lambda: transformer(positions=Positions.learned, max_positions=64),
}
ATTENTIVE = [name for name in VARIANTS if name != "rnn_none"]

VOCAB = 40


def make(name: str, vocab: int = VOCAB, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return build_model(VARIANTS[name](), src_vocab_size=vocab, tgt_vocab_size=vocab).eval()


def greedy(model: Seq2Seq, src: Tensor, src_lengths: Tensor, max_len: int) -> list[list[int]]:
    """Greedy decoding through encode / init_state / decode_step; outputs without BOS/EOS."""
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    prev = torch.full((src.size(0),), BOS_ID, dtype=torch.long)
    out = []
    for _ in range(max_len):
        log_probs, _, state = model.decode_step(prev, state, enc)
        prev = log_probs.argmax(-1)
        out.append(prev)
    hyps = []
    for row in torch.stack(out, 1).tolist():
        hyps.append(row[: row.index(EOS_ID)] if EOS_ID in row else row)
    return hyps
