"""From a :class:`DataConfig` to tokenized, filtered, cached data ready for batching.

Two cache entries live under ``data.cache_dir`` (default: the user's cache directory, see
:func:`nmt.data.cache.default_cache_dir`):

- ``tokenizer-<key>``: the trained SentencePiece model(s), keyed by the training files' content (sha256 of
  their bytes) and the tokenizer options, so a second run does not retrain;
- ``train-<key>``: the encoded training pairs as an Arrow file (written chunk by chunk, memory-mapped on load),
  keyed by the training files' content, the tokenizer model bytes and the filtering options.

Keys hash content, never paths or modification times: an edited file is never served stale, and a moved one
still hits. Entries are built in a temporary directory and renamed into place, so a crash (or a second
process racing, as DDP ranks do) never leaves a half-written entry. Validation and test sets are never
filtered and are small, so they are read and encoded on every run. A streamed ``datasets`` training split
(``data.hf.streaming``) is never held in memory: the tokenizer trainer samples from it and the encoder writes it to
the cache one chunk at a time.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import sentencepiece as spm

from nmt.config import ConfigError, DataConfig, TokenizerConfig
from nmt.data import cache as store
from nmt.data.batch import Batch, collate
from nmt.data.batching import collate_flat
from nmt.data.corpus import Parallel, data_root, ensure_download
from nmt.data.sources import Corpora, TrainCorpus, uses_hf
from nmt.data.tokenizer import Tokenizer
from nmt.errors import DataError

log = logging.getLogger(__name__)

ENCODE_CHUNK = 100_000  # sentences encoded at a time when building the training cache


@dataclass
class EvalSet:
    """A validation or test set: every line of the corpus, in order, never filtered.

    Attributes:
        name: the corpus name (``val``, ``test_2016_flickr``, or a ``datasets`` split).
        src_texts, tgt_texts: the raw sentences (references are scored as detokenized text).
        src_ids, tgt_ids: their piece ids (no specials).
    """

    name: str
    src_texts: list[str]
    tgt_texts: list[str]
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.src_texts)


class TrainData:
    """The filtered, encoded training pairs, backed by a memory-mapped Arrow table.

    Attributes:
        src_lengths, tgt_lengths: (N,) int64 pieces per example, without specials (what batching needs).
        line_ids: (N,) int64 0-based line numbers of the examples in the training corpus.
        stats: counts from filtering (``total``, ``kept``, ``empty``, ``too_long``).
    """

    def __init__(self, table: pa.Table, tokenizer: Tokenizer, *, stats: dict[str, Any] | None = None) -> None:
        self._table = table
        self._tokenizer = tokenizer
        self.src_lengths = table.column("src_len").to_numpy().astype(np.int64)
        self.tgt_lengths = table.column("tgt_len").to_numpy().astype(np.int64)
        self.line_ids = table.column("id").to_numpy().astype(np.int64)
        self.has_texts = "src_text" in table.column_names
        self.stats = dict(stats or {})

    def __len__(self) -> int:
        return self._table.num_rows

    def examples(
        self, indices: Sequence[int] | np.ndarray, *, sample: bool = True
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Piece ids of the given examples, by columnar access to the Arrow table.

        With subword regularisation on (``tokenizer.sampling_alpha > 0``, texts kept in the cache) and
        ``sample=True``, the raw sentences are encoded again with sampling, so each epoch sees new
        segmentations (their lengths can then differ from ``src_lengths``).

        Returns:
            ``(src_ids, tgt_ids)``: per example a list of piece ids (no specials).
        """
        rows = self._table.take(pa.array(np.asarray(indices, dtype=np.int64)))
        if sample and self.has_texts and self._tokenizer.sampling_alpha > 0:
            src_texts, tgt_texts = rows.column("src_text").to_pylist(), rows.column("tgt_text").to_pylist()
            tok = self._tokenizer
            return tok.encode_src(src_texts, sample=True), tok.encode_tgt(tgt_texts, sample=True)
        return rows.column("src").to_pylist(), rows.column("tgt").to_pylist()

    def batch(self, indices: Sequence[int] | np.ndarray) -> Batch:
        """The padded :class:`Batch` of the given examples (what ``collate`` gives for ``examples(indices)``).

        Built from the Arrow columns' flat values with numpy (no per-example Python work), except with subword
        sampling, where the re-encoded id lists go through ``collate``.
        """
        idx = np.asarray(indices, dtype=np.int64)
        if self.has_texts and self._tokenizer.sampling_alpha > 0:
            return collate(*self.examples(idx), self.line_ids[idx].tolist())
        rows = self._table.take(pa.array(idx))
        src, tgt = rows.column("src").combine_chunks(), rows.column("tgt").combine_chunks()
        return collate_flat(
            src.flatten().to_numpy(),
            src.value_lengths().to_numpy(),
            tgt.flatten().to_numpy(),
            tgt.value_lengths().to_numpy(),
            self.line_ids[idx],
        )


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: TrainData
    valid: EvalSet
    tests: list[EvalSet] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- entry point
