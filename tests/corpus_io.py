"""Reading and writing corpus lines, shared by every test tier (``conftest`` modules are not importable by name)."""

from __future__ import annotations

import gzip
from pathlib import Path


def read_gz_lines(path: Path, n: int | None = None) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    return lines if n is None else lines[:n]


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write ``lines`` as UTF-8 text, gzipped when the name ends in ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path
