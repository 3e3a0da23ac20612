"""nmt.evaluate: sacrebleu scores with signatures, BLEU by source length, and the shared decoding path."""

from __future__ import annotations

import gzip

import pytest
import sacrebleu
import torch

from nmt.config import ConfigError, SearchConfig, TransformerConfig
from nmt.evaluate import bleu_by_length, format_buckets, plot_buckets, score
from nmt.models import build_model
from nmt.translate import make_batches, translate_ids


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


def test_token_budget_batches():
    lengths = [5, 1, 9, 9, 3, 0, 7]
    batches = make_batches(lengths, batch_tokens=20)
    assert sorted(i for b in batches for i in b) == list(range(7))
    for b in batches:
        assert len(b) == 1 or len(b) * (max(lengths[i] for i in b) + 1) <= 20
    assert batches[0] == [2, 3]  # longest first, stable among equals
    assert make_batches([50], batch_tokens=8) == [[0]]  # too long for the budget: alone


def test_translate_ids_keeps_input_order_handles_empty_sources_and_restores_train_mode():
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=16, ffn_dim=32, heads=2, encoder_layers=1, decoder_layers=2, dropout=0.3)
    model = build_model(cfg, src_vocab_size=40, tgt_vocab_size=40).train()
    g = torch.Generator().manual_seed(1)
    src = [torch.randint(4, 40, (k,), generator=g).tolist() for k in (3, 0, 12, 1, 7, 7, 2)]
    search = SearchConfig(beam_size=2, max_len_a=1.0, max_len_b=3, batch_tokens=16)
    out = translate_ids(model, src, search, device="cpu", need_attention=True)
    assert model.training  # restored; decoding itself ran in eval mode (no dropout: results repeat)
    again = translate_ids(model, src, search, device="cpu")
    assert [h[0].tokens for h in out] == [h[0].tokens for h in again]
    alone = [translate_ids(model, [s], search, device="cpu")[0] for s in src]
    assert [h[0].tokens for h in out] == [h[0].tokens for h in alone]
    assert out[1][0].tokens == [] and out[1][0].attention.tolist() == [[1.0]]
