"""Shared fixtures: small slices of the real corpora in ../shared/data (never copies in the repository)."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``NMT_CACHE_DIR`` for the whole session (console scripts inherit it): tests that leave ``data.cache_dir``
    unset must never write into the user's cache directory."""
    cache = tmp_path_factory.mktemp("nmt_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NMT_CACHE_DIR", str(cache))
        yield cache


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


@pytest.fixture(scope="session")
def trained_checkpoint(m30k_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``best.pt`` of a small Transformer *trained* 300 updates on the 2,000-pair slice (about 30 s on one thread).

    Its outputs are real sentences (test BLEU about 7), unlike a random-init model's, so tests of search and
    export exercise end-of-sentence decisions and length penalties on realistic distributions. 2+2 layers,
    d_model 64, 4 heads, joint 500-piece vocabulary, data.max_len 40, search beam 4.
    """
    from nmt.config import DataConfig, NMTConfig, SearchConfig, TokenizerConfig, TrainConfig, TransformerConfig
    from nmt.training.trainer import train

    corpus = m30k_slice / "multi30k"
    cfg = NMTConfig(
        name="trained",
        data=DataConfig(
            train=str(corpus / "train"),
            valid=str(corpus / "val"),
            test=[str(corpus / "test_2016_flickr")],
            max_len=40,
            cache_dir=str(tmp_path_factory.mktemp("trained_cache")),
        ),
        tokenizer=TokenizerConfig(vocab_size=500),
        model=TransformerConfig(d_model=64, ffn_dim=128, heads=4, encoder_layers=2, decoder_layers=2),
        train=TrainConfig(
            batch_tokens=2048,
            warmup_steps=50,
            lr=3e-3,
            max_steps=300,
            eval_every=300,
            save_every=300,
            threads=1,
            heatmap_sentences=0,
            log_every=100,
        ),
        search=SearchConfig(beam_size=4, max_len_a=1.2, max_len_b=5, batch_tokens=1024),
    )
    before = torch.get_num_threads()
    run_dir = tmp_path_factory.mktemp("trained_run")
    try:
        train(cfg, run_dir)
    finally:
        torch.set_num_threads(before)
    return run_dir / "checkpoints" / "best.pt"


@pytest.fixture
def one_thread():
    """Run a test's tiny models on one torch thread (restored afterwards): they only lose from intra-op threads,
    badly so on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
