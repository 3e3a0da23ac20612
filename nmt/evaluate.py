"""Scoring detokenized text with sacrebleu (BLEU, chrF, with their signatures), and BLEU by source length.

Scoring only ever sees strings: hypotheses are detokenized with the model's own SentencePiece model and compared
with the untouched references, so figures are comparable across toolkits. Always report the signature: it says
how the text was tokenized and cased (``tokenize="none"`` for pre-tokenized corpora such as the IWSLT14 files).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF

from nmt.config import ConfigError


@dataclass
class Scores:
    """Corpus BLEU and chrF (0-100) with the sacrebleu signatures that make them reproducible, and the parts of
    BLEU (sacrebleu's full report): the 1-4-gram precisions, the brevity penalty, the length ratio and the lengths
    in tokens of the hypotheses and of the references."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_precisions: list[float] = field(default_factory=lambda: [0.0] * 4)
    bleu_bp: float = 0.0
    bleu_ratio: float = 0.0
    bleu_hyp_len: int = 0
    bleu_ref_len: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"BLEU {self.bleu:.2f} ({self.bleu_signature})  chrF {self.chrf:.2f} ({self.chrf_signature})"

    def report(self) -> str:
        """sacrebleu's own two lines: ``BLEU|signature = 36.20 68.1/43.3/29.0/19.8 (BP = 0.987 ratio = 0.987
        hyp_len = 12345 ref_len = 12500)`` and ``chrF2|signature = 60.12``."""
        precisions = "/".join(f"{p:.1f}" for p in self.bleu_precisions)
        return (
            f"BLEU|{self.bleu_signature} = {self.bleu:.2f} {precisions} (BP = {self.bleu_bp:.3f} "
            f"ratio = {self.bleu_ratio:.3f} hyp_len = {self.bleu_hyp_len:d} ref_len = {self.bleu_ref_len:d})\n"
            f"chrF2|{self.chrf_signature} = {self.chrf:.2f}"
        )


def score(hyps: list[str], refs: list[str], *, tokenize: str | None = None, lowercase: bool = False) -> Scores:
    """Corpus BLEU and chrF of detokenized hypotheses against one reference each.

    Args:
        hyps, refs: one string per sentence, same length.
        tokenize: sacrebleu's BLEU tokenizer (``13a`` by default, ``none`` for pre-tokenized text, ``intl``, ...).
        lowercase: case-insensitive scores (stated in the signatures).
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    bleu = _bleu(tokenize, lowercase)
    chrf = CHRF(lowercase=lowercase)
    # sacrebleu cannot score an empty corpus (nor sign one it has not scored): score one empty pair, report 0.
    if not hyps:
        bleu.corpus_score([""], [[""]])
        chrf.corpus_score([""], [[""]])
        return Scores(0.0, 0.0, str(bleu.get_signature()), str(chrf.get_signature()))
    b = bleu.corpus_score(hyps, [refs])
    c = chrf.corpus_score(hyps, [refs])
    return Scores(
        float(b.score),
        float(c.score),
        str(bleu.get_signature()),
        str(chrf.get_signature()),
        bleu_precisions=[round(float(p), 4) for p in b.precisions],
        bleu_bp=round(float(b.bp), 4),
        bleu_ratio=round(float(b.ratio), 4),
        bleu_hyp_len=int(b.sys_len),
        bleu_ref_len=int(b.ref_len),
    )


def _bleu(tokenize: str | None, lowercase: bool) -> BLEU:
    if tokenize is not None and tokenize not in BLEU.TOKENIZERS:
        raise ConfigError(f"unknown BLEU tokenizer {tokenize!r}; sacrebleu has {', '.join(BLEU.TOKENIZERS)}")
    return BLEU(tokenize=tokenize, lowercase=lowercase)


# --------------------------------------------------------------------------------------------- length buckets
# One bucketing for every report (nmt-evaluate, nmt-train's results.json, nmt-sweep-summary's plot), so that their
# figures can be compared: 5-word buckets of source length up to 25 words, then one for the rest. Multi30k's
# sentences are short (most have 5-20 words), so 10-word buckets would leave two populated ones; for longer
# corpora (IWSLT, WMT) pass e.g. --bucket-width 10 --last-bucket 50 to both tools.
BUCKET_WIDTH = 5
LAST_BUCKET = 25
BOOTSTRAP_RESAMPLES = 1000  # resamples per bucket for its 95% confidence interval
BOOTSTRAP_SEED = 12345


@dataclass
class Bucket:
    """Sentences whose source has ``lo <= words < hi`` whitespace tokens (``hi`` None: no upper bound), their corpus
    BLEU and its 95% bootstrap interval (``bleu_low``, ``bleu_high``; None for a single sentence)."""

    lo: int
    hi: int | None
    sentences: int
    bleu: float
    bleu_low: float | None = None
    bleu_high: float | None = None

    @property
    def label(self) -> str:
        return f"{self.lo}+" if self.hi is None else f"{self.lo}-{self.hi}"


def bleu_by_length(
    sources: list[str],
    hyps: list[str],
    refs: list[str],
    *,
    width: int = BUCKET_WIDTH,
    last: int = LAST_BUCKET,
    tokenize: str | None = None,
    lowercase: bool = False,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> list[Bucket]:
    """Corpus BLEU per source-length bucket ``[0, width), [width, 2 width), ..., [last, inf)`` (empty ones left
    out), each with a 95% bootstrap confidence interval.

    The interval is the 2.5th-97.5th percentile of the bucket's corpus BLEU over ``resamples`` resamples of its
    sentences with replacement (Koehn 2004), seeded per bucket, so the same input gives the same interval. Each
    sentence's n-gram statistics are extracted once (sacrebleu's own), so a resample costs a sum, not a rescoring;
    the bucket's BLEU is exactly sacrebleu's corpus BLEU of its sentences.
    """
    if not len(sources) == len(hyps) == len(refs):
        raise ValueError(f"{len(sources)} sources, {len(hyps)} hypotheses and {len(refs)} references")
    if width < 1 or last < width:
        raise ConfigError(f"buckets of {width} words up to {last}: need 1 <= width <= last")
    bleu = _bleu(tokenize, lowercase)
    stats = np.array(bleu._extract_corpus_statistics(hyps, [refs]), dtype=np.int64) if hyps else np.zeros((0, 10))
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(sources):
        groups.setdefault(min(len(s.split()) // width * width, last), []).append(i)
    out = []
    for lo in sorted(groups):
        part = stats[groups[lo]]  # (sentences, 2 + 2 * max n-gram order)
        low_high = _bootstrap(bleu, part, resamples, np.random.default_rng([seed, lo]))
        out.append(Bucket(lo, None if lo >= last else lo + width, len(part), _bleu_of(bleu, part.sum(0)), *low_high))
    return out


def _bleu_of(bleu: BLEU, totals: np.ndarray) -> float:
    """Corpus BLEU from summed sentence statistics (what ``corpus_score`` computes after extracting them)."""
    return float(bleu._compute_score_from_stats([int(x) for x in totals]).score)


def _bootstrap(bleu: BLEU, stats: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[float, float] | tuple:
    """The 95% percentile interval of corpus BLEU over resamples of the rows of ``stats`` (() for < 2 rows)."""
    n = len(stats)
    if n < 2 or resamples < 1:
        return ()
    scores = np.empty(resamples)
    for start in range(0, resamples, 100):  # 100 resamples at a time: a (100, n) count matrix
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(100, resamples - start))
        for k, totals in enumerate(counts @ stats):  # (resamples, statistics): each resample's corpus totals
            scores[start + k] = _bleu_of(bleu, totals)
    low, high = np.percentile(scores, [2.5, 97.5])
    return round(float(low), 2), round(float(high), 2)


def format_buckets(buckets: list[Bucket]) -> str:
    """A plain-text table: source words, sentences, BLEU and its 95% bootstrap interval."""
    lines = [f"{'src words':>10}  {'sentences':>9}  {'BLEU':>6}  {'95% CI':>13}"]
    for b in buckets:
        ci = f"{b.bleu_low:.2f}-{b.bleu_high:.2f}" if b.bleu_low is not None else "n/a"
        lines.append(f"{b.label:>10}  {b.sentences:>9d}  {b.bleu:>6.2f}  {ci:>13}")
    return "\n".join(lines)


def bucket_errors(buckets: list[Bucket]) -> np.ndarray:
    """(2, buckets) distances from each BLEU down and up to its interval (0 without one): matplotlib's ``yerr``."""
    return np.array(
        [
            [b.bleu - b.bleu_low if b.bleu_low is not None else 0.0 for b in buckets],
            [b.bleu_high - b.bleu if b.bleu_high is not None else 0.0 for b in buckets],
        ]
    ).clip(min=0.0)


def plot_buckets(buckets: list[Bucket], path: str | Path, *, title: str = "") -> Path:
    """A bar chart of BLEU per source-length bucket with its 95% interval as an error bar and the sentence count
    above each bar (PNG)."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, nothing to close

    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    labels = [b.label for b in buckets]
    bars = ax.bar(labels, [b.bleu for b in buckets], color="#4c72b0", yerr=bucket_errors(buckets), capsize=3)
    for bar, b in zip(bars, buckets):
        top = b.bleu_high if b.bleu_high is not None else b.bleu
        ax.annotate(f"n={b.sentences}", (bar.get_x() + bar.get_width() / 2, top), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU (95% bootstrap interval)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
