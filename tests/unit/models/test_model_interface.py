"""The Seq2Seq contract for every model: shapes, sizes, masks, causality, incremental = full decoding."""

from __future__ import annotations

import pytest
import torch
from model_variants import ATTENTIVE, VARIANTS, VOCAB, make, rnn, transformer

from nmt.config import AttentionType, Cell, ConfigError, RNNConfig, TransformerConfig
from nmt.models import RNNSeq2Seq, Transformer, build_model
from nmt.models.base import reorder
from nmt.specials import BOS_ID, EOS_ID, PAD_ID

ALL = list(VARIANTS)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three right-padded sources (lengths 7, 4, 1 incl. EOS) and targets (BOS + 5, 3, 1 pieces, padded)."""
    g = torch.Generator().manual_seed(seed)
    src_lengths = torch.tensor([7, 4, 1])
    src = torch.randint(4, VOCAB, (3, 7), generator=g)
    tgt = torch.randint(4, VOCAB, (3, 6), generator=g)
    tgt[:, 0] = BOS_ID
    for i, n in enumerate(src_lengths.tolist()):
        src[i, n - 1] = EOS_ID
        src[i, n:] = PAD_ID
    tgt[1, 4:] = PAD_ID
    tgt[2, 2:] = PAD_ID
    return src, src_lengths, tgt


def incremental(model, src, src_lengths, tgt, *, reorder_at: int | None = None, need_attention: bool = False):
    """Step-by-step log-probs (B, T, V) and attention; optionally reverse the batch order at one step."""
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    order = torch.arange(src.size(0))
    steps, attns = [], []
    for t in range(tgt.size(1)):
        if t == reorder_at:
            flip = torch.arange(src.size(0) - 1, -1, -1)
            enc, state, order = reorder(enc, flip), reorder(state, flip), order[flip]
        log_probs, attn, state = model.decode_step(tgt[order, t], state, enc, need_attention=need_attention)
        back = torch.argsort(order)
        steps.append(log_probs[back])
        attns.append(None if attn is None else attn[back])
    attn = None if attns[0] is None else torch.stack(attns, 1)
    return torch.stack(steps, 1), attn


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_batch_first_dicts(name: str) -> None:
    model = make(name)
    src, src_lengths, tgt = batch()
    enc = model.encode(src, src_lengths)
    assert torch.equal(enc["src_pad_mask"], src == PAD_ID)
    logits = model(src, src_lengths, tgt)
    assert logits.shape == (3, 6, VOCAB)
    state = model.init_state(enc)
    log_probs, attn, state = model.decode_step(tgt[:, 0], state, enc)
    assert log_probs.shape == (3, VOCAB) and log_probs.dtype == torch.float32 and attn is None
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3), atol=1e-5)
    for d in (enc, state):
        assert all(v.size(0) == 3 for v in d.values()), {k: v.shape for k, v in d.items()}


def rnn_params(cfg: RNNConfig, V: int) -> int:
    """Parameter count of RNNSeq2Seq from its definition (GRU: 3 gates, LSTM: 4, two bias vectors each)."""
    E, H, g = cfg.embed_dim, cfg.hidden_dim, 3 if cfg.cell == Cell.gru else 4
    h = H // 2
    enc = V * E + sum(2 * (g * h * ((E if i == 0 else H) + h) + 2 * g * h) for i in range(cfg.encoder_layers))
    ns = 1 if cfg.cell == Cell.gru else 2
    bridge = H * ns * cfg.decoder_layers * H + ns * cfg.decoder_layers * H
    if cfg.attention == AttentionType.luong:
        out = E if cfg.tie_embeddings else H
        attn = {"dot": 0, "general": H * H, "concat": 2 * H * H + H}[cfg.score.value] + 2 * H * out
        rnn_in = E + (out if cfg.input_feeding else 0)
    else:
        out = E
        attn = (2 * H * H + H if cfg.attention == AttentionType.bahdanau else 0) + (2 * H + E) * E + E
        rnn_in = E + H
    dec = sum(g * H * ((rnn_in if i == 0 else H) + H) + 2 * g * H for i in range(cfg.decoder_layers))
    output = 0 if cfg.tie_embeddings else out * V  # no output bias
    return enc + V * E + bridge + attn + dec + output


def transformer_params(cfg: TransformerConfig, V: int) -> int:
    d, f, pre = cfg.d_model, cfg.ffn_dim, cfg.norm.value == "pre"
    attn, ffn, norm = 4 * d * d + 4 * d, 2 * d * f + f + d, 2 * d
    emb = V * d if cfg.tie_embeddings else 3 * V * d
    pos = 2 * cfg.max_positions * d if cfg.positions.value == "learned" else 0
    layers = cfg.encoder_layers * (attn + ffn + 2 * norm) + cfg.decoder_layers * (2 * attn + ffn + 3 * norm)
    return emb + pos + layers + (2 * norm if pre else 0)


@pytest.mark.parametrize("name", ALL)
def test_parameter_count_matches_formula(name: str) -> None:
    cfg = VARIANTS[name]()
    model = build_model(cfg, src_vocab_size=VOCAB, tgt_vocab_size=VOCAB)
    expected = rnn_params(cfg, VOCAB) if isinstance(cfg, RNNConfig) else transformer_params(cfg, VOCAB)
    assert model.num_parameters() == expected


def test_parameter_counts_at_default_sizes() -> None:
    """The benchmark shapes of PEERS.md (8k joint vocabulary): Transformer ≈ 7.6M, RNN ≈ 10M."""
    tf = build_model(TransformerConfig(), src_vocab_size=8000, tgt_vocab_size=8000)
    assert tf.num_parameters() == transformer_params(TransformerConfig(), 8000) == 7_578_624
    r = build_model(RNNConfig(), src_vocab_size=8000, tgt_vocab_size=8000)
    assert r.num_parameters() == rnn_params(RNNConfig(), 8000) == 10_018_048


def test_tied_embeddings_share_one_matrix() -> None:
    tf = build_model(transformer(), src_vocab_size=VOCAB, tgt_vocab_size=VOCAB)
    assert tf.src_embed.weight is tf.tgt_embed.weight and tf.out_proj is None
    r = build_model(rnn("luong", tie_embeddings=True), src_vocab_size=VOCAB, tgt_vocab_size=VOCAB)
    assert r.out_proj.weight is r.tgt_embed.weight
    with pytest.raises(ConfigError, match="joint vocabulary"):
        build_model(transformer(), src_vocab_size=VOCAB, tgt_vocab_size=VOCAB + 1)
    untied = build_model(transformer(tie_embeddings=False), src_vocab_size=VOCAB, tgt_vocab_size=VOCAB + 1)
    assert untied(*batch()).shape == (3, 6, VOCAB + 1)


def test_build_model_dispatches_on_config_type() -> None:
    assert isinstance(build_model(rnn("bahdanau"), src_vocab_size=9, tgt_vocab_size=9), RNNSeq2Seq)
    assert isinstance(build_model(transformer(), src_vocab_size=9, tgt_vocab_size=9), Transformer)
    with pytest.raises(ConfigError, match="dict"):
        build_model({"arch": "rnn"}, src_vocab_size=9, tgt_vocab_size=9)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL)
def test_padding_does_not_leak(name: str) -> None:
    """Each sentence alone gives the logits it gets inside the padded batch."""
    model = make(name)
    src, src_lengths, tgt = batch()
    logits, attn = model.decode(tgt, model.encode(src, src_lengths), need_attention=True)
    tgt_lengths = (tgt != PAD_ID).sum(1)
    for i in range(3):
        s, t = src[i : i + 1, : src_lengths[i]], tgt[i : i + 1, : tgt_lengths[i]]
        alone, attn_alone = model.decode(t, model.encode(s, src_lengths[i : i + 1]), need_attention=True)
        torch.testing.assert_close(alone[0], logits[i, : tgt_lengths[i]], atol=1e-5, rtol=1e-4)
        if attn is not None:
            torch.testing.assert_close(attn_alone[0], attn[i, : tgt_lengths[i], : src_lengths[i]], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_future_target_tokens_never_change_earlier_positions(name: str) -> None:
    model = make(name)
    src, src_lengths, tgt = batch()
    logits = model(src, src_lengths, tgt)
    for t in range(1, tgt.size(1)):
        changed = tgt.clone()
        changed[:, t:] = (changed[:, t:] + 7) % (VOCAB - 4) + 4
        other = model(src, src_lengths, changed)
        torch.testing.assert_close(other[:, :t], logits[:, :t], atol=1e-6, rtol=0)
        assert not torch.allclose(other[:, t], logits[:, t])


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("reorder_at", [None, 3])
def test_incremental_decoding_equals_teacher_forcing(name: str, reorder_at: int | None) -> None:
    model = make(name)
    src, src_lengths, tgt = batch()
    logits, attn = model.decode(tgt, model.encode(src, src_lengths), need_attention=True)
    steps, step_attn = incremental(model, src, src_lengths, tgt, reorder_at=reorder_at, need_attention=True)
    torch.testing.assert_close(steps, logits.float().log_softmax(-1), atol=1e-5, rtol=1e-4)
    assert (step_attn is None) == (attn is None) == (name == "rnn_none")
    if attn is not None:
        torch.testing.assert_close(step_attn, attn, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ATTENTIVE)
def test_attention_rows_sum_to_one_and_skip_padding(name: str) -> None:
    model = make(name)
    src, src_lengths, tgt = batch()
    logits, attn = model.decode(tgt, model.encode(src, src_lengths), need_attention=True)
    assert attn.shape == (3, 6, 7) and attn.dtype == torch.float32
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 6))
    assert (attn.masked_select((src == PAD_ID)[:, None, :].expand_as(attn)) == 0).all()
    # Only the alignment layer leaves the fused kernel, for the same result.
    torch.testing.assert_close(logits, model(src, src_lengths, tgt), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_empty_source_gives_no_nan(name: str) -> None:
    """A source with no position at all (length 0) is fully masked: finite outputs, zero attention."""
    model = make(name).train()
    src, src_lengths, tgt = batch()
    src_lengths = torch.tensor([7, 4, 0])
    src[2] = PAD_ID
    logits, attn = model.decode(tgt, model.encode(src, src_lengths), need_attention=True)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if attn is not None:
        assert (attn[2] == 0).all()


@pytest.mark.parametrize("name", ALL)
def test_bf16_autocast_runs_and_keeps_float32_log_probs(name: str) -> None:
    model = make(name)
    src, src_lengths, tgt = batch()
    with torch.autocast("cpu", torch.bfloat16):
        logits = model(src, src_lengths, tgt)
        enc = model.encode(src, src_lengths)
        log_probs, _, state = model.decode_step(tgt[:, 0], model.init_state(enc), enc)
        log_probs, _, _ = model.decode_step(tgt[:, 1], state, enc)
    assert torch.isfinite(logits).all() and log_probs.dtype == torch.float32
    torch.testing.assert_close(logits.float(), model(src, src_lengths, tgt), atol=0.1, rtol=0.1)


@pytest.mark.parametrize("name", ["transformer_pre", "transformer_post"])
def test_fused_attention_equals_explicit_path(name: str) -> None:
    model = make(name)
    src, src_lengths, tgt = batch()
    fused = model(src, src_lengths, tgt)
    model.explicit = True
    assert model.explicit
    torch.testing.assert_close(model(src, src_lengths, tgt), fused, atol=1e-5, rtol=1e-4)
    steps, _ = incremental(model, src, src_lengths, tgt)
    torch.testing.assert_close(steps, fused.log_softmax(-1), atol=1e-5, rtol=1e-4)


def test_transformer_alignment_layer_and_heads() -> None:
    model = make("transformer_pre")
    src, src_lengths, tgt = batch()
    enc = model.encode(src, src_lengths)
    assert model.align_layer == 0  # alignment_layer=-2 of 2 layers
    per_head = []
    for h in range(4):
        model.set_alignment(layer=1, heads=[h])
        per_head.append(model.decode(tgt, enc, need_attention=True)[1])
    model.set_alignment(layer=-1, heads=None)
    torch.testing.assert_close(model.decode(tgt, enc, need_attention=True)[1], torch.stack(per_head).mean(0))
    assert not torch.allclose(per_head[0], per_head[1])
    model.set_alignment(layer=0)
    assert not torch.allclose(model.decode(tgt, enc, need_attention=True)[1], per_head[0])
    for bad in ({"layer": 2}, {"layer": -3}, {"heads": [4]}, {"heads": []}):
        with pytest.raises(ConfigError):
            model.set_alignment(**bad)


def test_sinusoidal_positions_have_no_ceiling() -> None:
    """3,000 source and target positions (beyond any position table) give finite, causal logits."""
    model = make("transformer_pre")
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, VOCAB, (1, 3000), generator=g)
    tgt = torch.randint(4, VOCAB, (1, 3000), generator=g)
    with torch.no_grad():
        enc = model.encode(src, torch.tensor([3000]))
        logits, _ = model.decode(tgt, enc)
        assert torch.isfinite(logits).all()
        torch.testing.assert_close(model.decode(tgt[:, :10], enc)[0], logits[:, :10], atol=1e-5, rtol=1e-4)


def test_learned_positions_refuse_beyond_the_table() -> None:
    from nmt.errors import DataError

    model = make("transformer_learned")
    src = torch.randint(4, VOCAB, (1, 65))
    with pytest.raises(DataError, match="max_positions=64"):
        model.encode(src, torch.tensor([65]))


@pytest.mark.parametrize("grad", [False, True])
def test_transformer_cache_survives_a_reorder_at_every_step(grad: bool) -> None:
    model = make("transformer_pre")
    g = torch.Generator().manual_seed(3)
    src, src_lengths, _ = batch()
    tgt = torch.randint(4, VOCAB, (3, 19), generator=g)
    tgt[:, 0] = BOS_ID
    expected = model.decode(tgt, model.encode(src, src_lengths))[0].log_softmax(-1)
    with torch.set_grad_enabled(grad):
        enc = model.encode(src, src_lengths)
        state = model.init_state(enc)
        order = torch.arange(3)
        for t in range(tgt.size(1)):
            perm = torch.randperm(3, generator=g)  # a new beam order before every step
            enc, state, order = reorder(enc, perm), reorder(state, perm), order[perm]
            log_probs, _, state = model.decode_step(tgt[order, t], state, enc)
            torch.testing.assert_close(log_probs[torch.argsort(order)], expected[:, t], atol=1e-5, rtol=1e-4)
    assert state["k0"].shape == (3, 4, tgt.size(1), 8)
