"""How a fine-tuning run's config takes the model and tokenizer sections of its checkpoint (no data needed)."""

from __future__ import annotations

import pytest

from nmt.config import (
    AttentionType,
    ConfigError,
    NMTConfig,
    RNNConfig,
    TokenizerConfig,
    TokenizerType,
    TransformerConfig,
    to_dict,
)
from nmt.training.finetune import adopt, contradictions

RNN_SOURCE = to_dict(
    NMTConfig(
        model=RNNConfig(attention=AttentionType.luong, hidden_dim=64, dropout=0.5),
        tokenizer=TokenizerConfig(type=TokenizerType.bpe, vocab_size=500),
    )
)


def test_the_model_and_tokenizer_sections_come_from_the_checkpoint_typed():
    cfg = adopt(NMTConfig(), RNN_SOURCE)  # the composed default is a Transformer with an 8k unigram vocabulary
    assert isinstance(cfg.model, RNNConfig) and cfg.model.attention == AttentionType.luong
    assert (cfg.model.hidden_dim, cfg.model.dropout) == (64, 0.5)
    assert cfg.tokenizer.type == TokenizerType.bpe and cfg.tokenizer.vocab_size == 500
    assert contradictions(cfg, RNN_SOURCE) == []


def test_keys_set_by_the_user_keep_their_value_when_free_and_are_refused_when_they_contradict():
    base = NMTConfig(model=RNNConfig(dropout=0.2), tokenizer=TokenizerConfig(sampling_alpha=0.1, vocab_size=500))
    cfg = adopt(base, RNN_SOURCE, keep={"model.dropout", "tokenizer.sampling_alpha", "tokenizer.vocab_size"})
    assert cfg.model.dropout == 0.2 and cfg.tokenizer.sampling_alpha == 0.1 and cfg.model.hidden_dim == 64
    with pytest.raises(ConfigError) as e:
        adopt(base, RNN_SOURCE, keep={"model.hidden_dim", "model.attention", "tokenizer.type"}, path="ckpt.pt")
    message = str(e.value)
    assert message.startswith("train.init_from=ckpt.pt has model.hidden_dim=64 but the config asks for 512;")
    assert "model.attention='luong' but the config asks for 'bahdanau'" in message
    assert "tokenizer.type='bpe' but the config asks for 'unigram'" in message


def test_another_architecture_is_named_once_and_a_key_of_another_architecture_does_not_apply():
    with pytest.raises(ConfigError, match=r"model\.arch='rnn' but the config asks for 'transformer'\. A fine-tuning"):
        adopt(NMTConfig(model=TransformerConfig(d_model=64)), RNN_SOURCE, keep={"model.d_model"})
    cfg = adopt(NMTConfig(model=TransformerConfig(dropout=0.3)), RNN_SOURCE, keep={"model.dropout"})
    assert isinstance(cfg.model, RNNConfig) and cfg.model.dropout == 0.3  # dropout exists in both
    with pytest.raises(ConfigError, match=r"model\.attention_dropout does not apply"):
        adopt(NMTConfig(), RNN_SOURCE, keep={"model.attention_dropout"})


def test_without_keys_every_shape_and_vocabulary_setting_is_compared_but_not_the_free_ones():
    source = to_dict(NMTConfig(tokenizer=TokenizerConfig(vocab_size=500)))
    cfg = NMTConfig(model=TransformerConfig(dropout=0.3, heads=8), tokenizer=TokenizerConfig(sampling_alpha=0.2))
    assert contradictions(cfg, source) == [
        "model.heads=4 but the config asks for 8",
        "tokenizer.vocab_size=500 but the config asks for 8000",
    ]
