"""Forced alignment: word segmentation, the rows each method reads, and agreement with attention read by hand."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from corpus_io import read_gz_lines

from nmt.analysis.alignment import matrix_to_links
from nmt.analysis.forced import (
    ForcedAligner,
    Method,
    align_bidirectional,
    piece_matrix,
    segment,
    teacher_forced_attention,
    word_matrix,
)
from nmt.analysis.symmetrize import symmetrize
from nmt.config import AttentionType, RNNConfig, TokenizerConfig, TransformerConfig
from nmt.data.batch import collate
from nmt.data.tokenizer import Tokenizer
from nmt.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

# Non-Latin lines (unknown to a German/English vocabulary) and tokens SentencePiece normalises oddly: a ligature
# (NFKC: "fi"), full-width letters, an ellipsis (three pieces), a zero-width space inside a word (SentencePiece
# treats it as a space: two "▁" pieces in one whitespace word) and alone (no pieces at all), a combining accent.
ODD_SRC = ["Καλημέρα κόσμε , πώς είσαι ;", "Der ﬁsch … ist x\u200bx \u200b Ａｂｃ groß", "Привет , мир !"]
ODD_TGT = ["Добрый день , как дела ?", "The ﬁsh … is x\u200bx Ａｂｃ big", "Hello , wörld\u0301 !"]


@pytest.fixture(scope="module")
def gold_pairs(data_root: Path) -> tuple[list[str], list[str]]:
    src = read_gz_lines(data_root / "align-de-en" / "deen.de.gz", 24)
    tgt = read_gz_lines(data_root / "align-de-en" / "deen.en.gz", 24)
    return src, tgt


@pytest.fixture(scope="module")
def tokenizer(m30k_slice: Path) -> Tokenizer:
    de = read_gz_lines(m30k_slice / "multi30k/train.de.gz", 1000)
    en = read_gz_lines(m30k_slice / "multi30k/train.en.gz", 1000)
    return Tokenizer.train(de, en, TokenizerConfig(vocab_size=400))


def _transformer(tokenizer: Tokenizer):
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=32, ffn_dim=48, heads=2, encoder_layers=1, decoder_layers=2, dropout=0.0)
    return build_model(cfg, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size).eval()


def _rnn(tokenizer: Tokenizer):
    torch.manual_seed(0)
    cfg = RNNConfig(embed_dim=16, hidden_dim=24, dropout=0.0, attention=AttentionType.bahdanau)
    return build_model(cfg, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size).eval()


MODELS = {"transformer": _transformer, "rnn": _rnn}


# --------------------------------------------------------------------------------------------- segmentation
def test_segment_gives_the_line_encoding_and_each_piece_its_word(tokenizer: Tokenizer, gold_pairs) -> None:
    src, _ = gold_pairs
    for line, seg in zip(src, segment(tokenizer.encode_src, src)):
        assert seg.ids == tokenizer.encode_src([line])[0]  # word by word = the whole line
        assert seg.n_words == len(line.split())
        pieces = tokenizer.src_pieces(seg.ids)
        for n, word in enumerate(line.split()):  # the pieces of word n re-encode word n exactly
            assert [p for p, w in zip(pieces, seg.words) if w == n] == tokenizer.src_pieces(
                tokenizer.encode_src([word])[0]
            )


def test_segment_handles_non_latin_and_oddly_normalised_tokens(tokenizer: Tokenizer) -> None:
    for line, seg in zip(ODD_SRC, segment(tokenizer.encode_src, ODD_SRC)):
        words = line.split()
        assert seg.n_words == len(words) and len(seg.words) == len(seg.ids)
        assert seg.words == sorted(seg.words) and all(0 <= w < len(words) for w in seg.words)
    odd = segment(tokenizer.encode_src, [ODD_SRC[1]])[0]
    words = ODD_SRC[1].split()
    pieces = tokenizer.src_pieces(odd.ids)
    zwsp_word = words.index("x\u200bx")
    assert [p for p, w in zip(pieces, odd.words) if w == zwsp_word].count("▁") == 2  # two "words" to SentencePiece
    assert words.index("\u200b") not in odd.words  # normalised away: no pieces
    assert [p for p, w in zip(pieces, odd.words) if w == words.index("…")] == ["▁", ".", ".", "."]


# --------------------------------------------------------------------------------------------- methods
def test_each_method_reads_its_own_rows_on_a_hand_made_matrix() -> None:
    # 3 target pieces, 3 source pieces: step r attends only to source piece r (EOS column last, unused).
    attention = np.zeros((4, 4))
    attention[np.arange(4), [0, 1, 2, 3]] = 1.0  # the EOS-predicting step looks at the source EOS
    attention[3] = [0.0, 0.5, 0.0, 0.5]  # ... but half of it at source piece 1
    assert np.array_equal(piece_matrix(attention, "attention"), np.eye(3))
    # shift: target piece t takes step t+1 (whose input is piece t): piece 0 <- step 1, piece 2 <- step 3.
    assert np.array_equal(piece_matrix(attention, Method.shift), [[0, 1, 0], [0, 0, 1], [0, 1, 0]])
    # EOS column dropped, rows renormalised; a row with all its mass on EOS stays zero
    attention[1] = [0.2, 0.0, 0.0, 0.8]
    attention[2] = [0.0, 0.0, 0.0, 1.0]
    np.testing.assert_allclose(piece_matrix(attention, "shift"), [[1, 0, 0], [0, 0, 0], [0, 1, 0]])


def test_threshold_links_every_word_above_it_and_argmax_otherwise() -> None:
    words = np.array([[0.5, 0.4, 0.1], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])
    assert matrix_to_links(words) == {(0, 0), (2, 1)}
    assert matrix_to_links(words, threshold=0.35) == {(0, 0), (1, 0), (2, 1)}  # row 1: none reaches it -> argmax


def _by_hand(model, tokenizer: Tokenizer, src: str, tgt: str, shift: bool) -> np.ndarray:
    """(target words, source words) weights read directly from model.decode's attention with explicit loops."""
    src_ids, tgt_ids = tokenizer.encode_src([src])[0], tokenizer.encode_tgt([tgt])[0]
    batch = collate([src_ids], [tgt_ids], [0])
    with torch.no_grad():
        _, attn = model.decode(batch.tgt_in, model.encode(batch.src, batch.src_lengths), need_attention=True)
    attn = attn[0].double().numpy()  # (T+1, S+1)
    src_word = [n for n, ids in enumerate(tokenizer.encode_src(src.split())) for _ in ids]
    tgt_word = [n for n, ids in enumerate(tokenizer.encode_tgt(tgt.split())) for _ in ids]
    weights = np.zeros((len(tgt.split()), len(src.split())))
    counts = np.zeros(len(tgt.split()))
    for t in range(len(tgt_ids)):
        row = attn[t + 1 if shift else t, : len(src_ids)]  # the source EOS column is left out
        row = row / row.sum()
        counts[tgt_word[t]] += 1
        for s in range(len(src_ids)):
            weights[tgt_word[t], src_word[s]] += row[s]
    return weights / counts[:, None]


