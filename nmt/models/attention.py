"""Attention building blocks: the one mask-polarity helper, RNN attentions, and scaled dot-product attention.

Mask conventions (see the pitfalls in DESIGN.md):
- ``src_pad_mask`` (B, S) bool is **True at padding** (PyTorch's ``key_padding_mask`` convention).
- :func:`scaled_dot_product_attention`'s boolean ``attn_mask`` is **True where attention is allowed**.
:func:`attend_mask` is the only place that converts one into the other.

Fully masked rows (an empty source) produce all-zero weights and a zero context, never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.config import ConfigError, LuongScore


def attend_mask(src_pad_mask: Tensor) -> Tensor:
    """Padding mask -> SDPA mask.

    Args:
        src_pad_mask: (B, S) bool, True at padding.
    Returns:
        (B, 1, 1, S) bool, True where a query may attend (broadcasts over heads and queries).
    """
    return ~src_pad_mask[:, None, None, :]


def masked_softmax(scores: Tensor, pad_mask: Tensor) -> Tensor:
    """Softmax over the last dim in float32, exactly 0 where ``pad_mask`` is True.

    A finite fill (not -inf) keeps fully masked rows NaN-free; they come out all zero.

    Args:
        scores: (..., S) attention energies.
        pad_mask: bool, broadcastable to ``scores``, True where a key must get no weight.
    Returns:
        float32 weights shaped like ``scores``.
    """
    scores = scores.float().masked_fill(pad_mask, torch.finfo(torch.float32).min)
    return scores.softmax(-1).masked_fill(pad_mask, 0.0)


class _RNNAttention(nn.Module):
    """Shared by the RNN attentions: score, normalise over real source positions, average the values.

    A query-side projection (``query_proj``, None when there is none) is split out so the decoder's loop can
    apply it itself (see ``nmt.models.rnn``); :meth:`attend` takes the already projected query.
    """

    query_proj: nn.Linear | None  # set by every subclass (a class-level default would shadow the module)

    def project_query(self, query: Tensor) -> Tensor:
        return query if self.query_proj is None else self.query_proj(query)

    def energies(self, q: Tensor, keys: Tensor) -> Tensor:
        """(B, T, ·) projected queries, (B, S, ·) projected keys -> (B, T, S)."""
        raise NotImplementedError

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """(B, T, query_dim) queries, (B, S, ·) keys from ``project_keys`` (or memory) -> (B, T, S) energies."""
        return self.energies(self.project_query(query), keys)

    def attend(self, q: Tensor, keys: Tensor, values: Tensor, src_pad_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Like :meth:`forward` with the query already through :meth:`project_query`."""
        weights = masked_softmax(self.energies(q, keys), src_pad_mask[:, None, :])  # (B, T, S)
        return torch.bmm(weights.to(values.dtype), values), weights

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, src_pad_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Attend.

        Args:
            query: (B, T, query_dim) decoder state(s).
            keys: (B, S, ·) from ``project_keys`` (the memory itself when that returns None).
            values: (B, S, value_dim) encoder states.
            src_pad_mask: (B, S) True at padding.
        Returns:
            context (B, T, value_dim) and float32 weights (B, T, S), exactly 0 on padding.
        """
        return self.attend(self.project_query(query), keys, values, src_pad_mask)


def _additive(q: Tensor, keys: Tensor, v: nn.Linear) -> Tensor:
    """vᵀ tanh(q_t + k_j): (B, T, A), (B, S, A) -> (B, T, S)."""
    return v(torch.tanh(q[:, :, None, :] + keys[:, None, :, :])).squeeze(-1)


class BahdanauAttention(_RNNAttention):
    """Additive attention (Bahdanau, Cho & Bengio 2015): e_tj = vᵀ tanh(W s_{t-1} + U h_j).

    ``U h_j`` does not depend on the decoder, so :meth:`project_keys` runs once per sentence in ``encode``.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)  # W
        self.key_proj = nn.Linear(key_dim, attn_dim, bias=False)  # U
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def project_keys(self, memory: Tensor) -> Tensor:
        """(B, S, key_dim) encoder states -> (B, S, attn_dim) = U h_j."""
        return self.key_proj(memory)

    def energies(self, q: Tensor, keys: Tensor) -> Tensor:
        return _additive(q, keys, self.v)


