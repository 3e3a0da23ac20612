"""Search checked exactly against a scripted fake model with hand-set probabilities."""

from __future__ import annotations

import math
import random

import pytest
import torch
from scripted_model import A, B, C, D, ScriptedModel, src_batch

from nmt.config import SearchConfig
from nmt.search import beam_search, length_penalty, max_output_lengths, search
from nmt.specials import BOS_ID, EOS_ID

EOS = EOS_ID


def cfg(**kw) -> SearchConfig:
    return SearchConfig(**{"lenpen": 0.0, "max_len_a": 0.0, "max_len_b": 10, **kw})


def run(model, rows, need_attention=False, **kw):
    src, lengths = src_batch(rows)
    return search(model, src, lengths, cfg(**kw), need_attention=need_attention)


def outputs(hyps):
    return [[(h.tokens, round(h.log_prob, 6)) for h in sent] for sent in hyps]


# p(A)=.6 then at best p(EOS|A)=.4: greedy gets .24; B then EOS gets .4 * .9 = .36.
GREEDY_TRAP = {(): {A: 0.6, B: 0.4}, (A,): {EOS: 0.4, C: 0.3, D: 0.3}, (B,): {EOS: 0.9, C: 0.1}}


def test_greedy_is_fooled_where_beam_2_finds_the_better_hypothesis():
    model = ScriptedModel({A: GREEDY_TRAP})
    assert outputs(run(model, [[A]], beam_size=1)) == [[([A], round(math.log(0.24), 6))]]
    beam = run(model, [[A]], beam_size=2, nbest=2)
    assert outputs(beam) == [[([B], round(math.log(0.36), 6)), ([A], round(math.log(0.24), 6))]]


# Three hypotheses of lengths 1, 2, 2 (EOS counted): [] .29, [A] .4 * .65 = .26, [B] .31 * .6 = .186.
LENGTHS = {(): {A: 0.4, B: 0.31, EOS: 0.29}, (A,): {EOS: 0.65, C: 0.35}, (B,): {EOS: 0.6, D: 0.4}}


@pytest.mark.parametrize(("lenpen", "order"), [(0.0, [[], [A], [B]]), (1.0, [[A], [], [B]]), (2.0, [[A], [B], []])])
def test_nbest_is_ordered_by_length_penalised_score(lenpen, order):
    (hyps,) = run(ScriptedModel({A: LENGTHS}), [[A]], beam_size=3, nbest=3, lenpen=lenpen)
    assert [h.tokens for h in hyps] == order
    log_probs = {(): math.log(0.29), (A,): math.log(0.4 * 0.65), (B,): math.log(0.31 * 0.6)}
    for h in hyps:
        assert h.log_prob == pytest.approx(log_probs[tuple(h.tokens)], abs=1e-6)
        expected = h.log_prob / ((5 + len(h.tokens) + 1) / 6) ** lenpen
        assert h.score == pytest.approx(expected, abs=1e-6)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_eos_first_gives_an_empty_hypothesis_and_beams_finish_independently():
    model = ScriptedModel({A: {(): {EOS: 0.7, A: 0.3}, (A,): {EOS: 1.0}}})
    assert outputs(run(model, [[A]], beam_size=1)) == [[([], round(math.log(0.7), 6))]]
    assert outputs(run(model, [[A]], beam_size=2, nbest=2)) == [
        [([], round(math.log(0.7), 6)), ([A], round(math.log(0.3), 6))]
    ]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_length_cap_is_per_sentence_and_forces_eos(beam_size):
    # The model hardly ever stops (and the length penalty favours long outputs): every sentence runs to its own
    # cap floor(1.5 * |x|) + 1, where EOS is forced.
    model = ScriptedModel({}, default={A: 0.4, B: 0.3, C: 0.2, D: 0.1 - 1e-9, EOS: 1e-9})
    rows = [[C, D], [C, D, D, D, D, D], [C]]
    kw = {"beam_size": beam_size, "max_len_a": 1.5, "max_len_b": 1, "lenpen": 1.0}
    caps = max_output_lengths(src_batch(rows)[1], cfg(**kw)).tolist()
    assert caps == [4, 10, 2]
    batch = run(model, rows, **kw)
    for cap, (best, *_) in zip(caps, batch):
        assert best.tokens == [A] * cap
        assert best.log_prob == pytest.approx(cap * math.log(0.4) + math.log(1e-9), abs=1e-5)
    one_by_one = [run(model, [r], **kw)[0] for r in rows]
    assert outputs(batch) == outputs(one_by_one)


def test_zero_cap_allows_only_eos():
    model = ScriptedModel({}, default={A: 0.9, EOS: 0.1})
    for k in (1, 2):
        assert outputs(run(model, [[A, B]], beam_size=k, max_len_b=0)) == [[([], round(math.log(0.1), 6))]]


def test_finished_sentences_leave_the_batch():
    # Sentence A stops after one piece, sentence B runs to its cap: later steps only carry B's K rows.
    model = ScriptedModel({A: {(): {C: 1.0}, (C,): {EOS: 1.0}}}, default={D: 0.9, EOS: 0.1 - 1e-9, C: 1e-9})
    run(model, [[A], [B]], beam_size=1, max_len_b=5)
    assert model.rows_per_step == [2, 2, 1, 1, 1, 1]
    model.rows_per_step.clear()
    run(model, [[A], [B]], beam_size=2, max_len_b=5)
    assert model.rows_per_step[:2] == [4, 4] and set(model.rows_per_step[2:]) <= {2}


