"""Transformer (Vaswani et al. 2017) on PyTorch's fused ``scaled_dot_product_attention``.

- Self-attention uses one fused QKV projection; cross-attention keys/values of every decoder layer are computed
  once per sentence in :meth:`Transformer.encode` and kept in the encoder output, a
  :class:`~nmt.models.cache.SourceMemory` whose rows a sentence's beams share.
- Teacher-forced decoder self-attention is ``is_causal=True``; incremental decoding keeps a per-layer K/V cache
  (a :class:`~nmt.models.cache.DecoderCache`: items ``k{i}``/``v{i}`` (B, heads, t, head_dim), written in place)
  and attends to it without a mask.
- Attention weights for dumps come from an explicit softmax path for the alignment layer only, only when asked;
  ``explicit = True`` routes *all* attention through the explicit path (to compare it with the fused one).
- Sinusoidal positions are computed for any length; learned positions stop with a clear error past the table.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.config import ConfigError, Norm, Positions, TransformerConfig, alignment_layer_index
from nmt.errors import DataError
from nmt.models.attention import attend_mask, dot_product_attention
from nmt.models.base import DecoderState, EncoderOutput, Seq2Seq, padding_mask
from nmt.models.cache import DecoderCache, SourceMemory
from nmt.models.dropout import Dropout
from nmt.specials import BOS_ID, EOS_ID, PAD_ID

log = logging.getLogger(__name__)


def sinusoids(positions: Tensor, dim: int) -> Tensor:
    """(T,) positions -> (T, dim) float32 [sin(p·ω_i), cos(p·ω_i)], ω_i = 10000^(-2i/dim); any length."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float32) * (-math.log(10000.0) / half))
    angles = positions.float()[:, None] * freqs[None, :]  # (T, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _xavier_chunks(weight: Tensor, chunks: int) -> None:
    """Xavier-initialise a fused projection as ``chunks`` separate square matrices."""
    for w in weight.data.chunk(chunks, dim=0):
        nn.init.xavier_uniform_(w)


class MultiHeadAttention(nn.Module):
    """Multi-head attention: fused QKV for self-attention, fused KV (once per sentence) for cross-attention."""

    def __init__(self, d_model: int, heads: int, dropout: float, *, cross: bool) -> None:
        super().__init__()
        self.heads, self.head_dim, self.dropout, self.cross = heads, d_model // heads, dropout, cross
        if cross:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
            _xavier_chunks(self.kv_proj.weight, 2)
            nn.init.xavier_uniform_(self.q_proj.weight)
        else:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
            _xavier_chunks(self.qkv_proj.weight, 3)
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.out_proj.weight)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        self.explicit = False  # True: every call takes the explicit softmax path (tests compare the two)

    def _heads(self, x: Tensor, n: int) -> tuple[Tensor, ...]:
        """(B, T, n·d_model) -> n tensors (B, heads, T, head_dim)."""
        B, T, _ = x.shape
        return x.view(B, T, n, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def _merge(self, x: Tensor) -> Tensor:
        """(B, heads, T, head_dim) -> (B, T, d_model) through the output projection."""
        B, _, T, _ = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(B, T, -1))

    def cross_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S, d_model) encoder output -> keys, values (B, heads, S, head_dim)."""
        k, v = self._heads(self.kv_proj(memory), 2)
        return k, v

    def forward(
        self,
        x: Tensor,
        *,
        allowed: Tensor | None = None,
        causal: bool = False,
        step: tuple[Tensor, int] | None = None,
        kv: tuple[Tensor, Tensor] | None = None,
        group: int = 1,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` (B, T, d_model).

        Args:
            allowed: SDPA mask (True = attend), e.g. (B, 1, 1, S) from :func:`attend_mask` (per kv row).
            causal: causal self-attention over x itself (teacher forcing).
            step: incremental self-attention: (buffer (B, capacity, 2, heads, head_dim), t) of a
                :class:`~nmt.models.cache.DecoderCache`; x (B, 1, d_model) is position t, its keys/values are
                written into the buffer at t and it attends to positions 0..t.
            kv: precomputed cross-attention keys/values (n, heads, S, head_dim) (cross-attention only).
            group: consecutive rows of x that share one kv row (n = B / group), see :mod:`nmt.models.cache`.
            need_weights: return the weights (B, heads, T, S) from the explicit path.
        Returns:
            output (B, T, d_model), weights or None.
        """
        B, T, _ = x.shape
        H, D = self.heads, self.head_dim
        if self.cross:
            q = self._heads(self.q_proj(x), 1)[0]
            k, v = kv
            if group > 1:  # (B, H, T, D) -> (n, H, group·T, D): a group's queries against its one kv row
                q = q.reshape(B // group, group, H, T, D).transpose(1, 2).reshape(B // group, H, group * T, D)
        elif step is None:
            q, k, v = self._heads(self.qkv_proj(x), 3)
        else:
            buffer, t = step
            qkv = self.qkv_proj(x).view(B, 3, H, D)  # T = 1
            buffer[:, t] = qkv[:, 1:]
            q = qkv[:, 0, :, None]  # (B, H, 1, D)
            k, v = buffer[:, : t + 1, 0].transpose(1, 2), buffer[:, : t + 1, 1].transpose(1, 2)
        out, weights = dot_product_attention(
            q,
            k,
            v,
            allowed=allowed,
            causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
            explicit=self.explicit or need_weights,
        )
        if self.cross and group > 1:  # back to one row per query: (n, H, group·T, ·) -> (B, H, T, ·)
            out = out.reshape(B // group, H, group, T, D).transpose(1, 2).reshape(B, H, T, D)
            if weights is not None:
                S = weights.size(-1)
                weights = weights.reshape(B // group, H, group, T, S).transpose(1, 2).reshape(B, H, T, S)
        return self._merge(out), weights


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ffn_dim: int) -> None:
        super().__init__(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, d_model))
        for m in (self[0], self[2]):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.pre = cfg.norm == Norm.pre
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout, cross=False)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """(B, S, d) -> (B, S, d); ``allowed`` (B, 1, 1, S) hides padded keys."""
        if self.pre:
            x = x + self.dropout(self.self_attn(self.norm1(x), allowed=allowed)[0])
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.self_attn(x, allowed=allowed)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.pre = cfg.norm == Norm.pre
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout, cross=False)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout, cross=True)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim)
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.dropout = Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        *,
        cross_kv: tuple[Tensor, Tensor],
        allowed: Tensor,
        group: int,
        step: tuple[Tensor, int] | None,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """(B, T, d) -> (B, T, d) and the cross-attention weights or None.

        Without ``step`` (teacher forcing) self-attention is causal over x; with it, x is the next position
        (see :meth:`MultiHeadAttention.forward` for ``step`` and ``group``).
        """
        causal = step is None  # a plain bool: a size test here would be a symbolic one under torch.compile
        out, _ = self.self_attn(self._in(x, 0), causal=causal, step=step)
        x = self._add(x, out, 0)
        out, weights = self.cross_attn(
            self._in(x, 1), kv=cross_kv, allowed=allowed, group=group, need_weights=need_weights
        )
        x = self._add(x, out, 1)
        x = self._add(x, self.ffn(self._in(x, 2)), 2)
        return x, weights

    def _in(self, x: Tensor, i: int) -> Tensor:
        """The input of sublayer i: normalised first in pre-norm."""
        return self.norms[i](x) if self.pre else x

    def _add(self, x: Tensor, out: Tensor, i: int) -> Tensor:
        """Residual connection around sublayer i: normalised after in post-norm."""
        return x + self.dropout(out) if self.pre else self.norms[i](x + self.dropout(out))


