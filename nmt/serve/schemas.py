"""Request and response bodies of ``nmt-serve`` (pydantic): strict types, unknown fields refused.

Strict mode: ``"4"`` is not a beam size and ``1`` is not ``true``. Limits that depend on the service's settings
(sentences per request, pieces per sentence) are checked by :mod:`nmt.serve.service`, which names them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_BEAM = 64  # a bound on work per sentence: beam search costs about beam_size times greedy


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


# --------------------------------------------------------------------------------------------- requests
class TranslateRequest(_Strict):
    """Sentences to translate, with optional search and output options (defaults: the checkpoint's)."""

    sentences: list[str] = Field(description="source sentences, one per item (an empty one gives an empty output)")
    beam_size: int | None = Field(None, ge=1, le=MAX_BEAM, description="beam size; 1 = greedy")
    nbest: int | None = Field(None, ge=1, le=MAX_BEAM, description="hypotheses per sentence (at most beam_size)")
    lenpen: float | None = Field(None, ge=0.0, le=10.0, description="GNMT length penalty alpha; 0 = raw log-prob")
    alignments: bool = Field(False, description="add each hypothesis' word alignment (Pharaoh 'i-j' links)")
    attention: bool = Field(False, description="add each hypothesis' cross-attention matrix")
    alignment_threshold: float | None = Field(
        None, gt=0.0, le=1.0, description="link every source word with at least this weight (default: argmax)"
    )


class AlignRequest(_Strict):
    """Sentence pairs to word-align by forced decoding (as ``nmt-align``)."""

    src: list[str] = Field(description="source sentences; words are whitespace tokens")
    tgt: list[str] = Field(description="target sentences, one per source sentence")
    method: str | None = Field(None, description="'shift' or 'attention' (default: as nmt-align)")
    threshold: float | None = Field(None, gt=0.0, le=1.0, description="link every source word with >= this weight")


class ExploreRequest(_Strict):
    """One sentence for the attention explorer page."""

    sentence: str = Field(description="the source sentence")
    beam_size: int | None = Field(None, ge=1, le=MAX_BEAM, description="beam size; 1 = greedy")


# --------------------------------------------------------------------------------------------- responses
class HypothesisOut(BaseModel):
    text: str
    score: float = Field(description="length-penalised log-probability (the score of nmt-translate --nbest)")
    log_prob: float = Field(description="log-probability of the pieces and the final EOS")
    tokens: list[str] = Field(description="output pieces, without EOS")
    alignment: str | None = Field(None, description="Pharaoh links 'i-j' (source word i, target word j), 0-based")
    attention: list[list[float]] | None = Field(
        None, description="(tokens + EOS) x (source_tokens + EOS) cross-attention weights"
    )


class TranslationOut(BaseModel):
    source: str
    text: str = Field(description="the best translation")
    score: float
    source_tokens: list[str]
    truncated: bool
    hypotheses: list[HypothesisOut]


class TranslateResponse(BaseModel):
    translations: list[TranslationOut]


class AlignmentOut(BaseModel):
    alignment: str = Field(description="Pharaoh links 'i-j', 0-based, sorted by target word")
    links: list[tuple[int, int]]


class AlignResponse(BaseModel):
    alignments: list[AlignmentOut]


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong, naming the field")
