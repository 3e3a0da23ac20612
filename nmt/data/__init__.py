"""Data: corpora (plain/gzip files, Hugging Face ``datasets``), SentencePiece, caching and token batching.

Names are imported lazily, so ``import nmt.data.batch`` (used by the models) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Batch": "nmt.data.batch",
    "collate": "nmt.data.batch",
    "PAD_ID": "nmt.specials",
    "UNK_ID": "nmt.specials",
    "BOS_ID": "nmt.specials",
    "EOS_ID": "nmt.specials",
    "Parallel": "nmt.data.corpus",
    "data_root": "nmt.data.corpus",
    "load_parallel": "nmt.data.corpus",
    "read_lines": "nmt.data.corpus",
    "resolve_file": "nmt.data.corpus",
    "ensure_download": "nmt.data.download",
    "Tokenizer": "nmt.data.tokenizer",
    "EvalSet": "nmt.data.prepare",
    "PreparedData": "nmt.data.prepare",
    "TrainData": "nmt.data.prepare",
    "prepare_data": "nmt.data.prepare",
    "TokenBatchSampler": "nmt.data.batching",
    "TrainLoader": "nmt.data.batching",
    "collate_flat": "nmt.data.batching",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nmt.data' has no attribute {name!r}")
