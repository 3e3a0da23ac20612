"""The Transformer's decoding state: source keys/values shared by a sentence's beams, and a self-attention cache
written in place.

Both are :class:`~nmt.models.base.Reorderable`, so search moves them with the generic
:func:`~nmt.models.base.reorder`, and their items still follow the model contract (batch in dim 0).

:class:`SourceMemory` (the encoder output). Every decoder layer's cross-attention keys and values are computed once
per sentence, (n, heads, S, head_dim). Beam search expands a batch to K rows per sentence and drops the rows of
finished sentences; copying the keys/values for every beam, and all of them again whenever a sentence finishes, cost
about as much as the attention itself. Instead, consecutive groups of ``group`` batch rows share one memory row
(row r reads memory row r // group), and cross-attention runs a group's queries together against that one copy:
the same dot products, over K times fewer keys. A reorder that breaks up the groups falls back to one memory row
per batch row.

:class:`DecoderCache` (the decoder state). The self-attention keys/values of the decoded prefix live in one buffer
per layer, (B, capacity, 2, heads, head_dim), and each step writes its position in place instead of
``torch.cat``-ing a new cache per step and layer (a copy of the whole cache every step). The items ``k{i}`` /
``v{i}`` are views (B, heads, t, head_dim) of the buffers. Capacity doubles when full; a reorder copies only the
filled prefix, once. A state is never changed by a later step: a state stepped twice (two continuations of one
prefix) sees that position t was already written by its first successor and copies the prefix instead. With autograd
on, every step copies (no in-place change of tensors saved for backward).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.models.base import Reorderable

MIN_CAPACITY = 16  # decoder positions a new cache buffer holds at least


def group_size(rows: list[int]) -> int:
    """The size g of the runs of equal values when every run has that size (rows = m0 x g, m1 x g, ...), else 1."""
    n = len(rows)
    if n == 0:
        return 1
    g = next((i for i in range(1, n) if rows[i] != rows[0]), n)
    if g == 1 or n % g or any(rows[i] != rows[i - i % g] for i in range(g, n)):
        return 1
    return g


class SourceMemory(Reorderable):
    """The Transformer's encoder output.

    Items: ``src_pad_mask`` (B, S), True at padding. Besides them:

    Attributes:
        kv: per decoder layer, cross-attention keys and values (n, heads, S, head_dim), n = B / group.
        mem_pad_mask: (n, S) the padding mask of the memory rows.
        group: consecutive batch rows that share one memory row.
    """

    def __init__(
        self, src_pad_mask: Tensor, kv: list[tuple[Tensor, Tensor]], *, group: int = 1, mem_pad_mask: Tensor | None
    ) -> None:
        super().__init__(src_pad_mask=src_pad_mask)
        self.kv, self.group = kv, group
        self.mem_pad_mask = src_pad_mask if mem_pad_mask is None else mem_pad_mask

    def reorder(self, index: Tensor) -> SourceMemory:
        mem = index // self.group if self.group > 1 else index  # the memory row each new row reads
        rows = mem.tolist()
        group = group_size(rows)
        take = rows[::group]
        if take == list(range(self.mem_pad_mask.size(0))):  # the same memory rows in the same order: share them
            kv, mask = self.kv, self.mem_pad_mask
        else:
            pick = mem[::group]
            kv = [(k.index_select(0, pick), v.index_select(0, pick)) for k, v in self.kv]
            mask = self.mem_pad_mask.index_select(0, pick)
        return SourceMemory(self["src_pad_mask"].index_select(0, index), kv, group=group, mem_pad_mask=mask)


class DecoderCache(Reorderable):
    """The Transformer's decoder state: self-attention keys/values of the first ``length`` positions.

    Items: ``k{i}`` / ``v{i}`` (B, heads, length, head_dim), views of ``buffers[i]`` (B, capacity, 2, heads,
    head_dim) (keys at [:, :, 0], values at [:, :, 1]).
    """

    def __init__(self, buffers: list[Tensor], length: int, written: list[int] | None = None) -> None:
        views = {
            f"{kv}{i}": buf[:, :length, j].transpose(1, 2) for i, buf in enumerate(buffers) for j, kv in enumerate("kv")
        }
        super().__init__(views)
        self.buffers, self.length = buffers, length
        # Positions written into these buffers so far, shared by every state on them: a state may extend the
        # buffers in place only while nothing was written past its own length.
        self._written = [length] if written is None else written

    @classmethod
    def empty(cls, batch: int, layers: int, heads: int, head_dim: int, like: Tensor) -> DecoderCache:
        """A cache of no positions (buffers are allocated by the first step), dtype and device of ``like``."""
        return cls([like.new_empty(batch, 0, 2, heads, head_dim) for _ in range(layers)], 0)

    @classmethod
    def of(cls, state: dict[str, Tensor]) -> DecoderCache:
        """A cache holding the items ``k{i}`` / ``v{i}`` (B, heads, t, head_dim) of a plain state dict."""
        layers = len([k for k in state if k.startswith("k")])
        buffers = [torch.stack([state[f"k{i}"], state[f"v{i}"]], dim=2).transpose(1, 3) for i in range(layers)]
        return cls([b.contiguous() for b in buffers], state["k0"].size(2))

    def extend(self) -> DecoderCache:
        """A state whose buffers can take position ``length`` (self when it may write in place; else a copy)."""
        t = self.length
        capacity = self.buffers[0].size(1)
        if self._written[0] == t and t < capacity and not torch.is_grad_enabled():
            return self  # (with autograd on, a fresh buffer per step: no in-place change of saved tensors)
        capacity = max(MIN_CAPACITY, 2 * (t + 1)) if t >= capacity else capacity
        buffers = []
        for buf in self.buffers:
            new = buf.new_empty(buf.size(0), capacity, *buf.shape[2:])
            new[:, :t] = buf[:, :t]
            buffers.append(new)
        return DecoderCache(buffers, t)

    def advance(self) -> DecoderCache:
        """After every layer wrote position ``length`` into :attr:`buffers`: the state one position longer."""
        self._written[0] = self.length + 1
        return DecoderCache(self.buffers, self.length + 1, self._written)

    def reorder(self, index: Tensor) -> DecoderCache:
        t, buffers = self.length, []
        for buf in self.buffers:
            new = buf.new_empty(index.size(0), *buf.shape[1:])
            if torch.is_grad_enabled():  # out= does not record gradients
                new[:, :t] = buf[:, :t].index_select(0, index)
            else:
                torch.index_select(buf[:, :t], 0, index, out=new[:, :t])  # only the filled prefix, straight in
            buffers.append(new)
        return DecoderCache(buffers, t)
