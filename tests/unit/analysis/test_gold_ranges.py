"""Gold links are checked against the words of their pairs (a wrong index base is named), and an AER of nothing is
no score (None), never 0."""

from __future__ import annotations

import pytest
from corpus_io import read_gz_lines

from nmt.analysis.alignment import GoldAlignment, aer, check_gold_ranges, parse_pharaoh, read_pharaoh
from nmt.errors import DataError


@pytest.fixture(scope="module")
def rwth(data_root):
    """The RWTH de-en gold set (1-based) and the word counts of its 508 pairs."""
    folder = data_root / "align-de-en"
    src, tgt = read_gz_lines(folder / "deen.de.gz"), read_gz_lines(folder / "deen.en.gz")
    return folder / "deen.talp.gz", [(len(s.split()), len(t.split())) for s, t in zip(src, tgt)]


def test_the_one_based_gold_set_fits_its_sentences(rwth):
    path, words = rwth
    check_gold_ranges(read_pharaoh(path, base=1), words, path=path, base=1)


def test_the_one_based_gold_set_read_as_zero_based_is_caught_and_the_right_base_named(rwth):
    path, words = rwth
    with pytest.raises(DataError) as caught:
        check_gold_ranges(read_pharaoh(path, base=0), words, path=path, base=0)
    message = str(caught.value)
    # Line 1 is "9-8 8-8 7-8 6-6 1-1 2-2 4-5 5-5 3-3 11-9 10-7 2-4" for 11 German and 9 English words.
    assert message.startswith(f"{path}, line 1: link 11-9 is out of range for a pair of 11 source and 9 target words")
    assert message.endswith("with --gold-base 1 every link fits")


def test_a_link_beyond_any_base_names_line_and_link_without_a_base_hint():
    gold = [parse_pharaoh("1-1 2-2", base=1), parse_pharaoh("1-1 99p99", base=1)]
    with pytest.raises(DataError) as caught:
        check_gold_ranges(gold, [(3, 3), (4, 5)], path="g.talp", base=1, flag="--gold-base")
    message = str(caught.value)
    assert message.startswith("g.talp, line 2: link 99p99 is out of range for a pair of 4 source and 5 target words")
    assert "every link fits" not in message


def test_a_zero_based_file_read_as_one_based_fails_at_its_first_zero_naming_the_base():
    # Read 1-based, a 0-based file's indices only shrink: its 0s are what give it away.
    with pytest.raises(DataError, match=r"line 3: alignment link '0-2' is below the index base 1 .*--gold-base 0"):
        parse_pharaoh("0-2 1-1", base=1, where="g.talp, line 3: ")


def test_the_line_count_is_checked_first():
    with pytest.raises(DataError, match=r"g\.talp has 1 lines but there are 2 sentence pairs"):
        check_gold_ranges([GoldAlignment(set(), set())], [(1, 1), (2, 2)], path="g.talp", base=0)


def test_an_aer_over_nothing_is_none_not_zero():
    score = aer([], [])
    assert (score.aer, score.precision, score.recall, score.sentences) == (None, None, None, 0)
    no_links = aer([set(), set()], [GoldAlignment(set(), set()), GoldAlignment(set(), set())])
    assert no_links.aer is None and no_links.sentences == 2
    only_hyp = aer([{(0, 0)}], [GoldAlignment(set(), set())])
    assert only_hyp.aer == 1.0 and only_hyp.precision == 0.0 and only_hyp.recall is None
