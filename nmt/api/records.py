"""What the Python API returns: small frozen records with the text, scores, pieces, attention and links."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmt.analysis.alignment import Link, format_pharaoh


@dataclass(frozen=True)
class Candidate:
    """One output of :meth:`Model.translate` (a hypothesis of the n-best list).

    Attributes:
        text: the detokenized translation.
        score: the length-penalised log-probability hypotheses are ranked by (what ``nmt-translate --nbest``
            prints): ``log_prob / ((5 + |y|) / 6) ** lenpen``, ``|y|`` counting the EOS.
        log_prob: the model's log-probability of the pieces and the final EOS.
        tokens: the output pieces ("▁" marks a word start), without EOS.
        token_ids: their vocabulary ids.
        attention: with ``return_attention``, float32 (len(tokens) + 1, len(source_tokens) + 1): row t is the
            decoder step that emitted piece t (the last row: EOS), columns are the source pieces and the source EOS.
        links: with ``return_alignments``, (source word, target word) pairs, 0-based, sorted by target word.

    Example::

        best = model.translate(["Zwei Hunde spielen im Schnee."], return_alignments=True)[0].hypotheses[0]
        print(best.text, best.score, best.tokens, best.alignment)  # the alignment: "0-0 1-1 ..."
    """

    text: str
    score: float
    log_prob: float
    tokens: list[str]
    token_ids: list[int]
    attention: np.ndarray | None = None
    links: list[Link] | None = None

    @property
    def alignment(self) -> str | None:
        """The Pharaoh line of :attr:`links` (``"i-j ..."``, as ``nmt-translate --alignments`` writes), or None."""
        return None if self.links is None else format_pharaoh(self.links)


@dataclass(frozen=True)
class TranslationResult:
    """The translation of one input sentence: ``hypotheses`` best first (``nbest`` of them, fewer only when the
    length cap leaves fewer distinct outputs; an empty sentence gets one empty hypothesis, score 0).

    Attributes:
        source: the input sentence.
        source_tokens: the source pieces translated (after truncation), without EOS.
        hypotheses: the n-best list.
        truncated: the sentence had more pieces than the model's maximum source length and was cut.

    Example::

        r = model.translate(["Ein Mann fährt Fahrrad."], beam_size=5, nbest=2)[0]
        print(r.text, r.source_tokens, [h.text for h in r.hypotheses])  # r.text == r.hypotheses[0].text
    """

    source: str
    source_tokens: list[str]
    hypotheses: list[Candidate]
    truncated: bool = False

    @property
    def text(self) -> str:
        """The best translation (what ``nmt-translate`` writes)."""
        return self.hypotheses[0].text

    @property
    def score(self) -> float:
        """The best hypothesis' length-penalised score."""
        return self.hypotheses[0].score


@dataclass(frozen=True)
class AlignmentResult:
    """The forced word alignment of one (source, target) pair, as ``nmt-align`` computes it.

    Attributes:
        links: (source word, target word) pairs, 0-based over the whitespace tokens of the lines as given.
        matrix: float64 (target words, source words) weights the links were read from (``nmt-align --soft``).

    Example::

        a = model.align(["Ein Hund ."], ["A dog ."])[0]
        print(a.pharaoh, a.links, a.matrix.shape)  # e.g. "0-0 1-1 2-2", [(0, 0), (1, 1), (2, 2)], (3, 3)
    """

    links: list[Link]
    matrix: np.ndarray

    @property
    def pharaoh(self) -> str:
        """The Pharaoh line (``"i-j ..."``, sorted by target word) that ``nmt-align`` writes."""
        return format_pharaoh(self.links)


@dataclass(frozen=True)
class ScoreResult:
    """The model's probability of a given translation (teacher-forced pieces + EOS).

    Attributes:
        log_prob: ``sum_t log p(y_t | y_<t, x)`` over the target pieces and the final EOS.
        score: ``log_prob`` with the length penalty, comparable with :attr:`Candidate.score` and the score column
            of ``nmt-translate --nbest`` for the same output pieces.
        tokens: the target pieces scored (the target's SentencePiece segmentation), without EOS.
        token_log_probs: float64 (len(tokens) + 1,): each piece's log-probability, the EOS last.

    Example::

        s = model.score(["Ein Hund ."], ["A dog ."])[0]
        print(s.log_prob, s.score, len(s.token_log_probs) == len(s.tokens) + 1)  # ..., ..., True
    """

    log_prob: float
    score: float
    tokens: list[str]
    token_log_probs: np.ndarray