def random_script(rng: random.Random, depth: int = 4) -> dict:
    """p(. | prefix) for every prefix over the four words up to ``depth`` (flat-ish, so search choices matter)."""
    script, frontier = {}, [()]
    for _ in range(depth + 1):
        nxt = []
        for prefix in frontier:
            w = [rng.random() + 0.05 for _ in range(5)]
            script[prefix] = {t: x / sum(w) for t, x in zip((EOS, A, B, C, D), w)}
            nxt += [(*prefix, t) for t in (A, B, C, D)]
        frontier = nxt
    return script


def teacher_forced(model, row, tokens, need_attention=False):
    """The model's own log-probability (and attention) of ``tokens`` + EOS."""
    src, lengths = src_batch([row])
    tgt_in = torch.tensor([[BOS_ID, *tokens]])
    lp, attn = model.decode(tgt_in, model.encode(src, lengths), need_attention=need_attention)
    gold = torch.tensor([*tokens, EOS])
    return float(lp[0].gather(1, gold[:, None]).sum()), lp[0], (attn[0] if need_attention else None)


@pytest.mark.parametrize("seed", range(6))
def test_random_scripts_scores_batches_attention_and_greedy(seed):
    rng = random.Random(seed)
    firsts = [A, B, C, D]
    model = ScriptedModel({f: random_script(rng) for f in firsts})
    rows = [[f] + [A] * rng.randrange(4) for f in firsts]
    kw = {"max_len_b": 4, "lenpen": rng.choice([0.0, 0.6, 1.0])}
    greedy = run(model, rows, beam_size=1, need_attention=True, **kw)
    src, lengths = src_batch(rows)
    beam1 = beam_search(model, src, lengths, cfg(beam_size=1, **kw))  # the beam code path with one beam
    beam4 = run(model, rows, beam_size=4, nbest=4, need_attention=True, **kw)
    assert outputs(beam1) == outputs(greedy)
    assert outputs(beam4) == outputs([run(model, [r], beam_size=4, nbest=4, **kw)[0] for r in rows])
    for row, (g,), hyps in zip(rows, greedy, beam4):
        # Greedy picks the argmax of the teacher-forced distribution over its own output at every position
        # (but the last one when EOS was forced at the cap of 4 pieces).
        _, dist, _ = teacher_forced(model, row, g.tokens)
        free = len(g.tokens) + (len(g.tokens) < 4)
        assert dist.argmax(1).tolist()[:free] == [*g.tokens, EOS][:free]
        assert hyps[0].score >= g.score - 1e-9
        assert len({tuple(h.tokens) for h in hyps}) == len(hyps)
        for h in [g, *hyps]:
            lp, _, attn = teacher_forced(model, row, h.tokens, need_attention=True)
            assert h.log_prob == pytest.approx(lp, abs=1e-5)
            assert h.score == pytest.approx(lp / length_penalty(len(h.tokens) + 1, kw["lenpen"]), abs=1e-5)
            # Attention rows followed their hypothesis through every reorder.
            assert h.attention.shape == (len(h.tokens) + 1, len(row) + 1)
            torch.testing.assert_close(h.attention, attn[:, : len(row) + 1])


def test_no_attention_unless_asked():
    hyps = run(ScriptedModel({A: GREEDY_TRAP}), [[A]], beam_size=2)
    assert hyps[0][0].attention is None


def test_sampling_is_seeded_and_respects_topk():
    rng = random.Random(0)
    model = ScriptedModel({A: random_script(rng)})
    kw = {"beam_size": 1, "sampling": True, "max_len_b": 4}

    def sample(seed, **extra):
        src, lengths = src_batch([[A]] * 16)
        gen = torch.Generator().manual_seed(seed)
        return [h[0].tokens for h in search(model, src, lengths, cfg(**kw, **extra), generator=gen)]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    assert len({tuple(t) for t in sample(3)}) > 1
    (greedy,) = run(model, [[A]], beam_size=1, max_len_b=4)
    assert all(t == greedy[0].tokens for t in sample(4, sampling_topk=1))
    assert all(t == greedy[0].tokens for t in sample(5, sampling_temperature=1e-4))
    script = model.scripts[A]
    for tokens in sample(6, sampling_topk=2):
        for i, tok in enumerate(tokens if len(tokens) == 4 else [*tokens, EOS]):  # EOS is forced at the cap
            dist = script[tuple(tokens[:i])]
            assert tok in sorted(dist, key=dist.get, reverse=True)[:2]


def test_beam_stops_once_no_live_beam_can_beat_the_best_finished():
    # With lenpen 0 a live beam's score only drops: once EOS (.6) beats every live beam (<= .2), the sentence is
    # done after one step, without waiting for K finished hypotheses; asking for 2 hypotheses keeps it going.
    script = {(): {EOS: 0.6, A: 0.2, B: 0.15, C: 0.05}, (A,): {EOS: 1.0}, (B,): {EOS: 1.0}, (C,): {EOS: 1.0}}
    model = ScriptedModel({A: script})
    assert outputs(run(model, [[A]], beam_size=3)) == [[([], round(math.log(0.6), 6))]]
    assert model.rows_per_step == [3]
    model.rows_per_step.clear()
    two = run(model, [[A]], beam_size=3, nbest=2)
    assert outputs(two) == [[([], round(math.log(0.6), 6)), ([A], round(math.log(0.2), 6))]]
    assert model.rows_per_step == [3, 3]
