"""Attention formulas on hand-sized tensors, the mask-polarity helper, fused vs explicit attention, sinusoids."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nmt.config import ConfigError, LuongScore
from nmt.models.attention import (
    BahdanauAttention,
    LuongAttention,
    attend_mask,
    dot_product_attention,
    masked_softmax,
)
from nmt.models.base import padding_mask
from nmt.models.transformer import sinusoids

torch.manual_seed(0)
B, T, S, Q, K = 2, 3, 4, 5, 6  # batch, queries, keys, query size, key size
LENGTHS = torch.tensor([4, 2])


def test_attend_mask_flips_polarity_for_sdpa() -> None:
    pad = padding_mask(LENGTHS)  # True at padding
    assert pad.tolist() == [[False] * 4, [False, False, True, True]]
    allowed = attend_mask(pad)
    assert allowed.shape == (2, 1, 1, 4) and allowed.dtype == torch.bool
    assert allowed[:, 0, 0].tolist() == [[True] * 4, [True, True, False, False]]
    # SDPA with the helper's mask equals SDPA over the real keys only.
    q, k, v = torch.randn(2, 1, 3, 8), torch.randn(2, 1, 4, 8), torch.randn(2, 1, 4, 8)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.testing.assert_close(out[1], F.scaled_dot_product_attention(q[1:], k[1:, :, :2], v[1:, :, :2])[0])


def test_masked_softmax_zero_on_padding_and_fully_masked_rows() -> None:
    scores = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[False, False, True, True], [False] * 4, [True] * 4])
    w = masked_softmax(scores, mask)
    torch.testing.assert_close(w[:2].sum(-1), torch.ones(2))
    assert (w[0, 2:] == 0).all() and (w[2] == 0).all()
    torch.testing.assert_close(w[0, :2], scores[0, :2].softmax(-1))
    w.pow(2).sum().backward()
    assert torch.isfinite(scores.grad).all() and (scores.grad[2] == 0).all()


def test_bahdanau_score_is_v_tanh_w_s_plus_u_h() -> None:
    att = BahdanauAttention(Q, K, 7)
    s, h = torch.randn(B, T, Q), torch.randn(B, S, K)
    W, U, v = att.query_proj.weight, att.key_proj.weight, att.v.weight[0]
    expected = torch.empty(B, T, S)
    for b in range(B):
        for t in range(T):
            for j in range(S):
                expected[b, t, j] = v @ torch.tanh(W @ s[b, t] + U @ h[b, j])
    torch.testing.assert_close(att.score(s, att.project_keys(h)), expected)
    ctx, w = att(s, att.project_keys(h), h, padding_mask(LENGTHS))
    torch.testing.assert_close(w[1, :, :2], expected[1, :, :2].softmax(-1))
    torch.testing.assert_close(ctx, w @ h)


@pytest.mark.parametrize("score", list(LuongScore))
def test_luong_scores_follow_the_paper(score: LuongScore) -> None:
    dim = Q if score != LuongScore.dot else K
    att = LuongAttention(score, dim, K)
    h_t, h_s = torch.randn(B, T, dim), torch.randn(B, S, K)
    expected = torch.empty(B, T, S)
    for b in range(B):
        for t in range(T):
            for j in range(S):
                if score == LuongScore.dot:  # h_tᵀ h̄_s
                    expected[b, t, j] = h_t[b, t] @ h_s[b, j]
                elif score == LuongScore.general:  # h_tᵀ W_a h̄_s
                    expected[b, t, j] = h_t[b, t] @ att.key_proj.weight @ h_s[b, j]
                else:  # v_aᵀ tanh(W_a [h_t; h̄_s])
                    W_a = torch.cat([att.query_proj.weight, att.key_proj.weight], dim=1)
                    expected[b, t, j] = att.v.weight[0] @ torch.tanh(W_a @ torch.cat([h_t[b, t], h_s[b, j]]))
    keys = att.project_keys(h_s)
    keys = h_s if keys is None else keys
    torch.testing.assert_close(att.score(h_t, keys), expected)
    ctx, w = att(h_t, keys, h_s, padding_mask(LENGTHS))
    assert (w[1, :, 2:] == 0).all()
    torch.testing.assert_close(w[1, :, :2], expected[1, :, :2].softmax(-1))
    torch.testing.assert_close(ctx, w @ h_s)


def test_luong_dot_needs_equal_sizes() -> None:
    with pytest.raises(ConfigError, match="dot"):
        LuongAttention(LuongScore.dot, 4, 6)


@pytest.mark.parametrize("mode", ["padding", "causal", "fully_masked"])
def test_fused_sdpa_equals_explicit_softmax(mode: str) -> None:
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
    lengths = torch.tensor([5, 0]) if mode == "fully_masked" else torch.tensor([5, 3])
    kwargs = {"causal": True} if mode == "causal" else {"allowed": attend_mask(padding_mask(lengths, 5))}
    fused, none = dot_product_attention(q, k, v, **kwargs)
    explicit, w = dot_product_attention(q, k, v, explicit=True, **kwargs)
    assert none is None and w.shape == (2, 4, 5, 5)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)
    direct = (q @ k.transpose(-1, -2) / math.sqrt(8)).softmax(-1)
    if mode == "causal":
        assert (w.triu(1) == 0).all()
        torch.testing.assert_close(w[..., -1, :], direct[..., -1, :])
    elif mode == "padding":
        assert (w[1, ..., 3:] == 0).all()
        torch.testing.assert_close(w[1, ..., :3], (q[1] @ k[1, :, :3].transpose(-1, -2) / math.sqrt(8)).softmax(-1))
    else:
        assert (w[1] == 0).all() and torch.isfinite(fused).all() and (explicit[1] == 0).all()
    with pytest.raises(ValueError, match="not both"):
        dot_product_attention(q, k, v, causal=True, allowed=attend_mask(padding_mask(lengths, 5)))


def test_sinusoids_follow_the_formula_at_any_position() -> None:
    pos = torch.tensor([0, 1, 2999])
    table = sinusoids(pos, 8)
    for p_i, p in enumerate(pos.tolist()):
        for i in range(4):
            angle = p / 10000 ** (i / 4)
            assert table[p_i, i].item() == pytest.approx(math.sin(angle), abs=2e-3)
            assert table[p_i, 4 + i].item() == pytest.approx(math.cos(angle), abs=2e-3)


@pytest.mark.parametrize(("d_model", "heads", "warned"), [(64, 4, False), (36, 4, True), (48, 2, False)])
def test_a_head_size_that_is_no_multiple_of_8_is_warned_about(d_model, heads, warned, caplog) -> None:
    from nmt.config import TransformerConfig
    from nmt.models.transformer import Transformer

    cfg = TransformerConfig(d_model=d_model, ffn_dim=32, heads=heads, encoder_layers=1, decoder_layers=2)
    with caplog.at_level("WARNING", logger="nmt.models.transformer"):
        Transformer(cfg, src_vocab_size=20, tgt_vocab_size=20)
    assert ("is not a multiple of 8" in caplog.text) == warned
    if warned:
        assert f"= {d_model // heads} is" in caplog.text and "math path" in caplog.text
