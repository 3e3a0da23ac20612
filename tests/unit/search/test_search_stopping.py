"""Beam search stopping rules (search.early_stop) against a scripted model and an exhaustive walk of its tree."""

from __future__ import annotations

import math
import random

import pytest
from scripted_model import A, B, C, D, ScriptedModel, exhaustive, src_batch
from test_search_scripted import random_script

from nmt.config import ConfigError, EarlyStop, SearchConfig
from nmt.search import search
from nmt.specials import EOS_ID

EOS = EOS_ID


def run(model, rows, **kw):
    src, lengths = src_batch(rows)
    return search(model, src, lengths, SearchConfig(**{"max_len_a": 0.0, **kw}))


def best(hyps):
    return [(h.tokens, round(h.score, 5)) for h in hyps]


# Issue 13: EOS first (.6), or A (.4) then A with .99 for 8 more pieces and EOS. The 9-piece output scores
# (log .4 + 8 log .99) / ((5 + 10) / 6) = -0.399 with lenpen 1, better than the empty one's log .6 = -0.511; its
# side branches (A...A C) go on with C/D and only stop at the cap, far below.
LONG_WINS = {(): {EOS: 0.6, A: 0.4}, **{(A,) * i: {A: 0.99, C: 0.01} for i in range(1, 9)}, (A,) * 9: {EOS: 1.0}}
BRANCH = {C: 0.5, D: 0.5 - 1e-12, EOS: 1e-12}
NINE = [A] * 9


def long_wins_model() -> ScriptedModel:
    return ScriptedModel({A: LONG_WINS}, default=BRANCH)


@pytest.mark.parametrize("rule", list(EarlyStop))
def test_issue_13_case_every_rule(rule):
    model = long_wins_model()
    kw = {"beam_size": 2, "lenpen": 1.0, "max_len_b": 12, "early_stop": rule}
    (top1,) = run(model, [[A]], nbest=1, **kw)
    (top2,) = run(model, [[A]], nbest=2, **kw)
    (truth, *_) = exhaustive(model, A, cap=12, lenpen=1.0)
    assert truth[0] == NINE and truth[2] == pytest.approx((math.log(0.4) + 8 * math.log(0.99)) / 2.5)
    assert [h.tokens for h in top2] == [NINE, []]
    assert top2[0].score == pytest.approx(truth[2], abs=1e-6)
    if rule == EarlyStop.heuristic:
        # The heuristic's known failure: the live beam "A" is judged as if it ended at the next step, so the
        # search stops at step 0 with nbest 1, and its top output depends on nbest.
        assert [h.tokens for h in top1] == [[]]
    else:
        assert best(top1) == best(top2[:1])


def test_bound_stops_as_soon_as_no_live_beam_can_win():
    # lenpen 0: after step 0 the live beam A (log .4) can only fall below the empty output (log .6): stop there.
    model = long_wins_model()
    assert [h.tokens for h in run(model, [[A]], beam_size=2, lenpen=0.0, max_len_b=12)[0]] == [[]]
    assert model.rows_per_step == [2]
    # lenpen 1 and EOS at .9: even ended at the cap (13 with EOS, penalty 3), log .1 / 3 = -0.77 < log .9.
    model = ScriptedModel({A: {(): {EOS: 0.9, A: 0.1}}}, default={A: 0.9, EOS: 0.1})
    assert [h.tokens for h in run(model, [[A]], beam_size=2, lenpen=1.0, max_len_b=12)[0]] == [[]]
    assert model.rows_per_step == [2]
    # With the cap at 200 the bound (log .1 / 34.3) is above log .9: the search goes on, and finds nothing better.
    model.rows_per_step.clear()
    assert [h.tokens for h in run(model, [[A]], beam_size=2, lenpen=1.0, max_len_b=200)[0]] == [[]]
    assert len(model.rows_per_step) > 1


def test_the_bound_is_tight_at_the_cap():
    # The chain A^9 is certain after its first piece: it ends exactly at the cap (9 pieces + EOS) with score
    # log .19 / lp(10) = -0.664, just above the empty output's log .5 = -0.693. A bound one piece short, log .19 /
    # lp(9) = -0.712, would stop at step 0. (Beam 4: the early [B] must not fill the beam.)
    script = {(): {EOS: 0.5, A: 0.19, B: 0.31}, **{(A,) * i: {A: 1.0} for i in range(1, 9)}, (A,) * 9: {EOS: 1.0}}
    model = ScriptedModel({A: script})
    (hyps,) = run(model, [[A]], beam_size=4, lenpen=1.0, max_len_b=9)
    assert hyps[0].tokens == NINE == exhaustive(model, A, cap=9, lenpen=1.0)[0][0]
    assert hyps[0].score == pytest.approx(math.log(0.19) / 2.5, abs=1e-6)