class Transformer(Seq2Seq):
    """Encoder-decoder Transformer. Encoder output: a :class:`~nmt.models.cache.SourceMemory` (``src_pad_mask``,
    and the cross-attention keys/values per decoder layer). State: a :class:`~nmt.models.cache.DecoderCache`, the
    key/value cache ``k{i}``/``v{i}`` (B, heads, t, head_dim) per decoder layer."""

    def __init__(self, cfg: TransformerConfig, *, src_vocab_size: int, tgt_vocab_size: int) -> None:
        super().__init__(vocab_size=tgt_vocab_size, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)
        if cfg.tie_embeddings and src_vocab_size != tgt_vocab_size:
            raise ConfigError(
                f"model.tie_embeddings=true needs one joint vocabulary, got source {src_vocab_size} and target "
                f"{tgt_vocab_size} pieces (set tokenizer.joint=true or model.tie_embeddings=false)"
            )
        self.cfg = cfg
        d = cfg.d_model
        if (d // cfg.heads) % 8:
            # CUDA's flash and memory-efficient SDPA kernels need a head size that is a multiple of 8.
            log.warning(
                "model.d_model / model.heads = %d is not a multiple of 8: on a GPU attention falls back from the "
                "fused flash / memory-efficient kernels to the slow math path",
                d // cfg.heads,
            )
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d, padding_idx=PAD_ID)
        self.src_embed = self.tgt_embed if cfg.tie_embeddings else nn.Embedding(src_vocab_size, d, padding_idx=PAD_ID)
        self.out_proj = None if cfg.tie_embeddings else nn.Linear(d, tgt_vocab_size, bias=False)
        for m in (self.src_embed, self.tgt_embed, self.out_proj):
            if m is not None:
                nn.init.normal_(m.weight, std=d**-0.5)
        with torch.no_grad():
            self.src_embed.weight[PAD_ID].zero_()
            self.tgt_embed.weight[PAD_ID].zero_()
        self.learned = cfg.positions == Positions.learned
        if self.learned:
            self.src_pos = nn.Embedding(cfg.max_positions, d)
            self.tgt_pos = nn.Embedding(cfg.max_positions, d)
            nn.init.normal_(self.src_pos.weight, std=d**-0.5)
            nn.init.normal_(self.tgt_pos.weight, std=d**-0.5)
        self.scale = math.sqrt(d)
        self.dropout = Dropout(cfg.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        pre = cfg.norm == Norm.pre  # pre-norm stacks end with a layer norm; post-norm ones already did
        self.encoder_norm = nn.LayerNorm(d) if pre else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d) if pre else nn.Identity()
        self.align_layer, self.align_heads = 0, None
        self.set_alignment(layer=cfg.alignment_layer, heads=cfg.alignment_heads)

    # ------------------------------------------------------------------------------------------ options
    @property
    def explicit(self) -> bool:
        """True routes all attention through the explicit softmax path (slow; for tests and inspection)."""
        return any(m.explicit for m in self.modules() if isinstance(m, MultiHeadAttention))

    @explicit.setter
    def explicit(self, value: bool) -> None:
        for m in self.modules():
            if isinstance(m, MultiHeadAttention):
                m.explicit = value

    def set_alignment(self, *, layer: int | None = None, heads: list[int] | None = None) -> None:
        """Choose the decoder layer (negative counts from the top, -2 is the last layer of a 1-layer decoder: see
        :func:`nmt.config.alignment_layer_index`; None keeps it) and heads (None = all) whose cross-attention
        ``need_attention`` reports."""
        n, h = self.cfg.decoder_layers, self.cfg.heads
        if layer is not None:
            self.align_layer = alignment_layer_index(layer, n, name="alignment layer")
        if heads is not None and not (heads and all(0 <= x < h for x in heads)):
            raise ConfigError(f"alignment heads {heads} must be a non-empty list of heads in 0..{h - 1}")
        self.align_heads = list(heads) if heads is not None else None

    # ------------------------------------------------------------------------------------------ model
    def _embed(self, tokens: Tensor, start: int, embed: nn.Embedding, pos: nn.Embedding | None) -> Tensor:
        """(B, T) ids at positions start..start+T-1 -> (B, T, d) scaled embeddings + positions, dropout."""
        T = tokens.size(1)
        positions = torch.arange(start, start + T, device=tokens.device)
        if pos is None:
            table = sinusoids(positions, self.cfg.d_model)
        else:
            if start + T > self.cfg.max_positions:
                raise DataError(
                    f"a sequence of {start + T} tokens exceeds model.max_positions={self.cfg.max_positions} of "
                    "learned positions; shorten the input (data.max_len) or use model.positions=sinusoidal"
                )
            table = pos(positions)
        x = embed(tokens)
        return self.dropout(x * self.scale + table.to(x.dtype))

    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        pad = padding_mask(src_lengths, src.size(1))
        allowed = attend_mask(pad)
        x = self._embed(src, 0, self.src_embed, self.src_pos if self.learned else None)
        for layer in self.encoder_layers:
            x = layer(x, allowed)
        x = self.encoder_norm(x)
        kv = [layer.cross_attn.cross_kv(x) for layer in self.decoder_layers]
        if not torch.is_grad_enabled():  # decoding reads them at every step: contiguous, once
            kv = [(k.contiguous(), v.contiguous()) for k, v in kv]
        return SourceMemory(pad, kv, mem_pad_mask=None)

    def _decode(
        self, tokens: Tensor, enc: SourceMemory, state: DecoderCache | None, need_attention: bool
    ) -> tuple[Tensor, Tensor | None, DecoderCache | None]:
        """Shared by decode (state None: causal over tokens) and decode_step (tokens (B, 1) after the cache)."""
        if state is not None:
            state = state.extend()
        start = 0 if state is None else state.length
        x = self._embed(tokens, start, self.tgt_embed, self.tgt_pos if self.learned else None)
        allowed = attend_mask(enc.mem_pad_mask)
        attn = None
        for i, layer in enumerate(self.decoder_layers):
            want = need_attention and i == self.align_layer
            step = None if state is None else (state.buffers[i], start)
            x, w = layer(x, cross_kv=enc.kv[i], allowed=allowed, group=enc.group, step=step, need_weights=want)
            if want:  # (B, heads, T, S) -> (B, T, S)
                attn = (w if self.align_heads is None else w[:, self.align_heads]).mean(1)
        x = self.decoder_norm(x)
        logits = F.linear(x, self.tgt_embed.weight) if self.out_proj is None else self.out_proj(x)
        return logits, attn, None if state is None else state.advance()

    def decode(
        self, tgt_in: Tensor, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        logits, attn, _ = self._decode(tgt_in, enc, None, need_attention)
        return logits, attn

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        """An empty key/value cache (B, heads, 0, head_dim) per decoder layer, in the encoder output's dtype."""
        batch = enc["src_pad_mask"].size(0)
        heads, head_dim = self.cfg.heads, self.cfg.d_model // self.cfg.heads
        return DecoderCache.empty(batch, len(self.decoder_layers), heads, head_dim, like=enc.kv[0][0])

    def decode_step(
        self, prev_tokens: Tensor, state: DecoderState, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        if not isinstance(state, DecoderCache):
            state = DecoderCache.of(state)
        logits, attn, state = self._decode(prev_tokens[:, None], enc, state, need_attention)
        log_probs = F.log_softmax(logits[:, 0].float(), dim=-1)
        return log_probs, None if attn is None else attn[:, 0], state
