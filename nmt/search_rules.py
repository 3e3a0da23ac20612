"""The per-step rules of every search strategy (:mod:`nmt.search` runs the loops).

- **Score**: :func:`length_penalty`, GNMT's ``((5 + |y|) / 6) ** alpha``.
- **Length**: :func:`max_output_lengths`, the per-sentence cap ``floor(a * |x|) + b``.
- **What may be emitted at a step**: :func:`restrict` (PAD and BOS never; only EOS at the cap; no EOS before
  ``min_len`` pieces; no piece that would repeat an n-gram, :func:`block_repeated_ngrams`).
- **How a piece is sampled**: :func:`sample` (temperature, then top-k, then top-p).
- **When beam search may stop a sentence**: :class:`StopRule` (``early_stop``).

Every rule works on whole (rows, vocabulary) tensors, one op per step, with no Python loop over hypotheses, and
every rule is per row: a sentence's output never depends on the other sentences of its batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.config import EarlyStop, SearchConfig
from nmt.specials import BOS_ID, EOS_ID, PAD_ID

NEG_INF = float("-inf")


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT length penalty ``((5 + length) / 6) ** alpha`` (Wu et al. 2016, eq. 14); ``length`` counts the EOS."""
    return ((5.0 + length) / 6.0) ** alpha


def max_output_lengths(src_lengths: Tensor, cfg: SearchConfig) -> Tensor:
    """Per-sentence cap on emitted pieces (EOS not counted): ``floor(a * |x|) + b``, |x| without the source EOS.

    Args:
        src_lengths: (B,) source lengths counting the EOS.
    Returns:
        (B,) int64, at least 0.
    """
    pieces = (src_lengths - 1).clamp(min=0).to(torch.float64)
    return (torch.floor(cfg.max_len_a * pieces).long() + cfg.max_len_b).clamp(min=0)


def restrict(log_probs: Tensor, t: int, capped: Tensor | None, history: Tensor, cfg: SearchConfig) -> Tensor:
    """Forbid (set to -inf) what may not be emitted at step ``t`` (the ``t+1``-th output piece), in place.

    PAD and BOS are never emitted; rows at their length cap may emit only EOS; before ``cfg.min_len`` pieces EOS
    is forbidden, except on capped rows (so the effective minimum is ``min(min_len, cap)``); with
    ``cfg.no_repeat_ngram`` = n, no piece that would complete an n-gram already in the row's history.

    Args:
        log_probs: (N, V) the step's log-probabilities.
        t: the step (the number of pieces each row has emitted so far).
        capped: (N,) bool, rows at their length cap, or None when no row can be capped yet.
        history: (N, >= t) the pieces each row emitted so far (columns past t are ignored).
        cfg: ``min_len`` and ``no_repeat_ngram``.
    Returns:
        ``log_probs``.
    """
    log_probs[:, PAD_ID] = NEG_INF
    log_probs[:, BOS_ID] = NEG_INF
    if cfg.no_repeat_ngram:
        block_repeated_ngrams(log_probs, history[:, :t], cfg.no_repeat_ngram)
    no_eos = t < cfg.min_len
    if capped is not None:
        eos = log_probs[:, EOS_ID].clone()
        log_probs.masked_fill_(capped[:, None], NEG_INF)
        log_probs[:, EOS_ID] = eos.masked_fill(~capped, NEG_INF) if no_eos else eos
    elif no_eos:
        log_probs[:, EOS_ID] = NEG_INF
    return log_probs


def block_repeated_ngrams(log_probs: Tensor, history: Tensor, n: int) -> None:
    """Forbid every piece that would make the row's last ``n`` pieces an n-gram it already holds, in place.

    The suffix of the last ``n - 1`` pieces is compared with every earlier window of ``n - 1`` pieces at once
    (one (N, t-n+1) comparison per window offset, n - 1 in all); where they match, the piece that followed that
    window is forbidden. The cost is O(rows * t * n) elementwise per step, instead of fairseq's and Hugging Face's
    per-hypothesis n-gram tables built in Python. Unmatched windows scatter into the PAD column, which is
    forbidden anyway (no nonzero(): no host sync on a GPU).

    Args:
        log_probs: (N, V). history: (N, t) the pieces emitted so far (no BOS). n: >= 1.
    """
    t = history.size(1)
    if t < n:  # no complete n-gram yet
        return
    if n == 1:
        log_probs.scatter_(1, history, NEG_INF)  # no piece twice
        return
    windows = t - n + 1  # earlier windows j = 0 .. t-n, each followed by history[:, j + n - 1]
    suffix = t - n + 1  # where the last n - 1 pieces start
    seen = history[:, :windows] == history[:, suffix : suffix + 1]  # (N, windows)
    for i in range(1, n - 1):  # slices beat an unfold + all(dim=2) over a tiny dimension
        seen &= history[:, i : i + windows] == history[:, suffix + i : suffix + i + 1]
    followers = history[:, n - 1 :]  # (N, windows): the piece after window j
    log_probs.scatter_(1, torch.where(seen, followers, PAD_ID), NEG_INF)


