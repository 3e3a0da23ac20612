"""Damaging a checkpoint's bytes while its zip container stays intact, shared by every test tier."""

from __future__ import annotations

import zipfile
from pathlib import Path


def record_span(path: Path, name: str) -> tuple[int, int]:
    """Where the bytes of the first zip record whose name ends in ``name`` lie in ``path`` (start, end): the local
    header's offset plus its own length (torch pads the local header, so the central directory's lengths differ)."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(name))
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
    start = info.header_offset + 30 + name_len + extra_len
    return start, start + info.compress_size


def largest_tensor_record(path: Path) -> str:
    """The name of the biggest tensor record (``archive/data/N``): an embedding table in a model checkpoint."""
    with zipfile.ZipFile(path) as z:
        return max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size).filename


def damage_record(path: Path, name: str, how: str = "zeroed") -> None:
    """Zero 16 bytes (``zeroed``), flip one bit (``flipped``) or write 64 random bytes (``random``) in the middle
    of record ``name``; the zip's directory and headers are left as they were."""
    start, end = record_span(path, name)
    data = bytearray(path.read_bytes())
    middle = (start + end) // 2
    if how == "zeroed":
        data[middle : middle + 16] = bytes(16)
    elif how == "flipped":
        data[middle] ^= 0x10
    else:
        data[middle : middle + 64] = bytes((k * 97 + 13) % 256 for k in range(64))
    assert len(data) == path.stat().st_size
    path.write_bytes(bytes(data))
