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
    assert set(s.as_dict()) == {"bleu", "chrf", "bleu_signature", "chrf_signature"}
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
    buckets = bleu_by_length(src, refs, refs, width=5, last=20)
    assert sum(b.sentences for b in buckets) == len(src)
    for b in buckets:
        n = [len(s.split()) for s in src if b.lo <= len(s.split()) and (b.hi is None or len(s.split()) < b.hi)]
        assert b.sentences == len(n) and b.bleu == pytest.approx(100.0)
    n_long = sum(len(s.split()) >= 20 for s in src)
    assert (buckets[-1].label == "20+") == (n_long > 0) and [b.lo for b in buckets] == sorted(b.lo for b in buckets)
    table = format_buckets(buckets)
    assert table.splitlines()[0].split() == ["src", "words", "sentences", "BLEU"]
    assert plot_buckets(buckets, tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
