"""The one interface every model offers; training and search see nothing else.

Conventions (all models):
- Tensors are batch-first. ``src`` (B, S) and ``tgt_in`` (B, T) are int64 ids, right-padded with ``pad_id``.
- ``src_pad_mask`` is bool (B, S), **True at padding** (PyTorch's ``key_padding_mask`` convention).
- An :data:`EncoderOutput` and a :data:`DecoderState` are ``dict[str, Tensor]`` whose every tensor has the batch
  in dimension 0, so beam search reorders or expands them generically with :func:`reorder` without knowing
  which model it holds. ``EncoderOutput`` always has ``"src_pad_mask"``. A model may return a
  :class:`Reorderable` instead: a dict that also keeps data outside its items (a key/value cache with room to
  grow, keys shared by a sentence's beams) and reorders itself without copying what it can share.
- Attention weights (when asked) are (B, T, S) or (B, S) for one step: rows sum to 1 over real source
  positions and are exactly 0 on source padding (the columns include the source ``<eos>``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

EncoderOutput = dict[str, Tensor]
DecoderState = dict[str, Tensor]


class Reorderable(dict[str, Tensor], ABC):
    """An encoder output or decoder state that reorders itself (see :func:`reorder`).

    Its items still follow the contract (batch in dim 0); :meth:`reorder` must give the same items as reordering
    each of them, and may share or reuse what it keeps besides.
    """

    @abstractmethod
    def reorder(self, index: Tensor) -> Reorderable:
        """The batch rows ``index`` (B',) of this state, as a new object (this one stays valid)."""


def reorder(tensors: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """Select/repeat batch rows of every tensor (beam reordering and beam expansion).

    Args:
        tensors: an encoder output or decoder state (batch in dim 0 of every tensor), or a :class:`Reorderable`
            (which does it itself).
        index: (B',) int64 row indices into the old batch.
    """
    if isinstance(tensors, Reorderable):
        return tensors.reorder(index)
    return {k: v.index_select(0, index) for k, v in tensors.items()}


def padding_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """(B,) lengths -> (B, L) bool mask, True at padding."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


class Seq2Seq(nn.Module, ABC):
    """Base of every encoder-decoder model."""

    def __init__(self, *, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.bos_id = bos_id
        self.eos_id = eos_id

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits.

        Args:
            src: (B, S) source ids. src_lengths: (B,). tgt_in: (B, T) = BOS + target.
        Returns:
            (B, T, V) unnormalised logits.
        """
        logits, _ = self.decode(tgt_in, self.encode(src, src_lengths))
        return logits

    @abstractmethod
    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        """Run the encoder once per batch. Returns a dict with at least ``src_pad_mask`` (B, S)."""

    @abstractmethod
    def decode(
        self, tgt_in: Tensor, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoding of a whole target prefix.

        Returns:
            logits (B, T, V), and when ``need_attention`` the cross-attention (B, T, S) of the alignment
            layer/heads (differentiable: guided alignment training puts a loss on it), else None.
        """

    @abstractmethod
    def init_state(self, enc: EncoderOutput) -> DecoderState:
        """The decoder state before the first step (batch in dim 0 of every tensor)."""

    @abstractmethod
    def decode_step(
        self, prev_tokens: Tensor, state: DecoderState, enc: EncoderOutput, *, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """One incremental step.

        Args:
            prev_tokens: (B,) the previous output token (BOS at the first step).
        Returns:
            log_probs (B, V) (log-softmax, float32), attention (B, S) or None, and the new state.
            Step t of this equals position t of :meth:`decode` (incremental = full).
        """

    def set_alignment(self, *, layer: int | None = None, heads: list[int] | None = None) -> None:
        """Choose which layer/heads ``need_attention`` reports (Transformer); RNNs have one attention."""
        del layer, heads

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
