"""Forced word alignment: teacher-force a *given* target through the model and read links from its attention.

Alignment of a model's own translation (``nmt-translate --alignments``) cannot be scored against gold links, which
describe a given sentence pair; here the target is fed as decoder input (no search) and the cross-attention of
the chosen layer/heads (``model.set_alignment``; defaults from the checkpoint's ``model.alignment_layer`` /
``alignment_heads``) becomes word links.

Words are the whitespace tokens of the input lines as given (``line.split()``), so a pre-tokenized gold set keeps
its token indices. Each word is encoded on its own: SentencePiece never builds a piece across a space, so this is
the segmentation of the whole line, and it tells exactly which word every piece belongs to, whatever the script
and whatever SentencePiece's normalisation does (a word that normalises to nothing gets no pieces and no link).

The teacher-forced attention of a pair is (T+1, S+1): rows are decoder steps, step t has ``tgt_in[t]`` as input
(BOS at t = 0, piece t-1 after) and predicts ``tgt_out[t]`` (piece t, EOS at t = T); columns are the source pieces
and the source EOS. Methods (``--method``):

- ``attention`` (Bahdanau et al. 2015; the convention of fairseq's alignment layer, OpenNMT-py and Garg et al. 2019,
  which guided alignment training here also uses): target piece t takes row t, the step that *predicts* it; the
  EOS-predicting row is dropped.
- ``shift`` (Chen et al. 2020, "Accurate Word Alignment Induction from Neural Machine Translation", Shift-Att):
  target piece t takes row t+1, the step whose *input* is piece t. When predicting y_t the decoder has not seen
  y_t yet, so its attention tells what to translate next rather than what y_t translates; once y_t is the input,
  the attention aligns it far better, with no retraining. The BOS-input row is dropped.
- ``bidir``: each direction with its own model (a target -> source checkpoint aligns the swapped pair; its links
  are transposed), combined by :func:`nmt.analysis.symmetrize.symmetrize` (grow-diag-final-and by default;
  Koehn et al. 2003), which also works for the attention of two neural models (Chen et al. 2020, section 4).

Either way the source EOS column is dropped and each row renormalised (EOS soaks up attention, fairseq #4446);
pieces become words as in :mod:`nmt.analysis.alignment` (source pieces summed, target pieces averaged), and each
target word links to its argmax source word, or with a threshold to every source word with at least that weight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

from nmt.analysis.alignment import Link, aggregate_to_words, matrix_to_links
from nmt.analysis.symmetrize import symmetrize
from nmt.checkpoint import check_reverse_direction, load_for_inference
from nmt.config import AttentionType, NMTConfig, Positions, RNNConfig, TransformerConfig
from nmt.data.batch import collate
from nmt.data.batching import length_batches
from nmt.errors import CheckpointError
from nmt.models.base import Seq2Seq
from nmt.models.transformer import Transformer

log = logging.getLogger(__name__)


class Method(str, Enum):
    """Which decoder step's attention row a target piece takes (see the module docstring)."""

    attention = "attention"
    shift = "shift"


@dataclass
class Segmented:
    """One side of a pair in pieces: ``ids`` (no specials), ``words[k]`` = the word of piece k, ``n_words``."""

    ids: list[int]
    words: list[int]
    n_words: int


@dataclass
class Aligned:
    """The alignment of one pair: links (source word, target word) and the (target words, source words) weights."""

    links: set[Link]
    matrix: np.ndarray


def segment(encode: Callable[[list[str]], list[list[int]]], lines: Sequence[str]) -> list[Segmented]:
    """Encode every whitespace word of every line on its own (one batched call) and record each piece's word.

    Args:
        encode: e.g. ``Tokenizer.encode_src``: texts -> piece ids without specials.
        lines: the text lines; words are ``line.split()``.
    """
    split = [line.split() for line in lines]
    flat = [w for words in split for w in words]
    pieces = encode(flat) if flat else []
    out, k = [], 0
    for words in split:
        ids: list[int] = []
        owner: list[int] = []
        for n in range(len(words)):
            ids.extend(pieces[k])
            owner.extend([n] * len(pieces[k]))
            k += 1
        out.append(Segmented(ids, owner, len(words)))
    return out


