"""Validation and testing: dev loss, BLEU/chrF of decoded text, attention heatmaps, and the final test report.

Scores are always computed on detokenized strings through :mod:`nmt.evaluate` (sacrebleu, with signatures), using
the same prediction path as ``nmt-translate``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nmt.config import SearchConfig
from nmt.data.batch import collate
from nmt.data.prepare import EvalSet
from nmt.data.tokenizer import Tokenizer
from nmt.models.base import Seq2Seq
from nmt.training.loss import label_smoothed_nll


@dataclass
class DevResult:
    loss: float  # label-smoothed loss per target token
    nll: float  # negative log-likelihood per target token
    ppl: float
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    hypotheses: list[str]

    def record(self) -> dict[str, Any]:
        """The JSON-able figures (no hypotheses)."""
        return {k: v for k, v in self.__dict__.items() if k != "hypotheses"}


def length_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_tokens`` padded tokens, sorted by length (little padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * (lengths[i] + 1) > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


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
    for idx in length_batches(lengths, batch_tokens):
        batch = collate([data.src_ids[i] for i in idx], [data.tgt_ids[i] for i in idx], idx).to(device)
        with autocast() if autocast else contextlib.nullcontext():
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss, nll, n = label_smoothed_nll(logits, batch.tgt_out, smoothing=smoothing)
        loss_sum += float(loss)
        nll_sum += float(nll)
        n_tokens += int(n)
    n_tokens = max(n_tokens, 1)
    return loss_sum / n_tokens, nll_sum / n_tokens


def translate_and_score(
    model: Seq2Seq, tokenizer: Tokenizer, data: EvalSet, search: SearchConfig, *, device: torch.device
) -> tuple[list[str], Any]:
    """Decode ``data``'s sources and score them against its references (detokenized, sacrebleu)."""
    from nmt.evaluate import score, translate_texts

    model.eval()
    hyps = translate_texts(model, tokenizer, data.src_texts, search, device=device)
    return hyps, score(hyps, data.tgt_texts)


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
    hyps, scores = translate_and_score(model, tokenizer, data, dev_search, device=device)
    return DevResult(
        loss=loss,
        nll=nll,
        ppl=math.exp(min(nll, 50.0)),
        bleu=float(scores.bleu),
        chrf=float(scores.chrf),
        bleu_signature=str(scores.bleu_signature),
        chrf_signature=str(scores.chrf_signature),
        hypotheses=hyps,
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
        src = [*tokenizer.src_pieces(data.src_ids[i]), "</s>"]
        tgt = [*tokenizer.tgt_pieces(data.tgt_ids[i]), "</s>"]
        out.append((attention[0].float().cpu(), src, tgt))
    return out


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line.replace("\n", " ") + "\n" for line in lines), encoding="utf-8")
