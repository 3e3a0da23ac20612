"""Translation sharded by line ranges: shard files that survive interruption, and their merge in input order.

A run of N shards splits an input file of L lines into N contiguous ranges, shard k getting lines
``[k·L // N, (k+1)·L // N)``. Each shard writes its outputs (translations, and alignments when asked) to
``OUTPUT.shard-K-of-N`` beside each output, appending one chunk of lines at a time; after every chunk the files are
flushed to disk and a progress record ``OUTPUT.shard-K-of-N.json`` (written atomically) notes the lines done and the
byte size of every shard file. A shard started again reads that record, cuts its files back to the recorded sizes
(dropping a chunk that was being written when it stopped) and goes on from the next line. The record also holds a
fingerprint of the input file and the settings: a shard whose input or settings changed starts over.

The merge concatenates the N shard files of every output in order into the output (written to a temporary file,
then renamed), once every shard's record says it is complete, and removes the shards and records.

This module only handles files; ``nmt-translate`` (:mod:`nmt.cli.translate`) drives it, under ``torchrun`` or
with ``--shard K/N`` and ``--merge``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nmt.errors import DataError


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` (0 <= K < N) -> a :class:`Shard`.

    Raises:
        ValueError: anything else (argparse turns it into a usage error).
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ValueError(f"expected K/N with 0 <= K < N (e.g. 0/4 for the first of 4 shards), got {text!r}")
    return Shard(int(match[1]), int(match[2]))


def line_range(total: int, shard: Shard) -> tuple[int, int]:
    """Lines ``[start, end)`` (0-based) of ``shard`` in an input of ``total`` lines (sizes differ by <= 1)."""
    return total * shard.index // shard.count, total * (shard.index + 1) // shard.count


def count_lines(path: str | Path) -> int:
    """Lines of a file, a last line without a newline included.

    Raises:
        DataError: the file cannot be read.
    """
    count, last = 0, b"\n"
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                count += block.count(b"\n")
                last = block[-1:]
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    return count + (last != b"\n")


def shard_path(output: str | Path, shard: Shard) -> Path:
    return Path(f"{output}.shard-{shard.index}-of-{shard.count}")


def record_path(output: str | Path, shard: Shard) -> Path:
    """The progress record of a shard, beside the shard of the first output."""
    return Path(f"{shard_path(output, shard)}.json")


def fingerprint(input_path: str | Path, settings: dict) -> str:
    """What a shard's lines depend on: the input file (path, size, modification time) and the settings."""
    st = os.stat(input_path)
    key = json.dumps([str(Path(input_path).resolve()), st.st_size, st.st_mtime_ns, settings], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ShardWriter:
    """Append a shard's output lines chunk by chunk, resuming where a previous run of the same shard stopped.

    Args:
        outputs: the final output paths (translations first; alignments when asked).
        shard: which shard this is.
        lines: the number of input lines of the shard.
        key: the :func:`fingerprint` of the input and settings.

    Attributes:
        done: input lines of the shard already translated (by an earlier run, or committed since).
    """

    def __init__(self, outputs: Sequence[str | Path], shard: Shard, lines: int, key: str) -> None:
        self.paths = [shard_path(o, shard) for o in outputs]
        self.record = record_path(outputs[0], shard)
        self.shard, self.lines, self.key = shard, lines, key
        self.done, sizes = 0, [0] * len(self.paths)
        previous = self._read_record()
        if previous is not None:
            self.done, sizes = previous["done"], previous["bytes"]
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.files: list[BinaryIO] = []
        for path, size in zip(self.paths, sizes):
            f = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - closed in close()
            f.truncate(size)  # drop whatever the interrupted run wrote after its last record
            f.seek(size)
            self.files.append(f)
        self._commit()

    def _read_record(self) -> dict | None:
        """The earlier run's progress, when it is for the same input, settings and files."""
        try:
            record = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        same = record.get("key") == self.key and record.get("lines") == self.lines
        sizes = record.get("bytes", [])
        if not same or len(sizes) != len(self.paths):
            return None
        if any(not p.exists() or p.stat().st_size < size for p, size in zip(self.paths, sizes)):
            return None  # a shard file is missing or shorter than recorded: start over
        return record

    @property
    def complete(self) -> bool:
        return self.done >= self.lines

    def write(self, parts: Sequence[bytes]) -> None:
        """One input line's output in every file (translations, alignments), in the order of ``outputs``."""
        for f, data in zip(self.files, parts):
            f.write(data)

    def commit(self, done: int) -> None:
        """Every line up to ``done`` (of the shard) is written: make it durable and record it."""
        self.done = done
        self._commit()

    def _commit(self) -> None:
        sizes = []
        for f in self.files:
            f.flush()
            os.fsync(f.fileno())
            sizes.append(f.tell())
        record = {"key": self.key, "shard": str(self.shard), "lines": self.lines, "done": self.done, "bytes": sizes}
        _write_atomically(self.record, json.dumps(record).encode())

    def close(self) -> None:
        for f in self.files:
            f.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shard_count(output: str | Path) -> int:
    """N of the shards of ``output`` found on disk (``OUTPUT.shard-K-of-N.json``).

    Raises:
        DataError: none, or shards of several different counts.
    """
    out = Path(output)
    pattern = re.compile(re.escape(out.name) + r"\.shard-\d+-of-(\d+)\.json")
    folder = out.parent if str(out.parent) else Path(".")
    counts = {int(m[1]) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))} if folder.is_dir() else set()
    if len(counts) != 1:
        found = "no shards" if not counts else f"shards of {sorted(counts)} runs"
        raise DataError(f"cannot merge {output}: found {found} ({out.name}.shard-K-of-N.json records)")
    return counts.pop()


def merge_shards(outputs: Sequence[str | Path], count: int) -> None:
    """Concatenate the ``count`` shards of every output in order into the output; remove shards and records.

    Raises:
        DataError: a shard is missing or incomplete (naming it and how far it got).
    """
    for index in range(count):
        shard = Shard(index, count)
        record = record_path(outputs[0], shard)
        try:
            progress = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DataError(f"cannot merge {outputs[0]}: shard {shard} has no progress record {record}") from None
        if progress["done"] < progress["lines"]:
            raise DataError(
                f"cannot merge {outputs[0]}: shard {shard} is incomplete ({progress['done']:,} of "
                f"{progress['lines']:,} lines); run it again with the same settings (--shard {shard}) to finish it"
            )
        for path in (shard_path(o, shard) for o in outputs):
            if not path.exists():
                raise DataError(f"cannot merge {outputs[0]}: {path} is missing")
    for output in outputs:
        target = Path(output)
        tmp = target.with_name(target.name + ".merge.tmp")
        with open(tmp, "wb") as out:
            for index in range(count):
                with open(shard_path(output, Shard(index, count)), "rb") as f:
                    while block := f.read(1 << 20):
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    for index in range(count):
        for output in outputs:
            shard_path(output, Shard(index, count)).unlink()
        record_path(outputs[0], Shard(index, count)).unlink()