def teacher_forced_attention(
    model: Seq2Seq,
    src: Sequence[list[int]],
    tgt: Sequence[list[int]],
    *,
    device: torch.device | str = "cpu",
    batch_tokens: int = 4096,
) -> list[np.ndarray]:
    """The cross-attention of the model's alignment layer/heads for every (source, target) pair of piece ids.

    Pairs are batched by length (``batch_tokens`` padded tokens of the longer side) and returned in input order.

    Returns:
        Per pair a float64 (len(tgt) + 1, len(src) + 1) matrix: row t = the step with input ``tgt_in[t]`` (BOS
        first), columns = source pieces + EOS. Both sides must be non-empty.
    Raises:
        CheckpointError: the model reports no attention (an RNN with ``attention=none``).
    """
    out: list[np.ndarray] = [np.zeros((0, 0))] * len(src)
    was_training = model.training
    model.eval()
    device = torch.device(device)
    try:
        with torch.inference_mode():
            for rows in length_batches([max(len(s), len(t)) for s, t in zip(src, tgt)], batch_tokens):
                batch = collate([src[i] for i in rows], [tgt[i] for i in rows], rows).to(device)
                _, attn = model.decode(batch.tgt_in, model.encode(batch.src, batch.src_lengths), need_attention=True)
                if attn is None:
                    raise CheckpointError("the model has no attention (model.attention=none): it cannot align")
                attn = attn.float().cpu().numpy().astype(np.float64)  # (B, T+1, S+1) padded
                for b, i in enumerate(rows):
                    out[i] = attn[b, : len(tgt[i]) + 1, : len(src[i]) + 1]
    finally:
        model.train(was_training)
    return out


def piece_matrix(attention: np.ndarray, method: Method | str) -> np.ndarray:
    """(T+1, S+1) teacher-forced attention -> (T, S): one row per target piece, EOS column dropped, rows renormalised.

    ``attention`` takes rows 0..T-1 (the steps predicting each piece), ``shift`` rows 1..T (the steps whose input is
    each piece). A row whose whole mass was on the source EOS stays zero.
    """
    method = Method(method)
    rows = attention[:-1] if method is Method.attention else attention[1:]
    m = rows[:, :-1]
    total = m.sum(1, keepdims=True)
    return np.divide(m, total, out=np.zeros_like(m, dtype=np.float64), where=total > 0)


def word_matrix(attention: np.ndarray, method: Method | str, src: Segmented, tgt: Segmented) -> np.ndarray:
    """(T+1, S+1) attention -> (target words, source words) weights (sum over source pieces, mean over target)."""
    words = np.zeros((tgt.n_words, src.n_words))
    if src.ids and tgt.ids:
        agg = aggregate_to_words(piece_matrix(attention, method), tgt.words, src.words)
        words[: agg.shape[0], : agg.shape[1]] = agg  # trailing words without pieces stay zero
    return words


