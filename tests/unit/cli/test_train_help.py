"""``nmt-train --help``: every option of every schema with its default and its one-line help, every preset of
configs/ with its description, the + presets explained, and none of Hydra's internal ``*_schema`` entries."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from enum import Enum
from pathlib import Path

import pytest

from nmt.cli.common import EXIT_STATUS_HELP
from nmt.cli.train import config_dir
from nmt.cli.train_help import describe, render
from nmt.config import (
    AlignmentLossConfig,
    DataConfig,
    HFConfig,
    NMTConfig,
    RNNConfig,
    SearchConfig,
    TokenizerConfig,
    TrainConfig,
    TransformerConfig,
)

BIN = Path(sys.executable).parent
SCHEMAS = [
    ("", NMTConfig),
    ("data.", DataConfig),
    ("data.hf.", HFConfig),
    ("tokenizer.", TokenizerConfig),
    ("model.", TransformerConfig),
    ("model.", RNNConfig),
    ("train.", TrainConfig),
    ("train.alignment.", AlignmentLossConfig),
    ("search.", SearchConfig),
]
RNN_HEADING = "model=rnn_bahdanau | rnn_luong | rnn_none have"


@pytest.fixture(scope="module")
def page() -> str:
    return render(config_dir())


def entries(text: str) -> dict[str, str]:
    """``key -> its text, whitespace collapsed`` for the option lines of a part of the page."""
    found: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if re.match(r"^    \S", line):
            key = line.split()[0]
            found[key] = line[32:] if len(line) > 32 and line[31] == " " else ""
        elif key and line.startswith(" " * 32):
            found[key] += " " + line.strip()
        else:
            key = None
    return {k: " ".join(v.split()) for k, v in found.items()}


def shown(value) -> str:
    if isinstance(value, Enum):
        return value.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return "''" if value == "" else str(value)


def test_every_field_of_every_schema_has_a_one_line_help():
    for _, schema in SCHEMAS:
        for f in dataclasses.fields(schema):
            text = f.metadata.get("help", "")
            assert text and "\n" not in text, f"{schema.__name__}.{f.name} has no one-line help"


def test_every_option_appears_with_its_default_and_its_help(page):
    options = page[page.index("\noptions (") :]
    transformer_part, rnn_part = options.split(RNN_HEADING)
    for prefix, schema in SCHEMAS:
        part = {RNNConfig: rnn_part, TransformerConfig: transformer_part}.get(schema, options)  # model.* twice
        listed = entries(part)
        for f in dataclasses.fields(schema):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                continue  # a section (data.hf, train.alignment): its own fields are listed
            key = f"{prefix}{f.name}"
            assert key in listed, f"{key} is not on the page"
            help_text = " ".join(f.metadata["help"].split())
            assert listed[key].startswith(help_text), (key, listed[key])
            if isinstance(default, list | dict):
                assert "(default: [" in listed[key] or "(default: {" in listed[key], key
            else:
                assert listed[key].endswith(f"(default: {shown(default)})"), (key, listed[key])
    assert "one of unigram | bpe (default: unigram)" in entries(transformer_part)["tokenizer.type"]


def test_every_preset_is_listed_with_its_description_and_no_schema_entry(page):
    configs = Path(config_dir())
    for group in ("data", "tokenizer", "model", "train", "experiment", "sweep"):
        for path in configs.glob(f"{group}/*.yaml"):
            about = describe(path)
            assert about and not about.endswith(":"), path
            row = next((line for line in page.splitlines() if line.split()[:1] == [path.stem]), None)
            assert row is not None, f"{group}={path.stem} is not listed"
            assert " ".join(about.split()[:4]) in row, (path, row)
    assert "_schema" not in page
    assert "    multi30k_de_en *" in page and "    transformer *" in page and "    unigram *" in page
    assert "+experiment=" in page and "+sweep=" in page and "Why the +" in page
    assert "--hydra-help" in page and "examples:" in page
    assert page.rstrip().endswith(EXIT_STATUS_HELP.rstrip())  # as every nmt tool's --help


def test_nmt_train_help_and_nmt_train_h_print_the_page_and_train_nothing(page, tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    for cmd in (
        [BIN / "nmt-train", "--help"],
        [BIN / "nmt", "train", "model=rnn_luong", "-h"],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == page and not proc.stderr
    assert not list(tmp_path.iterdir())  # no run directory, no outputs/
    hydra = subprocess.run([BIN / "nmt-train", "--hydra-help"], capture_output=True, text=True, timeout=120, env=env)
    assert hydra.returncode == 0 and "Hydra" in hydra.stdout  # Hydra's own page stays reachable
