"""Decoding options (min_len, no_repeat_ngram, sampling_topp) checked against a scripted model and brute force."""

from __future__ import annotations

import math
import random

import pytest
import torch
from scripted_model import A, B, C, D, ScriptedModel, exhaustive, has_repeated_ngram, src_batch
from test_search_scripted import random_script, teacher_forced

from nmt.config import ConfigError, SearchConfig
from nmt.search import search
from nmt.search_rules import block_repeated_ngrams, nucleus
from nmt.specials import BOS_ID, EOS_ID, PAD_ID

EOS = EOS_ID
NEG = -math.inf


def run(model, rows, generator=None, **kw):
    src, lengths = src_batch(rows)
    return search(model, src, lengths, SearchConfig(**{"max_len_a": 0.0, **kw}), generator=generator)


def tokens(hyps):
    return [[h.tokens for h in sent] for sent in hyps]


# ------------------------------------------------------------------------------------------------ min_len
# EOS is the likeliest piece everywhere: without min_len every search stops at once.
EAGER = {EOS: 0.5, A: 0.3, B: 0.2}


def skewed_script(rng: random.Random, depth: int, boost) -> dict:
    """Random p(. | prefix) over EOS and four words up to ``depth`` pieces (no ties), each weight multiplied by
    ``boost(prefix, token)``."""
    script, frontier = {}, [()]
    for _ in range(depth + 1):
        for prefix in frontier:
            w = {t: (rng.random() + 0.05) * boost(prefix, t) for t in (EOS, A, B, C, D)}
            script[prefix] = {t: x / sum(w.values()) for t, x in w.items()}
        frontier = [(*prefix, t) for prefix in frontier for t in (A, B, C, D)]
    return script


def eager(prefix, tok):
    return 8.0 if tok == EOS else 1.0


def loopy(prefix, tok):
    return 6.0 if prefix and tok == prefix[-1] else 1.0


def brute_greedy(model, first, cap, *, min_len=0, no_repeat=0):
    """Greedy by hand: the argmax over the pieces the rules allow, piece by piece."""
    out = []
    while True:
        lp = model._log_probs(first, tuple(out))
        allowed = {t: x for t, x in enumerate(lp) if t not in (PAD_ID, BOS_ID)}
        if len(out) == cap:
            return out
        if len(out) < min(min_len, cap):
            allowed.pop(EOS)
        if no_repeat:
            allowed = {t: x for t, x in allowed.items() if t == EOS or not has_repeated_ngram([*out, t], no_repeat)}
        tok = max(allowed, key=allowed.get)
        if tok == EOS:
            return out
        out.append(tok)


@pytest.mark.parametrize("min_len", [0, 1, 3, 6])
def test_min_len_forbids_eos_before_it_and_matches_exhaustive_search(min_len):
    model = ScriptedModel({A: skewed_script(random.Random(min_len), 4, eager)})
    cap = 4  # min_len 6 is above the cap: EOS comes at the cap, 4 pieces
    (greedy,) = run(model, [[A]], beam_size=1, min_len=min_len, max_len_b=cap)
    assert greedy[0].tokens == brute_greedy(model, A, cap, min_len=min_len)
    assert len(greedy[0].tokens) == min(min_len, cap)  # EOS as soon as it is allowed
    # A beam wider than the tree (341 outputs) finds the true best five among the allowed outputs.
    (beam,) = run(model, [[A]], beam_size=350, nbest=5, lenpen=0.6, min_len=min_len, max_len_b=cap)
    truth = exhaustive(model, A, cap=cap, lenpen=0.6, min_len=min_len)[:5]
    assert [h.tokens for h in beam] == [t for t, _, _ in truth]
    assert all(len(h.tokens) >= min(min_len, cap) for h in beam)
    for h in [*greedy, *beam]:  # log_prob stays the model's own (nothing renormalised)
        assert h.log_prob == pytest.approx(teacher_forced(model, [A], h.tokens)[0], abs=1e-5)


