"""Attention matrices as data (one compact ``.npz`` per corpus) and as pictures (heatmaps with the pieces on the axes).

The ``.npz`` holds no Python objects, so ``np.load(path, allow_pickle=False)`` reads it:

- ``data``: float32, every matrix flattened (row-major) and concatenated;
- ``offsets``: int64 (N + 1,), matrix i is ``data[offsets[i]:offsets[i+1]].reshape(shapes[i])``;
- ``shapes``: int64 (N, 2), (target pieces + EOS, source pieces + EOS);
- ``ids``: int64 (N,), the 0-based line number of each sentence;
- ``pieces``: a 0-d unicode string holding JSON ``{"src": [[...], ...], "tgt": [[...], ...]}``, the piece strings
  of each axis with ``"</s>"`` last, so ``len(pieces["tgt"][i]), len(pieces["src"][i]) == shapes[i]``.

Rows are the decoder steps that emitted each target piece (the last: EOS); they sum to 1 over the columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class AttentionRecord:
    """One sentence's attention: ``matrix`` (len(tgt_pieces), len(src_pieces)), EOS included on both axes."""

    id: int
    matrix: np.ndarray
    src_pieces: list[str]
    tgt_pieces: list[str]


def save_attention(path: str | Path, records: list[AttentionRecord]) -> Path:
    """Write the records as one compressed ``.npz`` (format in the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = np.array([r.matrix.shape for r in records], dtype=np.int64).reshape(-1, 2)
    for r in records:
        if r.matrix.shape != (len(r.tgt_pieces), len(r.src_pieces)):
            raise ValueError(f"sentence {r.id}: matrix {r.matrix.shape} does not match its pieces")
    offsets = np.zeros(len(records) + 1, dtype=np.int64)
    np.cumsum(shapes.prod(axis=1), out=offsets[1:])
    data = (
        np.concatenate([np.asarray(r.matrix, dtype=np.float32).ravel() for r in records])
        if records
        else np.zeros(0, np.float32)
    )
    pieces = json.dumps({"src": [r.src_pieces for r in records], "tgt": [r.tgt_pieces for r in records]})
    np.savez_compressed(
        path,
        data=data,
        offsets=offsets,
        shapes=shapes,
        ids=np.array([r.id for r in records], dtype=np.int64),
        pieces=np.array(pieces),
    )
    return path


def load_attention(path: str | Path) -> list[AttentionRecord]:
    """Read a file written by :func:`save_attention` (without unpickling anything)."""
    with np.load(path, allow_pickle=False) as z:
        data, offsets, shapes, ids = z["data"], z["offsets"], z["shapes"], z["ids"]
        pieces = json.loads(str(z["pieces"]))
    return [
        AttentionRecord(
            id=int(ids[i]),
            matrix=data[offsets[i] : offsets[i + 1]].reshape(tuple(shapes[i])),
            src_pieces=pieces["src"][i],
            tgt_pieces=pieces["tgt"][i],
        )
        for i in range(len(ids))
    ]


def plot_heatmap(record: AttentionRecord, path: str | Path, *, title: str | None = None) -> Path:
    """Draw one matrix with target pieces down the side and source pieces along the top (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    n_t, n_s = record.matrix.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * n_s + 1.5), max(3.0, 0.3 * n_t + 1.5)))
    try:
        im = ax.imshow(record.matrix, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(n_s), record.src_pieces, rotation=90, fontsize=8)
        ax.set_yticks(range(n_t), record.tgt_pieces, fontsize=8)
        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
        ax.set_xlabel("source pieces")
        ax.set_ylabel("output pieces")
        # The tick labels take the top edge, so the caption goes underneath.
        ax.text(0.5, -0.02, title or f"sentence {record.id}", transform=ax.transAxes, ha="center", va="top")
        fig.colorbar(im, ax=ax, fraction=0.04)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