def test_negative_lenpen_bounds_with_the_next_step():
    # lenpen -1 favours short outputs: lp(L) = 6 / (5 + L) falls with L, so the largest penalty a live beam can
    # reach is the next step's, not the cap's. [A] scores (log .7 + log .9) / (6 / 7) = -0.539, above the empty
    # output's log .3 = -1.204; the cap's penalty 6 / 36 would give log .7 * 6 = -2.14 and stop at step 0.
    model = ScriptedModel({A: {(): {EOS: 0.3, A: 0.7}, (A,): {EOS: 0.9, B: 0.1}}})
    (hyps,) = run(model, [[A]], beam_size=2, lenpen=-1.0, max_len_b=30)
    assert hyps[0].tokens == [A] == exhaustive(model, A, cap=30, lenpen=-1.0)[0][0]


LENPENS = [-0.5, 0.0, 0.6, 1.0, 2.0]


def planted_script(rng: random.Random, cap: int) -> dict:
    """A random script over two words, up to ``cap`` pieces, with a planted trap for the heuristic: EOS first is
    likely (.5-.7), but one long chain after it is near-certain (.99 a piece), so with lenpen > 0 it can win."""
    script, frontier = {}, [()]
    for _ in range(cap + 1):
        for prefix in frontier:
            w = [rng.random() + 0.05 for _ in range(3)]
            script[prefix] = {t: x / sum(w) for t, x in zip((EOS, A, B), w)}
        frontier = [(*prefix, t) for prefix in frontier for t in (A, B)]
    path, other = [rng.choice((A, B)) for _ in range(rng.randint(cap - 2, cap))], {A: B, B: A}
    eos = rng.uniform(0.5, 0.7)
    script[()] = {EOS: eos, path[0]: (1 - eos) * 0.98, other[path[0]]: (1 - eos) * 0.02}
    for i in range(1, len(path)):
        script[tuple(path[:i])] = {path[i]: 0.99, other[path[i]]: 0.006, EOS: 0.004}
    script[tuple(path)] = {EOS: 0.99, A: 0.005, B: 0.005}
    return script


def test_a_beam_wider_than_the_tree_finds_the_exhaustive_nbest():
    # 127 outputs of at most 6 pieces: a beam of 130 never prunes, so only the stopping rule can lose an output.
    # ``bound`` must return the true 5 best for every length penalty; the heuristic misses the planted chain.
    heuristic_misses = 0
    for seed in range(8):
        model = ScriptedModel({A: planted_script(random.Random(seed), cap=6)})
        for lenpen in LENPENS:
            kw = {"beam_size": 130, "lenpen": lenpen, "max_len_b": 6}
            (hyps,) = run(model, [[A]], nbest=5, **kw)
            truth = exhaustive(model, A, cap=6, lenpen=lenpen)
            assert [h.tokens for h in hyps] == [t for t, _, _ in truth[:5]], (seed, lenpen)
            assert [h.score for h in hyps] == pytest.approx([s for _, _, s in truth[:5]], abs=1e-5)
            (fast, *_) = run(model, [[A]], early_stop="heuristic", **kw)[0]
            heuristic_misses += fast.tokens != truth[0][0]
            assert lenpen > 0 or fast.tokens == truth[0][0]  # the heuristic is exact for lenpen <= 0
    assert heuristic_misses > 8


@pytest.mark.parametrize("seed", range(4))
def test_bound_returns_what_the_full_beam_returns_and_top1_never_depends_on_nbest(seed):
    rng = random.Random(100 + seed)
    firsts = [A, B, C, D]
    scripts = {A: planted_script(rng, cap=6), B: random_script(rng, depth=6), C: planted_script(rng, cap=5)}
    model = ScriptedModel({**scripts, D: random_script(rng, depth=6)})
    rows = [[f] + [A] * rng.randrange(4) for f in firsts]
    for k in (2, 3):
        for lenpen in LENPENS:
            kw = {"beam_size": k, "lenpen": lenpen, "max_len_a": 1.0, "max_len_b": 3}
            top1 = run(model, rows, nbest=1, **kw)
            for n in range(1, k + 1):
                bound = run(model, rows, nbest=n, **kw)
                full = run(model, rows, nbest=n, early_stop="none", **kw)
                assert [best(s) for s in bound] == [best(s) for s in full]
                assert [best(s[:1]) for s in bound] == [best(s) for s in top1]
                alone = [run(model, [r], nbest=n, **kw)[0] for r in rows]
                assert [best(s) for s in bound] == [best(s) for s in alone]  # batch invariance


def test_rules_never_run_longer_than_no_early_stop():
    rng = random.Random(7)
    model = ScriptedModel({f: random_script(rng, depth=6) for f in (A, B)})
    steps = {}
    for rule in EarlyStop:
        model.rows_per_step.clear()
        run(model, [[A, C, C], [B, D]], beam_size=3, lenpen=1.0, max_len_a=1.0, max_len_b=3, early_stop=rule)
        steps[rule] = sum(model.rows_per_step)
    assert steps[EarlyStop.heuristic] <= steps[EarlyStop.bound] <= steps[EarlyStop.none]


def test_early_stop_is_validated():
    assert SearchConfig(early_stop="heuristic").early_stop is EarlyStop.heuristic
    with pytest.raises(ConfigError, match="early_stop must be one of bound, heuristic, none"):
        SearchConfig(early_stop="never")