def prepare_data(data: DataConfig, tok: TokenizerConfig, *, tokenizer: Tokenizer | None = None) -> PreparedData:
    """Read, check, tokenize, filter and cache the corpora of ``data``.

    Args:
        data: where the corpora are and how training pairs are filtered.
        tok: how the SentencePiece model is trained (or which model file is reused).
        tokenizer: reuse this tokenizer instead of training/loading one (resuming from a checkpoint); its
            sampling settings are set from ``tok``.

    Raises:
        ConfigError: ``data.train`` / ``data.valid`` unset.
        DataError: a missing, misaligned or non-UTF-8 file, a failed download, or no training pair left.
    """
    for key in ("train", "valid"):
        if not getattr(data, key):
            raise ConfigError(f"data.{key} is not set: give a corpus prefix (or a split name with data.hf.path)")
    root = data_root()
    cache = store.cache_dir(data)
    if data.download and not uses_hf(data):
        ensure_download(data.download, [data.src_lang, data.tgt_lang], root)
    corpora = Corpora(data, root, cache)
    train = corpora.train()
    # Dev and test sets are read before any tokenizer is trained: an empty one stops the run at once.
    valid_corpus = _scorable(corpora.load(data.valid), f"data.valid={data.valid!r}")
    test_corpora = [_scorable(corpora.load(t), f"data.test entry {t!r}") for t in data.test]

    if tokenizer is None:
        tokenizer = _given_tokenizer(tok) or _cached_tokenizer(train, tok, cache)
    for line in tokenizer.renumbering():
        log.info("tokenizer %s", line)
    tokenizer.sampling_alpha, tokenizer.sampling_nbest = tok.sampling_alpha, tok.sampling_nbest

    train_data = _cached_train_data(train, tokenizer, data, keep_texts=tok.sampling_alpha > 0, cache=cache)
    valid = _eval_set(valid_corpus, tokenizer)
    tests = [_eval_set(corpus, tokenizer) for corpus in test_corpora]
    log.info(
        "data: %d training pairs, valid %s (%d), tests %s",
        len(train_data),
        valid.name,
        len(valid),
        ", ".join(f"{t.name} ({len(t)})" for t in tests) or "none",
    )
    return PreparedData(tokenizer=tokenizer, train=train_data, valid=valid, tests=tests)


def _scorable(corpus: Parallel, key: str) -> Parallel:
    """A dev or test corpus with at least one pair to score; an empty one would report a BLEU of nothing (and, as
    the dev set, pick ``best.pt`` from nothing).

    Raises:
        DataError: no line, or no line with text on both sides; names the files and the config key with the value
            the user gave (``key``).
    """
    if any(s.strip() and t.strip() for s, t in zip(corpus.src, corpus.tgt)):
        return corpus
    what = "no lines" if not len(corpus) else f"{len(corpus)} lines, none with text on both sides"
    use = (
        "a dev set picks the best checkpoint and stops training early: give one with sentences"
        if key.startswith("data.valid")
        else "there is nothing to score: give a test set with sentences, or leave it out of data.test"
    )
    raise DataError(f"{key} ({', '.join(corpus.files)}) has {what}; {use}")