class ForcedAligner:
    """Word-align given sentence pairs with one model (one direction).

    Args:
        model: a Seq2Seq with attention, on ``device``.
        tokenizer: the model's tokenizer (``encode_src`` / ``encode_tgt``).
        device: where batches go.
        batch_tokens: padded tokens per batch.
        lowercase: lowercase both sides before encoding (for models trained on lowercased text).
        max_len: pairs with more pieces than this on either side get no links (a warning names the line); the
            learned position table of a Transformer is the only limit.
    """

    def __init__(
        self,
        model: Seq2Seq,
        tokenizer,
        *,
        device: torch.device | str = "cpu",
        batch_tokens: int = 4096,
        lowercase: bool = False,
        max_len: int | None = None,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.device = torch.device(device)
        self.batch_tokens = batch_tokens
        self.lowercase = lowercase
        self.max_len = max_len
        self.config = None  # the checkpoint's NMTConfig (from_checkpoint)
        self.path = "the model"  # the checkpoint's path (from_checkpoint), for messages

    @classmethod
    def from_checkpoint(cls, path: str, *, device: torch.device | str = "cpu", **kwargs) -> ForcedAligner:
        """Load a checkpoint; refuses models without attention."""
        model, tokenizer, cfg = load_for_inference(path, device)
        if isinstance(cfg.model, RNNConfig) and cfg.model.attention == AttentionType.none:
            raise CheckpointError(f"{path} is a model without attention (model.attention=none): it cannot align")
        if isinstance(cfg.model, TransformerConfig) and cfg.model.positions == Positions.learned:
            kwargs.setdefault("max_len", cfg.model.max_positions - 1)  # + BOS / EOS
        aligner = cls(model, tokenizer, device=device, **kwargs)
        aligner.config, aligner.path = cfg, str(path)
        return aligner

    @classmethod
    def for_model(
        cls, model: Seq2Seq, tokenizer, config: NMTConfig | None = None, **kwargs
    ) -> tuple[ForcedAligner, Method]:
        """An aligner for a model already loaded (e.g. a translator's) and the method ``nmt-align`` would pick for it
        (:func:`default_method`); ``kwargs`` as for the constructor."""
        model_cfg = config.model if config is not None else None
        if isinstance(model_cfg, TransformerConfig) and model_cfg.positions == Positions.learned:
            kwargs.setdefault("max_len", model_cfg.max_positions - 1)  # + BOS / EOS
        aligner = cls(model, tokenizer, **kwargs)
        aligner.config = config
        return aligner, default_method(config)

    # ----------------------------------------------------------------------------------------- layer / heads
    def set_alignment(self, layer: int | None = None, heads: list[int] | None = None) -> None:
        """Choose the decoder layer and heads (Transformer; None keeps the layer / means all heads)."""
        self.model.set_alignment(layer=layer, heads=heads)

    @property
    def layer(self) -> int | None:
        """The 0-based decoder layer in use (None for an RNN, which has one attention)."""
        return self.model.align_layer if isinstance(self.model, Transformer) else None

    @property
    def heads(self) -> list[int] | None:
        """The heads averaged (None = all, or an RNN)."""
        return self.model.align_heads if isinstance(self.model, Transformer) else None

    @property
    def num_layers(self) -> int:
        return self.model.cfg.decoder_layers if isinstance(self.model, Transformer) else 1

    @property
    def num_heads(self) -> int:
        return self.model.cfg.heads if isinstance(self.model, Transformer) else 1

    # ----------------------------------------------------------------------------------------- aligning
    def word_matrices(
        self, src_lines: Sequence[str], tgt_lines: Sequence[str], methods: Sequence[Method], *, first_line: int = 1
    ) -> list[dict[Method, np.ndarray]]:
        """One teacher-forced pass -> per pair and method the (target words, source words) weights.

        Pairs with an empty side (or over ``max_len``) get all-zero matrices without a model call.
        """
        prep = (lambda s: s.lower()) if self.lowercase else (lambda s: s)
        src = segment(self.tokenizer.encode_src, [prep(s) for s in src_lines])
        tgt = segment(self.tokenizer.encode_tgt, [prep(t) for t in tgt_lines])
        todo = []
        for k, (s, t) in enumerate(zip(src, tgt)):
            if not s.ids or not t.ids:
                continue
            if self.max_len is not None and max(len(s.ids), len(t.ids)) > self.max_len:
                log.warning(
                    "line %d: %d source / %d target pieces, more than the model's %d positions; no links",
                    first_line + k,
                    len(s.ids),
                    len(t.ids),
                    self.max_len,
                )
                continue
            todo.append(k)
        attn = teacher_forced_attention(
            self.model,
            [src[k].ids for k in todo],
            [tgt[k].ids for k in todo],
            device=self.device,
            batch_tokens=self.batch_tokens,
        )
        out = [{m: np.zeros((t.n_words, s.n_words)) for m in methods} for s, t in zip(src, tgt)]
        for k, a in zip(todo, attn):
            out[k] = {m: word_matrix(a, m, src[k], tgt[k]) for m in methods}
        return out

    def align(
        self,
        src_lines: Sequence[str],
        tgt_lines: Sequence[str],
        method: Method | str = Method.shift,
        *,
        threshold: float | None = None,
        first_line: int = 1,
    ) -> list[Aligned]:
        """Links and word weights of every pair, in input order."""
        method = Method(method)
        mats = self.word_matrices(src_lines, tgt_lines, [method], first_line=first_line)
        return [Aligned(matrix_to_links(m[method], threshold=threshold), m[method]) for m in mats]


def default_method(config: NMTConfig | None) -> Method:
    """``shift``, or for a checkpoint trained with guided alignment the rows it was trained on: ``attention``, or
    ``shift`` with ``train.alignment.shift=true`` (the default of ``nmt-align --method``)."""
    guided = config.train.alignment if config is not None else None
    return Method.attention if guided is not None and guided.file and not guided.shift else Method.shift


def align_bidirectional(
    forward: ForcedAligner,
    reverse: ForcedAligner,
    src_lines: Sequence[str],
    tgt_lines: Sequence[str],
    *,
    base: Method | str = Method.shift,
    symmetrization: str = "grow-diag-final-and",
    threshold: float | None = None,
    first_line: int = 1,
) -> list[Aligned]:
    """Align with the source -> target model and, on the swapped pairs, the target -> source model; symmetrise.

    The matrix of each result is the mean of the forward weights and the transposed reverse weights.

    Raises:
        CheckpointError: the reverse model does not translate target -> source of the forward one.
    """
    check_reverse_pair(forward, reverse)
    fwd = forward.align(src_lines, tgt_lines, base, threshold=threshold, first_line=first_line)
    rev = reverse.align(tgt_lines, src_lines, base, threshold=threshold, first_line=first_line)
    out = []
    for f, r in zip(fwd, rev):
        transposed = {(i, j) for j, i in r.links}  # the reverse model's (its source = our target) links
        out.append(Aligned(symmetrize(f.links, transposed, symmetrization), (f.matrix + r.matrix.T) / 2))
    return out


def check_reverse_pair(forward: ForcedAligner, reverse: ForcedAligner) -> None:
    """Refuse a reverse aligner whose checkpoint does not translate the forward one's target -> source language.

    The two models need no common vocabulary: each segments the words with its own, and links are made on words.
    """
    if forward.config is not None and reverse.config is not None:
        check_reverse_direction(reverse.path, reverse.config, forward.path, forward.config)
