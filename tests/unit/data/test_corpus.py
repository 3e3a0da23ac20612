"""Reading corpora: gzip and plain files, the errors a user can cause, downloads (offline) and ``datasets``."""

from __future__ import annotations

import gzip
import io
import urllib.error
from pathlib import Path

import pytest
from corpus_io import read_gz_lines, write_lines

from nmt.config import HFConfig
from nmt.data import download
from nmt.data.corpus import data_root, load_hf, load_parallel, open_hf, read_lines, resolve_file
from nmt.errors import DataError


def test_gzip_and_plain_files_read_the_same_text(m30k_slice: Path, data_root: Path, tmp_path: Path) -> None:
    train = load_parallel("multi30k/train", "de", "en", m30k_slice)  # .gz files
    val = load_parallel("multi30k/val", "de", "en", m30k_slice)  # plain files
    assert train.src == read_gz_lines(data_root / "multi30k/train.de.gz", 2000)
    assert train.tgt == read_gz_lines(data_root / "multi30k/train.en.gz", 2000)
    assert val.tgt == read_gz_lines(data_root / "multi30k/val.en.gz", 100)
    assert (len(train), len(val)) == (2000, 100)
    # gzip is recognised by content: a gzipped file without the suffix still reads as text
    misnamed = tmp_path / "train.de"
    misnamed.write_bytes((m30k_slice / "multi30k/train.de.gz").read_bytes())
    assert list(read_lines(misnamed)) == train.src


def test_crlf_line_endings_are_stripped(m30k_slice: Path, tmp_path: Path) -> None:
    lines = list(read_lines(m30k_slice / "multi30k/val.en"))[:20]
    path = tmp_path / "crlf.en"
    path.write_bytes("".join(line + "\r\n" for line in lines).encode())
    assert list(read_lines(path)) == lines


def test_line_count_mismatch_names_both_files_and_counts(m30k_slice: Path, tmp_path: Path) -> None:
    de = read_gz_lines(m30k_slice / "multi30k/train.de.gz")
    en = read_gz_lines(m30k_slice / "multi30k/train.en.gz")
    write_lines(tmp_path / "c/train.de.gz", de)
    write_lines(tmp_path / "c/train.en", en[:-1])
    with pytest.raises(DataError) as err:
        load_parallel("c/train", "de", "en", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "c/train.de.gz") in message and str(tmp_path / "c/train.en") in message
    assert "2000 lines" in message and "1999 lines" in message


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_invalid_utf8_names_the_file_and_line(m30k_slice: Path, tmp_path: Path, suffix: str) -> None:
    lines = read_gz_lines(m30k_slice / "multi30k/train.de.gz", 60)
    bad = next(i for i, line in enumerate(lines) if i >= 30 and any(c in line for c in "äöüß"))
    raw = b"".join((line.encode("latin-1") if i == bad else line.encode()) + b"\n" for i, line in enumerate(lines))
    path = tmp_path / f"latin1.de{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(DataError, match=rf"latin1\.de{suffix}, line {bad + 1}: invalid UTF-8"):
        list(read_lines(path))


def test_missing_file_and_unknown_language_name_the_paths_tried(m30k_slice: Path) -> None:
    with pytest.raises(DataError) as err:
        resolve_file("multi30k/nope", "de", m30k_slice)
    assert str(m30k_slice / "multi30k/nope.de") in str(err.value)
    assert str(m30k_slice / "multi30k/nope.de.gz") in str(err.value)
    with pytest.raises(DataError) as err:
        load_parallel("multi30k/train", "de", "cs", m30k_slice)
    assert "train.cs.gz" in str(err.value) and "languages found for this prefix: de, en" in str(err.value)


def test_data_root_follows_nmt_data_dir(monkeypatch: pytest.MonkeyPatch, m30k_slice: Path) -> None:
    monkeypatch.setenv("NMT_DATA_DIR", str(m30k_slice))
    assert data_root() == m30k_slice
    assert resolve_file("multi30k/val", "en") == m30k_slice / "multi30k/val.en"
    monkeypatch.delenv("NMT_DATA_DIR")
    assert data_root() == Path("data")


# --------------------------------------------------------------------------------------------- downloads
def _serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes], calls: list[str]) -> None:
    def fake_urlopen(url: str, timeout: float = 0) -> io.BytesIO:
        calls.append(url)
        return io.BytesIO(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen)


