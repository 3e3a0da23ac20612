"""A scripted fake Seq2Seq: next-token probabilities set by hand per (sentence, prefix), for exact search tests."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nmt.data.batch import collate
from nmt.models.base import DecoderState, EncoderOutput, Seq2Seq, padding_mask
from nmt.specials import BOS_ID, EOS_ID

# Vocabulary of the fake: 0-3 specials, then four "words".
A, B, C, D = 4, 5, 6, 7
VOCAB = 8

Script = dict[tuple[int, ...], dict[int, float]]


class ScriptedModel(Seq2Seq):
    """Looks up p(. | prefix) in ``scripts[first source piece]``; a missing prefix gets ``default``.

    Probabilities not listed are 0 (log-prob -inf). The decoder state is the prefix itself (batch in dim 0, so
    reorders are generic); the attention of a step is a fixed function of the prefix over the real source
    positions, so it can be recomputed by teacher forcing. ``rows_per_step`` records the batch size of each step.
    """

    def __init__(self, scripts: dict[int, Script], default: dict[int, float] | None = None) -> None:
        super().__init__(vocab_size=VOCAB, pad_id=0, bos_id=BOS_ID, eos_id=EOS_ID)
        self.scripts = scripts
        self.default = default or {EOS_ID: 1.0}
        self.rows_per_step: list[int] = []

    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        return {"src": src, "src_pad_mask": padding_mask(src_lengths, src.size(1))}

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        return {"prefix": torch.zeros(enc["src"].size(0), 0, dtype=torch.long)}

    def _log_probs(self, first: int, prefix: tuple[int, ...]) -> list[float]:
        probs = self.scripts.get(first, {}).get(prefix, self.default)
        return [math.log(probs[v]) if probs.get(v, 0) > 0 else -math.inf for v in range(VOCAB)]

    @staticmethod
    def _attention(prefix: Tensor, pad_mask: Tensor) -> Tensor:
        """(N, t) prefixes (BOS first) -> (N, S) weights depending on the whole prefix, 0 on padding."""
        s = pad_mask.size(1)
        key = prefix.sum(1, keepdim=True) * 3 + prefix.size(1)  # (N, 1)
        w = 1.0 + ((key + torch.arange(s)[None, :] * 7) % 5).float()
        w = w.masked_fill(pad_mask, 0.0)
        return w / w.sum(1, keepdim=True)

    def decode_step(
        self, prev_tokens: Tensor, state: DecoderState, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        self.rows_per_step.append(prev_tokens.size(0))
        prefix = torch.cat([state["prefix"], prev_tokens[:, None]], dim=1)  # (N, t+1), BOS first
        firsts = enc["src"][:, 0].tolist()
        lp = torch.tensor([self._log_probs(f, tuple(p[1:])) for f, p in zip(firsts, prefix.tolist())])
        attn = self._attention(prefix, enc["src_pad_mask"]) if need_attention else None
        return lp, attn, {"prefix": prefix}

    def decode(
        self, tgt_in: Tensor, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        rows, attns = [], []
        state = self.init_state(enc)
        for t in range(tgt_in.size(1)):
            lp, attn, state = self.decode_step(tgt_in[:, t], state, enc, need_attention=need_attention)
            rows.append(lp)
            attns.append(attn)
        return torch.stack(rows, 1), torch.stack(attns, 1) if need_attention else None


def src_batch(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Source pieces per sentence -> padded (B, S) with EOS, and lengths."""
    b = collate(rows, None, list(range(len(rows))))
    return b.src, b.src_lengths


def has_repeated_ngram(tokens: list[int], n: int) -> bool:
    """Whether some n-gram occurs twice in ``tokens`` (overlapping occurrences count)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


def exhaustive(
    model: ScriptedModel, first: int, cap: int, lenpen: float, *, min_len: int = 0, no_repeat: int = 0
) -> list[tuple[list[int], float, float]]:
    """Every output the search rules allow for a source starting with ``first``, best first.

    Walks the whole scripted tree: at most ``cap`` pieces, then EOS is forced; no EOS before ``min(min_len, cap)``
    pieces; no repeated ``no_repeat``-gram. Returns (tokens, log_prob, score) with the GNMT score, in float64.
    """
    out, frontier = [], [((), 0.0)]
    while frontier:
        prefix, lp = frontier.pop()
        log_probs = model._log_probs(first, prefix)
        for tok, x in enumerate(log_probs):
            if x == -math.inf or tok in (0, BOS_ID):
                continue
            if tok == EOS_ID:
                if len(prefix) >= min(min_len, cap):
                    out.append((list(prefix), lp + x))
            elif len(prefix) < cap and not (no_repeat and has_repeated_ngram([*prefix, tok], no_repeat)):
                frontier.append(((*prefix, tok), lp + x))
    scored = [(t, lp, lp / ((5 + len(t) + 1) / 6) ** lenpen) for t, lp in out]
    return sorted(scored, key=lambda h: -h[2])
