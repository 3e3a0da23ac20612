"""``nmt-train`` on a user's mistakes and awkward data, through the console script: one line and exit status 2 for
a mistake, before any data is read when the config is wrong; never "*new best*" from an empty dev set; a dev set
with one very long line validates at the usual pace with a warning; a 1-layer decoder trains with the defaults."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from corpus_io import read_gz_lines, write_lines
from integration_helpers import BIN, tiny_overrides


def nmt_train(*overrides: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "nmt-train"), *overrides], env=env, capture_output=True, text=True, timeout=timeout
    )


def tiny_run(run_dir: Path, cache: Path, *overrides: str) -> list[str]:
    return [
        f"hydra.run.dir={run_dir}",
        "model=transformer",
        *tiny_overrides("transformer"),
        f"data.cache_dir={cache}",
        "tokenizer.vocab_size=500",
        "train.max_steps=4",
        "train.eval_every=4",
        "train.save_every=4",
        "train.batch_tokens=1024",
        "train.threads=1",
        "train.heatmap_sentences=1",
        "search.beam_size=1",
        *overrides,
    ]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def no_data_env(tmp_path) -> dict[str, str]:
    """A data root with no corpus at all: any attempt to read data would fail with a DataError of its own."""
    (tmp_path / "empty_root").mkdir()
    return {**os.environ, "NMT_DATA_DIR": str(tmp_path / "empty_root"), "CUDA_VISIBLE_DEVICES": ""}


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("nmt-train: error: ") and "Traceback" not in proc.stderr
    return lines[-1]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+train.lrr=1", "unknown key train.lrr (did you mean train.lr?)"),
        ("train.lrr=1", "unknown key train.lrr (did you mean train.lr?)"),  # Hydra's error, raised to main()
        ("model.dropout=1.5", "model.dropout must be in [0, 1), got 1.5"),
    ],
)
def test_config_mistakes_are_one_line_exit_2_and_no_data_is_read(tmp_path, no_data_env, override, message):
    proc = nmt_train(f"hydra.run.dir={tmp_path / 'run'}", override, env=no_data_env)
    assert message in one_error_line(proc)
    output = proc.stdout + proc.stderr
    assert "To append to your config" not in output and "no 'de' file" not in output
    assert "tokenizer" not in output and not list((tmp_path / "run").glob("checkpoints/*.pt"))


def test_an_empty_dev_set_stops_before_training_and_nothing_is_called_best(tmp_path, m30k_slice, cache):
    for lang in ("de", "en"):
        write_lines(tmp_path / "data" / f"empty.{lang}", [])
    env = {**os.environ, "NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    run_dir = tmp_path / "run"
    proc = nmt_train(*tiny_run(run_dir, cache, f"data.valid={tmp_path / 'data' / 'empty'}"), env=env)
    line = one_error_line(proc)
    assert f"data.valid='{tmp_path / 'data' / 'empty'}'" in line and "has no lines" in line  # as the user wrote it
    assert str(tmp_path / "data" / "empty.de") in line
    assert "new best" not in proc.stdout + proc.stderr and not list(run_dir.glob("checkpoints/*.pt"))


def test_a_very_long_dev_line_is_cut_to_data_max_len_with_a_warning(tmp_path, m30k_slice, cache):
    """One 2,000-word dev line: decoding it whole with an untrained model would take thousands of steps (and a
    1-layer decoder with the default alignment layer must train too)."""
    corpus = m30k_slice / "multi30k"
    src, tgt = (
        read_gz_lines(corpus / "test_2016_flickr.de.gz", 20),
        read_gz_lines(corpus / "test_2016_flickr.en.gz", 20),
    )
    src[7], tgt[7] = " ".join([src[7]] * 200), " ".join([tgt[7]] * 200)  # about 2,000 words a side
    write_lines(tmp_path / "data" / "dev.de", src)
    write_lines(tmp_path / "data" / "dev.en", tgt)
    env = {**os.environ, "NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    run_dir = tmp_path / "run"
    extra = [f"data.valid={tmp_path / 'data' / 'dev'}", "model.decoder_layers=1"]  # data.max_len: 100
    proc = nmt_train(*tiny_run(run_dir, cache, *extra), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "dev set dev: 1 of 20 lines are longer than data.max_len=100 pieces (lines 8;" in log
    assert log.count("are longer than data.max_len") == 1  # once for the set, not at every validation
    hyps = (run_dir / "valid" / "step_4.hyp").read_text().splitlines()
    assert len(hyps) == 20 and len(hyps[7].split()) <= 1.5 * 100 + 10  # decoded from 100 source pieces
