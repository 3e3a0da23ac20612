"""Checkpoints for integration tests: tiny random-init models with a real SentencePiece model (Multi30k slice).

``tiny_checkpoint`` (Transformer) and ``tiny_rnn_checkpoint`` are session-scoped and read-only; training tests may
reuse them (e.g. to resume from step 0). Their configs point at the ``m30k_slice`` data root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from integration_helpers import make_checkpoint, tiny_config, tiny_rnn, tiny_transformer, train_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer(m30k_slice: Path):
    """A joint 500-piece SentencePiece model trained on the 2,000-pair training slice."""
    return train_tokenizer(m30k_slice, 500)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """A random-init 2-layer Transformer checkpoint (step 0, beam 3 by default, data.max_len 40)."""
    path = tmp_path_factory.mktemp("ckpt") / "transformer.pt"
    return make_checkpoint(path, tiny_config(tiny_transformer()), tiny_tokenizer, seed=0)


@pytest.fixture(scope="session")
def tiny_rnn_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """A random-init GRU + Bahdanau attention checkpoint, same tokenizer as ``tiny_checkpoint``."""
    path = tmp_path_factory.mktemp("ckpt") / "rnn.pt"
    return make_checkpoint(path, tiny_config(tiny_rnn()), tiny_tokenizer, seed=1)


@pytest.fixture
def cli_env(m30k_slice: Path) -> dict[str, str]:
    """Environment for console-script subprocesses: the slice as data root, one thread (tiny models only lose
    from intra-op threads, badly so on a busy machine), no CUDA."""
    return {**os.environ, "NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="session")
def trained_lines(m30k_slice: Path) -> list[str]:
    """60 test sentences, an empty line, a blank line and a line far over the trained model's 40 pieces."""
    from corpus_io import read_gz_lines

    test = read_gz_lines(m30k_slice / "multi30k" / "test_2016_flickr.de.gz")
    return [*test[:30], "", *test[30:60], "   ", " ".join(test[60:68])]


@pytest.fixture(scope="session")
def trained_cli(trained_checkpoint: Path, m30k_slice: Path, tmp_path_factory: pytest.TempPathFactory):
    """``run(lines, *flags) -> (output lines, alignment lines or None)``: the real ``nmt-translate`` on the trained
    checkpoint (one thread, CPU), memoised, so the API and service tests compare with the same CLI runs."""
    import subprocess

    from integration_helpers import BIN

    cache: dict[tuple, tuple[list[str], list[str] | None]] = {}

    def run(lines: list[str], *flags: str) -> tuple[list[str], list[str] | None]:
        key = (tuple(lines), flags)
        if key not in cache:
            tmp = tmp_path_factory.mktemp("trained_cli")
            src, out, align = tmp / "in.de", tmp / "out.en", tmp / "out.align"
            src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            cmd = [BIN / "nmt-translate", "-c", trained_checkpoint, "-i", src, "-o", out, "--device", "cpu", "-q"]
            if "--alignments" in flags:
                flags = tuple(f for f in flags if f != "--alignments")
                cmd += ["--alignments", align]
            env = {**os.environ, "NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
            proc = subprocess.run([*cmd, *flags], capture_output=True, text=True, env=env, timeout=300)
            assert proc.returncode == 0, proc.stderr
            aligned = align.read_text(encoding="utf-8").splitlines() if align.exists() else None
            cache[key] = (out.read_text(encoding="utf-8").split("\n")[:-1], aligned)
        return cache[key]

    return run
