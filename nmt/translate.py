"""From checkpoints and text to translations: results in input order, streaming.

The one decoding path of ``nmt-translate``, ``nmt-evaluate``, the test-set report and validation is
:func:`nmt.search.translate_ids` (ids in, hypotheses out, in input order); :func:`translate_texts` wraps it for
plain sentences, and :class:`Translator` adds text handling around it: an empty line gives an empty output without
calling the model, a line longer than the model's maximum source length is truncated with a warning naming the line
(:func:`truncate_sources`, which validation uses too), and :meth:`Translator.stream` reads any number of lines in
fixed-size chunks, so memory stays flat.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from nmt.analysis.alignment import Link, attention_to_links, format_pharaoh
from nmt.checkpoint import check_same_direction, check_same_vocabulary, load_for_inference
from nmt.config import AttentionType, ConfigError, InferencePrecision, NMTConfig, RNNConfig, SearchConfig
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError, DataError
from nmt.models.base import Seq2Seq
from nmt.models.ensemble import Ensemble
from nmt.models.inference import autocast_precision, prepare_for_inference
from nmt.search import Hypothesis, translate_ids

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- loading
def load_models(paths: list[str | Path], device: torch.device | str) -> tuple[Seq2Seq, Tokenizer, NMTConfig]:
    """One checkpoint -> its model; several -> an :class:`~nmt.models.ensemble.Ensemble` (one shared vocabulary).

    Returns the model, the tokenizer and the first checkpoint's config.

    Raises:
        CheckpointError: a checkpoint cannot be loaded, or the checkpoints differ in language pair, direction or
            vocabulary.
    """
    if not paths:
        raise CheckpointError("no checkpoint given")
    loaded = [load_for_inference(p, device) for p in paths]
    model, tokenizer, cfg = loaded[0]
    if len(loaded) == 1:
        return model, tokenizer, cfg
    for path, (_, tok, other) in zip(paths[1:], loaded[1:]):
        check_same_direction(path, other, paths[0], cfg, purpose="an ensemble")
        check_same_vocabulary(path, tok.to_state(), paths[0], tokenizer.to_state(), purpose="an ensemble")
    return Ensemble([m for m, _, _ in loaded]).to(device).eval(), tokenizer, cfg


def translate_texts(
    model: Seq2Seq, tokenizer: Tokenizer, texts: list[str], cfg: SearchConfig, *, device: torch.device | str
) -> list[str]:
    """Translate sentences (best hypothesis, detokenized), in input order, with no truncation.

    Empty sources give empty outputs. The plain-text form of :func:`nmt.search.translate_ids`.
    """
    return best_texts(tokenizer, translate_ids(model, tokenizer.encode_src(texts), cfg, device=device))


def best_texts(tokenizer: Tokenizer, hypotheses: list[list[Hypothesis]]) -> list[str]:
    """The detokenized best hypothesis of every input ("" where there is none), never containing a newline."""
    return [tokenizer.decode_tgt(h[0].tokens).replace("\n", " ") if h else "" for h in hypotheses]


def truncate_sources(src_ids: list[list[int]], max_len: int) -> tuple[list[list[int]], list[int]]:
    """Cap every source at ``max_len`` pieces: the longest the model was trained on (``data.max_len``).

    Beyond that the model has learned nothing, a learned position table may end, and decoding gets slow: the
    output cap grows with the source (``max_len_a * pieces + max_len_b`` steps) and every step attends over all of
    it. ``nmt-translate``, the test-set report and validation all cap their sources here.

    Returns:
        The capped ids (the same list objects where nothing was cut) and the 0-based indices of the cut sources.
    """
    cut = [k for k, ids in enumerate(src_ids) if len(ids) > max_len]
    if not cut:
        return src_ids, []
    capped = list(src_ids)
    for k in cut:
        capped[k] = src_ids[k][:max_len]
    return capped, cut


# --------------------------------------------------------------------------------------------- text
@dataclass
class Translation:
    """One input line and its outputs.

    Attributes:
        line: 1-based line number in the input.
        source: the input line (decoded, without its line ending).
        src_ids: the source pieces actually translated (after truncation).
        hypotheses: best first (``nbest`` of them); one empty hypothesis for an empty line.
        texts: the detokenized output of each hypothesis (never containing a newline).
        truncated: the line was longer than the maximum source length.
    """

    line: int
    source: str
    src_ids: list[int]
    hypotheses: list[Hypothesis]
    texts: list[str]
    truncated: bool = False


@dataclass
class Stats:
    sentences: int = 0
    pieces: int = 0  # output pieces of the best hypotheses, EOS included (what the decoder produced)
    words: int = 0  # whitespace tokens of the best outputs
    seconds: float = 0.0
    truncated: list[int] = field(default_factory=list)


def chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of ``size`` items (the last may be shorter), read lazily."""
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def decode_lines(raw: Iterable[bytes], *, name: str, errors: str = "strict", first_line: int = 1) -> Iterator[str]:
    """Bytes lines -> text lines without ``\\n`` / ``\\r\\n``; ``first_line`` numbers the first (1-based).

    Raises:
        DataError: invalid UTF-8 with ``errors="strict"``, naming the input and the 1-based line.
    """
    for number, line in enumerate(raw, start=first_line):
        try:
            text = line.decode("utf-8", errors=errors)
        except UnicodeDecodeError as e:
            raise DataError(
                f"{name}, line {number}: invalid UTF-8 at byte {e.start} ({line[e.start : e.start + 4]!r}); "
                "convert the input to UTF-8 or pass --errors replace"
            ) from None
        yield text.rstrip("\r\n")


