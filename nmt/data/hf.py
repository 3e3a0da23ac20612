"""Parallel corpora through Hugging Face ``datasets``: hub names, local files (with globs), saved directories.

Splits are read by columns through Arrow, never as per-row Python dicts. A split is either loaded whole
(:func:`load_hf`, for dev/test sets and corpora that fit in memory) or iterated in chunks (:func:`iter_hf`), which
with ``hf.streaming`` reads a corpus larger than memory without materialising it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmt.config import HF_FORMATS
from nmt.data.corpus import Parallel, data_root, file_sha256, resolve_path, texts_sha256
from nmt.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

    from nmt.config import HFConfig

log = logging.getLogger(__name__)

STREAM_CHUNK = 10_000  # rows read at a time from a split (an Arrow table of this many rows is in memory)


# --------------------------------------------------------------------------------------------- opening
def open_hf(hf: HFConfig, root: Path | None = None, cache_dir: Path | None = None) -> Any:
    """Open a Hugging Face corpus as a ``DatasetDict`` (split name -> ``Dataset``), or with ``hf.streaming`` as an
    ``IterableDatasetDict`` (nothing is read until a split is iterated).

    ``hf.path`` is a format name (``parquet``, ``json``, ``arrow``, ``csv``) read from ``hf.data_files``
    (see :func:`resolve_data_files`), a local ``save_to_disk`` directory (memory-mapped already, so streaming
    changes nothing), or a hub dataset name with ``hf.name`` as its config (``"de-en"``), ``hf.revision`` and,
    optionally, ``hf.data_files`` inside the dataset repository.

    Raises:
        DataError: unset path, missing files or empty globs, an unreadable file, or a hub dataset that cannot be
            loaded (offline, unknown name or config); the message says which.
    """
    import datasets

    root = root if root is not None else data_root()
    if not hf.path:
        raise DataError("data.hf.path is empty: give a hub dataset name, a local dataset directory or a format")
    kwargs: dict[str, Any] = {"streaming": hf.streaming}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    if hf.path in HF_FORMATS:
        if not hf.data_files:
            raise DataError(f"data.hf.path={hf.path!r} reads local files: set data.hf.data_files (split -> file)")
        files = resolve_data_files(hf, root)
        try:
            return datasets.load_dataset(hf.path, hf.name, data_files=files, **kwargs)
        except Exception as e:  # ``datasets`` raises many types for a bad file; the user needs the message
            raise DataError(f"cannot read {hf.path} files {files}: {e}") from e
    local = local_dataset_dir(hf, root)
    if local is not None:
        try:
            loaded = datasets.load_from_disk(str(local))
        except FileNotFoundError as e:
            raise DataError(f"{local} is not a dataset saved with save_to_disk: {e}") from None
        if not isinstance(loaded, datasets.DatasetDict):
            raise DataError(f"{local} holds one Dataset without splits; save a DatasetDict (train/validation/...)")
        return loaded
    if hf.revision:
        kwargs["revision"] = hf.revision
    if hf.data_files:
        kwargs["data_files"] = dict(hf.data_files)  # paths and patterns inside the dataset repository
    try:
        return datasets.load_dataset(hf.path, hf.name, **kwargs)
    except Exception as e:  # offline machines, unknown names and configs all surface here
        raise DataError(
            f"cannot load Hugging Face dataset {hf.path!r} (config {hf.name!r}, revision {hf.revision!r}): {e}. "
            "Without internet, point data.hf.path at a local save_to_disk directory or at local files "
            "(data.hf.path=parquet + data_files)"
        ) from e


def local_dataset_dir(hf: HFConfig, root: Path) -> Path | None:
    """The ``save_to_disk`` directory ``hf.path`` names (under the data root, else as given), or None."""
    return next((p for p in (resolve_path(hf.path, root), Path(hf.path)) if p.is_dir()), None)


def resolve_data_files(hf: HFConfig, root: Path) -> dict[str, list[str]]:
    """``hf.data_files`` as split -> sorted list of existing local files.

    Each split takes a path, a glob pattern (``train-*.parquet``, ``**/*.jsonl``) or a list of them. Relative
    ones resolve under the data root, else under the working directory; a pattern's matches are sorted, and the
    files of a list keep the list's order.

    Raises:
        DataError: a file does not exist, or a pattern matches nothing (the message names it and where it looked).
    """
    resolved = {}
    for split, value in hf.data_files.items():
        files: list[str] = []
        for item in [value] if isinstance(value, str) else list(value):
            files.extend(str(p) for p in _expand(item, root, split))
        resolved[split] = files
    return resolved


def _expand(item: str, root: Path, split: str) -> list[Path]:
    places = [resolve_path(item, root)] + ([] if Path(item).expanduser().is_absolute() else [Path(item)])
    if glob.has_magic(item):
        for pattern in places:
            matches = sorted(Path(m) for m in glob.glob(str(pattern), recursive=True) if Path(m).is_file())
            if matches:
                return matches
        tried = " and ".join(str(p) for p in places)
        raise DataError(f"data.hf.data_files.{split}: the pattern {item!r} matches no file (tried {tried})")
    for candidate in places:
        if candidate.is_file():
            return [candidate]
    tried = " and ".join(str(p) for p in places)
    raise DataError(f"data.hf.data_files.{split}: {item} not found (tried {tried})")


# --------------------------------------------------------------------------------------------- reading
def load_hf(
    dataset_dict: Any,
    split: str,
    src_lang: str,
    tgt_lang: str,
    *,
    description: str = "",
    src_column: str | None = None,
    tgt_column: str | None = None,
) -> Parallel:
    """One split of an opened ``DatasetDict`` (or ``IterableDatasetDict``) as :class:`Parallel` sentences.

    Columns are chosen by :func:`select_column`. A streamed split is iterated to its end (dev/test sets).
    Missing values become empty strings.
    """
    ds = _split(dataset_dict, split, description)
    columns = (src_column, tgt_column)
    if _is_streamed(ds):
        src: list[str] = []
        tgt: list[str] = []
        for s, t in iter_hf(dataset_dict, split, src_lang, tgt_lang, description=description, columns=columns):
            src.extend(s)
            tgt.extend(t)
    else:
        table = ds.with_format("arrow")[:] if len(ds) else ds.data.table  # respects any index mapping
        src, tgt = _sides(table, src_lang, tgt_lang, columns, f"dataset {description} split {split!r}")
    return Parallel(split, src, tgt, (f"{description}[{split}]",), texts_sha256(src, tgt))


def iter_hf(
    dataset_dict: Any,
    split: str,
    src_lang: str,
    tgt_lang: str,
    *,
    description: str = "",
    columns: tuple[str | None, str | None] = (None, None),
    chunk: int = STREAM_CHUNK,
) -> Iterator[tuple[list[str], list[str]]]:
    """Yield a split's ``(source sentences, target sentences)`` ``chunk`` rows at a time, in corpus order.

    Only one chunk is in memory at a time: with a streamed split nothing else of the corpus is.
    """
    ds = _split(dataset_dict, split, description)
    where = f"dataset {description} split {split!r}"
    for table in ds.with_format("arrow").iter(batch_size=chunk):
        yield _sides(table, src_lang, tgt_lang, columns, where)


def _split(dataset_dict: Any, split: str, description: str) -> Any:
    if split not in dataset_dict:
        raise DataError(f"dataset {description} has no split {split!r}; splits: {', '.join(dataset_dict)}")
    return dataset_dict[split]


def _is_streamed(ds: Any) -> bool:
    import datasets

    return isinstance(ds, datasets.IterableDataset)


def _sides(
    table: pa.Table, src_lang: str, tgt_lang: str, columns: tuple[str | None, str | None], where: str
) -> tuple[list[str], list[str]]:
    src = select_column(table, columns[0], src_lang, "src_column", where).to_pylist()
    tgt = select_column(table, columns[1], tgt_lang, "tgt_column", where).to_pylist()
    return ["" if s is None else s for s in src], ["" if t is None else t for t in tgt]


def select_column(table: pa.Table, name: str | None, lang: str, key: str, where: str) -> Any:
    """The Arrow column of one side's sentences.

    ``name`` None: ``translation.<lang>`` (the WMT/OPUS layout), else a column named ``<lang>``. Otherwise a
    column named ``name`` (``source``), or ``column.field`` for a field of a struct column (``pair.de``).

    Raises:
        DataError: no such column or field; the message lists the columns (and the ``translation`` languages).
    """
    columns = table.column_names
    if name is None:
        if lang in _struct_fields(table, "translation"):
            return table.column("translation").combine_chunks().field(lang)
        if lang in columns:
            return table.column(lang)
        fields = _struct_fields(table, "translation")
        raise DataError(
            f"{where} has no {lang!r} text: columns {columns}"
            + (f", translation languages {fields}" if fields else "")
            + f"; name the column with data.hf.{key}"
        )
    if name in columns:
        return table.column(name)
    column, _, field = name.partition(".")
    if field and field in _struct_fields(table, column):
        return table.column(column).combine_chunks().field(field)
    nested = {c: _struct_fields(table, c) for c in columns if _struct_fields(table, c)}
    raise DataError(
        f"data.hf.{key}={name!r}: {where} has no such column; columns {columns}"
        + (f", nested fields {nested}" if nested else "")
    )


def _struct_fields(table: pa.Table, column: str) -> list[str]:
    if column not in table.column_names:
        return []
    typ = table.schema.field(column).type
    return [typ.field(i).name for i in range(typ.num_fields)] if hasattr(typ, "num_fields") else []


# --------------------------------------------------------------------------------------------- cache keys
def stream_fingerprint(hf: HFConfig, split: str, src_lang: str, tgt_lang: str, root: Path) -> str:
    """A cache key for a split that is streamed rather than read (its text cannot be hashed without a full pass).

    Local files and saved directories are keyed by their bytes, as text corpora are. A hub dataset is keyed by
    its name, config, revision and files: pin ``data.hf.revision`` to a commit to be sure that a changed
    upstream dataset is never served from a stale cache entry.
    """
    description: dict[str, Any] = {
        "path": hf.path,
        "name": hf.name,
        "split": split,
        "columns": [hf.src_column or f"<{src_lang}>", hf.tgt_column or f"<{tgt_lang}>"],
    }
    if hf.path in HF_FORMATS:
        files = resolve_data_files(hf, root).get(split, [])
        description["files"] = [file_sha256(f) for f in files]
    elif (local := local_dataset_dir(hf, root)) is not None:
        split_dir = local / split
        description["files"] = [file_sha256(p) for p in sorted(split_dir.glob("*.arrow"))]
    else:
        description.update(revision=hf.revision, data_files=hf.data_files)
        if not hf.revision:
            log.warning(
                "streamed hub dataset %s without data.hf.revision: the cache is keyed by its name, so an updated "
                "upstream dataset is not noticed; pin data.hf.revision to a commit",
                hf.path,
            )
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
