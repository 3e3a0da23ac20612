"""nmt.evaluate: sacrebleu scores with signatures and BLEU by source length, on strings."""

from __future__ import annotations

import gzip

import pytest
import sacrebleu

from nmt.config import ConfigError
from nmt.evaluate import bleu_by_length, format_buckets, plot_buckets, score


def val(m30k_slice, lang: str) -> list[str]:
    return (m30k_slice / "multi30k" / f"val.{lang}").read_text(encoding="utf-8").splitlines()


def test_scores_are_sacrebleu_with_signatures(m30k_slice):
    refs = val(m30k_slice, "en")
    hyps = [" ".join(r.split()[1:]) for r in refs]  # every reference missing its first word
    s = score(hyps, refs)
    assert s.bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert s.chrf == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert 0 < s.bleu < 100 and "tok:13a" in s.bleu_signature and "case:mixed" in s.bleu_signature
    assert s.chrf_signature.startswith("nrefs:1")
    assert set(s.as_dict()) == {
        "bleu", "chrf", "bleu_signature", "chrf_signature",
        "bleu_precisions", "bleu_bp", "bleu_ratio", "bleu_hyp_len", "bleu_ref_len",
    }  # fmt: skip
    # sacrebleu's full report: its precisions, brevity penalty, ratio and lengths, and its own printed line
    full = sacrebleu.metrics.BLEU().corpus_score(hyps, [refs])
    assert s.bleu_precisions == pytest.approx(full.precisions, abs=1e-4) and s.bleu_bp == pytest.approx(full.bp, 1e-3)
    assert (s.bleu_hyp_len, s.bleu_ref_len) == (full.sys_len, full.ref_len) and s.bleu_ratio < 1.0
    bleu_line, chrf_line = s.report().splitlines()
    assert bleu_line == full.format(signature=s.bleu_signature)
    assert chrf_line.startswith(f"chrF2|{s.chrf_signature} = ")
    perfect = score(refs, refs, tokenize="none", lowercase=True)
    assert perfect.bleu == pytest.approx(100.0) and perfect.chrf == pytest.approx(100.0)
    assert "tok:none" in perfect.bleu_signature and "case:lc" in perfect.bleu_signature
    assert score([], []).bleu == 0.0
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        score(["a", "b"], ["a"])
    with pytest.raises(ConfigError, match="unknown BLEU tokenizer 'moses'"):
        score(refs, refs, tokenize="moses")


def test_bleu_by_source_length(m30k_slice, tmp_path):
    with gzip.open(m30k_slice / "multi30k" / "test_2016_flickr.de.gz", "rt", encoding="utf-8") as f:
        src = [line.rstrip("\n") for line in f]
    with gzip.open(m30k_slice / "multi30k" / "test_2016_flickr.en.gz", "rt", encoding="utf-8") as f:
        refs = [line.rstrip("\n") for line in f]
    buckets = bleu_by_length(src, refs, refs, width=5, last=20, resamples=100)
    assert sum(b.sentences for b in buckets) == len(src)
    for b in buckets:
        n = [len(s.split()) for s in src if b.lo <= len(s.split()) and (b.hi is None or len(s.split()) < b.hi)]
        assert b.sentences == len(n) and b.bleu == pytest.approx(100.0)
    n_long = sum(len(s.split()) >= 20 for s in src)
    assert (buckets[-1].label == "20+") == (n_long > 0) and [b.lo for b in buckets] == sorted(b.lo for b in buckets)
    table = format_buckets(buckets)
    assert table.splitlines()[0].split() == ["src", "words", "sentences", "BLEU", "95%", "CI"]
    assert plot_buckets(buckets, tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def corpus(m30k_slice, name: str, lang: str) -> list[str]:
    with gzip.open(m30k_slice / "multi30k" / f"{name}.{lang}.gz", "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def degraded(refs: list[str]) -> list[str]:
    """Hypotheses of uneven quality: every third reference intact, the others missing words."""
    return [r if i % 3 == 0 else " ".join(r.split()[: 2 + i % 5]) for i, r in enumerate(refs)]


def test_bucket_bleu_is_sacrebleu_and_its_interval_holds_it_and_shrinks_with_more_sentences(m30k_slice):
    src, refs = corpus(m30k_slice, "test_2016_flickr", "de"), corpus(m30k_slice, "test_2016_flickr", "en")
    hyps = degraded(refs)
    for b in bleu_by_length(src, hyps, refs):
        rows = [i for i, s in enumerate(src) if b.lo <= len(s.split()) and (b.hi is None or len(s.split()) < b.hi)]
        assert b.bleu == pytest.approx(sacrebleu.corpus_bleu([hyps[i] for i in rows], [[refs[i] for i in rows]]).score)
        if b.sentences > 1:
            assert b.bleu_low <= b.bleu <= b.bleu_high
        else:
            assert b.bleu_low is None and b.bleu_high is None
    # One bucket holding every sentence (width = last = 1000): the interval of 25 sentences is wider than that
    # of 100, and the same input gives the same interval (a seeded bootstrap).
    (few,) = bleu_by_length(src[:25], hyps[:25], refs[:25], width=1000, last=1000)
    (many,) = bleu_by_length(src, hyps, refs, width=1000, last=1000)
    assert few.bleu_low <= few.bleu <= few.bleu_high and many.bleu_low <= many.bleu <= many.bleu_high
    assert many.bleu_high - many.bleu_low < few.bleu_high - few.bleu_low
    assert bleu_by_length(src, hyps, refs, width=1000, last=1000) == [many]
    assert "n/a" not in format_buckets([many]) and f"{many.bleu_low:.2f}-{many.bleu_high:.2f}" in format_buckets([many])


def test_one_set_of_buckets_everywhere():
    from nmt.cli import common
    from nmt.evaluate import BUCKET_WIDTH, LAST_BUCKET
    from nmt.experiments.plots import length_buckets

    assert (common.BUCKET_WIDTH, common.LAST_BUCKET) == (BUCKET_WIDTH, LAST_BUCKET)  # the flags' defaults
    defaults = length_buckets.__kwdefaults__
    assert (defaults["width"], defaults["last"]) == (BUCKET_WIDTH, LAST_BUCKET)
