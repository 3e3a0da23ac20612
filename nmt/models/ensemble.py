"""An ensemble of models over one vocabulary, itself a :class:`Seq2Seq`, so search needs no special case.

Each member keeps its own encoder output and decoder state; they are held by one :class:`Members` dict whose items
are the members' items under keys prefixed with the member's index (``"0.memory"``, ``"1.hidden"``, ...), and which
reorders each member's part with :func:`~nmt.models.base.reorder` (so a member's own
:class:`~nmt.models.base.Reorderable` state keeps its shortcuts). At every step the members' distributions are
averaged in probability space, ``log((1/n) sum_i p_i) = logsumexp_i(log p_i) - log n``, and their attention weights
are averaged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nmt.config import ConfigError
from nmt.models.base import DecoderState, EncoderOutput, Reorderable, Seq2Seq, reorder


class Members(Reorderable):
    """The members' encoder outputs or decoder states, in member order; items: theirs, prefixed ``"{i}."``, and the
    first member's ``src_pad_mask`` when it has one."""

    def __init__(self, parts: list[dict[str, Tensor]]) -> None:
        super().__init__((f"{i}.{k}", v) for i, part in enumerate(parts) for k, v in part.items())
        if "src_pad_mask" in parts[0]:
            self["src_pad_mask"] = parts[0]["src_pad_mask"]
        self.parts = parts

    def reorder(self, index: Tensor) -> Members:
        return Members([reorder(part, index) for part in self.parts])


def _split(d: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    if isinstance(d, Members):
        return d.parts[i]
    prefix = f"{i}."
    return {k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix)}


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
        return Members([m.encode(src, src_lengths) for m in self.members])

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
        return Members([m.init_state(_split(enc, i)) for i, m in enumerate(self.members)])

    def decode_step(
        self, prev_tokens: Tensor, state: DecoderState, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        log_probs, attns, new_state = [], [], []
        for i, m in enumerate(self.members):
            lp, attn, st = m.decode_step(prev_tokens, _split(state, i), _split(enc, i), need_attention=need_attention)
            log_probs.append(lp)
            attns.append(attn)
            new_state.append(st)
        return self._mean_log_probs(log_probs), self._mean_attention(attns), Members(new_state)

    def set_alignment(self, *, layer: int | None = None, heads: list[int] | None = None) -> None:
        for m in self.members:
            m.set_alignment(layer=layer, heads=heads)
