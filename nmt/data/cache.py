"""Cache entries: content-keyed directories written atomically (temporary directory, then rename).

An entry is a directory named ``{kind}-{key}`` holding its files and a ``meta.json``; the key is a hash of
everything the content depends on. Tables are Arrow IPC files, written one record batch at a time (so a corpus
larger than memory can be encoded into one) and memory-mapped on load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from nmt.config import DataConfig
from nmt.errors import DataError

log = logging.getLogger(__name__)

CACHE_FORMAT = 3  # bump when the layout of a cache entry changes (2: large_list ids; 3: one Arrow IPC file)
TABLE_FILE = "table.arrow"


def cache_dir(data: DataConfig) -> Path:
    """Where processed data is cached: ``data.cache_dir`` if set, else :func:`default_cache_dir`.

    Never inside the data root by default: a corpus directory may be read-only or shared between users.

    Raises:
        DataError: the directory cannot be created or written; the message says which setting chose it.
    """
    if data.cache_dir:
        cache = Path(data.cache_dir).expanduser()
        if not writable(cache):
            raise DataError(f"data.cache_dir={data.cache_dir}: cannot create or write to {cache}")
        return cache
    cache = default_cache_dir()
    if not writable(cache):
        source = f"NMT_CACHE_DIR={os.environ['NMT_CACHE_DIR']}" if os.environ.get("NMT_CACHE_DIR") else "the default"
        raise DataError(
            f"cannot create or write to the cache directory {cache} ({source}): set data.cache_dir or NMT_CACHE_DIR"
        )
    return cache


def default_cache_dir() -> Path:
    """``$NMT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/nmt``, else ``~/.cache/nmt`` (on every platform, as
    ``torch.hub`` and Hugging Face do, so one variable moves all of them)."""
    explicit = os.environ.get("NMT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "nmt"


def writable(directory: Path) -> bool:
    """Whether ``directory`` exists or can be created, and accepts new entries.

    A directory whose mode has no write bit counts as read-only even for root (a shared corpus directory).
    """
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and not existing.stat().st_mode & 0o222:
        return False
    try:
        directory.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=directory))
        return True
    except OSError:
        return False


def entry_key(options: dict[str, Any]) -> str:
    """A short hash of everything an entry's content depends on (content hashes and options, JSON-able)."""
    text = json.dumps({"format": CACHE_FORMAT, **options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    """``meta.json``: what the entry was built from (for people reading the cache) and counts to log again."""
    (directory / "meta.json").write_text(json.dumps({"format": CACHE_FORMAT, **meta}, indent=1, sort_keys=True))


@contextmanager
def atomic_entry(entry: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``entry``; rename it to ``entry`` when the block succeeds."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, entry)
        except OSError:
            if not entry.is_dir():
                raise
            log.info("cache entry %s was written by another process meanwhile; using that one", entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class TableWriter:
    """Appends record batches to ``directory/table.arrow``; the file is opened at the first batch (its schema).

    Use as a context manager; only the current batch is ever in memory.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / TABLE_FILE
        self.rows = 0
        self._sink: Any = None
        self._writer: Any = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_file(self._sink, batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()


def load_table(entry: Path) -> pa.Table:
    """An entry's table, memory-mapped (the Arrow file is not read into memory)."""
    return pa.ipc.open_file(pa.memory_map(str(entry / TABLE_FILE), "r")).read_all()
