"""Shared fixtures: small slices of the real corpora in ../shared/data (never copies in the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from corpus_io import read_gz_lines, write_lines

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    for candidate in (os.environ.get("NMT_DATA_DIR"), REPO.parent / "shared" / "data", REPO / "data"):
        if candidate and (Path(candidate) / "multi30k" / "train.de.gz").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The directory holding ``multi30k/``, ``iwslt14-de-en/`` and ``align-de-en/``."""
    root = _data_root()
    if root is None:
        pytest.skip("no corpus: set NMT_DATA_DIR to a directory holding multi30k/ (../shared/data here)")
    return root


@pytest.fixture(scope="session")
def m30k_slice(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Multi30k slice laid out like the data root: ``multi30k/{train,val,test_2016_flickr}.{de,en}[.gz]``.

    train: the first 2,000 pairs (gzipped), val: 100 pairs (plain text), test_2016_flickr: 100 pairs (gzipped).
    """
    out = tmp_path_factory.mktemp("m30k") / "multi30k"
    src = data_root / "multi30k"
    for split, n, suffix in (("train", 2000, ".gz"), ("val", 100, ""), ("test_2016_flickr", 100, ".gz")):
        for lang in ("de", "en"):
            write_lines(out / f"{split}.{lang}{suffix}", read_gz_lines(src / f"{split}.{lang}.gz", n))
    return out.parent


@pytest.fixture
def one_thread():
    """Run a test's tiny models on one torch thread (restored afterwards): they only lose from intra-op threads,
    badly so on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
