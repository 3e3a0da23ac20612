"""The unit of data that training, validation and translation hand to a model."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from nmt.specials import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Batch:
    """A padded batch, batch-first.

    Attributes:
        src: (B, S) int64 source ids = pieces + EOS, right-padded with PAD.
        src_lengths: (B,) int64, counting the EOS.
        tgt_in: (B, T) int64 = BOS + target pieces (None when there is no target).
        tgt_out: (B, T) int64 = target pieces + EOS (None when there is no target).
        ids: (B,) int64 original line numbers (0-based) of the examples, to restore input order.
        alignment: (N, 3) int64 piece-level links ``(example, position in tgt_out, position in src)`` for guided
            alignment training (:mod:`nmt.training.guided`), else None.
    """

    src: Tensor
    src_lengths: Tensor
    tgt_in: Tensor | None
    tgt_out: Tensor | None
    ids: Tensor
    alignment: Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(**{f.name: _move(getattr(self, f.name), device, non_blocking) for f in fields(self)})

    def pin_memory(self) -> Batch:
        return Batch(**{f.name: _pin(getattr(self, f.name)) for f in fields(self)})

    @property
    def num_tgt_tokens(self) -> int:
        """Real target tokens (pieces + EOS), the unit of loss normalisation and throughput."""
        assert self.tgt_out is not None
        return int((self.tgt_out != PAD_ID).sum())

    def __len__(self) -> int:
        return self.src.size(0)


def _move(t: Tensor | None, device: torch.device | str, non_blocking: bool) -> Tensor | None:
    return None if t is None else t.to(device, non_blocking=non_blocking)


def _pin(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.pin_memory()


def collate(
    src_ids: list[list[int]],
    tgt_ids: list[list[int]] | None,
    ids: list[int],
) -> Batch:
    """Pad piece-id lists into a :class:`Batch`, adding EOS to sources and BOS/EOS to targets.

    Args:
        src_ids: per example the source pieces (no specials).
        tgt_ids: per example the target pieces (no specials), or None for translation.
        ids: per example its original line number.
    """
    n = len(src_ids)
    src_len = [len(s) + 1 for s in src_ids]
    src = torch.full((n, max(src_len, default=1)), PAD_ID, dtype=torch.long)
    for i, s in enumerate(src_ids):
        src[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        src[i, len(s)] = EOS_ID
    tgt_in = tgt_out = None
    if tgt_ids is not None:
        t_len = max((len(t) + 1 for t in tgt_ids), default=1)
        tgt_in = torch.full((n, t_len), PAD_ID, dtype=torch.long)
        tgt_out = torch.full((n, t_len), PAD_ID, dtype=torch.long)
        for i, t in enumerate(tgt_ids):
            row = torch.tensor(t, dtype=torch.long)
            tgt_in[i, 0] = BOS_ID
            tgt_in[i, 1 : len(t) + 1] = row
            tgt_out[i, : len(t)] = row
            tgt_out[i, len(t)] = EOS_ID
    return Batch(
        src=src,
        src_lengths=torch.tensor(src_len, dtype=torch.long),
        tgt_in=tgt_in,
        tgt_out=tgt_out,
        ids=torch.tensor(ids, dtype=torch.long),
    )
