"""prepare_data: filtering training pairs (never evaluation sets), caching by content, reuse, downloads."""

from __future__ import annotations

import logging
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from corpus_io import read_gz_lines, write_lines

from nmt.config import ConfigError, DataConfig, HFConfig, TokenizerConfig
from nmt.data import cache as store
from nmt.data import download, prepare
from nmt.data.batch import collate
from nmt.data.prepare import prepare_data
from nmt.data.tokenizer import Tokenizer
from nmt.errors import DataError

TOK = TokenizerConfig(vocab_size=600)


@pytest.fixture
def root(m30k_slice: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, writable copy of the Multi30k slice as the data root, and a private cache (``NMT_CACHE_DIR``)."""
    shutil.copytree(m30k_slice / "multi30k", tmp_path / "data" / "multi30k")
    monkeypatch.setenv("NMT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "data"


def _plain(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _config(**kw: object) -> DataConfig:
    return DataConfig(train="multi30k/train", valid="multi30k/val", test=["multi30k/test_2016_flickr"], **kw)


class Counter:
    """Counts calls of the two expensive steps a cache hit must skip."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trained = self.encoded = 0
        train, encode = Tokenizer.train.__func__, prepare._encode_train  # type: ignore[attr-defined]

        def counting_train(cls, *a, **k):  # type: ignore[no-untyped-def]
            self.trained += 1
            return train(cls, *a, **k)

        def counting_encode(*a, **k):  # type: ignore[no-untyped-def]
            self.encoded += 1
            return encode(*a, **k)

        monkeypatch.setattr(Tokenizer, "train", classmethod(counting_train))
        monkeypatch.setattr(prepare, "_encode_train", counting_encode)


def test_second_run_hits_the_cache_and_a_changed_file_misses(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter(monkeypatch)
    caplog.set_level(logging.INFO, logger="nmt.data.prepare")
    first = prepare_data(_config(), TOK)
    assert (counter.trained, counter.encoded) == (1, 1)
    cache = root.parent / "cache"
    assert {p.name.split("-")[0] for p in cache.iterdir()} == {"tokenizer", "train"}
    assert not list(cache.glob(".*"))  # no temporary directories left

    caplog.clear()
    second = prepare_data(_config(), TOK)
    assert (counter.trained, counter.encoded) == (1, 1)  # nothing retrained or re-encoded
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("tokenizer cache hit") for m in messages)
    assert any(m.startswith("training data cache hit") for m in messages)
    assert second.tokenizer.to_state() == first.tokenizer.to_state()
    np.testing.assert_array_equal(second.train.src_lengths, first.train.src_lengths)
    assert second.train.examples([5, 0, 1999]) == first.train.examples([5, 0, 1999])

    # a given tokenizer (resuming from a checkpoint) is used as it is: no training, the data from the cache
    resumed = prepare_data(_config(), TOK, tokenizer=Tokenizer.from_state(first.tokenizer.to_state()))
    assert (counter.trained, counter.encoded) == (1, 1)
    assert resumed.train.examples([3]) == first.train.examples([3])

    # same name, new content (one sentence changed): the cache must not serve the old data
    en = read_gz_lines(root / "multi30k/train.en.gz")
    en[7] = en[8]
    write_lines(root / "multi30k/train.en.gz", en)
    third = prepare_data(_config(), TOK)
    assert (counter.trained, counter.encoded) == (2, 2)
    assert third.train.examples([7])[1] == third.train.examples([8])[1] != first.train.examples([7])[1]


def test_empty_and_overlong_training_pairs_are_dropped_and_counted(
    root: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepare, "ENCODE_CHUNK", 7)  # line numbers must survive chunked encoding
    de, en = read_gz_lines(root / "multi30k/train.de.gz"), read_gz_lines(root / "multi30k/train.en.gz")
    de[3] = ""  # empty source
    en[10] = "   "  # whitespace-only target
    de[20] = " ".join(de[20:30])  # ten sentences in one line: far over max_len
    for split, lines in (("train.de.gz", de), ("train.en.gz", en)):
        write_lines(root / "multi30k" / split, lines)
    val_de, val_en = _plain(root / "multi30k/val.de"), _plain(root / "multi30k/val.en")
    write_lines(root / "multi30k/val.de", [" ".join(val_de[:10]), "", *val_de[2:100]])  # long and empty lines
    caplog.set_level(logging.INFO, logger="nmt.data.prepare")
    max_len = 40
    data = prepare_data(_config(max_len=max_len), TOK)

    tok = data.tokenizer
    src_len = np.array([len(x) for x in tok.encode_src(de)])
    tgt_len = np.array([len(x) for x in tok.encode_tgt(en)])
    empty = (src_len == 0) | (tgt_len == 0)
    too_long = ~empty & ((src_len > max_len) | (tgt_len > max_len))
    assert empty.sum() == 2 and too_long[20] and too_long.sum() >= 1
    stats = data.train.stats
    assert (stats["empty"], stats["too_long"], stats["kept"]) == (2, too_long.sum(), 2000 - 2 - too_long.sum())
    np.testing.assert_array_equal(data.train.line_ids, np.flatnonzero(~(empty | too_long)))
    assert data.train.src_lengths.max() <= max_len and data.train.tgt_lengths.min() > 0
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"dropped {2 + too_long.sum()} of 2000 pairs" in warning and "2 with an empty side" in warning

    # evaluation sets keep every line, in order, even empty and long ones
    assert len(data.valid) == 100 and data.valid.src_texts[1] == "" and data.valid.src_ids[1] == []
    assert len(data.valid.src_ids[0]) > max_len and data.valid.tgt_texts == val_en
    assert [len(t) for t in data.tests] == [100] and data.tests[0].name == "test_2016_flickr"


def test_train_data_batches_match_collate(root: Path) -> None:
    train = prepare_data(_config(), TOK).train
    idx = [17, 3, 1999, 250, 4]
    fast = train.batch(idx)
    slow = collate(*train.examples(idx), train.line_ids[idx].tolist())
    for name in ("src", "src_lengths", "tgt_in", "tgt_out", "ids"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name


def test_subword_sampling_keeps_texts_and_resegments(root: Path) -> None:
    data = prepare_data(_config(), TokenizerConfig(vocab_size=600, sampling_alpha=0.2))
    train, idx = data.train, list(range(50))
    assert train.has_texts
    plain = train.examples(idx, sample=False)
    sampled = train.examples(idx)
    assert sampled != plain
    decode = data.tokenizer.decode_src
    assert [decode(s) for s in sampled[0]] == [decode(s) for s in plain[0]]
    assert data.valid.src_ids == data.tokenizer.encode_src(data.valid.src_texts)  # evaluation never samples


def test_datasets_corpus_prepares_like_files(root: Path) -> None:
    import datasets

    sides = {
        "train": (read_gz_lines(root / "multi30k/train.de.gz"), read_gz_lines(root / "multi30k/train.en.gz")),
        "val": (_plain(root / "multi30k/val.de"), _plain(root / "multi30k/val.en")),
    }
    for split, (de, en) in sides.items():
        rows = [{"translation": {"de": s, "en": t}} for s, t in zip(de, en)]
        datasets.Dataset.from_list(rows).to_json(root / f"{split}.jsonl", lines=True)
    hf = HFConfig(path="json", data_files={"train": "train.jsonl", "validation": "val.jsonl"})
    from_hf = prepare_data(DataConfig(train="train", valid="validation", hf=hf), TOK)
    from_files = prepare_data(DataConfig(train="multi30k/train", valid="multi30k/val"), TOK)
    assert from_hf.tokenizer.to_state() == from_files.tokenizer.to_state()
    assert from_hf.train.examples(range(2000)) == from_files.train.examples(range(2000))
    assert from_hf.valid.tgt_texts == from_files.valid.tgt_texts and from_hf.valid.name == "validation"


def test_unset_corpus_and_offline_download_fail_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMT_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"data\.valid is not set"):
        prepare_data(DataConfig(train="multi30k/train"), TOK)
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DataError, match=r"data\.cache_dir=.*cannot create or write"):
        prepare_data(_config(cache_dir=str(tmp_path / "file/cache")), TOK)

    def offline(url: str, timeout: float = 0) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="NMT_DATA_DIR"):
        prepare_data(_config(download="multi30k"), TOK)
    with pytest.raises(DataError, match=r"tried .*multi30k/train\.de .*multi30k/train\.de\.gz"):
        prepare_data(_config(), TOK)


