"""What ``nmt-serve`` does, without the web framework: check requests against the limits, batch them, run them.

Every request is checked before it is queued (sentence count, characters and pieces per sentence, options that
cannot work together), and a violation raises :class:`RequestError` naming the field, which the app turns into a
4xx answer. Checked requests go through one :class:`~nmt.serve.batcher.MicroBatcher`, keyed by their kind and
options, so only requests with equal options share a batch; the worker thread calls :class:`nmt.api.Model`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nmt import __version__
from nmt.api import Model, TranslationResult
from nmt.errors import NMTError
from nmt.serve.batcher import MicroBatcher
from nmt.serve.explore import explore
from nmt.serve.schemas import AlignRequest, ExploreRequest, TranslateRequest


class RequestError(NMTError):
    """A request the service refuses; ``status`` is the HTTP status (422 unless said otherwise)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how requests are batched (the ``nmt-serve`` flags of the same names)."""

    max_request_sentences: int = field(default=64, metadata={"help": "sentences (or pairs) per request"})
    max_sentence_pieces: int = field(default=100, metadata={"help": "SentencePiece pieces per sentence"})
    max_sentence_chars: int = field(default=5000, metadata={"help": "characters per sentence (checked first)"})
    max_body_bytes: int = field(default=1 << 20, metadata={"help": "bytes per request body"})
    max_batch_tokens: int = field(default=4096, metadata={"help": "source tokens per micro-batch"})
    batch_wait_ms: float = field(default=5.0, metadata={"help": "how long a batch waits for more requests"})

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) <= 0 and f.name != "batch_wait_ms":
                raise ValueError(f"{f.name} must be positive, got {getattr(self, f.name)}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")


class Service:
    """The model, its limits and its batcher.

    Args:
        model: the loaded model (only the worker thread calls it once started).
        limits: request limits and batching settings.
        name: what ``/health`` calls the model (the checkpoint's file name; never a path from a client).
        executor: the worker thread (:func:`~nmt.serve.batcher.model_thread`) the model was loaded in; by
            default a new one.
    """

    def __init__(
        self, model: Model, limits: Limits, *, name: str = "", executor: ThreadPoolExecutor | None = None
    ) -> None:
        self.model, self.limits, self.name = model, limits, name
        self.batcher = MicroBatcher(
            self._run, max_tokens=limits.max_batch_tokens, max_wait=limits.batch_wait_ms / 1000.0, executor=executor
        )

    async def start(self) -> None:
        await self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()

    # ----------------------------------------------------------------------------------------- endpoints
    async def translate(self, req: TranslateRequest) -> dict[str, Any]:
        pieces = self._check_sentences("sentences", req.sentences, self.model.tokenizer.encode_src)
        beam = req.beam_size or self.model.search_config.beam_size
        nbest = req.nbest or min(self.model.search_config.nbest, beam)
        if nbest > beam:
            raise RequestError(f"nbest: {nbest} is more than beam_size {beam} (a beam search keeps beam_size outputs)")
        if (req.alignments or req.attention) and not self.model.has_attention:
            what = "alignments" if req.alignments else "attention"
            raise RequestError(f"{what}: this model has no attention (model.attention=none)")
        options = (
            ("beam_size", beam),
            ("nbest", nbest),
            ("lenpen", req.lenpen),
            ("return_alignments", req.alignments),
            ("return_attention", req.attention),
            ("alignment_threshold", req.alignment_threshold),
        )
        done = await self.batcher.submit(("translate", options), list(req.sentences), _tokens(pieces))
        return {"translations": done}

    async def align(self, req: AlignRequest) -> dict[str, Any]:
        if len(req.src) != len(req.tgt):
            raise RequestError(f"tgt: {len(req.tgt)} sentences for the {len(req.src)} of src (they pair up)")
        if req.method is not None and req.method not in ("shift", "attention"):
            raise RequestError(f"method: must be 'shift' or 'attention', got {req.method!r}")
        if not self.model.has_attention:
            raise RequestError("this model has no attention (model.attention=none): it cannot align")
        src = self._check_sentences("src", req.src, self.model.tokenizer.encode_src)
        tgt = self._check_sentences("tgt", req.tgt, self.model.tokenizer.encode_tgt)
        options = (("method", req.method), ("threshold", req.threshold))
        tokens = sum(max(len(s), len(t)) + 1 for s, t in zip(src, tgt))
        done = await self.batcher.submit(("align", options), list(zip(req.src, req.tgt)), tokens)
        return {"alignments": done}

    async def explore(self, req: ExploreRequest) -> dict[str, Any]:
        pieces = self._check_sentences("sentence", [req.sentence], self.model.tokenizer.encode_src, single=True)
        (out,) = await self.batcher.submit(
            ("explore", (("beam_size", req.beam_size),)), [req.sentence], _tokens(pieces)
        )
        return out

    def health(self) -> dict[str, Any]:
        m = self.model
        cfg = m.config
        return {
            "status": "ok",
            "version": __version__,
            "model": {
                "name": self.name,
                "architecture": m.architecture,
                "src_lang": cfg.data.src_lang,
                "tgt_lang": cfg.data.tgt_lang,
                "attention": m.has_attention,
                "layers": m.num_layers,
                "heads": m.num_heads,
                "beam_size": m.search_config.beam_size,
                "device": str(m.device),
            },
            "limits": dataclasses.asdict(self.limits),
            "batching": dataclasses.asdict(self.batcher.stats),
        }

    # ----------------------------------------------------------------------------------------- checks
    def _check_sentences(self, name: str, sentences: Sequence[str], encode, *, single: bool = False) -> list[list[int]]:
        """Count, characters, then pieces (tokenizing only text within the character limit); returns the pieces."""
        lim = self.limits
        if not single:
            if not sentences:
                raise RequestError(f"{name}: no sentences (send at least one)")
            if len(sentences) > lim.max_request_sentences:
                raise RequestError(
                    f"{name}: {len(sentences)} sentences, more than the limit of {lim.max_request_sentences} per "
                    "request (--max-request-sentences); split the request",
                    status=413,
                )
        for k, s in enumerate(sentences):
            if len(s) > lim.max_sentence_chars:
                raise RequestError(
                    f"{_where(name, k, single)}: {len(s)} characters, more than the limit of {lim.max_sentence_chars}"
                )
        pieces = encode([s if s.strip() else "" for s in sentences])
        for k, ids in enumerate(pieces):
            if len(ids) > lim.max_sentence_pieces:
                raise RequestError(
                    f"{_where(name, k, single)}: {len(ids)} pieces, more than the limit of {lim.max_sentence_pieces} "
                    "(--max-sentence-pieces)"
                )
        return pieces

    # ----------------------------------------------------------------------------------------- the worker
    def _run(self, key: Hashable, items: list[Any]) -> list[Any]:
        """In the worker thread: one model call for a batch of items of one kind and options."""
        kind, options = key
        opts = dict(options)
        if kind == "translate":
            results = self.model.translate(items, **opts)
            return [_translation(r, opts["return_alignments"], opts["return_attention"]) for r in results]
        if kind == "align":
            done = self.model.align([s for s, _ in items], [t for _, t in items], **opts)
            return [{"alignment": a.pharaoh, "links": a.links} for a in done]
        if kind == "explore":
            return [explore(self.model, s, **opts) for s in items]
        raise ValueError(f"unknown job kind {kind!r}")


def _tokens(pieces: list[list[int]]) -> int:
    return sum(len(p) + 1 for p in pieces)


def _where(name: str, k: int, single: bool) -> str:
    return name if single else f"{name}[{k}]"


def _translation(r: TranslationResult, alignments: bool, attention: bool) -> dict[str, Any]:
    hyps = []
    for h in r.hypotheses:
        out: dict[str, Any] = {"text": h.text, "score": h.score, "log_prob": h.log_prob, "tokens": h.tokens}
        if alignments:
            out["alignment"] = h.alignment
        if attention and h.attention is not None:
            out["attention"] = np.round(h.attention.astype(np.float64), 4).tolist()
        hyps.append(out)
    return {
        "source": r.source,
        "text": r.text,
        "score": r.score,
        "source_tokens": r.source_tokens,
        "truncated": r.truncated,
        "hypotheses": hyps,
    }