class Translator:
    """Translate text lines with a model and its tokenizer.

    Args:
        model: a Seq2Seq (or Ensemble) on ``device``, in eval mode.
        tokenizer: the model's tokenizer.
        cfg: search settings.
        device: where batches go.
        max_source_len: longer sources are truncated to this many pieces (with a warning naming the line).
        need_attention: keep attention matrices (for alignments and dumps).
        generator: random stream for sampling.
        config: the checkpoint's config (kept for callers, e.g. its test sets).
        precision: the decoding format (see :mod:`nmt.models.inference`): ``fp32``; ``bf16`` (a bf16 copy of the
            model); ``fp16`` (autocast); ``int8`` (a copy with int8 linear layers, CPU).
        workers: decoding threads: a chunk's sentences are dealt out among them (by length, round robin) and each
            searches its share in its own batches, so several cores work on separate batches instead of on the
            small operations of one (set torch's threads to cores / workers). The outputs are the same as with one
            worker (batch composition does not change fp32 outputs). Sampling always uses one (its draws follow
            one random stream).
    """

    def __init__(
        self,
        model: Seq2Seq,
        tokenizer: Tokenizer,
        cfg: SearchConfig,
        *,
        device: torch.device | str = "cpu",
        max_source_len: int = 1024,
        need_attention: bool = False,
        generator: torch.Generator | None = None,
        config: NMTConfig | None = None,
        precision: InferencePrecision = InferencePrecision.fp32,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self.precision = InferencePrecision(precision)
        self.device = torch.device(device)
        self.model = prepare_for_inference(model, self.precision, self.device)
        self.tokenizer, self.cfg = tokenizer, cfg
        self.config = config  # the (first) checkpoint's whole config, when loaded from one
        self.max_source_len = max_source_len
        self.need_attention = need_attention
        self.generator = generator
        self.stats = Stats()

    @classmethod
    def from_checkpoints(
        cls,
        paths: list[str | Path],
        *,
        device: torch.device | str = "cpu",
        search: dict[str, Any] | None = None,
        max_source_len: int | None = None,
        need_attention: bool = False,
        alignment_layer: int | None = None,
        alignment_heads: list[int] | None = None,
        seed: int | None = None,
        precision: InferencePrecision = InferencePrecision.fp32,
        workers: int = 1,
    ) -> Translator:
        """Load checkpoint(s); ``search`` overrides fields of the checkpoint's own search config."""
        model, tokenizer, cfg = load_models(list(paths), device)
        if need_attention and isinstance(cfg.model, RNNConfig) and cfg.model.attention == AttentionType.none:
            raise ConfigError(f"{paths[0]} is a model without attention (model.attention=none): no alignments")
        if alignment_layer is not None or alignment_heads is not None:
            model.set_alignment(layer=alignment_layer, heads=alignment_heads)
        search_cfg = replace(cfg.search, **(search or {}))  # __post_init__ checks the combination
        generator = None
        if search_cfg.sampling and seed is not None:
            generator = torch.Generator(device=torch.device(device)).manual_seed(seed)
        return cls(
            model,
            tokenizer,
            search_cfg,
            device=device,
            max_source_len=max_source_len or cfg.data.max_len,
            need_attention=need_attention,
            generator=generator,
            config=cfg,
            precision=precision,
            workers=workers,
        )

    def translate(
        self, lines: list[str], *, first_line: int = 1, progress: Callable[[int], None] | None = None
    ) -> list[Translation]:
        """Translate a list of lines (one chunk); ``first_line`` numbers them in warnings and results.

        ``progress`` is called with the number of lines finished, after each batch (e.g. a progress bar's update).
        """
        start = time.perf_counter()
        encoded = self.tokenizer.encode_src([s if s.strip() else "" for s in lines])
        src_ids, cut = truncate_sources(encoded, self.max_source_len)
        for k in cut:
            log.warning(
                "line %d: %d source pieces, more than the maximum %d; only the first %d are translated",
                first_line + k,
                len(encoded[k]),
                self.max_source_len,
                self.max_source_len,
            )
        truncated = [first_line + k for k in cut]
        hyps = self._search(src_ids, progress=progress)
        out = []
        cut = set(truncated)
        for k, (line, ids, h) in enumerate(zip(lines, src_ids, hyps)):
            texts = [self.tokenizer.decode_tgt(x.tokens).replace("\n", " ") if ids else "" for x in h]
            out.append(Translation(first_line + k, line, ids, h, texts, first_line + k in cut))
            if ids:
                self.stats.pieces += len(h[0].tokens) + 1
                self.stats.words += len(texts[0].split())
        self.stats.sentences += len(lines)
        self.stats.truncated += truncated
        self.stats.seconds += time.perf_counter() - start
        return out

    def _search(
        self, src_ids: list[list[int]], *, progress: Callable[[int], None] | None = None
    ) -> list[list[Hypothesis]]:
        """Hypotheses for every source (piece ids, no specials), in input order: the one step another engine
        (:class:`nmt.export.ct2_translate.CT2Translator`) replaces; tokenization and output handling stay here."""
        workers = 1 if self.cfg.sampling else min(self.workers, len(src_ids))
        if workers <= 1:
            return self._search_part(src_ids, progress)
        by_length = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
        shares = [by_length[w::workers] for w in range(workers)]  # the same mix of lengths for every worker
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="nmt-decode")
        if progress is not None:  # called from every worker: one at a time
            lock, report = threading.Lock(), progress

            def progress(n: int) -> None:
                with lock:
                    report(n)

        results: list[list[Hypothesis]] = [[] for _ in src_ids]
        done = self._pool.map(lambda share: self._search_part([src_ids[i] for i in share], progress), shares)
        for share, hyps in zip(shares, done):
            for i, h in zip(share, hyps):
                results[i] = h
        return results

    def _search_part(self, src_ids: list[list[int]], progress: Callable[[int], None] | None) -> list[list[Hypothesis]]:
        return translate_ids(
            self.model,
            src_ids,
            self.cfg,
            device=self.device,
            need_attention=self.need_attention,
            generator=self.generator,
            precision=autocast_precision(self.precision),
            progress=progress,
        )

    def stream(
        self,
        lines: Iterable[str] | Iterable[list[str]],
        *,
        chunk_lines: int = 10_000,
        progress: Callable[[int], None] | None = None,
        chunked: bool = False,
        first_line: int = 1,
    ) -> Iterator[Translation]:
        """Translate an iterable of lines chunk by chunk, yielding results in input order.

        Args:
            lines: text lines, read ``chunk_lines`` at a time; with ``chunked``, lists of lines already grouped
                (e.g. by :func:`nmt.cli.reading.arrivals`), each translated as it comes.
            progress: called with the number of lines finished after each batch.
            first_line: the number of the first line (1-based, as in :meth:`translate`).
        """
        first = first_line
        for chunk in lines if chunked else chunks(lines, chunk_lines):  # type: ignore[arg-type]
            yield from self.translate(chunk, first_line=first, progress=progress)
            first += len(chunk)

    def links(self, t: Translation, rank: int = 0, *, threshold: float | None = None) -> str:
        """The Pharaoh line (0-based ``src-tgt``) of :meth:`word_alignment`."""
        return format_pharaoh(self.word_alignment(t, rank, threshold=threshold))

    def word_alignment(self, t: Translation, rank: int = 0, *, threshold: float | None = None) -> set[Link]:
        """Word links of hypothesis ``rank`` from its attention (see :mod:`nmt.analysis.alignment`)."""
        h = t.hypotheses[rank]
        if not t.src_ids or not h.tokens or h.attention is None:
            return set()
        return attention_to_links(
            h.attention,
            self.tokenizer.src_pieces(t.src_ids),
            self.tokenizer.tgt_pieces(h.tokens),
            n_src_words=len(t.source.split()),
            n_tgt_words=len(t.texts[rank].split()),
            threshold=threshold,
        )
