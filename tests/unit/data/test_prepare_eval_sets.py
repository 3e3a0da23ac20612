"""An empty dev or test set is refused before any tokenizer is trained (it would score nothing, and as the dev set
pick best.pt from nothing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from corpus_io import write_lines

from nmt.config import DataConfig, TokenizerConfig
from nmt.data.prepare import prepare_data
from nmt.data.tokenizer import Tokenizer
from nmt.errors import DataError


@pytest.fixture
def root(m30k_slice: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the Multi30k slice as the data root; training a tokenizer fails the test."""
    shutil.copytree(m30k_slice / "multi30k", tmp_path / "multi30k")
    monkeypatch.setenv("NMT_DATA_DIR", str(tmp_path))

    def no_training(*_: object, **__: object) -> None:
        raise AssertionError("a tokenizer was trained before the evaluation sets were checked")

    monkeypatch.setattr(Tokenizer, "train", no_training)
    return tmp_path


def config(root: Path, **kw: object) -> DataConfig:
    values = {"train": "multi30k/train", "valid": "multi30k/val", "test": ["multi30k/test_2016_flickr"], **kw}
    return DataConfig(cache_dir=str(root / "cache"), **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lines", "what"), [([], "has no lines"), (["", "  ", ""], "has 3 lines, none with text on both sides")]
)
def test_an_empty_dev_set_is_refused_before_training(root: Path, lines: list[str], what: str) -> None:
    for lang in ("de", "en"):
        write_lines(root / "empty" / f"dev.{lang}", lines)
    with pytest.raises(DataError) as caught:
        prepare_data(config(root, valid="empty/dev"), TokenizerConfig(vocab_size=600))
    message = str(caught.value)
    assert message.startswith("data.valid='empty/dev' (")  # the value as the user wrote it
    assert what in message and str(root / "empty" / "dev.de") in message
    assert "a dev set picks the best checkpoint" in message


def test_a_dev_set_with_one_sided_lines_only_is_refused(root: Path) -> None:
    write_lines(root / "half" / "dev.de", ["ein Satz", ""])
    write_lines(root / "half" / "dev.en", ["", "a sentence"])
    with pytest.raises(DataError, match="2 lines, none with text on both sides"):
        prepare_data(config(root, valid="half/dev"), TokenizerConfig(vocab_size=600))


def test_an_empty_test_set_is_refused_too(root: Path) -> None:
    for lang in ("de", "en"):
        write_lines(root / "empty" / f"test.{lang}.gz", [])
    with pytest.raises(DataError, match=r"data\.test entry 'empty/test' .* has no lines; there is nothing to score"):
        prepare_data(config(root, test=["multi30k/test_2016_flickr", "empty/test"]), TokenizerConfig(vocab_size=600))
