"""Validation during training: dev loss, BLEU/chrF of decoded text, attention heatmaps.

Decoding goes through search's one batched path (:func:`nmt.search.translate_ids`) and scores are computed on
detokenized strings by :mod:`nmt.evaluate` (sacrebleu, with signatures). The final test-set report is
:mod:`nmt.report`'s. Dev sentences longer than ``data.max_len`` pieces are cut to it once, with one warning
(:func:`cap_dev_set`), as ``nmt-translate`` cuts its input: a single very long line would otherwise make every
validation decode for minutes.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from nmt.config import SearchConfig
from nmt.data.batch import collate
from nmt.data.batching import length_batches
from nmt.data.prepare import EvalSet
from nmt.data.tokenizer import Tokenizer
from nmt.evaluate import Scores, score
from nmt.models.base import Seq2Seq
from nmt.search import translate_ids
from nmt.specials import EOS_PIECE
from nmt.training.loss import label_smoothed_nll
from nmt.training.metrics import MetricsWriter, attention_figure
from nmt.translate import best_texts, truncate_sources

log = logging.getLogger(__name__)


@dataclass
class DevResult:
    """Dev loss per target token (label-smoothed and plain NLL), perplexity, scores and the hypotheses."""

    loss: float
    nll: float
    ppl: float
    scores: Scores
    hypotheses: list[str]

    @property
    def bleu(self) -> float:
        return self.scores.bleu

    def record(self) -> dict[str, Any]:
        """The JSON-able figures (no hypotheses): loss, nll, ppl, bleu, chrf and the signatures."""
        return {"loss": self.loss, "nll": self.nll, "ppl": self.ppl, **self.scores.as_dict()}


def cap_dev_set(data: EvalSet, max_len: int) -> EvalSet:
    """The dev set as validation uses it: both sides of a pair longer than ``max_len`` pieces cut to ``max_len``
    (:func:`nmt.translate.truncate_sources`), with one warning for the set. BLEU is still scored against the whole
    reference texts."""
    src_ids, src_cut = truncate_sources(data.src_ids, max_len)
    tgt_ids, tgt_cut = truncate_sources(data.tgt_ids, max_len)
    if not src_cut and not tgt_cut:
        return data
    lines = sorted(set(src_cut) | set(tgt_cut))
    shown = ", ".join(str(k + 1) for k in lines[:10]) + (", ..." if len(lines) > 10 else "")
    longest = max(max(len(data.src_ids[k]), len(data.tgt_ids[k])) for k in lines)
    log.warning(
        "dev set %s: %d of %d lines are longer than data.max_len=%d pieces (lines %s; the longest has %d): "
        "validation translates and scores the loss on their first %d pieces, as nmt-translate cuts its input",
        data.name, len(lines), len(data), max_len, shown, longest, max_len,
    )  # fmt: skip
    return replace(data, src_ids=src_ids, tgt_ids=tgt_ids)


@torch.no_grad()
def dev_loss(
    model: Seq2Seq,
    data: EvalSet,
    *,
    batch_tokens: int,
    smoothing: float,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> tuple[float, float]:
    """Teacher-forced (label-smoothed loss, NLL) per target token over the whole set."""
    model.eval()
    lengths = [max(len(s), len(t)) for s, t in zip(data.src_ids, data.tgt_ids)]
    loss_sum = nll_sum = 0.0
    n_tokens = 0
    for idx in length_batches(lengths, batch_tokens, longest_first=False):
        batch = collate([data.src_ids[i] for i in idx], [data.tgt_ids[i] for i in idx], idx).to(device)
        with autocast() if autocast else contextlib.nullcontext():
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss, nll, n = label_smoothed_nll(logits, batch.tgt_out, smoothing=smoothing)
        loss_sum += float(loss)
        nll_sum += float(nll)
        n_tokens += int(n)
    n_tokens = max(n_tokens, 1)
    return loss_sum / n_tokens, nll_sum / n_tokens


def validate(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    data: EvalSet,
    *,
    search: SearchConfig,
    beam_size: int,
    batch_tokens: int,
    smoothing: float,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> DevResult:
    """Dev loss/perplexity and BLEU/chrF of ``beam_size`` decoding (1 = greedy)."""
    loss, nll = dev_loss(model, data, batch_tokens=batch_tokens, smoothing=smoothing, device=device, autocast=autocast)
    dev_search = replace(search, beam_size=beam_size, nbest=1, sampling=False)
    hyps = best_texts(tokenizer, translate_ids(model, data.src_ids, dev_search, device=device))
    return DevResult(
        loss=loss, nll=nll, ppl=math.exp(min(nll, 50.0)), scores=score(hyps, data.tgt_texts), hypotheses=hyps
    )


@torch.no_grad()
def attention_maps(
    model: Seq2Seq, tokenizer: Tokenizer, data: EvalSet, n: int, *, device: torch.device
) -> list[tuple[torch.Tensor, list[str], list[str]]]:
    """Teacher-forced cross-attention on the first ``n`` dev sentences with their references.

    Returns:
        per sentence ``(weights (T, S), source pieces + "</s>", reference pieces + "</s>")``; row ``t`` is the
        attention while predicting reference piece ``t``.
    """
    model.eval()
    out = []
    for i in range(min(n, len(data))):
        batch = collate([data.src_ids[i]], [data.tgt_ids[i]], [i]).to(device)
        _, attention = model.decode(batch.tgt_in, model.encode(batch.src, batch.src_lengths), need_attention=True)
        if attention is None:  # a model without attention (rnn_none) has nothing to draw
            return []
        src = [*tokenizer.src_pieces(data.src_ids[i]), EOS_PIECE]
        tgt = [*tokenizer.tgt_pieces(data.tgt_ids[i]), EOS_PIECE]
        out.append((attention[0].float().cpu(), src, tgt))
    return out


def draw_heatmaps(
    metrics: MetricsWriter,
    model: Seq2Seq,
    tokenizer: Tokenizer,
    data: EvalSet,
    n: int,
    *,
    step: int,
    device: torch.device,
) -> None:
    """TensorBoard images of the teacher-forced attention of the first ``n`` dev sentences."""
    if n <= 0:
        return
    for i, (weights, src, tgt) in enumerate(attention_maps(model, tokenizer, data, n, device=device)):
        metrics.figure(
            f"attention/dev_{i}", attention_figure(weights, src, tgt, f"dev sentence {i}, step {step}"), step
        )
