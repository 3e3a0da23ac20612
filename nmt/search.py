"""Greedy search, beam search and sampling over whole batches, for any :class:`~nmt.models.base.Seq2Seq`.

Search sees a model only through ``encode`` / ``init_state`` / ``decode_step`` and reorders encoder outputs and
decoder states with the generic :func:`~nmt.models.base.reorder`, so RNNs, Transformers and ensembles share it.

Conventions, the same for every strategy:

- **Length.** A sentence whose source has ``|x|`` pieces (without its EOS) may emit at most
  ``max_len = floor(max_len_a * |x|) + max_len_b`` pieces; at step ``max_len`` only EOS is allowed, so every
  hypothesis ends in EOS. The cap is per sentence, never per batch (padding must not change a translation).
  With ``min_len`` = m, EOS is forbidden before m pieces (before ``min(m, max_len)``: the cap wins).
- **Specials.** PAD and BOS are never emitted (their log-probabilities are set to -inf before choosing).
- **Repeats.** With ``no_repeat_ngram`` = n > 0, a piece that would complete an n-gram of pieces the hypothesis
  already holds is forbidden (n = 1: no piece twice).
- **Score.** ``log_prob = sum_t log p(y_t | y_<t, x)`` over the pieces *and* the final EOS, and
  ``score = log_prob / ((5 + |y|) / 6) ** lenpen`` with ``|y|`` counting the EOS (GNMT length penalty, Wu et al.
  2016, eq. 14, without the coverage term; fairseq's ``--lenpen`` is another formula, ``log_prob / |y| ** lenpen``).
  ``lenpen = 0`` ranks by raw log-probability, ``lenpen > 0`` favours longer outputs. The forbidden pieces above
  are never chosen, and ``log_prob`` is the model's, not renormalised over the allowed pieces.
- **Beam search** (``beam_size = K > 1``) keeps every sentence's K beams in one (n·K)-row batch. At each step it
  takes the 2K best (beam, token) extensions per sentence from one ``topk`` over K·V; EOS extensions among the K
  best are set aside as finished hypotheses, and the K best non-EOS extensions continue. A sentence is done once
  it holds K finished hypotheses (fairseq's rule), at its length cap, or earlier by ``early_stop``
  (:class:`~nmt.search_rules.StopRule`):

  - ``bound`` (the default): once its ``nbest``-th best finished score is at least an upper bound on anything a
    live beam can still reach: the best live log-probability ``s`` divided by the largest length penalty its
    cap allows, ``s / lp(max_len + 1)`` (log-probabilities only fall and ``s <= 0``; with ``lenpen < 0`` the
    largest penalty is the next step's). The n-best list is then exactly the one ``none`` returns, so the top
    hypothesis never depends on ``nbest``.
  - ``heuristic``: once ``nbest`` hypotheses have finished and the best finished score is at least the best
    live beam's score normalised as if that beam ended at the next step (Hugging Face's
    ``early_stopping=False``). Its top hypothesis is exact with ``lenpen <= 0``; with ``lenpen > 0`` a longer
    continuation that would have won can be lost, and the top hypothesis can change with ``nbest``.
  - ``none``: no early stop.

  A done sentence is dropped from the batch (its rows are removed, so a finished beam never advances); the search
  stops when every sentence is done. The ``nbest`` best finished hypotheses by ``score`` are returned, best first.
- **Greedy** (``beam_size = 1``) is the same search with K = 1, run on a cheaper path (max instead of topk).
- **Sampling** (``sampling=True``, ``beam_size = 1``) draws each token from ``softmax(log_probs / temperature)``
  restricted to the ``sampling_topk`` most probable tokens (0 = all), then to the top-``sampling_topp`` nucleus
  of those (1 = all), with the given ``torch.Generator`` (:func:`~nmt.search_rules.sample`). The reported
  scores are the model's untempered log-probabilities. Samples depend on the batch composition.
- **Attention** (``need_attention=True``): each hypothesis carries a (len(tokens) + 1, S_real) matrix whose row t
  is the attention of the step that emitted token t (the last row: the step that emitted EOS), and whose columns
  are the real source positions, the source EOS included. Rows follow their hypothesis through beam reorders.
  Without ``need_attention`` no attention is computed, stored or reordered.

Whole inputs: :func:`translate_ids` takes any number of sources (piece ids), searches them in token-budget
batches sorted by length and returns the hypotheses in input order: the one decoding path of validation,
``nmt-translate``, ``nmt-evaluate`` and the test-set report.

Search writes into the log-probabilities that ``decode_step`` returns (masking, adding beam scores), so a model
must return a fresh tensor there (``log_softmax`` output is).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.config import Precision, SearchConfig
from nmt.data.batch import collate
from nmt.data.batching import length_batches
from nmt.models.base import EncoderOutput, Seq2Seq, reorder
from nmt.search_rules import NEG_INF, StopRule, length_penalty, max_output_lengths, restrict, sample
from nmt.specials import BOS_ID, EOS_ID

__all__ = [
    "Hypothesis",
    "autocast",
    "beam_search",
    "greedy_search",
    "length_penalty",
    "max_output_lengths",
    "search",
    "translate_ids",
]


@dataclass
class Hypothesis:
    """One finished output.

    Attributes:
        tokens: the output pieces, without BOS or EOS.
        score: ``log_prob`` with the length penalty applied (what the hypotheses are ranked by), computed in
            float32 like ``log_prob``.
        log_prob: the model's log-probability of ``tokens`` + EOS.
        attention: (len(tokens) + 1, S_real) float32 on the CPU when asked for, else None.
    """

    tokens: list[int]
    score: float
    log_prob: float
    attention: Tensor | None = None


@torch.inference_mode()
def search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    cfg: SearchConfig,
    *,
    need_attention: bool = False,
    generator: torch.Generator | None = None,
) -> list[list[Hypothesis]]:
    """Translate a batch: greedy (or sampling) when ``cfg.beam_size == 1``, else beam search.

    Args:
        model: any Seq2Seq, in eval mode.
        src: (B, S) source ids (pieces + EOS, right-padded). src_lengths: (B,) counting the EOS.
        cfg: beam size, nbest, length penalty, length cap, sampling.
        need_attention: collect one attention matrix per hypothesis (see the module docstring).
        generator: the random stream for sampling (default: torch's global one).
    Returns:
        per input row, up to ``cfg.nbest`` hypotheses, best first (fewer only when the length cap leaves fewer
        distinct outputs, e.g. a cap of 0 pieces).
    """
    if cfg.beam_size == 1:
        return greedy_search(model, src, src_lengths, cfg, need_attention=need_attention, generator=generator)
    return beam_search(model, src, src_lengths, cfg, need_attention=need_attention)


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    cfg: SearchConfig,
    *,
    need_attention: bool = False,
    generator: torch.Generator | None = None,
) -> list[list[Hypothesis]]:
    """Greedy decoding, or sampling with ``cfg.sampling`` (``cfg.beam_size`` unused); arguments as in :func:`search`."""
    enc = model.encode(src, src_lengths)
    max_len = max_output_lengths(src_lengths, cfg).to(src.device)
    return _greedy(model, enc, src_lengths, max_len, cfg, need_attention, generator)


@torch.inference_mode()
def beam_search(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, cfg: SearchConfig, *, need_attention: bool = False
) -> list[list[Hypothesis]]:
    """Beam search with ``cfg.beam_size`` beams (1 allowed: then it equals greedy). Arguments as :func:`search`."""
    enc = model.encode(src, src_lengths)
    max_len = max_output_lengths(src_lengths, cfg).to(src.device)
    return _beam(model, enc, src_lengths, max_len, cfg, need_attention)


def _capped(t: int, max_len: Tensor, cap_reached: int) -> Tensor | None:
    """Rows at their length cap at step t, or None (no mask op at all) while no row can be capped yet."""
    return (max_len <= t) if t >= cap_reached else None


def _row_topk(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``x.topk(k, dim=1)`` for (N, V) rows, faster for wide rows and small k (the beam search case).

    Rows are cut into chunks of ``c`` columns; the k largest values of a row lie in the k chunks with the largest
    maxima (those k chunks alone hold k values >= the k-th largest chunk maximum), so topk runs on k*c columns
    instead of V. Falls back to a plain topk when no chunk size near 100 divides V.
    """
    n, v = x.shape
    c = next((c for c in range(100, 60, -1) if v % c == 0), 0)
    if not c or k * c * 4 > v:
        return x.topk(k, dim=1)
    chunk_max = x.view(n, v // c, c).amax(dim=2)  # (N, V/c)
    chunks = chunk_max.topk(k, dim=1).indices  # (N, k)
    cols = (chunks[:, :, None] * c + torch.arange(c, device=x.device)).view(n, k * c)  # (N, k*c)
    values, pos = x.gather(1, cols).topk(k, dim=1)
    return values, cols.gather(1, pos)


def _greedy(
    model: Seq2Seq,
    enc: EncoderOutput,
    src_lengths: Tensor,
    max_len: Tensor,
    cfg: SearchConfig,
    need_attention: bool,
    generator: torch.Generator | None,
) -> list[list[Hypothesis]]:
    """Greedy decoding (or sampling); finished rows are ignored, and dropped from the batch in groups."""
    n, device = src_lengths.size(0), max_len.device
    steps = int(max_len.max()) + 1
    src_len = src_lengths.tolist()
    alive = torch.arange(n, device=device)  # original row of each batch row
    live = torch.ones(n, dtype=torch.bool, device=device)  # rows that have not emitted EOS yet
    state = model.init_state(enc)
    prev = torch.full((n,), BOS_ID, dtype=torch.long, device=device)
    log_prob = torch.zeros(n, device=device)
    tokens = torch.zeros(n, steps, dtype=torch.long, device=device)
    attn_buf = None
    out: list[list[Hypothesis]] = [[] for _ in range(n)]
    cap_reached = int(max_len.min())
    for t in range(steps):
        lp, attn, state = model.decode_step(prev, state, enc, need_attention=need_attention)
        lp = restrict(lp, t, _capped(t, max_len, cap_reached), tokens, cfg)
        if cfg.sampling:
            tok = sample(lp, cfg, generator)
            log_prob += lp.gather(1, tok[:, None]).squeeze(1)
        else:
            step_lp, tok = lp.max(dim=1)  # max, not argmax: several times faster on the CPU
            log_prob += step_lp
        tokens[:, t] = tok
        if attn is not None:  # None when not asked, or for a model without attention
            if attn_buf is None:
                attn_buf = torch.zeros(n, steps, attn.size(1), device=device)
            attn_buf[:, t] = attn
        done = (tok == EOS_ID) & live
        if not bool(done.any()):
            prev = tok
            continue
        fin = done.nonzero().squeeze(1)
        fin_rows, fin_lp, fin_tok = alive[fin].tolist(), log_prob[fin].tolist(), tokens[fin, :t].tolist()
        fin_score = (log_prob[fin] / length_penalty(t + 1, cfg.lenpen)).tolist()  # float32, as in beam search
        fin_attn = attn_buf[fin, : t + 1].cpu() if attn_buf is not None else None
        for i, row in enumerate(fin_rows):
            a = fin_attn[i, :, : src_len[row]] if fin_attn is not None else None
            out[row].append(Hypothesis(fin_tok[i], fin_score[i], fin_lp[i], a))
        live &= ~done
        n_live = int(live.sum())
        if n_live == 0:
            break
        prev = tok
        if (live.numel() - n_live) * 4 >= live.numel():
            # Drop finished rows once they are a quarter of the batch: removing them copies every live row's
            # encoder output and state, about the cost of a step, so it does not pay for one row at a time.
            # Until then they run along and their outputs are ignored.
            keep = live.nonzero().squeeze(1)
            state, enc = reorder(state, keep), reorder(enc, keep)
            alive, prev, log_prob, tokens, max_len = alive[keep], tok[keep], log_prob[keep], tokens[keep], max_len[keep]
            live = live[keep]
            if attn_buf is not None:
                attn_buf = attn_buf[keep]
    return out


def _beam(
    model: Seq2Seq,
    enc: EncoderOutput,
    src_lengths: Tensor,
    max_len: Tensor,
    cfg: SearchConfig,
    need_attention: bool,
) -> list[list[Hypothesis]]:
    """Batched beam search; see the module docstring for the rules."""
    k, n, device = cfg.beam_size, src_lengths.size(0), max_len.device
    steps = int(max_len.max()) + 1
    src_len = src_lengths.tolist()
    enc = reorder(enc, torch.arange(n, device=device).repeat_interleave(k))  # (n*K, ...): encoder ran once
    state = model.init_state(enc)
    sent = torch.arange(n, device=device)  # original index of each live sentence
    # Only beam 0 is live at the start, so the first step does not pick K copies of the same extension.
    scores = torch.full((n, k), NEG_INF, device=device)
    scores[:, 0] = 0.0
    prev = torch.full((n * k,), BOS_ID, dtype=torch.long, device=device)
    tokens = torch.zeros(n * k, steps, dtype=torch.long, device=device)
    attn_buf = None
    stop = StopRule(cfg, k, max_len)  # finished counts and best scores per live sentence
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    cap_reached = int(max_len.min())
    for t in range(steps):
        lp, attn, state = model.decode_step(prev, state, enc, need_attention=need_attention)
        capped = _capped(t, max_len, cap_reached)
        lp = restrict(lp, t, None if capped is None else capped.repeat_interleave(k), tokens, cfg)
        vocab = lp.size(1)
        if attn is not None and attn_buf is None:  # None when not asked, or for a model without attention
            attn_buf = torch.zeros(n * k, steps, attn.size(1), device=device)

        # The 2K best extensions of each sentence over all its beams and tokens. A beam's score shifts its whole
        # row, so the sentence's best 2K are among its rows' best 2K: (n*K, V) -> (n*K, 2K) -> (n, K*2K) -> (n, 2K).
        per_row = min(2 * k, vocab)
        row_lp, row_tok = _row_topk(lp, per_row)
        cand = (scores.view(-1, 1) + row_lp).view(-1, k * per_row)
        n_cand = min(2 * k, k * per_row)
        top_score, top_pos = cand.topk(n_cand, dim=1)
        top_beam = torch.div(top_pos, per_row, rounding_mode="floor")
        top_tok = row_tok.view(-1, k * per_row).gather(1, top_pos)
        is_eos = (top_tok == EOS_ID) & (top_score > NEG_INF)

        # EOS extensions ranked among the K best finish a hypothesis (few rows: a Python loop over them is cheap).
        fin = is_eos[:, :k]
        if bool(fin.any()):
            # Scores in float32, the very values the stop rule compares (see StopRule).
            fin_score = top_score[:, :k] / length_penalty(t + 1, cfg.lenpen)  # (n, K)
            stop.finish(fin, fin_score)
            s_pos, c_pos = fin.nonzero().unbind(1)
            rows = s_pos * k + top_beam[s_pos, c_pos]
            f_sent, f_tok = sent[s_pos].tolist(), tokens[rows, :t].tolist()
            f_lp, f_score = top_score[s_pos, c_pos].tolist(), fin_score[s_pos, c_pos].tolist()
            f_attn = None
            if attn_buf is not None:
                f_attn = torch.cat([attn_buf[rows, :t], attn[rows, None].float()], dim=1).cpu()  # (f, t+1, S)
            for i, s in enumerate(f_sent):
                a = f_attn[i, :, : src_len[s]] if f_attn is not None else None
                finished[s].append(Hypothesis(f_tok[i], f_score[i], f_lp[i], a))

        # The K best non-EOS extensions continue: push EOS candidates behind all others, keep the first K.
        order = torch.arange(n_cand, device=device).expand_as(top_score)
        _, act = torch.where(is_eos, order + n_cand, order).topk(k, dim=1, largest=False)  # (n, K), ascending
        new_score = top_score.gather(1, act).masked_fill(is_eos.gather(1, act), NEG_INF)
        new_beam, new_tok = top_beam.gather(1, act), top_tok.gather(1, act)

        # Done: K finished hypotheses, or earlier by cfg.early_stop (see StopRule).
        done = stop.done(new_score, t)
        if capped is not None:
            done |= capped
        done |= ~(new_score > NEG_INF).any(dim=1)  # nothing left to extend (tiny vocabularies)
        n_done = int(done.sum())  # one host sync for both questions
        if n_done == done.numel():
            break
        if n_done:
            keep = (~done).nonzero().squeeze(1)
            beam_rows = (keep[:, None] * k + torch.arange(k, device=device)).view(-1)
            enc = reorder(enc, beam_rows)
            sent, max_len = sent[keep], max_len[keep]
            stop.keep(keep)
            new_score, new_beam, new_tok = new_score[keep], new_beam[keep], new_tok[keep]
            rows = (keep[:, None] * k + new_beam).view(-1)
        else:
            rows = (torch.arange(new_beam.size(0), device=device)[:, None] * k + new_beam).view(-1)
        # Every beam continues from the row it extends: state, history and attention follow it.
        state = reorder(state, rows)
        tokens = tokens.index_select(0, rows)
        prev = new_tok.view(-1)
        tokens[:, t] = prev
        if attn_buf is not None:
            attn_buf = attn_buf.index_select(0, rows)
            attn_buf[:, t] = attn.index_select(0, rows)
        scores = new_score

    out = []
    for hyps in finished:
        hyps.sort(key=lambda h: h.score, reverse=True)  # stable: ties keep the order they finished in
        out.append(hyps[: cfg.nbest])
    return out


# --------------------------------------------------------------------------------------------- whole inputs
def autocast_dtype(precision: Precision) -> torch.dtype | None:
    """The autocast dtype of a precision (None for fp32: no autocast)."""
    return {Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}.get(Precision(precision))


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for bf16/fp16 on ``device``; a no-op context for fp32."""
    dtype = autocast_dtype(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def translate_ids(
    model: Seq2Seq,
    src_ids: list[list[int]],
    cfg: SearchConfig,
    *,
    device: torch.device | str,
    need_attention: bool = False,
    generator: torch.Generator | None = None,
    precision: Precision = Precision.fp32,
    progress: Callable[[int], None] | None = None,
) -> list[list[Hypothesis]]:
    """Search for every source (piece ids, no specials) in length-sorted token-budget batches; input order out.

    An empty source gives one empty hypothesis (score 0, attention [[1.0]]) without a model call. The model is
    put in eval mode for the duration (and restored), so validation during training can call this directly.
    ``precision`` ``bf16``/``fp16`` runs the model under autocast (bf16 is the fast format of recent CPUs).
    ``progress`` is called with the number of sources finished: once for the empty ones, then after each batch
    (a progress bar's ``update``; once per batch, never per step).
    """
    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    todo = [i for i, ids in enumerate(src_ids) if ids]
    for i, ids in enumerate(src_ids):
        if not ids:
            results[i] = [Hypothesis([], 0.0, 0.0, torch.ones(1, 1) if need_attention else None)]
    if progress is not None and len(todo) < len(src_ids):
        progress(len(src_ids) - len(todo))
    was_training = model.training
    model.eval()
    device = torch.device(device)
    try:
        for batch_pos in length_batches([len(src_ids[i]) for i in todo], cfg.batch_tokens):
            rows = [todo[p] for p in batch_pos]
            batch = collate([src_ids[i] for i in rows], None, rows).to(device)
            with autocast(device, precision):
                hyps = search(
                    model, batch.src, batch.src_lengths, cfg, need_attention=need_attention, generator=generator
                )
            for i, h in zip(rows, hyps):  # scatter back by original index
                results[i] = h
            if progress is not None:
                progress(len(rows))
    finally:
        model.train(was_training)
    return results
