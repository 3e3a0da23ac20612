"""Hugging Face ``datasets`` conventions: data files as lists and globs, a revision, column mapping for other
layouts, and streaming a training split into the cache without holding it in memory. Local files only (no hub)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nmt.config import ConfigError, DataConfig, HFConfig, TokenizerConfig
from nmt.data import cache as store
from nmt.data import prepare, sources
from nmt.data.corpus import load_parallel
from nmt.data.hf import load_hf, open_hf, stream_fingerprint
from nmt.data.prepare import prepare_data
from nmt.data.tokenizer import Tokenizer
from nmt.errors import DataError

TOK = TokenizerConfig(vocab_size=600)
SHARDS = 4


@pytest.fixture(scope="module")
def hf_root(m30k_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with the slice as parquet in three layouts: ``m30k/train-0000{0..3}.parquet`` (a column per
    language, four shards), ``other/{train,val}.parquet`` (``source``/``target`` columns) and
    ``nested/{train,val}.jsonl`` (a ``pair`` struct of both languages)."""
    import datasets

    root = tmp_path_factory.mktemp("hf_root")
    train = load_parallel("multi30k/train", "de", "en", m30k_slice)
    val = load_parallel("multi30k/val", "de", "en", m30k_slice)
    for directory in ("m30k", "other", "nested"):
        (root / directory).mkdir()
    size = len(train) // SHARDS
    for k in range(SHARDS):
        part = slice(k * size, (k + 1) * size)
        shard = datasets.Dataset.from_dict({"de": train.src[part], "en": train.tgt[part]})
        shard.to_parquet(root / f"m30k/train-{k:05d}.parquet")
    datasets.Dataset.from_dict({"de": val.src, "en": val.tgt}).to_parquet(root / "m30k/val.parquet")
    for name, corpus in (("train", train), ("val", val)):
        columns = {"source": corpus.src, "target": corpus.tgt, "id": list(range(len(corpus)))}
        datasets.Dataset.from_dict(columns).to_parquet(root / f"other/{name}.parquet")
        rows = [{"pair": {"de": s, "en": t}, "score": 1.0} for s, t in zip(corpus.src, corpus.tgt)]
        datasets.Dataset.from_list(rows).to_json(root / f"nested/{name}.jsonl", lines=True)
    return root


