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
