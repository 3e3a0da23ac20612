"""Cache entries: content-keyed directories written atomically (temporary directory, then rename).

An entry is a directory named ``{kind}-{key}`` holding its files and a ``meta.json``; the key is a hash of
everything the content depends on. Arrow tables go through ``datasets`` (``save_to_disk`` /
``load_from_disk``), which memory-maps them on load.
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

CACHE_FORMAT = 2  # bump when the layout of a cache entry changes (2: large_list id columns)


def cache_dir(data: DataConfig, root: Path) -> Path:
    """``data.cache_dir``, else ``<data root>/cache``; a read-only data root falls back to ``~/.cache/nmt``."""
    if data.cache_dir:
        cache = Path(data.cache_dir).expanduser()
        if not writable(cache):
            raise DataError(f"data.cache_dir={data.cache_dir}: cannot create or write to {cache}")
        return cache
    cache = root / "cache"
    if writable(cache):
        return cache
    fallback = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "nmt"
    log.warning("cannot write to %s (read-only data root?): caching processed data in %s instead", cache, fallback)
    if not writable(fallback):
        raise DataError(f"no writable cache directory ({cache}, {fallback}): set data.cache_dir")
    return fallback


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


def save_table(table: pa.Table, directory: Path) -> None:
    """Write ``table`` as a ``datasets`` Arrow dataset into ``directory/data``."""
    import datasets

    with quiet_datasets():
        datasets.Dataset(table).save_to_disk(str(directory / "data"))


def load_table(entry: Path) -> pa.Table:
    """The training table, memory-mapped (the Arrow file is not read into memory)."""
    import datasets

    with quiet_datasets():
        return datasets.load_from_disk(str(entry / "data")).data.table


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """No ``datasets`` progress bars inside the block (restored after it if they were on)."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