def _tree(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(directory.rglob("*"))}


def test_the_cache_goes_to_the_users_cache_directory_never_the_data_root(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the default: $NMT_CACHE_DIR, else $XDG_CACHE_HOME/nmt, else ~/.cache/nmt; data.cache_dir overrides them all
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("NMT_CACHE_DIR")
    assert store.default_cache_dir() == tmp_path / "home/.cache/nmt"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.default_cache_dir() == tmp_path / "xdg/nmt"
    assert store.cache_dir(_config()) == tmp_path / "xdg/nmt"
    assert store.cache_dir(_config(cache_dir=str(tmp_path / "mine"))) == tmp_path / "mine"
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "shared-cache"))
    assert store.cache_dir(_config()) == tmp_path / "shared-cache"

    # a read-only data root (like a shared corpus directory) is only read; root bypasses the mode bits, so the
    # check is that nothing under it changed
    before = _tree(root)
    for directory in (root / "multi30k", root):
        directory.chmod(0o555)
    try:
        data = prepare_data(_config(), TOK)
    finally:
        for directory in (root, root / "multi30k"):
            directory.chmod(0o755)
    assert _tree(root) == before and len(data.train) == 2000
    assert {p.name.split("-")[0] for p in (tmp_path / "shared-cache").iterdir()} == {"tokenizer", "train"}

    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "file/cache"))
    with pytest.raises(DataError, match=r"NMT_CACHE_DIR=.*file/cache.*set data\.cache_dir or NMT_CACHE_DIR"):
        prepare_data(_config(), TOK)
