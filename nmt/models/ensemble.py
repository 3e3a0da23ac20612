"""An ensemble of models over one vocabulary, itself a :class:`Seq2Seq`, so search needs no special case.

Each member keeps its own encoder output and decoder state; they are stored in one dict under keys prefixed with
the member's index (``"0.memory"``, ``"1.hidden"``, ...), so :func:`~nmt.models.base.reorder` still reorders
everything generically. At every step the members' distributions are averaged in probability space,
``log((1/n) sum_i p_i) = logsumexp_i(log p_i) - log n``, and their attention weights are averaged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nmt.config import ConfigError
from nmt.models.base import DecoderState, EncoderOutput, Seq2Seq


def _split(d: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    prefix = f"{i}."
    return {k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix)}


def _join(d: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    return {f"{i}.{k}": v for k, v in d.items()}


class Ensemble(Seq2Seq):
    """Average several models with the same target vocabulary and special ids.

    Args:
        models: at least one member (a single member behaves exactly like that model).
    Raises:
        ConfigError: the members disagree on vocabulary size or special ids.
    """

    def __init__(self, models: list[Seq2Seq]) -> None:
        if not models:
            raise ConfigError("an ensemble needs at least one model")
        first = models[0]
        for i, m in enumerate(models[1:], start=1):
            theirs = (m.vocab_size, m.pad_id, m.bos_id, m.eos_id)
            ours = (first.vocab_size, first.pad_id, first.bos_id, first.eos_id)
            if theirs != ours:
                raise ConfigError(
                    f"ensemble member {i} has vocabulary size/specials {theirs}, member 0 has {ours}: "
                    "all members must share one target vocabulary"
                )
        super().__init__(vocab_size=first.vocab_size, pad_id=first.pad_id, bos_id=first.bos_id, eos_id=first.eos_id)
        self.members = nn.ModuleList(models)
        self._log_n = math.log(len(models))

    def _mean_log_probs(self, log_probs: list[Tensor]) -> Tensor:
        if len(log_probs) == 1:
            return log_probs[0]
        return torch.logsumexp(torch.stack(log_probs), dim=0) - self._log_n

    @staticmethod
    def _mean_attention(attns: list[Tensor | None]) -> Tensor | None:
        if attns[0] is None:
            return None
        return attns[0] if len(attns) == 1 else torch.stack(attns).mean(0)  # type: ignore[arg-type]

    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        out: EncoderOutput = {}
        for i, m in enumerate(self.members):
            out.update(_join(m.encode(src, src_lengths), i))
        out["src_pad_mask"] = out["0.src_pad_mask"]
        return out

    def decode(
        self, tgt_in: Tensor, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced: returns the ensemble's log-probabilities (B, T, V) as logits (softmax gives back p)."""
        log_probs, attns = [], []
        for i, m in enumerate(self.members):
            logits, attn = m.decode(tgt_in, _split(enc, i), need_attention=need_attention)
            log_probs.append(torch.log_softmax(logits.float(), dim=-1))
            attns.append(attn)
        return self._mean_log_probs(log_probs), self._mean_attention(attns)

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        state: DecoderState = {}
        for i, m in enumerate(self.members):
            state.update(_join(m.init_state(_split(enc, i)), i))
        return state

    def decode_step(
        self, prev_tokens: Tensor, state: DecoderState, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        log_probs, attns, new_state = [], [], {}
        for i, m in enumerate(self.members):
            lp, attn, st = m.decode_step(prev_tokens, _split(state, i), _split(enc, i), need_attention=need_attention)
            log_probs.append(lp)
            attns.append(attn)
            new_state.update(_join(st, i))
        return self._mean_log_probs(log_probs), self._mean_attention(attns), new_state

    def set_alignment(self, *, layer: int | None = None, heads: list[int] | None = None) -> None:
        for m in self.members:
            m.set_alignment(layer=layer, heads=heads)
