"""Models: every one is a :class:`~nmt.models.base.Seq2Seq`; :func:`build_model` picks one from its config."""

from __future__ import annotations

from nmt.config import ConfigError, RNNConfig, TransformerConfig
from nmt.models.base import DecoderState, EncoderOutput, Seq2Seq, reorder
from nmt.models.rnn import RNNSeq2Seq
from nmt.models.transformer import Transformer

__all__ = ["DecoderState", "EncoderOutput", "RNNSeq2Seq", "Seq2Seq", "Transformer", "build_model", "reorder"]


def build_model(cfg: RNNConfig | TransformerConfig, *, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    """The model a config describes, freshly initialised.

    Args:
        cfg: the model section of the configuration.
        src_vocab_size / tgt_vocab_size: vocabulary sizes (equal for a joint SentencePiece model).
    Raises:
        ConfigError: an unknown config type, or tied embeddings over two vocabularies.
    """
    match cfg:
        case RNNConfig():
            return RNNSeq2Seq(cfg, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
        case TransformerConfig():
            return Transformer(cfg, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
        case _:
            raise ConfigError(f"no model for a config of type {type(cfg).__name__}")
