"""Helpers of the integration tests (importable by name, unlike ``conftest``): tiny configs and checkpoints."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import torch

from nmt.config import (
    DataConfig,
    NMTConfig,
    RNNConfig,
    SearchConfig,
    TokenizerConfig,
    TransformerConfig,
    to_dict,
)

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
MAX_LEN = 40  # data.max_len of the fixtures: longer sources are truncated by nmt-translate


def tiny_transformer() -> TransformerConfig:
    return TransformerConfig(d_model=32, ffn_dim=64, heads=2, encoder_layers=1, decoder_layers=2, dropout=0.0)


def tiny_rnn() -> RNNConfig:
    return RNNConfig(embed_dim=32, hidden_dim=48, dropout=0.0)


def tiny_overrides(model: str) -> list[str]:
    """The tiny shapes above as ``nmt-train`` overrides (``model=transformer`` or any ``rnn_*`` preset); dropout
    stays the preset's, so training runs still draw random numbers (exact-resume tests need that)."""
    tiny, default = (tiny_transformer(), TransformerConfig()) if model == "transformer" else (tiny_rnn(), RNNConfig())
    return [
        f"model.{f.name}={getattr(tiny, f.name)}"
        for f in dataclasses.fields(tiny)
        if f.name != "dropout" and getattr(tiny, f.name) != getattr(default, f.name)
    ]


def tiny_config(model, *, vocab_size: int = 500) -> NMTConfig:
    data = DataConfig(train="multi30k/train", valid="multi30k/val", test=["multi30k/test_2016_flickr"], max_len=MAX_LEN)
    search = SearchConfig(beam_size=3, max_len_a=1.2, max_len_b=5, batch_tokens=512)
    return NMTConfig(
        name="tiny", data=data, tokenizer=TokenizerConfig(vocab_size=vocab_size), model=model, search=search
    )


def make_checkpoint(path: Path, cfg: NMTConfig, tokenizer, *, seed: int = 0) -> Path:
    """A step-0 checkpoint of a freshly initialised model (what load_for_inference reads)."""
    from nmt.checkpoint import save_checkpoint
    from nmt.models import build_model

    torch.manual_seed(seed)
    model = build_model(cfg.model, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size)
    state = {"step": 0, "config": to_dict(cfg), "model": model.state_dict(), "tokenizer": tokenizer.to_state()}
    save_checkpoint(state, path)
    return path


def read_gz(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def train_tokenizer(m30k_slice: Path, vocab_size: int):
    from nmt.data.tokenizer import Tokenizer

    src = read_gz(m30k_slice / "multi30k" / "train.de.gz")
    tgt = read_gz(m30k_slice / "multi30k" / "train.en.gz")
    return Tokenizer.train(src, tgt, TokenizerConfig(vocab_size=vocab_size))
