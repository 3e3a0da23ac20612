"""Pharaoh links, AER, and the attention -> word-alignment pipeline on hand-sized matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nmt.analysis.alignment import (
    GoldAlignment,
    aer,
    aggregate_to_words,
    attention_to_links,
    format_pharaoh,
    parse_pharaoh,
    read_pharaoh,
    strip_eos,
    word_ids,
)
from nmt.errors import DataError


def test_gold_file_reads_with_its_documented_counts(data_root):
    gold = read_pharaoh(data_root / "align-de-en" / "deen.talp.gz", base=1)
    assert len(gold) == 508
    assert sum(len(g.sure) for g in gold) == 9613
    assert sum(len(g.possible - g.sure) for g in gold) == 921
    assert all(g.sure <= g.possible for g in gold)
    # The first line, 1-based "9-8 8-8 7-8 6-6 1-1 2-2 4-5 5-5 3-3 11-9 10-7 2-4", is stored 0-based.
    assert (8, 7) in gold[0].sure and (0, 0) in gold[0].sure and (1, 3) in gold[0].sure and len(gold[0].sure) == 12


def test_aer_of_gold_against_itself_is_zero(data_root):
    gold = read_pharaoh(data_root / "align-de-en" / "deen.talp.gz", base=1)
    perfect = aer([set(g.sure) for g in gold], gold)
    assert perfect.aer == 0.0 and perfect.precision == 1.0 and perfect.recall == 1.0


def test_aer_matches_the_formula_on_a_hand_made_case():
    gold = [parse_pharaoh("1-1 2-2 3p3 3p4", base=1), parse_pharaoh("1-2", base=1)]
    assert gold[0] == GoldAlignment(sure={(0, 0), (1, 1)}, possible={(0, 0), (1, 1), (2, 2), (2, 3)})
    hyps = [{(0, 0), (2, 2), (3, 3)}, {(0, 0)}]  # A: 4 links; A∩S = {(0,0)}; A∩P = {(0,0), (2,2)}
    score = aer(hyps, gold)
    # |A| = 4, |S| = 3, |A∩S| = 1, |A∩P| = 2: AER = 1 - (1 + 2) / (4 + 3)
    assert score.aer == pytest.approx(1 - 3 / 7)
    assert score.precision == pytest.approx(2 / 4) and score.recall == pytest.approx(1 / 3)


@pytest.mark.parametrize(("line", "message"), [("1-2 3x4", "malformed"), ("0-1", "below the index base 1")])
def test_bad_gold_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "gold.talp"
    path.write_text("1-1 2p2\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"gold.talp, line 2: .*{message}"):
        read_pharaoh(path, base=1)


def test_format_pharaoh_sorts_by_target_word():
    assert format_pharaoh({(2, 1), (0, 0), (1, 1)}) == "0-0 1-1 2-1"
    assert parse_pharaoh(format_pharaoh({(2, 1), (0, 0)})).sure == {(2, 1), (0, 0)}


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["▁Ein", "▁Mann", "s", "▁."], [0, 1, 1, 2]),
        (["▁", "(", "ab", "▁c"], [0, 0, 0, 1]),  # a lone marker starts the next word
        (["ab", "▁c", "d"], [0, 1, 1]),  # no marker before the first piece
        (["▁a", "▁"], [0, 0]),  # a trailing lone marker joins the last word
    ],
)
def test_word_ids(pieces, expected):
    assert word_ids(pieces) == expected


def test_word_ids_clip_to_the_whitespace_word_count():
    assert word_ids(["▁a", "▁b", "▁c"], n_words=2) == [0, 1, 1]


def test_aggregation_sums_source_pieces_and_averages_target_pieces():
    m = np.array([[0.5, 0.25, 0.25], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])  # 3 target pieces x 3 source pieces
    words = aggregate_to_words(m, tgt_words=[0, 0, 1], src_words=[0, 1, 1])
    np.testing.assert_allclose(words, [[0.25, 0.75], [1.0, 0.0]])
    np.testing.assert_allclose(words.sum(1), 1.0)


def test_eos_column_is_dropped_and_rows_renormalised():
    att = torch.tensor([[0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.0, 0.0, 1.0]])  # (2 pieces + EOS, 2 pieces + EOS)
    np.testing.assert_allclose(strip_eos(att), [[0.25, 0.75], [0.5, 0.5]])
    all_eos = torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(strip_eos(all_eos), [[0.0, 0.0]])


def test_links_from_attention_over_pieces():
    src = ["▁Ein", "▁Hund", "e", "▁läuft"]  # 3 words
    tgt = ["▁A", "▁dog", "▁run", "s"]  # 3 words
    att = torch.tensor(
        [
            # Ein  Hund  e     läuft EOS
            [0.40, 0.05, 0.05, 0.00, 0.50],  # ▁A -> Ein (EOS has the most, but is dropped)
            [0.05, 0.30, 0.30, 0.05, 0.30],  # ▁dog -> Hund+e (0.6 summed)
            [0.10, 0.20, 0.20, 0.50, 0.00],  # ▁run: Hund word 0.4, läuft 0.5
            [0.00, 0.30, 0.30, 0.30, 0.10],  # s: Hund word 0.67, läuft 0.33; averaged with ▁run
            [0.20, 0.20, 0.20, 0.20, 0.20],  # EOS row: dropped
        ]
    )
    # "runs" = mean(▁run, s) over words: Hund ~0.53, läuft ~0.42 -> Hund.
    assert attention_to_links(att, src, tgt) == {(0, 0), (1, 1), (1, 2)}
    assert attention_to_links(att, src, tgt, threshold=0.4) == {(0, 0), (1, 1), (1, 2), (2, 2)}
    with pytest.raises(ValueError, match="expected"):
        attention_to_links(att[:, :3], src, tgt)
    assert attention_to_links(torch.ones(1, 5) / 5, src, []) == set()