def _eval_set(corpus: Parallel, tokenizer: Tokenizer) -> EvalSet:
    return EvalSet(
        name=corpus.name,
        src_texts=corpus.src,
        tgt_texts=corpus.tgt,
        src_ids=tokenizer.encode_src(corpus.src),
        tgt_ids=tokenizer.encode_tgt(corpus.tgt),
    )


# --------------------------------------------------------------------------------------------- tokenizer
def _given_tokenizer(tok: TokenizerConfig) -> Tokenizer | None:
    """The SentencePiece model(s) named by ``tokenizer.model_path`` or ``src_model_path`` + ``tgt_model_path``."""
    if tok.src_model_path and tok.tgt_model_path:
        src, tgt = Path(tok.src_model_path).expanduser(), Path(tok.tgt_model_path).expanduser()
        tokenizer = Tokenizer.load(src, tgt)
        log.info("using tokenizer models %s (source) and %s (target): %r", src, tgt, tokenizer)
        return tokenizer
    if tok.model_path:
        tokenizer = Tokenizer.load(Path(tok.model_path).expanduser())
        log.info("using tokenizer %s (%r)", tok.model_path, tokenizer)
        return tokenizer
    return None


def _cached_tokenizer(train: TrainCorpus, tok: TokenizerConfig, cache: Path) -> Tokenizer:
    options = {
        "train": train.fingerprint,
        "type": tok.type.value,
        "vocab_size": tok.vocab_size,
        "joint": tok.joint,
        "character_coverage": tok.character_coverage,
        "input_sentence_size": tok.input_sentence_size,
        "shuffle_input_sentence": tok.shuffle_input_sentence,
        "sentencepiece": spm.__version__,
    }
    entry = cache / f"tokenizer-{store.entry_key(options)}"
    if entry.is_dir():
        try:
            tokenizer = Tokenizer.load(entry)
            log.info("tokenizer cache hit: %s (%r)", entry, tokenizer)
            return tokenizer
        except DataError as e:
            log.warning("replacing unreadable tokenizer cache entry %s: %s", entry, e)
            shutil.rmtree(entry, ignore_errors=True)
    log.info("tokenizer cache miss: training on %s", train.description)
    tokenizer = Tokenizer.train(*train.sides(), tok)
    with store.atomic_entry(entry) as tmp:
        tokenizer.save(tmp)
        store.write_meta(tmp, options)
    log.info("trained %r, cached in %s", tokenizer, entry)
    return Tokenizer.load(entry)  # the entry that won if processes raced (every process uses the same model)


# --------------------------------------------------------------------------------------------- training pairs
def _cached_train_data(
    train: TrainCorpus, tokenizer: Tokenizer, data: DataConfig, *, keep_texts: bool, cache: Path
) -> TrainData:
    state = tokenizer.to_state()
    options = {
        "train": train.fingerprint,
        "tokenizer": hashlib.sha256(b"".join(k.encode() + state[k] for k in sorted(state))).hexdigest(),
        "max_len": data.max_len,
        "keep_texts": keep_texts,
    }
    entry = cache / f"train-{store.entry_key(options)}"
    if (entry / "meta.json").is_file():
        try:
            table = store.load_table(entry)
            stats = json.loads((entry / "meta.json").read_text())["stats"]
            log.info("training data cache hit: %s (%d pairs)", entry, table.num_rows)
            _log_filtering(stats, train.description, data.max_len, cached=True)
            return TrainData(table, tokenizer, stats=stats)
        except (OSError, KeyError, ValueError, pa.ArrowException) as e:
            log.warning("replacing unreadable training data cache entry %s: %s", entry, e)
            shutil.rmtree(entry, ignore_errors=True)
    log.info("training data cache miss: encoding %s", train.description)
    with store.atomic_entry(entry) as tmp:
        with store.TableWriter(tmp) as writer:
            stats = _encode_train(
                train.chunks(ENCODE_CHUNK),
                tokenizer,
                data.max_len,
                keep_texts=keep_texts,
                write=writer.write,
                what=train.description,
            )
        store.write_meta(tmp, {**options, "stats": stats})
    _log_filtering(stats, train.description, data.max_len, cached=False)
    return TrainData(store.load_table(entry), tokenizer, stats=stats)


