"""Guided alignment training (Garg et al. 2019, "Jointly Learning to Align and Translate with Transformer Models").

``train.alignment.file`` gives word alignments of the training corpus (Pharaoh ``i-j``, 0-based, source word first,
one line per corpus line; ``ipj`` possible links count as links), e.g. from ``scripts/eflomal_align.py``. A second
loss pulls the cross-attention that ``model.decode(..., need_attention=True)`` reports (decoder layer
``model.alignment_layer``, averaged over ``model.alignment_heads``; one head, ``[0]``, unless set, as in the paper)
towards those links. The same feature is fairseq's ``label_smoothed_cross_entropy_with_alignment``, OpenNMT-py's
``lambda_align`` and Marian's ``--guided-alignment``.

Conventions (shared with ``nmt-align``'s ``attention`` method):

- Attention row ``t`` is the decoder step that *predicts* ``tgt_out[t]``. A link ``(i, j)`` says that the rows of
  target word ``j``'s pieces should attend to the pieces of source word ``i``. With ``train.alignment.shift`` the
  rows are those one step later, whose *input* is each piece of word ``j`` (Shift-Att's rows, Chen et al. 2020):
  there the decoder already knows the word it aligns. Words are the whitespace tokens of
  the corpus line; pieces are grouped into words as :func:`nmt.analysis.alignment.word_ids` does, per batch, so
  subword sampling (a new segmentation each epoch) is handled.
- The target distribution of a supervised row is uniform over the source pieces of all its linked words. Rows
  without links, the EOS row and padding get no loss; the source EOS column is never a target.
- Loss of a row: the cross-entropy ``-sum_s p(s) log(attn(s) + eps)``; its minimum is at ``attn = p``.
- Normalisation: the translation loss is a mean over the real target tokens of the whole update (all batches of
  the accumulation, all ranks); the alignment loss is likewise a mean over the supervised rows of the whole
  update. The objective is ``translation loss + weight * alignment loss``. (fairseq divides its alignment sum by the
  target tokens instead; since most tokens are supervised rows, the same ``weight`` means about the same there.)

The links of a batch are built in the loader thread (:class:`GuidedData`), vectorised with numpy, as an (N, 3) index
``(example, target position, source position)`` in ``Batch.alignment``; the training step only gathers and logs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nmt.config import DataConfig, NMTConfig
from nmt.data.batch import Batch
from nmt.data.corpus import data_root, read_lines
from nmt.errors import DataError
from nmt.specials import BOS_ID, EOS_ID, PAD_ID, WORD_START

log = logging.getLogger(__name__)

EPS = 1e-6  # inside the log: a zero attention weight (bf16 underflow) gives a large but finite loss


# --------------------------------------------------------------------------------------------- the file
class CorpusAlignment:
    """Word links of every line of the training corpus, stored flat (CSR): line ``n`` owns ``offsets[n]:offsets[n+1]``.

    Attributes:
        path: the Pharaoh file.
        offsets: (lines + 1,) int64.
        src, tgt: (links,) int32 source and target word indices (0-based).
        n_src_words, n_tgt_words: (lines,) int32 whitespace tokens of each corpus line (indices are clipped there).
    """

    def __init__(
        self, path: Path, offsets: np.ndarray, src: np.ndarray, tgt: np.ndarray, n_src: np.ndarray, n_tgt: np.ndarray
    ) -> None:
        self.path, self.offsets, self.src, self.tgt = path, offsets, src, tgt
        self.n_src_words, self.n_tgt_words = n_src, n_tgt

    def __len__(self) -> int:
        return len(self.n_src_words)

    @property
    def num_links(self) -> int:
        return len(self.src)

    @classmethod
    def read(cls, path: str | Path, src_texts: list[str], tgt_texts: list[str]) -> CorpusAlignment:
        """Read and check ``path`` against the corpus sentences it describes.

        Raises:
            DataError: the line counts differ, a link is malformed, or an index is out of range for its line's
                whitespace tokens; the message names the file and the 1-based line.
        """
        path = Path(path)
        n_src = [len(s.split()) for s in src_texts]
        n_tgt = [len(t.split()) for t in tgt_texts]
        src: list[int] = []
        tgt: list[int] = []
        counts: list[int] = []
        for number, line in enumerate(read_lines(path), start=1):
            if number > len(n_src):
                raise DataError(_count_error(path, _count_lines(path), len(n_src)))
            items = line.split()
            for item in items:
                sep = "-" if "-" in item else "p"
                i, _, j = item.partition(sep)
                if not (i.isdigit() and j.isdigit() and i.isascii() and j.isascii()):
                    raise DataError(f"{path}, line {number}: malformed alignment link {item!r} (expected i-j or ipj)")
                a, b = int(i), int(j)
                if a >= n_src[number - 1] or b >= n_tgt[number - 1]:
                    raise DataError(
                        f"{path}, line {number}: link {item!r} is out of range for a pair of {n_src[number - 1]} "
                        f"source and {n_tgt[number - 1]} target words (0-based indices of whitespace tokens; "
                        "a 1-based file or a differently tokenized corpus?)"
                    )
                src.append(a)
                tgt.append(b)
            counts.append(len(items))
        if len(counts) != len(n_src):
            raise DataError(_count_error(path, len(counts), len(n_src)))
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(
            path,
            offsets,
            np.asarray(src, np.int32),
            np.asarray(tgt, np.int32),
            np.asarray(n_src, np.int32),
            np.asarray(n_tgt, np.int32),
        )

    def lines(self, line_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The links of the given corpus lines, flat: (example index into ``line_ids``, source word, target word)."""
        lo, hi = self.offsets[line_ids], self.offsets[line_ids + 1]
        counts = hi - lo
        example = np.repeat(np.arange(len(line_ids)), counts)
        pos = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
        return example, self.src[pos], self.tgt[pos]


