"""Reading parallel corpora: line-aligned ``{prefix}.{lang}`` files (plain or gzip); ``datasets`` in :mod:`nmt.data.hf`.

Every reader checks what a user can get wrong and says where: a missing file lists the paths tried, invalid
UTF-8 names the file and the 1-based line, sides of different lengths name both files and both counts.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt.data.download import ensure_download  # re-exported: downloads are part of reading a corpus
from nmt.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "Parallel",
    "data_root",
    "ensure_download",
    "file_sha256",
    "load_parallel",
    "read_lines",
    "resolve_file",
    "resolve_path",
    "texts_sha256",
]

GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Parallel:
    """Line-aligned source and target sentences of one corpus split.

    Attributes:
        name: a short name for logs and result files (``test_2016_flickr``, or the split name for ``datasets``).
        src: source sentences, one per line of the corpus.
        tgt: target sentences, aligned with ``src``.
        files: where the sentences came from (file paths, or a dataset description).
        fingerprint: sha256 of the input (the files' bytes, or the texts for ``datasets``), for cache keys.
    """

    name: str
    src: list[str]
    tgt: list[str]
    files: tuple[str, ...]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.src)


def data_root() -> Path:
    """The data root: ``$NMT_DATA_DIR`` if set, else ``data/`` (relative to the working directory)."""
    return Path(os.environ.get("NMT_DATA_DIR") or "data")


def resolve_path(path: str | Path, root: Path | None = None) -> Path:
    """An absolute path as is; a relative one under the data root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (root if root is not None else data_root()) / p


def resolve_file(prefix: str | Path, lang: str, root: Path | None = None) -> Path:
    """The file holding language ``lang`` of corpus ``prefix``: ``{prefix}.{lang}``, else ``{prefix}.{lang}.gz``.

    Raises:
        DataError: neither exists; the message names both paths tried and the languages that do exist.
    """
    base = resolve_path(prefix, root)
    tried = [base.with_name(f"{base.name}.{lang}"), base.with_name(f"{base.name}.{lang}.gz")]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    found = sorted(
        {p.name[len(base.name) + 1 :].removesuffix(".gz") for p in base.parent.glob(f"{base.name}.*") if p.is_file()}
    )
    hint = f"; languages found for this prefix: {', '.join(found)}" if found else ""
    if not found:  # a wrong or absent corpus: name the corpora that are there (e.g. a sample of a training set)
        names = (p.name.removesuffix(".gz") for p in base.parent.glob(f"*.{lang}*") if p.is_file())
        others = sorted({n.removesuffix(f".{lang}") for n in names if n.endswith(f".{lang}")})
        hint = f"; corpora with a {lang!r} file in {base.parent}: {', '.join(others)}" if others else ""
    where = f" (data root: {root if root is not None else data_root()}, set by NMT_DATA_DIR)"
    raise DataError(f"no {lang!r} file for corpus {str(prefix)!r}: tried {tried[0]} and {tried[1]}{hint}{where}")


def _open_binary(path: Path) -> Any:
    """Open ``path`` for reading bytes, decompressing when its content starts with the gzip magic number."""
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == GZIP_MAGIC
        return gzip.open(path, "rb") if gz else open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def read_lines(path: str | Path) -> Iterator[str]:
    """Yield the lines of a plain or gzipped UTF-8 text file, without line endings (``\\n`` or ``\\r\\n``).

    Gzip is recognised by content (magic number), so a misnamed file still reads. A UTF-8 byte-order mark on
    the first line is dropped.

    Raises:
        DataError: the file is missing or unreadable, is a broken gzip file, or holds invalid UTF-8 (the message
            names the file and the 1-based line number).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    number = 0
    with _open_binary(path) as f:
        try:
            for number, raw in enumerate(f, start=1):  # ``number`` is reported on error
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"{path}, line {number}: invalid UTF-8 at byte {e.start} ({raw[e.start : e.start + 4]!r}); "
                        "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                    ) from None
                if number == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                yield line.rstrip("\r\n")
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot read {path} after line {number}: {e} (truncated or corrupt gzip file?)") from None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (the compressed bytes for gzip): the content part of a cache key."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def texts_sha256(*sides: list[str]) -> str:
    """sha256 of sentence lists (for corpora that are not files, e.g. ``datasets``)."""
    h = hashlib.sha256()
    for side in sides:
        h.update(f"{len(side)}\n".encode())
        h.update("\n".join(side).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def load_parallel(prefix: str | Path, src_lang: str, tgt_lang: str, root: Path | None = None) -> Parallel:
    """Read the two sides of corpus ``prefix`` and check that they are line-aligned.

    Args:
        prefix: file prefix; ``{prefix}.{lang}`` or ``{prefix}.{lang}.gz`` is read. Relative to the data root.
        src_lang, tgt_lang: language suffixes of the source and target files.
        root: the data root (default :func:`data_root`).

    Raises:
        DataError: a file is missing, unreadable or not UTF-8, or the two files differ in line count.
    """
    src_path, tgt_path = resolve_file(prefix, src_lang, root), resolve_file(prefix, tgt_lang, root)
    src, tgt = list(read_lines(src_path)), list(read_lines(tgt_path))
    if len(src) != len(tgt):
        raise DataError(
            f"parallel corpus {str(prefix)!r} is not line-aligned: {src_path} has {len(src)} lines but "
            f"{tgt_path} has {len(tgt)} lines"
        )
    h = hashlib.sha256(f"{file_sha256(src_path)} {file_sha256(tgt_path)}".encode()).hexdigest()
    return Parallel(Path(prefix).name, src, tgt, (str(src_path), str(tgt_path)), h)


# --------------------------------------------------------------------------------------------- datasets
def __getattr__(name: str) -> Any:
    """``open_hf`` / ``load_hf`` live in :mod:`nmt.data.hf` (imported on first use: ``datasets`` is heavy)."""
    if name in ("open_hf", "load_hf"):
        from nmt.data import hf

        return getattr(hf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
