"""The data of the attention explorer page: one sentence's translation and every layer/head's cross-attention.

The translation comes from the one search path (:meth:`nmt.api.Model.translate`); the attention views come from
teacher-forcing that output through each decoder layer and head (:meth:`nmt.api.Model.head_attention`). Each view
carries its own word links, computed exactly as ``nmt-translate --alignments`` does from a matrix
(:func:`nmt.analysis.alignment.attention_to_links`), so the page shows what each head would align.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nmt.analysis.alignment import attention_to_links, word_ids
from nmt.api import Model

NO_ATTENTION = "This model has no attention (model.attention=none): there is no attention to show."


def explore(model: Model, sentence: str, *, beam_size: int | None = None) -> dict[str, Any]:
    """The page's JSON for one sentence (see ``nmt/serve/static/explorer.js`` for its use).

    Returns:
        ``source``, ``translation``, ``score``, ``truncated``; the pieces ``source_tokens`` / ``target_tokens``
        (EOS not listed: the matrices have one more row and column for it), the whitespace ``source_words`` /
        ``target_words`` and each piece's word (``source_token_words`` / ``target_token_words``); ``attention``:
        None (with a ``note``) or ``{"architecture", "layers", "heads", "default", "views"}`` where every view is
        ``{"layer", "heads", "label", "matrix", "links"}`` (``heads`` None = the average of all heads; ``matrix``
        (target pieces + EOS) x (source pieces + EOS); ``links`` [source word, target word] pairs).
    """
    result = model.translate([sentence], beam_size=beam_size)[0]
    best = result.hypotheses[0]
    src_words, tgt_words = sentence.split(), best.text.split()
    out: dict[str, Any] = {
        "source": sentence,
        "translation": best.text,
        "score": best.score,
        "truncated": result.truncated,
        "source_tokens": result.source_tokens,
        "target_tokens": best.tokens,
        "source_words": src_words,
        "target_words": tgt_words,
        "source_token_words": word_ids(result.source_tokens, len(src_words)) if src_words else [],
        "target_token_words": word_ids(best.tokens, len(tgt_words)) if tgt_words else [],
        "attention": None,
        "note": None,
    }
    if not model.has_attention:
        out["note"] = NO_ATTENTION
        return out
    if not result.source_tokens:
        out["note"] = "An empty sentence is not given to the model: there is no attention to show."
        return out
    heads = model.head_attention(result)
    out["attention"] = _views(model, result.source_tokens, best.tokens, heads, len(src_words), len(tgt_words))
    return out


def _views(model: Model, src: list[str], tgt: list[str], heads: np.ndarray, n_src: int, n_tgt: int) -> dict[str, Any]:
    """Every layer's head average and single heads (and the checkpoint's head subset, if it uses one).

    Args:
        src, tgt: the source and target pieces. heads: (layers, heads, T+1, S+1) from ``head_attention``.
        n_src, n_tgt: whitespace words of the source and the translation.
    """

    def view(layer: int | None, chosen: list[int] | None, label: str, matrix: np.ndarray) -> dict[str, Any]:
        links = attention_to_links(matrix, src, tgt, n_src_words=n_src, n_tgt_words=n_tgt)
        return {
            "layer": layer,
            "heads": chosen,
            "label": label,
            "matrix": np.round(matrix, 4).tolist(),
            "links": sorted([i, j] for i, j in links),
        }

    if model.architecture != "transformer":  # an RNN: its one attention
        return {
            "architecture": model.architecture,
            "layers": 1,
            "heads": 1,
            "default": 0,
            "views": [view(None, None, "attention", heads[0, 0])],
        }
    own_layer, own_heads = model.alignment_layer, model.alignment_heads
    views, default = [], 0
    for layer in range(heads.shape[0]):
        if own_heads is None and layer == own_layer:
            default = len(views)
        views.append(view(layer, None, "average of all heads", heads[layer].mean(0)))
        if own_heads is not None and len(own_heads) > 1 and layer == own_layer:
            default = len(views)
            label = f"heads {','.join(map(str, own_heads))} (checkpoint)"
            views.append(view(layer, list(own_heads), label, heads[layer, own_heads].mean(0)))
        for h in range(heads.shape[1]):
            if own_heads == [h] and layer == own_layer:
                default = len(views)
            views.append(view(layer, [h], f"head {h}", heads[layer, h]))
    return {
        "architecture": "transformer",
        "layers": int(heads.shape[0]),
        "heads": int(heads.shape[1]),
        "default": default,
        "views": views,
    }
