"""Symmetrisation heuristics on hand-worked grids (Koehn et al. 2003) and their ordering on real-sized cases."""

from __future__ import annotations

import random

import pytest

from nmt.analysis.symmetrize import METHODS, symmetrize

# Worked by hand (links are (source word, target word)):
#   forward = {0-0, 1-1, 2-3}, reverse = {0-0, 1-1, 1-0, 2-1}
#   intersection {0-0, 1-1}; union adds 2-3, 1-0, 2-1.
#   grow-diag: 2-1 neighbours 1-1 and source word 2 is unaligned -> added; 1-0 neighbours 0-0 but both of its words
#   are aligned -> refused; 2-3 touches no link. final (or): 2-3 has an unaligned target word -> added.
#   final-and: 2-3's source word 2 is aligned (by 2-1) -> refused.
FWD = {(0, 0), (1, 1), (2, 3)}
REV = {(0, 0), (1, 1), (1, 0), (2, 1)}
EXPECTED = {
    "intersection": {(0, 0), (1, 1)},
    "union": {(0, 0), (1, 1), (2, 3), (1, 0), (2, 1)},
    "grow-diag": {(0, 0), (1, 1), (2, 1)},
    "grow-diag-final": {(0, 0), (1, 1), (2, 1), (2, 3)},
    "grow-diag-final-and": {(0, 0), (1, 1), (2, 1)},
}


@pytest.mark.parametrize("method", METHODS)
def test_hand_worked_grid(method: str) -> None:
    assert symmetrize(FWD, REV, method) == EXPECTED[method]


def test_default_is_grow_diag_final_and() -> None:
    assert symmetrize(FWD, REV) == EXPECTED["grow-diag-final-and"]


def test_final_step_takes_the_forward_direction_first() -> None:
    # Nothing to grow from the diagonal 0-0 1-1 2-2. Final-and: forward's 5-4 has both words free -> added; then
    # reverse's 3-4 (target 4 now aligned) and 4-0 (target 0 aligned) are refused. With "or" all three go in.
    fwd = {(0, 0), (1, 1), (2, 2), (5, 4)}
    rev = {(0, 0), (1, 1), (2, 2), (3, 4), (4, 0)}
    diag = {(0, 0), (1, 1), (2, 2)}
    assert symmetrize(fwd, rev, "grow-diag") == diag
    assert symmetrize(fwd, rev, "grow-diag-final-and") == diag | {(5, 4)}
    assert symmetrize(rev, fwd, "grow-diag-final-and") == diag | {(3, 4)}  # order matters, as published
    assert symmetrize(fwd, rev, "grow-diag-final") == fwd | rev


def test_growing_continues_along_a_chain_of_neighbours() -> None:
    # The union is a diagonal staircase from one agreed link: every step touches the previous one and brings an
    # unaligned source word, so grow-diag reaches its end through several additions in one pass.
    fwd = {(0, 0), (1, 1), (2, 2), (3, 3)}
    rev = {(0, 0)}
    assert symmetrize(fwd, rev, "grow-diag") == fwd
    # Isolated from the agreed link, the same staircase is not grown at all.
    assert symmetrize(fwd - {(1, 1)}, rev, "grow-diag") == {(0, 0)}


def test_chain_of_inclusions_on_random_alignments() -> None:
    rng = random.Random(0)
    for _ in range(300):
        n_src, n_tgt = rng.randint(1, 12), rng.randint(1, 12)
        cells = [(i, j) for i in range(n_src) for j in range(n_tgt)]
        fwd = set(rng.sample(cells, rng.randint(0, len(cells) // 2)))
        rev = set(rng.sample(cells, rng.randint(0, len(cells) // 2)))
        inter, union = symmetrize(fwd, rev, "intersection"), symmetrize(fwd, rev, "union")
        gd, gdf, gdfa = (symmetrize(fwd, rev, m) for m in ("grow-diag", "grow-diag-final", "grow-diag-final-and"))
        # (grow-diag-final-and is not always inside grow-diag-final: an "or" addition can occupy a word first)
        assert inter <= gd <= gdfa <= union and gd <= gdf <= union
        assert inter == fwd & rev and union == fwd | rev
        # grow-diag-final leaves no word unaligned that either direction aligned
        assert {i for i, _ in gdf} == {i for i, _ in union} and {j for _, j in gdf} == {j for _, j in union}


def test_inputs_are_not_modified_and_unknown_methods_fail() -> None:
    fwd, rev = set(FWD), set(REV)
    symmetrize(fwd, rev, "grow-diag-final")
    assert fwd == FWD and rev == REV
    with pytest.raises(ValueError, match="unknown symmetrization 'gdfa'"):
        symmetrize(fwd, rev, "gdfa")


def test_empty_directions() -> None:
    assert symmetrize(set(), set()) == set()
    assert symmetrize({(0, 0)}, set(), "grow-diag-final-and") == {(0, 0)}  # final adds the lone forward link
    assert symmetrize({(0, 0)}, set(), "grow-diag") == set()
