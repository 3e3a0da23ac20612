"""Symmetrising two directional word alignments into one (Och & Ney 2003; Koehn, Och & Marcu 2003).

A directional aligner (IBM models, fast_align, eflomal, or the attention of one translation direction) links every
word of one side to at most a few words of the other, so each direction alone misses the many-to-one links of the
other. The heuristics combine a *forward* (source -> target) and a *reverse* (target -> source) alignment; both are
given here source-first, (source word, target word), 0-based, the reverse one already transposed.

- ``intersection``: links both directions agree on (high precision, low recall).
- ``union``: links either direction proposes (high recall, low precision).
- ``grow-diag``: start from the intersection and repeatedly add links of the union that are next to an existing
  link (horizontally, vertically or diagonally) and whose source or target word is still unaligned.
- ``grow-diag-final``: grow-diag, then add the remaining links of each direction (forward first) whose source
  *or* target word is still unaligned.
- ``grow-diag-final-and``: the same, but a final link is added only when its source *and* target words are both
  unaligned; the usual default of phrase-based systems and of statistical aligners' pipelines (Moses, fast_align's
  ``atools``, eflomal's ``align_symmetrize``).

The visiting order follows the published pseudo-code (Koehn's description in the Moses manual,
"Word Alignment: grow-diag-final"): passes over the alignment grid in order of target word, then source word,
with the neighbours tried in the order left, up, right, down, then the four diagonals; a pass sees the links added
earlier in the same pass, and passes repeat until nothing changes. The order matters only for the "or"
conditions, where an added link can make a later candidate's words aligned.
"""

from __future__ import annotations

import heapq

from nmt.analysis.alignment import Link

METHODS = ("intersection", "union", "grow-diag", "grow-diag-final", "grow-diag-final-and")

# (target, source) steps in the order of the published pseudo-code: the 4 direct neighbours, then the diagonals.
_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def symmetrize(forward: set[Link], reverse: set[Link], method: str = "grow-diag-final-and") -> set[Link]:
    """Combine two directional alignments of one sentence pair.

    Args:
        forward: (source word, target word) links of the source -> target direction.
        reverse: (source word, target word) links of the target -> source direction (transposed already).
        method: one of :data:`METHODS`.
    Returns:
        A new set of (source word, target word) links.
    Raises:
        ValueError: an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown symmetrization {method!r}; choose one of {', '.join(METHODS)}")
    forward, reverse = set(forward), set(reverse)
    if method == "intersection":
        return forward & reverse
    if method == "union":
        return forward | reverse
    state = _Grid(forward & reverse)
    state.grow_diag(forward | reverse)
    if method != "grow-diag":
        both = method == "grow-diag-final-and"
        state.final(forward, both=both)
        state.final(reverse, both=both)
    return state.links


class _Grid:
    """The growing alignment with the sets of aligned source and target words (what the conditions ask)."""

    def __init__(self, links: set[Link]) -> None:
        self.links: set[Link] = set(links)
        self.src_aligned = {i for i, _ in links}
        self.tgt_aligned = {j for _, j in links}

    def add(self, link: Link) -> None:
        self.links.add(link)
        self.src_aligned.add(link[0])
        self.tgt_aligned.add(link[1])

    def grow_diag(self, union: set[Link]) -> None:
        """Add union links next to existing ones while one of their words is unaligned, until nothing changes."""
        changed = True
        while changed:
            changed = False
            # One pass over the grid in (target, source) order. Only aligned cells do anything, so visit those in
            # a heap; a link added during the pass at a later cell is pushed and visited in this same pass, as in
            # the nested loops of the pseudo-code (an earlier cell waits for the next pass).
            heap = [(j, i) for i, j in self.links]
            heapq.heapify(heap)
            while heap:
                j, i = heapq.heappop(heap)
                for dj, di in _NEIGHBOURS:
                    new = (i + di, j + dj)
                    if new in self.links or new not in union:
                        continue
                    if new[0] not in self.src_aligned or new[1] not in self.tgt_aligned:
                        self.add(new)
                        changed = True
                        if (new[1], new[0]) > (j, i):
                            heapq.heappush(heap, (new[1], new[0]))

    def final(self, direction: set[Link], *, both: bool) -> None:
        """Add the direction's links whose source or (``both``: and) target word is still unaligned."""
        for i, j in sorted(direction, key=lambda link: (link[1], link[0])):
            if (i, j) in self.links:
                continue
            src_free, tgt_free = i not in self.src_aligned, j not in self.tgt_aligned
            if (src_free and tgt_free) if both else (src_free or tgt_free):
                self.add((i, j))
