"""Word alignments: from attention over subword pieces to Pharaoh links, and alignment error rate against gold.

Pharaoh format: one line per sentence pair, space-separated links ``i-j`` (source word i, target word j), and in
gold files also ``ipj`` for *possible* links. Our output is 0-based; gold files may be 1-based (``base=1``, as the
RWTH de-en set in ``align-de-en``).

From attention to links (:func:`attention_to_links`), with the choices documented here:

1. The input is one hypothesis' attention, (target pieces + EOS) x (source pieces + EOS). The **target EOS row is
   dropped** (it is not a word), and so is the **source EOS column**, which soaks up much of the attention
   (fairseq #4446); each remaining row is **renormalised** to sum to 1. A row whose whole mass was on EOS stays
   zero and gives its target word no link.
2. Pieces are grouped into words by SentencePiece's word-start marker "▁" (:func:`word_ids`). Source pieces of a
   word are **summed** (the attention a target piece pays to the word), target pieces of a word are **averaged**
   (each target piece votes equally), so word rows still sum to 1.
3. Each target word is linked to the source word it attends to most (**argmax**), or with ``threshold`` to every
   source word with at least that weight (the argmax when none reaches it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nmt.errors import DataError
from nmt.specials import WORD_START

Link = tuple[int, int]  # (source word, target word), 0-based


@dataclass
class GoldAlignment:
    """Gold links of one sentence pair, 0-based. ``possible`` includes ``sure`` (S ⊆ P)."""

    sure: set[Link]
    possible: set[Link]


@dataclass
class AERScore:
    """Corpus-level alignment quality (Och & Ney 2003); None where a ratio has nothing to count (never 0 or 1 by
    convention: a score of nothing is no score)."""

    aer: float | None
    precision: float | None
    recall: float | None
    sentences: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"aer": self.aer, "precision": self.precision, "recall": self.recall, "sentences": self.sentences}


# --------------------------------------------------------------------------------------------- Pharaoh I/O
def parse_pharaoh(line: str, *, base: int = 0, where: str = "") -> GoldAlignment:
    """Parse ``"0-1 2p3 ..."`` into sure and possible links, shifted to 0-based.

    Raises:
        DataError: a malformed link or an index below ``base``; the message starts with ``where``.
    """
    sure: set[Link] = set()
    possible: set[Link] = set()
    for item in line.split():
        sep = "-" if "-" in item else "p"
        parts = item.split(sep)
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise DataError(f"{where}malformed alignment link {item!r} (expected i-j or ipj)")
        link = (int(parts[0]) - base, int(parts[1]) - base)
        if min(link) < 0:
            hint = "a 0-based file? see --gold-base 0" if base == 1 else "see --gold-base"
            raise DataError(f"{where}alignment link {item!r} is below the index base {base} ({hint})")
        possible.add(link)
        if sep == "-":
            sure.add(link)
    return GoldAlignment(sure, possible)


def read_pharaoh(path: str | Path, *, base: int = 0) -> list[GoldAlignment]:
    """Read a Pharaoh file (plain or gzip), one :class:`GoldAlignment` per line, converted to 0-based."""
    from nmt.data.corpus import read_lines

    return [parse_pharaoh(line, base=base, where=f"{path}, line {n}: ") for n, line in enumerate(read_lines(path), 1)]


def format_pharaoh(links: set[Link] | list[Link]) -> str:
    """Links -> ``"i-j i-j ..."`` sorted by target word, then source word (0-based)."""
    return " ".join(f"{i}-{j}" for i, j in sorted(links, key=lambda link: (link[1], link[0])))


# --------------------------------------------------------------------------------------------- AER
def aer(hypotheses: list[set[Link]], gold: list[GoldAlignment]) -> AERScore:
    """Alignment error rate over a corpus: AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|), counts summed over sentences.

    Precision = |A∩P| / |A|, recall = |A∩S| / |S|. Each is None when its denominator is 0 (AER: no hypothesis
    link and no sure gold link, e.g. no sentence at all).
    """
    if len(hypotheses) != len(gold):
        raise ValueError(f"{len(hypotheses)} hypothesis alignments for {len(gold)} gold alignments")
    a = s = a_s = a_p = 0
    for hyp, g in zip(hypotheses, gold):
        a += len(hyp)
        s += len(g.sure)
        a_s += len(hyp & g.sure)
        a_p += len(hyp & (g.possible | g.sure))
    return AERScore(
        aer=1.0 - (a_s + a_p) / (a + s) if a + s else None,
        precision=a_p / a if a else None,
        recall=a_s / s if s else None,
        sentences=len(gold),
    )


def check_gold_ranges(
    gold: list[GoldAlignment],
    words: Sequence[tuple[int, int]],
    *,
    path: str | Path,
    base: int,
    flag: str = "--gold-base",
) -> None:
    """Check every gold link against the words of its sentence pair (before any score is computed).

    A gold file read with the wrong index base gives a wrong AER without any other sign, so the error suggests the
    other base when every link of the file would fit with it.

    Args:
        gold: the links, 0-based (as :func:`read_pharaoh` returns them with ``base``).
        words: (source words, target words) of every pair: the whitespace tokens of its lines.
        path, base, flag: the file, the base it was read with, and the option that sets it (for the message).

    Raises:
        DataError: a line count that differs from the pairs', or the first link out of range, e.g.
            ``gold.talp, line 7: link 12-3 is out of range for a pair of 11 source and 9 target words; with
            --gold-base 1 every link fits``.
    """
    if len(gold) != len(words):
        raise DataError(f"{path} has {len(gold)} lines but there are {len(words)} sentence pairs")
    for n, (g, (n_src, n_tgt)) in enumerate(zip(gold, words), 1):
        bad = sorted(link for link in g.possible if link[0] >= n_src or link[1] >= n_tgt)
        if bad:
            i, j = bad[0]
            sep = "-" if bad[0] in g.sure else "p"
            other = 1 - base
            hint = f"; with {flag} {other} every link fits" if _fits(gold, words, base - other) else ""
            raise DataError(
                f"{path}, line {n}: link {i + base}{sep}{j + base} is out of range for a pair of {n_src} source and "
                f"{n_tgt} target words (links are read {base}-based, {flag} {base}){hint}"
            )


def _fits(gold: list[GoldAlignment], words: Sequence[tuple[int, int]], shift: int) -> bool:
    """Whether every link, shifted by ``shift``, lies within its pair's words."""
    return all(
        0 <= i + shift < n_src and 0 <= j + shift < n_tgt
        for g, (n_src, n_tgt) in zip(gold, words)
        for i, j in g.possible
    )


