"""Attention matrices as data (one compact ``.npz`` per corpus) and as pictures (heatmaps with the pieces on the axes).

The ``.npz`` holds no Python objects, so ``np.load(path, allow_pickle=False)`` reads it:

- ``data``: float32, every matrix flattened (row-major) and concatenated;
- ``offsets``: int64 (N + 1,), matrix i is ``data[offsets[i]:offsets[i+1]].reshape(shapes[i])``;
- ``shapes``: int64 (N, 2), (target pieces + EOS, source pieces + EOS);
- ``ids``: int64 (N,), the 0-based line number of each sentence;
- ``pieces``: a 0-d unicode string holding JSON ``{"src": [[...], ...], "tgt": [[...], ...]}``, the piece strings
  of each axis with ``"</s>"`` last, so ``len(pieces["tgt"][i]), len(pieces["src"][i]) == shapes[i]``.

Rows are the decoder steps that emitted each target piece (the last: EOS); they sum to 1 over the columns.

:func:`heatmap_figure` is the one renderer of such a matrix (dumps, TensorBoard's images, notebooks): pieces on both
axes, a colour bar, a square-root colour scale that keeps diffuse attention visible, and word links drawn on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nmt.specials import EOS_PIECE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nmt.analysis.alignment import Link


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


HEATMAP_GAMMA = 0.5  # colour = weight ** 0.5: a 1% weight gets 10% of the colour scale, 4% gets 20%


def heatmap_figure(
    matrix: Any,
    src_pieces: list[str],
    tgt_pieces: list[str],
    *,
    title: str | None = None,
    links: Iterable[Link] | None = None,
    gamma: float = HEATMAP_GAMMA,
) -> Figure:
    """The one attention heatmap of nmt (dumps, TensorBoard, notebooks): a matplotlib figure, no pyplot state.

    Source pieces run along the top, target pieces down the side, and a colour bar gives the weights. The colour
    scale is a power law (``weight ** gamma``, matplotlib's ``PowerNorm`` on [0, 1]; 0.5 by default), so diffuse
    attention of a few percent per cell stays visible beside a sharp peak, while the colour bar still reads in
    weights; ``gamma=1`` is linear.

    Args:
        matrix: (T, S) weights: rows are the target pieces (``</s>`` last), columns the source pieces (``</s>`` last).
        src_pieces, tgt_pieces: the S and T axis labels.
        title: drawn under the matrix (the pieces take the top edge).
        links: word links ``(source word, target word)``, 0-based (Pharaoh ``i-j``), each drawn as a red box over
            the pieces of its two words; words start at pieces with "▁" (:func:`nmt.analysis.alignment.word_ids`),
            and ``</s>`` belongs to no word.
        gamma: the colour scale's exponent.
    """
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    weights = np.asarray(matrix.float().cpu() if hasattr(matrix, "float") else matrix, dtype=np.float32)
    n_t, n_s = weights.shape
    if (n_t, n_s) != (len(tgt_pieces), len(src_pieces)):
        raise ValueError(f"a {n_t} x {n_s} matrix for {len(tgt_pieces)} target and {len(src_pieces)} source pieces")
    fig = Figure(figsize=(max(4.0, 0.3 * n_s + 2.0), max(3.0, 0.28 * n_t + 1.8)), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    norm = PowerNorm(gamma=gamma, vmin=0.0, vmax=1.0)
    image = ax.imshow(weights, cmap="viridis", norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n_s), src_pieces, rotation=90, fontsize=8)
    ax.set_yticks(range(n_t), tgt_pieces, fontsize=8)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("source pieces")
    ax.set_ylabel("output pieces")
    for (r0, r1), (c0, c1) in _link_boxes(links or (), src_pieces, tgt_pieces):
        ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, edgecolor="#e41a1c", linewidth=1.6))
    ax.text(0.5, -0.02, title or "", transform=ax.transAxes, ha="center", va="top", fontsize=9)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label(f"attention weight (colour ~ weight^{gamma:g})" if gamma != 1 else "attention weight", fontsize=8)
    fig.tight_layout()
    return fig


def _link_boxes(
    links: Iterable[Link], src_pieces: list[str], tgt_pieces: list[str]
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Per link, the (first, end) rows and (first, end) columns of its words' pieces (words' pieces are contiguous)."""
    from nmt.analysis.alignment import word_ids

    def spans(pieces: list[str]) -> dict[int, tuple[int, int]]:
        words = pieces[:-1] if pieces and pieces[-1] == EOS_PIECE else pieces
        out: dict[int, tuple[int, int]] = {}
        for k, w in enumerate(word_ids(words)):
            first, _ = out.get(w, (k, k))
            out[w] = (first, k + 1)
        return out

    src, tgt = spans(src_pieces), spans(tgt_pieces)
    return [(tgt[j], src[i]) for i, j in sorted(links) if i in src and j in tgt]


def plot_heatmap(
    record: AttentionRecord,
    path: str | Path,
    *,
    title: str | None = None,
    links: Iterable[Link] | None = None,
    gamma: float = HEATMAP_GAMMA,
) -> Path:
    """Save :func:`heatmap_figure` of one record as a PNG (the title defaults to the sentence number)."""
    fig = heatmap_figure(
        record.matrix,
        record.src_pieces,
        record.tgt_pieces,
        title=title or f"sentence {record.id}",
        links=links,
        gamma=gamma,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