@pytest.mark.parametrize("kind", MODELS)
def test_forced_alignment_equals_attention_read_by_hand(kind: str, tokenizer: Tokenizer, gold_pairs) -> None:
    model = MODELS[kind](tokenizer)
    src, tgt = gold_pairs[0][:12], gold_pairs[1][:12]
    aligner = ForcedAligner(model, tokenizer, batch_tokens=300)  # several batches, padded
    for method in (Method.attention, Method.shift):
        got = aligner.align(src, tgt, method)
        for s, t, a in zip(src, tgt, got):
            by_hand = _by_hand(model, tokenizer, s, t, shift=method is Method.shift)
            np.testing.assert_allclose(a.matrix, by_hand, atol=1e-5)
            assert a.links == {(int(row.argmax()), j) for j, row in enumerate(by_hand)}
            # the check tells the row choices apart: reading the other method's rows (off by one) would fail it
            other = _by_hand(model, tokenizer, s, t, shift=method is not Method.shift)
            assert not np.allclose(a.matrix, other, atol=1e-5)


def test_batched_attention_equals_one_pair_at_a_time(tokenizer: Tokenizer, gold_pairs) -> None:
    model = _transformer(tokenizer)
    src = [tokenizer.encode_src([s])[0] for s in gold_pairs[0]]
    tgt = [tokenizer.encode_tgt([t])[0] for t in gold_pairs[1]]
    batched = teacher_forced_attention(model, src, tgt, batch_tokens=1000)
    for s, t, a in zip(src, tgt, batched):
        alone = teacher_forced_attention(model, [s], [t])[0]
        assert a.shape == (len(t) + 1, len(s) + 1)
        np.testing.assert_allclose(a, alone, atol=1e-5)