def _count_lines(path: Path) -> int:
    return sum(1 for _ in read_lines(path))


def _count_error(path: Path, lines: int, corpus_lines: int) -> str:
    return (
        f"{path} has {lines} lines but the training corpus has {corpus_lines}: train.alignment.file needs one Pharaoh "
        "line per line of data.train (an empty line for a pair without links)"
    )


def resolve_alignment_file(name: str) -> Path:
    """An absolute path as is; a relative one from the working directory, else under the data root."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    under_root = data_root() / path
    if not path.is_absolute() and under_root.is_file():
        return under_root
    tried = str(path) if path.is_absolute() else f"{path.resolve()} and {under_root}"
    raise DataError(f"train.alignment.file not found: tried {tried}")


def read_training_corpus(data: DataConfig) -> tuple[list[str], list[str]]:
    """The sentences of ``data.train`` (files or a ``datasets`` split, read whole), to count each line's words."""
    from nmt.data import cache
    from nmt.data.sources import Corpora

    corpus = Corpora(data, data_root(), cache.cache_dir(data)).load(data.train)
    return corpus.src, corpus.tgt


# --------------------------------------------------------------------------------------------- pieces -> words
class PieceWords:
    """Vectorised :func:`nmt.analysis.alignment.word_ids` for padded id matrices of one vocabulary.

    Args:
        pieces: the piece string of every id (``tokenizer.src_pieces(range(V))``).
    """

    def __init__(self, pieces: list[str]) -> None:
        self.starts = np.array([p.startswith(WORD_START) for p in pieces], dtype=bool)
        self.lone = np.array([p == WORD_START for p in pieces], dtype=bool)
        self.is_piece = np.ones(len(pieces), dtype=bool)
        self.is_piece[[i for i in (PAD_ID, BOS_ID, EOS_ID) if i < len(pieces)]] = False

    def word_index(self, ids: np.ndarray, n_words: np.ndarray) -> np.ndarray:
        """(B, L) ids (pieces, then EOS/padding) -> (B, L) int64 word index of each piece, -1 elsewhere.

        The rules of ``word_ids``: a word starts at a piece beginning with "▁", after a lone "▁", or at the first
        piece; a lone "▁" belongs to the next word (to the last word when none follows); indices are clipped to
        ``n_words - 1`` (``n_words``: (B,) whitespace tokens of each line).
        """
        valid = self.is_piece[ids]
        lone = self.lone[ids] & valid
        real = valid & ~lone
        prev_lone = np.zeros_like(lone)
        prev_lone[:, 1:] = lone[:, :-1]
        real_seen = np.cumsum(real, axis=1)
        new = real & (self.starts[ids] | prev_lone | (real_seen == 1))
        begun = np.cumsum(new, axis=1)  # words begun so far
        # A lone marker followed by a real piece: that piece begins the next word, number `begun` (0-based).
        followed = real_seen < real_seen[:, -1:]
        index = np.where(lone, np.where(followed, begun, np.maximum(begun - 1, 0)), begun - 1)
        index = np.minimum(index, np.maximum(np.asarray(n_words, dtype=np.int64) - 1, 0)[:, None])
        return np.where(valid, index, -1)


