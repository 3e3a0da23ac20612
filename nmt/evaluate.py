"""Scoring detokenized text with sacrebleu (BLEU, chrF, with their signatures), and BLEU by source length.

Scoring only ever sees strings: hypotheses are detokenized with the model's own SentencePiece model and compared
with the untouched references, so figures are comparable across toolkits. Always report the signature: it says
how the text was tokenized and cased (``tokenize="none"`` for pre-tokenized corpora such as the IWSLT14 files).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from nmt.config import ConfigError


@dataclass
class Scores:
    """Corpus BLEU and chrF (0-100) with the sacrebleu signatures that make them reproducible."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"BLEU {self.bleu:.2f} ({self.bleu_signature})  chrF {self.chrf:.2f} ({self.chrf_signature})"


def score(hyps: list[str], refs: list[str], *, tokenize: str | None = None, lowercase: bool = False) -> Scores:
    """Corpus BLEU and chrF of detokenized hypotheses against one reference each.

    Args:
        hyps, refs: one string per sentence, same length.
        tokenize: sacrebleu's BLEU tokenizer (``13a`` by default, ``none`` for pre-tokenized text, ``intl``, ...).
        lowercase: case-insensitive scores (stated in the signatures).
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if tokenize is not None and tokenize not in BLEU.TOKENIZERS:
        raise ConfigError(f"unknown BLEU tokenizer {tokenize!r}; sacrebleu has {', '.join(BLEU.TOKENIZERS)}")
    bleu = BLEU(tokenize=tokenize, lowercase=lowercase)
    chrf = CHRF(lowercase=lowercase)
    # sacrebleu cannot score an empty corpus (nor sign one it has not scored): score one empty pair, report 0.
    empty = not hyps
    b = bleu.corpus_score(hyps or [""], [refs or [""]])
    c = chrf.corpus_score(hyps or [""], [refs or [""]])
    return Scores(
        0.0 if empty else float(b.score),
        0.0 if empty else float(c.score),
        str(bleu.get_signature()),
        str(chrf.get_signature()),
    )


# --------------------------------------------------------------------------------------------- length buckets
@dataclass
class Bucket:
    """Sentences whose source has ``lo <= words < hi`` whitespace tokens (``hi`` None: no upper bound)."""

    lo: int
    hi: int | None
    sentences: int
    bleu: float

    @property
    def label(self) -> str:
        return f"{self.lo}+" if self.hi is None else f"{self.lo}-{self.hi}"


def bleu_by_length(
    sources: list[str],
    hyps: list[str],
    refs: list[str],
    *,
    width: int = 10,
    last: int = 50,
    tokenize: str | None = None,
    lowercase: bool = False,
) -> list[Bucket]:
    """Corpus BLEU per source-length bucket ``[0, width), [width, 2 width), ..., [last, inf)`` (empty ones left out)."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(sources):
        groups.setdefault(min(len(s.split()) // width * width, last), []).append(i)
    out = []
    for lo in sorted(groups):
        idx = groups[lo]
        s = score([hyps[i] for i in idx], [refs[i] for i in idx], tokenize=tokenize, lowercase=lowercase)
        out.append(Bucket(lo, None if lo >= last else lo + width, len(idx), s.bleu))
    return out


def format_buckets(buckets: list[Bucket]) -> str:
    """A plain-text table: source words, sentences, BLEU."""
    lines = [f"{'src words':>10}  {'sentences':>9}  {'BLEU':>6}"]
    lines += [f"{b.label:>10}  {b.sentences:>9d}  {b.bleu:>6.2f}" for b in buckets]
    return "\n".join(lines)


def plot_buckets(buckets: list[Bucket], path: str | Path, *, title: str = "") -> Path:
    """A bar chart of BLEU per source-length bucket, with the sentence count on each bar (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    try:
        bars = ax.bar([b.label for b in buckets], [b.bleu for b in buckets], color="#4c72b0")
        for bar, b in zip(bars, buckets):
            ax.annotate(
                f"n={b.sentences}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xlabel("source length (words)")
        ax.set_ylabel("BLEU")
        if title:
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