def test_download_failure_says_so_and_names_nmt_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def offline(url: str, timeout: float = 0) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as err:
        download.ensure_download("multi30k", ["de", "en"], tmp_path)
    message = str(err.value)
    assert "NMT_DATA_DIR" in message and "cannot download" in message
    assert download.MULTI30K.base_url + "train.de.gz" in message
    assert list((tmp_path / "multi30k").iterdir()) == []  # no partial file left behind


def test_download_rejects_a_bad_checksum(monkeypatch: pytest.MonkeyPatch, data_root: Path, tmp_path: Path) -> None:
    real = (data_root / "multi30k/val.de.gz").read_bytes()
    _serve(monkeypatch, {"train.de.gz": real}, [])  # the wrong file's bytes under train.de.gz
    with pytest.raises(DataError, match=r"checksum mismatch .*train\.de\.gz"):
        download.ensure_download("multi30k", ["de"], tmp_path)
    assert list((tmp_path / "multi30k").iterdir()) == []


def test_download_fetches_verified_files_once(monkeypatch: pytest.MonkeyPatch, data_root: Path, tmp_path: Path) -> None:
    served = {p.name: p.read_bytes() for p in (data_root / "multi30k").glob("*.en.gz")}
    calls: list[str] = []
    _serve(monkeypatch, served, calls)
    got = download.ensure_download("multi30k", ["en"], tmp_path)
    assert sorted(p.name for p in got) == sorted(served)
    assert all((tmp_path / "multi30k" / name).read_bytes() == data for name, data in served.items())
    assert download.ensure_download("multi30k", ["en"], tmp_path) == [] and len(calls) == 3  # present: not fetched
    with pytest.raises(DataError, match="no language cs"):
        download.ensure_download("multi30k", ["cs"], tmp_path)


# --------------------------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def hf_files(m30k_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The train slice as JSON lines in the WMT ``translation`` layout and as parquet with a column per language."""
    import datasets

    out = tmp_path_factory.mktemp("hf")
    train = load_parallel("multi30k/train", "de", "en", m30k_slice)
    val = load_parallel("multi30k/val", "de", "en", m30k_slice)
    files = {}
    for name, corpus in (("train", train), ("val", val)):
        rows = [{"translation": {"de": s, "en": t}} for s, t in zip(corpus.src, corpus.tgt)]
        datasets.Dataset.from_list(rows).to_json(out / f"{name}.jsonl", lines=True)
        datasets.Dataset.from_dict({"de": corpus.src, "en": corpus.tgt}).to_parquet(out / f"{name}.parquet")
        files[name] = out / f"{name}.jsonl"
        files[f"{name}_parquet"] = out / f"{name}.parquet"
    return files


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_datasets_files_load_like_text_files(hf_files: dict[str, Path], m30k_slice: Path, fmt: str) -> None:
    key = "" if fmt == "json" else "_parquet"
    hf = HFConfig(path=fmt, data_files={"train": str(hf_files["train" + key]), "dev": str(hf_files["val" + key])})
    splits = open_hf(hf, m30k_slice, cache_dir=hf_files["train"].parent / "cache")
    expected = load_parallel("multi30k/train", "de", "en", m30k_slice)
    train = load_hf(splits, "train", "de", "en", description=fmt)
    assert (train.src, train.tgt) == (expected.src, expected.tgt)
    reverse = load_hf(splits, "dev", "en", "de", description=fmt)
    assert reverse.src == load_parallel("multi30k/val", "de", "en", m30k_slice).tgt
    with pytest.raises(DataError, match="no 'fr' text"):
        load_hf(splits, "train", "fr", "en", description=fmt)
    with pytest.raises(DataError, match="no split 'test'"):
        load_hf(splits, "test", "de", "en", description=fmt)


def test_datasets_save_to_disk_directory(hf_files: dict[str, Path], tmp_path: Path) -> None:
    import datasets

    files = {"train": str(hf_files["val_parquet"])}
    parquet = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    parquet.save_to_disk(tmp_path / "saved")
    loaded = load_hf(open_hf(HFConfig(path="saved"), tmp_path), "train", "de", "en")
    assert loaded.src == parquet["train"]["de"][:] and len(loaded) == 100
    with pytest.raises(DataError, match="data_files"):
        open_hf(HFConfig(path="json"), tmp_path)