def test_links_stay_in_range_for_non_latin_and_odd_text(tokenizer: Tokenizer) -> None:
    aligner = ForcedAligner(_transformer(tokenizer), tokenizer)
    for method in Method:
        for s, t, a in zip(ODD_SRC, ODD_TGT, aligner.align(ODD_SRC, ODD_TGT, method)):
            n_src, n_tgt = len(s.split()), len(t.split())
            assert a.matrix.shape == (n_tgt, n_src)
            assert all(0 <= i < n_src and 0 <= j < n_tgt for i, j in a.links)
            assert len(a.links) == n_tgt  # argmax: one link per target word (every word here has pieces)
    # a zero-piece source word gets no link; a zero-piece target word no row
    a = aligner.align(["a \u200b b"], ["\u200b x y"])[0]
    assert 1 not in {i for i, _ in a.links} and 0 not in {j for _, j in a.links} and len(a.links) == 2


def test_empty_pairs_and_lowercasing(tokenizer: Tokenizer) -> None:
    aligner = ForcedAligner(_transformer(tokenizer), tokenizer)
    got = aligner.align(["", "Ein Hund", "   "], ["A dog", "", "x"])
    assert [a.links for a in got] == [set(), set(), set()]
    assert got[0].matrix.shape == (2, 0) and got[1].matrix.shape == (0, 2)
    lower = ForcedAligner(aligner.model, tokenizer, lowercase=True).align(["EIN HUND"], ["A DOG"])[0]
    assert lower.links == aligner.align(["ein hund"], ["a dog"])[0].links


def test_pairs_over_the_position_limit_get_no_links_and_a_warning(tokenizer: Tokenizer, caplog, monkeypatch) -> None:
    # Listen on the module's logger itself: an earlier test (Hydra's logging set-up) may have stopped it from
    # propagating to the root logger that caplog watches by default.
    logger = logging.getLogger("nmt.analysis.forced")
    monkeypatch.setattr(logger, "disabled", False)
    caplog.set_level(logging.WARNING, logger=logger.name)
    logger.addHandler(caplog.handler)
    try:
        aligner = ForcedAligner(_transformer(tokenizer), tokenizer, max_len=5)
        got = aligner.align(["Ein Hund", "ein sehr sehr langer Satz mit vielen Wörtern"], ["A dog", "x"], first_line=7)
    finally:
        logger.removeHandler(caplog.handler)
    assert got[0].links and not got[1].links
    assert "line 8:" in caplog.text


def test_word_matrix_pads_trailing_words_without_pieces(tokenizer: Tokenizer) -> None:
    src, tgt = segment(tokenizer.encode_src, ["Hund \u200b"])[0], segment(tokenizer.encode_tgt, ["dog"])[0]
    attention = np.full((len(tgt.ids) + 1, len(src.ids) + 1), 1.0 / (len(src.ids) + 1))
    m = word_matrix(attention, "attention", src, tgt)
    assert m.shape == (1, 2) and m[0, 1] == 0 and m[0, 0] == pytest.approx(1.0)


def test_bidirectional_symmetrises_forward_and_transposed_reverse_links(tokenizer: Tokenizer, gold_pairs) -> None:
    fwd = ForcedAligner(_transformer(tokenizer), tokenizer)
    torch.manual_seed(1)
    rev = ForcedAligner(_rnn(tokenizer), tokenizer)  # any target -> source model; the vocabulary is joint
    src, tgt = gold_pairs[0][:6], gold_pairs[1][:6]
    f = fwd.align(src, tgt, "shift")
    r = rev.align(tgt, src, "shift")
    for method in ("union", "intersection", "grow-diag-final-and"):
        got = align_bidirectional(fwd, rev, src, tgt, base="shift", symmetrization=method)
        for a, fa, ra in zip(got, f, r):
            transposed = {(i, j) for j, i in ra.links}
            assert a.links == symmetrize(fa.links, transposed, method)
            assert a.matrix.shape == fa.matrix.shape
    union = align_bidirectional(fwd, rev, src, tgt, symmetrization="union")
    assert any(len(a.links) > len(fa.links) for a, fa in zip(union, f))  # the reverse direction adds links