# --------------------------------------------------------------------------------------------- pieces -> words
def word_ids(pieces: list[str], n_words: int | None = None) -> list[int]:
    """The word index of every piece: a word starts at a piece beginning with "▁".

    A lone "▁" piece belongs to the word that follows it; pieces before the first marker belong to word 0.
    With ``n_words`` (the whitespace tokens of the text) indices are clipped to ``n_words - 1``, for the rare
    cases where SentencePiece's normalisation makes more words than whitespace splitting does.
    """
    out: list[int] = []
    word, pending = -1, 0
    for piece in pieces:
        if piece == WORD_START:
            pending += 1
            out.append(-2)  # resolved below: the next word's index
            continue
        if piece.startswith(WORD_START) or pending or word < 0:
            word += 1
        pending = 0
        out.append(word)
    last = max(word, 0)
    resolved, nxt = [0] * len(out), last
    for i in range(len(out) - 1, -1, -1):  # lone markers take the index of the next real piece
        resolved[i] = nxt if out[i] == -2 else out[i]
        nxt = resolved[i]
    if n_words is not None:
        resolved = [min(w, max(n_words - 1, 0)) for w in resolved]
    return resolved


def aggregate_to_words(matrix: np.ndarray, tgt_words: list[int], src_words: list[int]) -> np.ndarray:
    """(T pieces, S pieces) -> (T words, S words): sum over a source word's pieces, mean over a target word's.

    Args:
        matrix: attention without EOS row/column. tgt_words, src_words: word index per piece (see word_ids).
    """
    n_t, n_s = max(tgt_words, default=-1) + 1, max(src_words, default=-1) + 1
    to_src = np.zeros((matrix.shape[1], n_s))
    to_src[np.arange(matrix.shape[1]), src_words] = 1.0  # (S pieces, S words)
    from_tgt = np.zeros((n_t, matrix.shape[0]))
    from_tgt[tgt_words, np.arange(matrix.shape[0])] = 1.0  # (T words, T pieces)
    from_tgt /= np.maximum(from_tgt.sum(1, keepdims=True), 1.0)
    return from_tgt @ matrix @ to_src


def strip_eos(attention: np.ndarray | torch.Tensor) -> np.ndarray:
    """(T+1, S+1) attention incl. EOS row and column -> (T, S) with rows renormalised (all-EOS rows stay 0)."""
    m = np.asarray(attention.float().cpu() if isinstance(attention, torch.Tensor) else attention, dtype=np.float64)
    m = m[:-1, :-1]
    total = m.sum(1, keepdims=True)
    return np.divide(m, total, out=np.zeros_like(m), where=total > 0)


def attention_to_links(
    attention: np.ndarray | torch.Tensor,
    src_pieces: list[str],
    tgt_pieces: list[str],
    *,
    n_src_words: int | None = None,
    n_tgt_words: int | None = None,
    threshold: float | None = None,
) -> set[Link]:
    """One hypothesis' attention -> word links (see the module docstring for every step).

    Args:
        attention: (len(tgt_pieces) + 1, len(src_pieces) + 1), rows = target pieces + EOS, columns = source
            pieces + EOS (what search returns with ``need_attention``).
        src_pieces, tgt_pieces: the piece strings, without EOS.
        n_src_words, n_tgt_words: whitespace tokens of the source line and of the output, to clip indices.
        threshold: link every source word with at least this weight instead of only the argmax.
    """
    expected = (len(tgt_pieces) + 1, len(src_pieces) + 1)
    if tuple(attention.shape) != expected:
        raise ValueError(f"attention has shape {tuple(attention.shape)}, expected {expected} (pieces + EOS)")
    if not tgt_pieces or not src_pieces:
        return set()
    words = aggregate_to_words(
        strip_eos(attention), word_ids(tgt_pieces, n_tgt_words), word_ids(src_pieces, n_src_words)
    )  # (T words, S words)
    return matrix_to_links(words, threshold=threshold)


def matrix_to_links(words: np.ndarray, *, threshold: float | None = None) -> set[Link]:
    """(T words, S words) weights -> links: each target word to its argmax source word, or with ``threshold`` to
    every source word with at least that weight (the argmax when none reaches it). All-zero rows get no link."""
    links: set[Link] = set()
    for j, row in enumerate(words):
        if row.sum() <= 0:
            continue
        chosen = np.flatnonzero(row >= threshold) if threshold is not None else []
        links.update((int(i), j) for i in (chosen if len(chosen) else [int(row.argmax())]))
    return links
