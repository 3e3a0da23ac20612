"""Where the training, dev and test sentences come from: files under the data root or a ``datasets`` corpus.

:class:`Corpora` hands :func:`nmt.data.prepare.prepare_data` whole dev/test sets and a :class:`TrainCorpus`, which
reads the training corpus only when a cache misses: whole (files, a ``datasets`` split) or, with
``data.hf.streaming``, as a stream that is never held in memory.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt.config import DataConfig
from nmt.data.corpus import Parallel, file_sha256, load_parallel, resolve_file
from nmt.data.hf import STREAM_CHUNK, iter_hf, load_hf, open_hf, stream_fingerprint


@dataclass
class TrainCorpus:
    """The training corpus, read only when a cache misses (a hit needs only the fingerprint).

    Attributes:
        fingerprint: the cache key part that stands for the corpus's content.
        description: where it is, for logs and errors.
        sides: fresh ``(source sentences, target sentences)`` iterables (tokenizer training iterates each once).
        chunks: ``chunks(n)`` is a fresh iterator of ``(source, target)`` sentence lists of ``n`` pairs (the last
            one shorter), in corpus order.
    """

    fingerprint: str
    description: str
    sides: Callable[[], tuple[Iterable[str], Iterable[str]]]
    chunks: Callable[[int], Iterator[tuple[list[str], list[str]]]]

    @classmethod
    def in_memory(cls, fingerprint: str, description: str, read: Callable[[], Parallel]) -> TrainCorpus:
        """A corpus read whole, at most once (tokenizer training and encoding share the lists)."""
        read = functools.cache(read)

        def chunks(n: int) -> Iterator[tuple[list[str], list[str]]]:
            corpus = read()
            for start in range(0, len(corpus), n):
                yield corpus.src[start : start + n], corpus.tgt[start : start + n]

        return cls(fingerprint, description, lambda: (read().src, read().tgt), chunks)


class Corpora:
    """Files under the data root, or the splits of one ``datasets`` corpus (opened once)."""

    def __init__(self, data: DataConfig, root: Path, cache: Path) -> None:
        self.data, self.root, self.cache = data, root, cache
        self._hf: Any = None

    def _hf_dict(self) -> Any:
        if self._hf is None:
            self._hf = open_hf(self.data.hf, self.root, cache_dir=self.cache / "hf")
        return self._hf

    def load(self, name: str) -> Parallel:
        d = self.data
        if uses_hf(d):
            hf = d.hf
            return load_hf(
                self._hf_dict(),
                name,
                d.src_lang,
                d.tgt_lang,
                description=hf.path,
                src_column=hf.src_column,
                tgt_column=hf.tgt_column,
            )
        return load_parallel(name, d.src_lang, d.tgt_lang, self.root)

    def train(self) -> TrainCorpus:
        d = self.data
        if uses_hf(d) and d.hf.streaming:
            return self._streamed_train()
        if uses_hf(d):
            corpus = self.load(d.train)
            return TrainCorpus.in_memory(corpus.fingerprint, f"{d.hf.path}[{d.train}]", lambda: corpus)
        # Hash the files' bytes without decoding them: on a cache hit the training text is never read.
        paths = [resolve_file(d.train, lang, self.root) for lang in (d.src_lang, d.tgt_lang)]
        fingerprint = hashlib.sha256(" ".join(file_sha256(p) for p in paths).encode()).hexdigest()
        return TrainCorpus.in_memory(fingerprint, f"{paths[0]} + {paths[1]}", lambda: self.load(d.train))

    def _streamed_train(self) -> TrainCorpus:
        d = self.data
        columns = (d.hf.src_column, d.hf.tgt_column)

        def chunks(n: int) -> Iterator[tuple[list[str], list[str]]]:
            yield from iter_hf(
                self._hf_dict(), d.train, d.src_lang, d.tgt_lang, description=d.hf.path, columns=columns, chunk=n
            )

        def side(i: int) -> Iterator[str]:  # one pass over the stream per side: source first, as in memory
            for pair in chunks(STREAM_CHUNK):
                yield from pair[i]

        fingerprint = stream_fingerprint(d.hf, d.train, d.src_lang, d.tgt_lang, self.root)
        return TrainCorpus(fingerprint, f"{d.hf.path}[{d.train}] (streamed)", lambda: (side(0), side(1)), chunks)


def uses_hf(data: DataConfig) -> bool:
    """Whether ``data`` names a ``datasets`` corpus (``data.hf.path``) rather than files."""
    return data.hf is not None and bool(data.hf.path)  # None: configs saved before hf became a field