def piece_links(
    batch: Batch, alignment: CorpusAlignment, src_words: PieceWords, tgt_words: PieceWords, *, shift: bool = False
) -> Tensor:
    """The piece-level links of ``batch``: (N, 3) int64 rows ``(example, attention row, source position in src)``,
    one per (target piece, source piece) of every word link of the example's corpus line.

    The row of the target piece at ``tgt_out[t]`` is ``t`` (the step predicting it) or, with ``shift``, ``t + 1``
    (the step whose input ``tgt_in[t + 1]`` is that piece; it always exists, as EOS ends ``tgt_out``)."""
    assert batch.tgt_out is not None
    lines = batch.ids.numpy()
    example, src_word, tgt_word = alignment.lines(lines)
    n_src, n_tgt = alignment.n_src_words[lines], alignment.n_tgt_words[lines]
    B = len(lines)
    # Word-level link matrix with one spare (always False) slot at the end, which index -1 (no piece) reads.
    linked = np.zeros((B, int(n_tgt.max(initial=0)) + 1, int(n_src.max(initial=0)) + 1), dtype=bool)
    linked[example, tgt_word, src_word] = True
    tw = tgt_words.word_index(batch.tgt_out.numpy(), n_tgt)  # (B, T)
    if shift:
        tw = np.concatenate([np.full((B, 1), -1, dtype=tw.dtype), tw[:, :-1]], axis=1)
    sw = src_words.word_index(batch.src.numpy(), n_src)  # (B, S)
    pieces = linked[np.arange(B)[:, None, None], tw[:, :, None], sw[:, None, :]]  # (B, T, S)
    return torch.from_numpy(np.stack(np.nonzero(pieces), axis=1).astype(np.int64)).reshape(-1, 3)


class GuidedData:
    """The training data with each batch's piece-level links attached (``Batch.alignment``), for the loader.

    Everything else (lengths, line ids, ``examples``) is the wrapped :class:`nmt.data.prepare.TrainData`'s.
    """

    def __init__(self, data: Any, alignment: CorpusAlignment, tokenizer: Any, *, shift: bool = False) -> None:
        self._data, self.alignment, self.shift = data, alignment, shift
        self.src_words = PieceWords(tokenizer.src_pieces(range(tokenizer.src_vocab_size)))
        same = tokenizer.joint
        self.tgt_words = self.src_words if same else PieceWords(tokenizer.tgt_pieces(range(tokenizer.tgt_vocab_size)))

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)

    def batch(self, indices: Any) -> Batch:
        batch = self._data.batch(indices)
        batch.alignment = piece_links(batch, self.alignment, self.src_words, self.tgt_words, shift=self.shift)
        return batch


def attach(cfg: NMTConfig, train: Any, tokenizer: Any) -> GuidedData | None:
    """Read ``cfg.train.alignment.file`` for the training corpus and wrap ``train`` (a TrainData) so that its
    batches carry their links; None when no file is set (plain training, unchanged)."""
    if not cfg.train.alignment.file:
        return None
    path = resolve_alignment_file(cfg.train.alignment.file)
    src_texts, tgt_texts = read_training_corpus(cfg.data)
    alignment = CorpusAlignment.read(path, src_texts, tgt_texts)
    used = np.asarray(train.line_ids, dtype=np.int64)
    n_used = int((alignment.offsets[used + 1] - alignment.offsets[used]).sum())
    model = cfg.model
    log.info(
        "guided alignment: %s links on %d lines of %s (%s on the %d training pairs kept); weight %g on the "
        "cross-attention of decoder layer %d, heads %s, at the step %s each target piece",
        f"{alignment.num_links:,}", len(alignment), path, f"{n_used:,}", len(used), cfg.train.alignment.weight,
        model.alignment_layer, model.alignment_heads,
        "receiving" if cfg.train.alignment.shift else "predicting",
    )  # fmt: skip
    if n_used == 0:
        log.warning("guided alignment: %s has no link on any training pair kept; the alignment loss stays 0", path)
    return GuidedData(train, alignment, tokenizer, shift=cfg.train.alignment.shift)


# --------------------------------------------------------------------------------------------- model and loss
class AttentionForward(nn.Module):
    """``model`` whose forward also returns the alignment attention, so DDP and ``torch.compile`` see one call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        """Returns logits (B, T, V) and the attention (B, T, S) of the alignment layer/heads."""
        logits, attention = self.model.decode(tgt_in, self.model.encode(src, src_lengths), need_attention=True)
        return logits, attention


def supervised_rows(links: Tensor | None) -> int:
    """Distinct (example, target position) rows among ``links`` (N, 3): the alignment loss's normaliser."""
    if links is None or links.numel() == 0:
        return 0
    key = links[:, 0] * (int(links[:, 1].max()) + 1) + links[:, 1]
    return int(torch.unique(key).numel())


def alignment_loss(attention: Tensor, links: Tensor | None, *, eps: float = EPS) -> Tensor:
    """Sum over supervised rows of ``-sum_s p(s) log(attention(s) + eps)``, p uniform over the row's linked pieces.

    Args:
        attention: (B, T, S) cross-attention (rows sum to 1 over the source pieces + EOS).
        links: (N, 3) int64 ``(example, target position, source position)`` without duplicates, or None.
    Returns:
        A float32 scalar (0 without links); divide by :func:`supervised_rows` for the mean per row.
    """
    if links is None or links.numel() == 0:
        return attention.new_zeros((), dtype=torch.float32)
    B, T = attention.shape[:2]
    b, t, s = links.unbind(1)
    row = b * T + t
    weight = 1.0 / torch.bincount(row, minlength=B * T)[row].float()  # p(s) = 1 / (links of the row)
    return -(weight * torch.log(attention[b, t, s].float() + eps)).sum()
