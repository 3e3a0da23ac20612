"""RNN encoder-decoder: bidirectional GRU/LSTM encoder; Bahdanau, Luong or no attention.

- ``bahdanau`` (Bahdanau, Cho & Bengio 2015): attention scored from the previous state s_{t-1}; the context
  enters the decoder RNN with the previous target embedding; a deep output layer reads s_t, c_t and E y_{t-1}.
- ``luong`` (Luong, Pham & Manning 2015): the RNN steps first, global attention from the current state h_t,
  attentional state h̃_t = tanh(W_c [c_t; h_t]) feeds the output layer and, with input feeding, the next step.
- ``none`` (Cho et al. 2014): a fixed summary of the source initialises the decoder and is fed at every step.

Teacher-forced decoding of ``bahdanau`` and input-fed ``luong`` must loop over target positions; the loop does
only the recurrent work (embeddings, their input-gate products, attention keys and the output projection are
computed once for all positions outside it). Without a step-to-step dependency (``luong`` without input
feeding, ``none``) the decoder RNN runs over the whole target in one fused call and attention is batched.
The same code path serves ``decode`` (T positions) and ``decode_step`` (T = 1), so incremental = full.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt.config import AttentionType, Cell, RNNConfig
from nmt.models.attention import BahdanauAttention, LuongAttention
from nmt.models.base import DecoderState, EncoderOutput, Seq2Seq, padding_mask
from nmt.models.dropout import Dropout
from nmt.specials import BOS_ID, EOS_ID, PAD_ID


def _cast_once(x: Tensor) -> Tensor:
    """Under autocast, cast a tensor used in every loop step once, before the loop.

    Autocast caches its casts of parameters only; a weight slice or the encoder memory would otherwise be
    cast again in each step's matmul.
    """
    device = x.device.type
    return x.to(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else x


class _StepMatmuls:
    """The weights a decoder loop multiplies by at every step, each cast once under autocast (see
    :func:`_cast_once`); ``mm(name, x)`` = x Wᵀ for (B, in) -> (B, out)."""

    def __init__(self, weights: dict[str, Tensor]) -> None:
        self.weights = {name: _cast_once(w) for name, w in weights.items()}

    def __call__(self, name: str, x: Tensor) -> Tensor:
        w = self.weights[name]
        return F.linear(x.to(w.dtype), w)


class RNNEncoder(nn.Module):
    """Embedding + bidirectional GRU/LSTM over packed sequences; each direction has ``hidden_dim // 2`` units."""

    def __init__(self, vocab_size: int, cfg: RNNConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        rnn = nn.GRU if cfg.cell == Cell.gru else nn.LSTM
        self.rnn = rnn(
            cfg.embed_dim,
            cfg.hidden_dim // 2,
            num_layers=cfg.encoder_layers,
            batch_first=True,
            bidirectional=True,
            dropout=cfg.dropout if cfg.encoder_layers > 1 else 0.0,
        )
        self.dropout = Dropout(cfg.dropout)

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) ids, (B,) lengths -> memory (B, S, hidden_dim) (zero at padding), final (B, hidden_dim).

        ``final`` joins the top layer's last forward state and its backward state at position 0.
        """
        x = self.dropout(self.embed(src))
        # Packing needs lengths >= 1 on the CPU; an empty source packs its (padding) first position and is
        # then fully masked by the attention.
        lengths = src_lengths.clamp(min=1).cpu()
        out, h_n = self.rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        if isinstance(h_n, tuple):  # LSTM: (h_n, c_n)
            h_n = h_n[0]
        return memory, torch.cat([h_n[-2], h_n[-1]], dim=-1)


class RNNSeq2Seq(Seq2Seq):
    """The RNN family (see the module docstring). State: ``h`` (B, layers, H) [+ ``c``] [+ ``feed`` (B, D)]."""

    def __init__(self, cfg: RNNConfig, *, src_vocab_size: int, tgt_vocab_size: int) -> None:
        super().__init__(vocab_size=tgt_vocab_size, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)
        self.cfg = cfg
        E, H, L = cfg.embed_dim, cfg.hidden_dim, cfg.decoder_layers
        self.kind = AttentionType(cfg.attention)
        self.lstm = cfg.cell == Cell.lstm
        self.input_feeding = self.kind == AttentionType.luong and cfg.input_feeding
        self.encoder = RNNEncoder(src_vocab_size, cfg)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, E, padding_idx=PAD_ID)
        self.dropout = Dropout(cfg.dropout)
        # Decoder initial state(s) from the encoder summary: s_0 = tanh(W_init [h→_S; h←_1]).
        self.bridge = nn.Linear(H, (2 if self.lstm else 1) * L * H)

        if self.kind == AttentionType.luong:
            # h̃ is hidden-sized as in the paper, embedding-sized when it must match the tied output matrix.
            self.out_dim = E if cfg.tie_embeddings else H
            self.attention: nn.Module | None = LuongAttention(cfg.score, H, H)
            self.combine = nn.Linear(2 * H, self.out_dim, bias=False)  # W_c [c_t; h_t]
            rnn_input = E + (self.out_dim if self.input_feeding else 0)
        else:
            # Deep output (Bahdanau 2015 / Cho 2014): tanh(W_o [s_t; c_t; E y_{t-1}]) -> embedding size.
            self.out_dim = E
            self.attention = BahdanauAttention(H, H, H) if self.kind == AttentionType.bahdanau else None
            self.deep_out = nn.Linear(2 * H + E, E)
            rnn_input = E + H
        rnn = nn.GRU if not self.lstm else nn.LSTM
        self.decoder_rnn = rnn(rnn_input, H, num_layers=L, batch_first=True, dropout=cfg.dropout if L > 1 else 0.0)
        # No bias: it would add a (tokens, V) copy forward and a (tokens, V) reduction backward.
        self.out_proj = nn.Linear(self.out_dim, tgt_vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.out_proj.weight = self.tgt_embed.weight

    # ------------------------------------------------------------------------------------------ encoder
    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        """Returns ``memory`` (B, S, H), ``final`` (B, H), ``src_pad_mask`` (B, S) and, for attention with a
        key projection, ``keys`` (B, S, ·) = U h_j / W_a h̄_s, computed here once per sentence."""
        memory, final = self.encoder(src, src_lengths)
        enc = {"memory": memory, "final": final, "src_pad_mask": padding_mask(src_lengths, src.size(1))}
        if self.attention is not None:
            keys = self.attention.project_keys(memory)
            if keys is not None:
                enc["keys"] = keys
        return enc

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        final = enc["final"]
        B, L, H = final.size(0), self.cfg.decoder_layers, self.cfg.hidden_dim
        init = torch.tanh(self.bridge(final)).float().view(B, -1, H)  # (B, L or 2L, H); recurrence in fp32
        state = {"h": init[:, :L]}
        if self.lstm:
            state["c"] = init[:, L:]
        if self.input_feeding:
            state["feed"] = init.new_zeros(B, self.out_dim)
        return state

    # ------------------------------------------------------------------------------------------ decoder
    def decode(
        self, tgt_in: Tensor, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V) and, with attention and ``need_attention``, weights (B, T, S).

        ``attention=none`` has no attention: it returns None even when ``need_attention`` is asked.
        """
        out, attn, _ = self._run(self.tgt_embed(tgt_in), self.init_state(enc), enc, need_attention)
        return self.out_proj(out), attn

    def decode_step(
        self, prev_tokens: Tensor, state: DecoderState, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        out, attn, state = self._run(self.tgt_embed(prev_tokens[:, None]), state, enc, need_attention)
        log_probs = F.log_softmax(self.out_proj(out[:, 0]).float(), dim=-1)
        return log_probs, None if attn is None else attn[:, 0], state

    def _run(
        self, emb: Tensor, state: DecoderState, enc: EncoderOutput, need_attention: bool
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """Decode T positions from ``state``: (B, T, E) embeddings -> output features (B, T, out_dim) (dropout
        applied), weights (B, T, S) or None, and the state after the last position."""
        emb = self.dropout(emb)
        if self.kind == AttentionType.bahdanau or self.input_feeding:
            return self._run_loop(emb, state, enc, need_attention)
        return self._run_fused(emb, state, enc, need_attention)

    def _run_fused(
        self, emb: Tensor, state: DecoderState, enc: EncoderOutput, need_attention: bool
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """No step-to-step dependency outside the RNN: one fused RNN call over all T, batched attention."""
        T = emb.size(1)
        # States are float32; a bf16 copy of the model (decoding) wants its own dtype (a no-op otherwise).
        dtype = self.decoder_rnn.weight_hh_l0.dtype
        hx = state["h"].transpose(0, 1).to(dtype).contiguous()  # (L, B, H)
        if self.lstm:
            hx = (hx, state["c"].transpose(0, 1).to(dtype).contiguous())
        if self.kind == AttentionType.none:
            summary = enc["final"][:, None, :].expand(-1, T, -1)  # (B, T, H) the fixed context c
            states, hn = self.decoder_rnn(torch.cat([emb, summary], dim=-1), hx)
            out = torch.tanh(self.deep_out(torch.cat([states, summary, emb], dim=-1)))
            attn = None
        else:  # Luong without input feeding
            states, hn = self.decoder_rnn(emb, hx)  # (B, T, H)
            ctx, weights = self.attention(states, enc.get("keys", enc["memory"]), enc["memory"], enc["src_pad_mask"])
            out = torch.tanh(self.combine(torch.cat([ctx, states], dim=-1)))
            attn = weights if need_attention else None
        if self.lstm:
            new_state = {"h": hn[0].transpose(0, 1).float(), "c": hn[1].transpose(0, 1).float()}
        else:
            new_state = {"h": hn.transpose(0, 1).float()}
        return self.dropout(out), attn, new_state

    def _run_loop(
        self, emb: Tensor, state: DecoderState, enc: EncoderOutput, need_attention: bool
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """Bahdanau, or Luong with input feeding: a Python loop over T doing only the recurrent work."""
        E, rnn, L = self.cfg.embed_dim, self.decoder_rnn, self.cfg.decoder_layers
        memory, pad = _cast_once(enc["memory"]), enc["src_pad_mask"]
        keys = _cast_once(enc["keys"]) if "keys" in enc else memory
        # Layer 0 reads [E y_{t-1}; x_t] with x_t = context (Bahdanau) or h̃_{t-1} (input feeding): the embedding
        # half of its input gates is one matmul over all T. unbind (not x_gates[:, t]) gives one backward node
        # for all steps instead of a full-size zero tensor per step.
        w_ih0 = rnn.weight_ih_l0
        x_gates = F.linear(emb, w_ih0[:, :E], rnn.bias_ih_l0).unbind(1)  # T x (B, gates)
        weights = {"extra": w_ih0[:, E:], **{f"hh{i}": getattr(rnn, f"weight_hh_l{i}") for i in range(L)}}
        weights.update({f"ih{i}": getattr(rnn, f"weight_ih_l{i}") for i in range(1, L)})
        if self.attention.query_proj is not None:
            weights["query"] = self.attention.query_proj.weight
        if self.input_feeding:
            weights["combine"] = self.combine.weight
        mm = _StepMatmuls(weights)
        hs = list(state["h"].unbind(1))  # per layer (B, H)
        feed = state.get("feed")
        cs = list(state["c"].unbind(1)) if self.lstm else None
        outs, ctxs, tops, attns = [], [], [], []
        for x_t in x_gates:
            if self.kind == AttentionType.bahdanau:
                q = mm("query", hs[-1]).unsqueeze(1)  # scored from the previous state s_{t-1}
                ctx, w = self.attention.attend(q, keys, memory, pad)
                ctx = ctx.squeeze(1)
                hs, cs = self._cell(mm, x_t + mm("extra", ctx), hs, cs)
                ctxs.append(ctx)
                tops.append(hs[-1])
            else:
                hs, cs = self._cell(mm, x_t + mm("extra", feed), hs, cs)
                q = mm("query", hs[-1]) if "query" in weights else hs[-1].to(keys.dtype)  # from the current h_t
                ctx, w = self.attention.attend(q.unsqueeze(1), keys, memory, pad)
                feed = self.dropout(torch.tanh(mm("combine", torch.cat([ctx.squeeze(1), hs[-1]], dim=-1))))
                outs.append(feed)
            if need_attention:
                attns.append(w.squeeze(1))
        if self.kind == AttentionType.bahdanau:
            s, c = torch.stack(tops, 1), torch.stack(ctxs, 1)  # (B, T, H) each
            # s is float32 (the recurrence runs in fp32); a bf16 copy of the model needs its own dtype here.
            deep_in = torch.cat([s.to(c.dtype), c, emb], dim=-1)
            out = self.dropout(torch.tanh(self.deep_out(deep_in)))
        else:
            out = torch.stack(outs, 1)
        new_state = {"h": torch.stack(hs, 1)}
        if self.lstm:
            new_state["c"] = torch.stack(cs, 1)
        if self.input_feeding:
            new_state["feed"] = feed.float()
        return out, torch.stack(attns, 1) if need_attention else None, new_state

    def _cell(
        self, mm: _StepMatmuls, gates0: Tensor, hs: list[Tensor], cs: list[Tensor] | None
    ) -> tuple[list[Tensor], list | None]:
        """One step of the stacked decoder RNN, using ``decoder_rnn``'s own weights (PyTorch gate layout).

        Args:
            mm: the loop's per-step matmuls.
            gates0: (B, G) layer 0's input-gate pre-activations (bias included).
            hs / cs: per layer (B, H) float32 hidden / cell states (cs None for GRU).
        """
        rnn = self.decoder_rnn
        new_h, new_c = [], []
        for layer in range(len(hs)):
            if layer == 0:
                gi = gates0
            else:
                below = self.dropout(new_h[-1])  # between layers, like nn.GRU/nn.LSTM's own dropout
                gi = mm(f"ih{layer}", below) + getattr(rnn, f"bias_ih_l{layer}")
            gh = mm(f"hh{layer}", hs[layer]) + getattr(rnn, f"bias_hh_l{layer}")
            gi, gh = gi.float(), gh.float()  # keep the recurrence in fp32 under autocast
            if cs is None:  # GRU: r, z, n
                H = gh.size(1) // 3
                (i_rz, i_n), (h_rz, h_n) = gi.split([2 * H, H], 1), gh.split([2 * H, H], 1)
                r, z = torch.sigmoid(i_rz + h_rz).chunk(2, 1)
                n = torch.tanh(i_n + r * h_n)
                new_h.append(n + z * (hs[layer] - n))
            else:  # LSTM: i, f, g, o
                i, f, g, o = (gi + gh).chunk(4, dim=1)
                c = torch.sigmoid(f) * cs[layer] + torch.sigmoid(i) * torch.tanh(g)
                new_c.append(c)
                new_h.append(torch.sigmoid(o) * torch.tanh(c))
        return new_h, (new_c if cs is not None else None)