def _encode_train(
    chunks: Iterable[tuple[list[str], list[str]]],
    tokenizer: Tokenizer,
    max_len: int,
    *,
    keep_texts: bool,
    write: Callable[[pa.RecordBatch], None],
    what: str,
) -> dict[str, Any]:
    """Encode both sides chunk by chunk, drop empty and over-long pairs, ``write`` each chunk's kept pairs.

    Only one chunk's sentences and id lists exist at a time, whatever the corpus size.

    Returns:
        The counts: ``total``, ``kept``, ``empty``, ``too_long`` and the first dropped (1-based) line numbers.

    Raises:
        DataError: no pair is left.
    """
    total = kept = n_empty = n_long = 0
    empty_lines: list[int] = []
    long_lines: list[int] = []
    for src_text, tgt_text in chunks:
        start = total
        total += len(src_text)
        src_ids, tgt_ids = tokenizer.encode_src(src_text), tokenizer.encode_tgt(tgt_text)
        src_len = np.fromiter(map(len, src_ids), dtype=np.int64, count=len(src_ids))
        tgt_len = np.fromiter(map(len, tgt_ids), dtype=np.int64, count=len(tgt_ids))
        empty = (src_len == 0) | (tgt_len == 0)  # whitespace-only lines encode to no pieces too
        too_long = ~empty & ((src_len > max_len) | (tgt_len > max_len))
        n_empty, n_long = n_empty + int(empty.sum()), n_long + int(too_long.sum())
        empty_lines += (np.flatnonzero(empty)[: 5 - len(empty_lines)] + start + 1).tolist()  # 1-based, for the log
        long_lines += (np.flatnonzero(too_long)[: 5 - len(long_lines)] + start + 1).tolist()
        keep = np.flatnonzero(~(empty | too_long))
        if not keep.size:
            continue
        columns = {
            "id": pa.array(keep + start),
            "src": _list_array([src_ids[i] for i in keep], src_len[keep]),
            "tgt": _list_array([tgt_ids[i] for i in keep], tgt_len[keep]),
            "src_len": pa.array(src_len[keep].astype(np.int32)),
            "tgt_len": pa.array(tgt_len[keep].astype(np.int32)),
        }
        if keep_texts:  # subword sampling re-encodes the raw sentences at every epoch
            columns["src_text"] = pa.array([src_text[i] for i in keep], pa.string())
            columns["tgt_text"] = pa.array([tgt_text[i] for i in keep], pa.string())
        write(pa.RecordBatch.from_pydict(columns))
        kept += keep.size
    stats = {
        "total": total,
        "kept": kept,
        "empty": n_empty,
        "too_long": n_long,
        "empty_lines": empty_lines,
        "too_long_lines": long_lines,
    }
    if kept == 0:
        raise DataError(
            f"no training pair left in {what}: {n_empty} of {total} have an empty side and {n_long} are longer "
            f"than data.max_len={max_len} pieces"
        )
    return stats


def _list_array(ids: list[list[int]], lengths: np.ndarray) -> pa.Array:
    """Lists of ids as one Arrow large_list<int32> column, built from a flat array (no per-row Arrow objects)."""
    values = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))


def _log_filtering(stats: dict[str, Any], description: str, max_len: int, *, cached: bool) -> None:
    dropped = stats["empty"] + stats["too_long"]
    when = " (counted when the cache entry was built)" if cached else ""
    if dropped:
        log.warning(
            "training data %s: dropped %d of %d pairs%s: %d with an empty side (lines %s...) and %d longer than "
            "data.max_len=%d pieces (lines %s...); %d pairs kept",
            description,
            dropped,
            stats["total"],
            when,
            stats["empty"],
            stats.get("empty_lines", []),
            stats["too_long"],
            max_len,
            stats.get("too_long_lines", []),
            stats["kept"],
        )
    else:
        log.info(
            "training data %s: all %d pairs kept (none empty or over %d pieces)", description, stats["total"], max_len
        )