def sample(log_probs: Tensor, cfg: SearchConfig, generator: torch.Generator | None) -> Tensor:
    """(N, V) -> (N,) pieces drawn from the tempered distribution, restricted to top-k, then to the top-p nucleus.

    Order (Hugging Face's): divide by ``sampling_temperature``; keep the ``sampling_topk`` most probable pieces
    (0 = all); of those, keep the smallest set of most probable pieces whose renormalised probabilities add up to
    at least ``sampling_topp`` (the piece that crosses p is kept; 1 = all); draw from the renormalised rest.
    """
    logits = log_probs / cfg.sampling_temperature
    if 0 < cfg.sampling_topk < logits.size(1):
        kth = logits.topk(cfg.sampling_topk, dim=1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if cfg.sampling_topp < 1.0:
        logits = logits.masked_fill(~nucleus(logits, cfg.sampling_topp), NEG_INF)
    probs = torch.softmax(logits, dim=1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def nucleus(logits: Tensor, p: float) -> Tensor:
    """(N, V) -> (N, V) bool: the top-p nucleus of ``softmax(logits)`` (Holtzman et al. 2020).

    A piece is in it when the pieces more probable than it (in sorted order) hold less than ``p`` of the mass,
    so the most probable piece always is, and so is the piece whose probability crosses ``p``.
    """
    probs, order = torch.softmax(logits, dim=1).sort(dim=1, descending=True)
    before = torch.zeros_like(probs)
    before[:, 1:] = probs.cumsum(dim=1)[:, :-1]  # mass strictly ahead of each sorted piece
    return torch.empty_like(probs, dtype=torch.bool).scatter_(1, order, before < p)


class StopRule:
    """When beam search may stop a sentence: per-sentence counters and one tensor test per step.

    A sentence is done once ``beam_size`` of its hypotheses have finished (fairseq's rule: the beam is spent), or
    earlier by ``cfg.early_stop``:

    - ``bound``: its ``nbest`` best finished scores can no longer change. A live beam with log-probability ``s``
      (<= 0) only adds log-probabilities <= 0, and its descendants are at most ``cap + 1`` long (EOS counted),
      so none can score above ``s / max(lp(t + 2), lp(cap + 1))`` (the largest penalty in the reachable length
      range, an end of it since ``lp`` is monotone in the length). Once the ``nbest``-th best finished score is
      at least that bound for the best live beam, the search's n-best list is final: the same as with ``none``.
    - ``heuristic``: ``nbest`` hypotheses have finished and the best finished score is at least the best live
      score as if that beam ended at the next step (``s / lp(t + 2)``). The top hypothesis is exact with
      ``lenpen <= 0``; with ``lenpen > 0`` a longer continuation that would have won can be lost.
    - ``none``: no early stop.

    All comparisons are in float32 on the same rounded values that rank the hypotheses, so ``bound`` is exact in
    floating point too (division and addition round monotonically).

    Args:
        cfg: ``early_stop``, ``nbest``, ``lenpen``.
        beam_size: K.
        max_len: (n,) the sentences' length caps (pieces, EOS not counted).
    """

    def __init__(self, cfg: SearchConfig, beam_size: int, max_len: Tensor) -> None:
        self.rule, self.k, self.nbest, self.alpha = cfg.early_stop, beam_size, cfg.nbest, cfg.lenpen
        n, device = max_len.size(0), max_len.device
        self.n_done = torch.zeros(n, dtype=torch.long, device=device)  # finished hypotheses per sentence
        self.top_done = torch.full((n, self.nbest), NEG_INF, device=device)  # their nbest best scores, descending
        # Computed in float64 and rounded once, like the Python scalar penalties the finished scores divide by.
        self.lp_cap = length_penalty(max_len.double() + 1.0, self.alpha).float()  # (n,)

    def finish(self, finished: Tensor, scores: Tensor) -> None:
        """Record a step's finished hypotheses: ``finished`` (n, c) bool, ``scores`` (n, c) their scores."""
        self.n_done += finished.sum(dim=1)
        merged = torch.cat([self.top_done, scores.masked_fill(~finished, NEG_INF)], dim=1)
        self.top_done = merged.topk(self.nbest, dim=1).values

    def done(self, live: Tensor, t: int) -> Tensor:
        """(n,) bool: sentences that may stop after step ``t``; ``live`` (n, K) the continuing beams' log-probs."""
        done = self.n_done >= self.k
        if self.rule == EarlyStop.none:
            return done
        best_live = live.amax(dim=1)
        lp_next = length_penalty(t + 2, self.alpha)  # the shortest a live beam can end: one more step, EOS
        if self.rule == EarlyStop.heuristic:
            return done | ((self.n_done >= self.nbest) & (self.top_done[:, 0] >= best_live / lp_next))
        bound = best_live / self.lp_cap.clamp(min=lp_next)  # lp_next is the larger one only when lenpen < 0
        return done | (self.top_done[:, -1] >= bound)  # -inf (fewer than nbest finished) never stops a live beam

    def keep(self, index: Tensor) -> None:
        """Keep only the sentences at ``index`` (the others left the batch)."""
        self.n_done, self.top_done, self.lp_cap = self.n_done[index], self.top_done[index], self.lp_cap[index]