class LuongAttention(_RNNAttention):
    """Global attention (Luong, Pham & Manning 2015) from the *current* decoder state h_t.

    Scores: dot h_tᵀ h̄_s; general h_tᵀ W_a h̄_s; concat v_aᵀ tanh(W_a [h_t; h̄_s]). The key-side products
    (W_a h̄_s, or the h̄_s half of the concat layer) are precomputed once per sentence by :meth:`project_keys`.
    """

    def __init__(self, score: LuongScore, query_dim: int, key_dim: int) -> None:
        super().__init__()
        self.score_type = LuongScore(score)
        self.query_proj = None
        if self.score_type == LuongScore.dot and query_dim != key_dim:
            raise ConfigError(f"Luong dot attention needs equal query/key sizes, got {query_dim} and {key_dim}")
        if self.score_type == LuongScore.general:
            self.key_proj = nn.Linear(key_dim, query_dim, bias=False)  # W_a
        elif self.score_type == LuongScore.concat:
            # W_a [h_t; h̄_s] = W_q h_t + W_k h̄_s: W_a split column-wise into its query and key halves.
            self.query_proj = nn.Linear(query_dim, query_dim, bias=False)
            self.key_proj = nn.Linear(key_dim, query_dim, bias=False)
            self.v = nn.Linear(query_dim, 1, bias=False)

    def project_keys(self, memory: Tensor) -> Tensor | None:
        """(B, S, key_dim) -> the per-sentence key projection, or None for ``dot`` (keys = memory)."""
        return None if self.score_type == LuongScore.dot else self.key_proj(memory)

    def energies(self, q: Tensor, keys: Tensor) -> Tensor:
        if self.score_type == LuongScore.concat:
            return _additive(q, keys, self.v)
        return torch.bmm(q, keys.transpose(1, 2).to(q.dtype))  # dot / general: h_tᵀ k_s


def _fused_is_faster(q: Tensor, k: Tensor) -> bool:
    """Whether to use the fused SDPA kernel when no weights are wanted.

    Always on CUDA, in float32 and for one query per row (a decoding step, whose keys are a strided view of the
    cache that the explicit path would copy first). On the CPU its bf16/fp16 flash kernel is otherwise slow: for
    NMT-sized blocks (128 × 4 heads × 30 × 32, head size 64) its forward+backward took 26 ms against 6.5 ms for
    the explicit path on this machine's 2 AMX cores (float32: 6.9 ms fused, 9.4 ms explicit), so short
    low-precision blocks take the explicit path.
    """
    return q.is_cuda or q.dtype == torch.float32 or q.size(-2) == 1 or q.size(-2) * k.size(-2) > 256 * 256


def dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    allowed: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    explicit: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """softmax(QKᵀ/√d) V, fused unless weights are wanted.

    The fused path is :func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient
    kernels) and returns no weights; ``explicit`` computes the same thing step by step and returns them.

    Args:
        q: (B, H, T, D). k, v: (B, H, S, D).
        allowed: bool broadcastable to (B, H, T, S), True where attention is allowed (see :func:`attend_mask`).
        causal: hide keys after each query (needs T == S; not combined with ``allowed``).
        dropout_p: attention dropout (pass 0 at inference).
        explicit: compute weights explicitly and return them.
    Returns:
        output (B, H, T, D) and float32 weights (B, H, T, S) (before dropout) when ``explicit``, else None.
    """
    if causal and allowed is not None:
        raise ValueError("pass either causal=True or an attention mask, not both")
    if not explicit and _fused_is_faster(q, k):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p, is_causal=causal)
        return out, None
    scores = torch.matmul(q, k.transpose(-2, -1)) * q.size(-1) ** -0.5  # (B, H, T, S)
    if causal:
        allowed = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
    weights = scores.float().softmax(-1) if allowed is None else masked_softmax(scores, ~allowed)
    probs = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return torch.matmul(probs.to(v.dtype), v), weights if explicit else None