def test_min_len_is_capped_per_sentence_and_batch_invariant():
    model = ScriptedModel({}, default=EAGER)
    rows = [[A], [A, B, B, B], [B, C]]  # caps 1, 4, 2 with max_len_a 1, b 0
    kw = {"min_len": 3, "max_len_a": 1.0, "max_len_b": 0}
    for k in (1, 3):
        batch = run(model, rows, beam_size=k, **kw)
        assert [len(s[0].tokens) for s in batch] == [1, 3, 2]
        assert tokens(batch) == [tokens(run(model, [r], beam_size=k, **kw))[0] for r in rows]


def test_min_len_applies_to_sampling():
    model = ScriptedModel({}, default=EAGER)
    gen = torch.Generator().manual_seed(0)
    samples = run(model, [[A]] * 32, generator=gen, beam_size=1, sampling=True, min_len=2, max_len_b=6)
    lengths = [len(s[0].tokens) for s in samples]
    assert min(lengths) == 2 and max(lengths) > 2


# ------------------------------------------------------------------------------------------------ no repeats
def brute_banned(history: list[int], n: int) -> set[int]:
    """The pieces whose addition would make the last n pieces an n-gram that ``history`` already holds."""
    grams = {tuple(history[i : i + n]) for i in range(len(history) - n + 1)}
    return {t for t in range(8) if len(history) >= n - 1 and tuple([*history, t][-n:]) in grams}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_blocked_pieces_equal_brute_force(n):
    rng = random.Random(n)
    for t in range(0, 14):
        history = torch.tensor([[rng.choice([A, B, C]) for _ in range(t)] for _ in range(16)], dtype=torch.long)
        history = history.view(16, t)
        lp = torch.zeros(16, 8)
        block_repeated_ngrams(lp, history, n)
        for row, h in zip(lp, history.tolist()):
            blocked = {i for i, x in enumerate(row.tolist()) if x == NEG} - {PAD_ID}
            assert blocked == brute_banned(h, n) - {PAD_ID}, (h, n)


# Repeating the last piece is likely everywhere (``loopy``): without the ban, outputs repeat n-grams.
LOOPY = {A: 0.45, B: 0.35, C: 0.1, EOS: 0.1}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_matches_brute_force(n):
    model = ScriptedModel({A: skewed_script(random.Random(n), 4, loopy)})
    cap = 4
    (greedy,) = run(model, [[A]], beam_size=1, no_repeat_ngram=n, max_len_b=cap)
    assert greedy[0].tokens == brute_greedy(model, A, cap, no_repeat=n)
    truth = exhaustive(model, A, cap=cap, lenpen=1.0, no_repeat=n)
    # A beam wider than the tree never prunes: it finds the true best five among the allowed outputs.
    (beam,) = run(model, [[A]], beam_size=len(truth) + 1, nbest=5, lenpen=1.0, no_repeat_ngram=n, max_len_b=cap)
    assert [h.tokens for h in beam] == [t for t, _, _ in truth[:5]]
    assert not any(has_repeated_ngram(h.tokens, n) for h in [*greedy, *beam])
    (free,) = run(model, [[A]], beam_size=len(truth) + 1, nbest=5, lenpen=1.0, max_len_b=cap)
    assert any(has_repeated_ngram(h.tokens, n) for h in free)  # the ban changed something


def test_no_repeat_ngram_in_beams_and_batches():
    rng = random.Random(3)
    model = ScriptedModel({f: random_script(rng, depth=6) for f in (A, B)}, default=LOOPY)
    rows = [[A, B, B, B, B], [B], [C, C, C]]
    kw = {"beam_size": 4, "nbest": 4, "no_repeat_ngram": 2, "max_len_a": 2.0, "max_len_b": 1}
    batch = run(model, rows, **kw)
    assert tokens(batch) == [tokens(run(model, [r], **kw))[0] for r in rows]
    assert all(not has_repeated_ngram(h.tokens, 2) for s in batch for h in s)
    assert max(len(h.tokens) for s in batch for h in s) >= 5


