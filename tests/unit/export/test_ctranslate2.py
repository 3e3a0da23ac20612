"""The CTranslate2 export's small parts: position-table sizes, the export-directory check, missing package."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from nmt.config import DataConfig, NMTConfig, Positions, SearchConfig, TransformerConfig
from nmt.errors import CheckpointError, NMTError
from nmt.export.ct2_translate import read_export
from nmt.export.ctranslate2 import (
    FORMAT,
    META_FILE,
    MIN_SINUSOID_POSITIONS,
    _sinusoid_table,
    default_positions,
    positions_needed,
    require_ctranslate2,
)
from nmt.models.transformer import sinusoids


def config(max_len: int = 100, a: float = 1.5, b: int = 10, **model) -> NMTConfig:
    return NMTConfig(
        data=DataConfig(max_len=max_len),
        model=TransformerConfig(**model),
        search=SearchConfig(max_len_a=a, max_len_b=b),
    )


def test_positions_needed_covers_the_longest_source_and_output():
    assert positions_needed(config(100, 1.5, 10)) == 161  # floor(1.5 * 100) + 10 pieces, then EOS
    assert positions_needed(config(100, 0.5, 2)) == 101  # the source + EOS is longer
    assert positions_needed(config(7, 1.3, 0)) == math.floor(1.3 * 7) + 1


def test_default_positions_sinusoidal_at_least_1024_learned_its_own_table():
    assert default_positions(config(100)) == MIN_SINUSOID_POSITIONS
    assert default_positions(config(1000, 1.5, 10)) == 1511
    assert default_positions(config(100, positions=Positions.learned, max_positions=300)) == 300


def test_the_exported_table_is_nmts_sinusoids_from_position_0():
    table = _sinusoid_table(12, 8)
    assert torch.equal(table, sinusoids(torch.arange(12), 8))
    assert torch.equal(table[0], torch.tensor([0.0] * 4 + [1.0] * 4))  # sin 0, cos 0: position 0 is the first


def test_missing_ctranslate2_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # makes ``import ctranslate2`` raise ImportError
    with pytest.raises(NMTError, match=r"pip install -e '\.\[ctranslate2\]'"):
        require_ctranslate2()


# --------------------------------------------------------------------------------------------- read_export
@pytest.fixture
def fake_export(tmp_path: Path) -> Path:
    for name in ("model.bin", "config.json", "source.spm", "target.spm"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / META_FILE).write_text(json.dumps({"format": FORMAT, "max_positions": 10}))
    return tmp_path


def test_read_export_accepts_a_complete_directory(fake_export: Path):
    assert read_export(fake_export)["max_positions"] == 10


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d / "model.bin", "is not a CTranslate2 export directory"),  # a file, not the directory
        (lambda d: (d / META_FILE).unlink() or d, "has no nmt.json"),
        (lambda d: (d / META_FILE).write_text("{") and d, "cannot read"),
        (lambda d: (d / META_FILE).write_text('{"format": "other"}') and d, "is not an nmt CTranslate2 export"),
        (lambda d: (d / "target.spm").unlink() or d, "incomplete: target.spm missing"),
    ],
)
def test_read_export_says_what_is_wrong(fake_export: Path, damage, message):
    with pytest.raises(CheckpointError, match=message):
        read_export(damage(fake_export))