@pytest.fixture
def env(hf_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``hf_root`` as the data root, with a private cache."""
    monkeypatch.setenv("NMT_DATA_DIR", str(hf_root))
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "cache"))
    return hf_root


def _expected(m30k_slice: Path, split: str = "train") -> tuple[list[str], list[str]]:
    corpus = load_parallel(f"multi30k/{split}", "de", "en", m30k_slice)
    return corpus.src, corpus.tgt


# --------------------------------------------------------------------------------------------- data files
@pytest.mark.parametrize(
    "files",
    [
        "m30k/train-*.parquet",  # a glob under the data root, expanded in sorted order
        [f"m30k/train-{k:05d}.parquet" for k in range(SHARDS)],  # a list, in its order
        ["m30k/train-00000.parquet", "m30k/train-0000[1-3].parquet"],  # a file and a glob
    ],
)
def test_data_files_as_globs_and_lists(env: Path, m30k_slice: Path, tmp_path: Path, files: Any) -> None:
    hf = HFConfig(path="parquet", data_files={"train": files, "dev": "m30k/val.parquet"})
    splits = open_hf(hf, env, cache_dir=tmp_path / "hf")
    train = load_hf(splits, "train", "de", "en")
    assert (train.src, train.tgt) == _expected(m30k_slice)
    assert load_hf(splits, "dev", "de", "en").tgt == _expected(m30k_slice, "val")[1]


def test_bad_data_files_name_the_pattern_or_file(env: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.hf\.data_files\.train: the pattern 'm30k/train-\*\.json' matches no"):
        open_hf(HFConfig(path="parquet", data_files={"train": "m30k/train-*.json"}), env)
    with pytest.raises(DataError, match=r"data_files\.dev: m30k/dev\.parquet not found \(tried .*m30k/dev\.parquet"):
        open_hf(HFConfig(path="parquet", data_files={"train": "m30k/val.parquet", "dev": "m30k/dev.parquet"}), env)
    with pytest.raises(ConfigError, match=r"data\.hf\.data_files\.train must be a file, a glob pattern or a non"):
        HFConfig(path="parquet", data_files={"train": []})
    with pytest.raises(ConfigError, match=r"data\.hf\.revision='v1' applies to hub datasets"):
        HFConfig(path="parquet", data_files={"train": "x.parquet"}, revision="v1")


def test_hub_datasets_get_the_revision_and_data_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    def fake_load_dataset(path: str, name: str | None = None, **kwargs: Any) -> dict:
        calls.append((path, name, kwargs))
        return {}

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    hf = HFConfig(path="someone/corpus", name="de-en", revision="0123abc", data_files={"train": "data/train-*"})
    open_hf(hf, tmp_path)
    assert calls == [
        (
            "someone/corpus",
            "de-en",
            {"streaming": False, "revision": "0123abc", "data_files": {"train": "data/train-*"}},
        )
    ]
    # a streamed hub split is keyed by name, config, revision and files (its text cannot be hashed in advance)
    key = stream_fingerprint(hf, "train", "de", "en", tmp_path)
    assert key == stream_fingerprint(hf, "train", "de", "en", tmp_path)
    other = HFConfig(path="someone/corpus", name="de-en", revision="4567def", data_files={"train": "data/train-*"})
    assert stream_fingerprint(other, "train", "de", "en", tmp_path) != key


# --------------------------------------------------------------------------------------------- columns
@pytest.mark.parametrize(
    ("files", "columns"),
    [("other/{}.parquet", ("source", "target")), ("nested/{}.jsonl", ("pair.de", "pair.en"))],
)
def test_column_mapping_reads_other_layouts(
    env: Path, m30k_slice: Path, tmp_path: Path, files: str, columns: tuple[str, str]
) -> None:
    fmt = "parquet" if files.endswith("parquet") else "json"
    hf = HFConfig(
        path=fmt,
        data_files={"train": files.format("train"), "val": files.format("val")},
        src_column=columns[0],
        tgt_column=columns[1],
    )
    data = prepare_data(DataConfig(train="train", valid="val", hf=hf), TOK)
    expected = _expected(m30k_slice)
    tok = data.tokenizer
    assert data.train.examples(range(3)) == (tok.encode_src(expected[0][:3]), tok.encode_tgt(expected[1][:3]))
    assert (data.valid.src_texts, data.valid.tgt_texts) == _expected(m30k_slice, "val")

    splits = open_hf(hf, env, cache_dir=tmp_path / "hf")
    with pytest.raises(DataError, match=r"no 'de' text: columns .*; name the column with data\.hf\.src_column"):
        load_hf(splits, "val", "de", "en", description=fmt)
    with pytest.raises(DataError, match=r"data\.hf\.tgt_column='pair\.fr'.* has no such column"):
        load_hf(splits, "val", "de", "en", src_column=columns[0], tgt_column="pair.fr")


# --------------------------------------------------------------------------------------------- streaming
def test_streamed_training_split_prepares_exactly_like_a_loaded_one(
    env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(prepare, "ENCODE_CHUNK", 300)  # several chunks, the last one shorter
    files = {"train": "m30k/train-*.parquet", "validation": "m30k/val.parquet"}

    def config(streaming: bool) -> DataConfig:
        hf = HFConfig(path="parquet", data_files=files, streaming=streaming)
        return DataConfig(train="train", valid="validation", max_len=40, hf=hf)

    loaded = prepare_data(config(False), TOK)
    caplog.set_level(logging.INFO, logger="nmt.data.prepare")
    streamed = prepare_data(config(True), TOK)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("tokenizer cache miss") and "(streamed)" in m for m in messages)  # not loaded's entry
    assert streamed.tokenizer.to_state() == loaded.tokenizer.to_state()
    n = len(loaded.train)
    assert len(streamed.train) == n and streamed.train.stats == loaded.train.stats and n < 2000
    np.testing.assert_array_equal(streamed.train.line_ids, loaded.train.line_ids)
    assert streamed.train.examples(range(n)) == loaded.train.examples(range(n))
    assert (streamed.valid.src_texts, streamed.valid.src_ids) == (loaded.valid.src_texts, loaded.valid.src_ids)

    caplog.clear()
    again = prepare_data(config(True), TOK)  # keyed by the files' bytes: a hit, nothing streamed again
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("tokenizer cache hit") for m in messages)
    assert any(m.startswith("training data cache hit") for m in messages)
    assert again.train.examples([0, n - 1]) == loaded.train.examples([0, n - 1])


def test_a_saved_dataset_directory_streams_and_is_keyed_by_its_bytes(env: Path, tmp_path: Path) -> None:
    import datasets

    files = {"train": "m30k/train-*.parquet", "validation": "m30k/val.parquet"}
    parquet = open_hf(HFConfig(path="parquet", data_files=files), env, cache_dir=tmp_path / "hf")
    datasets.DatasetDict(parquet).save_to_disk(tmp_path / "saved")
    hf = HFConfig(path=str(tmp_path / "saved"), streaming=True)
    streamed = prepare_data(DataConfig(train="train", valid="validation", hf=hf), TOK)
    loaded_hf = HFConfig(path="parquet", data_files=files)
    loaded = prepare_data(DataConfig(train="train", valid="validation", hf=loaded_hf), TOK)
    assert streamed.train.examples(range(2000)) == loaded.train.examples(range(2000))
    key = stream_fingerprint(hf, "train", "de", "en", env)
    smaller = datasets.DatasetDict({"train": parquet["train"].select(range(10)), "validation": parquet["validation"]})
    smaller.save_to_disk(tmp_path / "saved2")
    shutil.rmtree(tmp_path / "saved")
    (tmp_path / "saved2").rename(tmp_path / "saved")
    assert stream_fingerprint(hf, "train", "de", "en", env) != key


class CountingRows:
    """A generator-backed streamed corpus (the slice repeated) that counts the rows it has produced."""

    def __init__(self, src: list[str], tgt: list[str], repeat: int) -> None:
        self.src, self.tgt, self.repeat = src, tgt, repeat
        self.produced = 0

    def rows(self) -> Any:
        for _ in range(self.repeat):
            for s, t in zip(self.src, self.tgt):
                self.produced += 1
                yield {"translation": {"de": s, "en": t}}

    def __len__(self) -> int:
        return len(self.src) * self.repeat


def test_streaming_consumes_the_corpus_chunk_by_chunk(
    env: Path, m30k_slice: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import datasets

    src, tgt = _expected(m30k_slice)
    corpus = CountingRows(src, tgt, repeat=5)  # 10,000 rows
    pairs = zip(*_expected(m30k_slice, "val"))
    val = datasets.Dataset.from_dict({"translation": [{"de": s, "en": t} for s, t in pairs]})
    splits = {"train": datasets.IterableDataset.from_generator(corpus.rows), "validation": val}
    monkeypatch.setattr(sources, "open_hf", lambda *a, **k: splits)
    chunk = 1000
    monkeypatch.setattr(prepare, "ENCODE_CHUNK", chunk)
    seen_at_write: list[int] = []
    write = store.TableWriter.write

    def recording_write(self: store.TableWriter, batch: Any) -> None:
        seen_at_write.append(corpus.produced)
        write(self, batch)

    monkeypatch.setattr(store.TableWriter, "write", recording_write)
    tokenizer = Tokenizer.train(src, tgt, TOK)
    hf = HFConfig(path="someone/big-corpus", revision="0123abc", streaming=True)
    data = prepare_data(DataConfig(train="train", valid="validation", hf=hf), TOK, tokenizer=tokenizer)

    assert len(data.train) == len(corpus) == corpus.produced  # everything was read, once
    assert len(seen_at_write) == len(corpus) // chunk
    # each chunk was encoded and written before the next ones were read: at most one chunk (plus what the
    # datasets iterator reads ahead) is ever in memory
    for k, produced in enumerate(seen_at_write):
        assert (k + 1) * chunk <= produced <= (k + 2) * chunk + chunk, (k, produced)
    assert data.train.examples([0])[0] == data.train.examples([len(src)])[0]  # the repeat, in order