# ------------------------------------------------------------------------------------------------ top-p
def test_nucleus_keeps_the_smallest_prefix_reaching_p():
    logits = torch.tensor([[0.125, 0.5, 0.125, 0.25], [0.25, 0.25, 0.25, 0.25]]).log()

    def keep(p: float) -> list[list[bool]]:
        return nucleus(logits, p).tolist()

    assert keep(0.75)[0] == [False, True, False, True]  # .5 + .25 reach .75: the .125s are out
    assert keep(0.76)[0].count(True) == 3  # one .125 is needed to pass .76
    assert keep(0.5)[0] == [False, True, False, False] and keep(0.5)[1].count(True) == 2
    assert [row.count(True) for row in keep(1e-6)] == [1, 1] and keep(1e-6)[0][1]  # the top piece always
    assert keep(1.0) == [[True] * 4] * 2


def nucleus_of(dist: dict[int, float], p: float) -> set[int]:
    """The top-p nucleus of a scripted distribution, by hand."""
    out, mass = set(), 0.0
    for tok in sorted(dist, key=dist.get, reverse=True):
        if mass >= p:
            break
        out.add(tok)
        mass += dist[tok]
    return out


@pytest.mark.parametrize(("topk", "topp"), [(0, 0.6), (0, 0.9), (2, 0.7)])
def test_sampled_pieces_lie_in_the_nucleus(topk, topp):
    rng = random.Random(1)
    model = ScriptedModel({A: random_script(rng)})
    script = model.scripts[A]
    gen = torch.Generator().manual_seed(2)
    kw = {"beam_size": 1, "sampling": True, "sampling_topk": topk, "sampling_topp": topp, "max_len_b": 4}
    samples = [s[0].tokens for s in run(model, [[A]] * 64, generator=gen, **kw)]
    assert len({tuple(s) for s in samples}) > 3
    for sample in samples:
        for i, tok in enumerate(sample if len(sample) == 4 else [*sample, EOS]):  # EOS is forced at the cap
            dist = script[tuple(sample[:i])]
            if topk:
                kept = sorted(dist, key=dist.get, reverse=True)[:topk]
                total = sum(dist[t] for t in kept)
                dist = {t: dist[t] / total for t in kept}
            assert tok in nucleus_of(dist, topp), (sample, i)


def test_topp_one_is_plain_sampling_and_a_tiny_topp_is_greedy():
    rng = random.Random(2)
    model = ScriptedModel({A: random_script(rng)})

    def sample(**kw):
        gen = torch.Generator().manual_seed(5)
        return tokens(run(model, [[A]] * 16, generator=gen, beam_size=1, sampling=True, max_len_b=4, **kw))

    assert sample(sampling_topp=1.0) == sample()
    (greedy,) = tokens(run(model, [[A]], beam_size=1, max_len_b=4))
    assert sample(sampling_topp=1e-6) == [greedy] * 16
    assert sample(sampling_topp=0.8) != sample()


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"sampling": True, "beam_size": 1, "sampling_topp": 0.0}, "sampling_topp must be in"),
        ({"sampling": True, "beam_size": 1, "sampling_topp": 1.5}, "sampling_topp must be in"),
        ({"sampling": True, "beam_size": 1, "sampling_topp": float("nan")}, "sampling_topp must be in"),
        ({"sampling": True, "beam_size": 1, "sampling_topk": -1}, "sampling_topk must be >= 0"),
        ({"min_len": -1}, "min_len must be >= 0"),
        ({"no_repeat_ngram": -2}, "no_repeat_ngram must be >= 0"),
        ({"lenpen": float("inf")}, "lenpen must be a finite number"),
        ({"sampling_temperature": 0.0}, "sampling_temperature must be positive"),
    ],
)
def test_bad_values_raise_config_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**kw)
