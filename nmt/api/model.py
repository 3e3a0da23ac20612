"""Loading a checkpoint and the :class:`Model` that translates, aligns and scores (see :mod:`nmt.api`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nmt.api.records import AlignmentResult, Candidate, ScoreResult, TranslationResult
from nmt.config import AttentionType, ConfigError, InferencePrecision, NMTConfig, Positions, RNNConfig, SearchConfig
from nmt.data.batch import collate
from nmt.data.batching import length_batches
from nmt.device import resolve_device
from nmt.errors import NMTError
from nmt.models.base import Seq2Seq
from nmt.models.inference import autocast_precision, prepare_for_inference
from nmt.search import autocast, length_penalty
from nmt.specials import PAD_ID
from nmt.translate import Translation, Translator, load_models

if TYPE_CHECKING:
    from nmt.analysis.forced import ForcedAligner
    from nmt.data.tokenizer import Tokenizer


# --------------------------------------------------------------------------------------------- loading
def load(
    checkpoint: str | Path | Sequence[str | Path],
    *,
    device: str | torch.device = "auto",
    precision: str | InferencePrecision = "fp32",
    max_source_len: int | None = None,
) -> Model:
    """Load a checkpoint (or several: an ensemble over one vocabulary) for translation, alignment and scoring.

    Args:
        checkpoint: a ``.pt`` file written by ``nmt-train`` or ``nmt-average``; a list makes an ensemble.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32``, ``bf16`` (a bf16 copy of the model), ``fp16`` (autocast) or ``int8`` (int8 linear
            layers, CPU), as ``--precision`` (see :mod:`nmt.models.inference`).
        max_source_len: longer sources are truncated to this many pieces (default: the checkpoint's
            ``data.max_len``, as ``nmt-translate``).
    Raises:
        CheckpointError: a checkpoint cannot be read; ConfigError / NMTError: a bad device or precision.

    Example::

        import nmt

        model = nmt.load("runs/demo/checkpoints/best.pt", device="cpu", precision="fp32")
        print(model.translate(["Ein Hund rennt."])[0].text)
    """
    try:
        precision = InferencePrecision(precision)
    except ValueError:
        raise ConfigError(f"precision must be one of fp32, bf16, fp16, int8, got {precision!r}") from None
    if max_source_len is not None and max_source_len < 1:
        raise ConfigError(f"max_source_len must be positive, got {max_source_len}")
    paths = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    dev = resolve_device(device)
    model, tokenizer, cfg = load_models(paths, dev)
    return Model(model, tokenizer, cfg, device=dev, precision=precision, max_source_len=max_source_len)


# --------------------------------------------------------------------------------------------- the model
class Model:
    """A loaded model with its tokenizer and settings; made by :func:`load`.

    Args:
        model: a Seq2Seq (or an Ensemble) on ``device``, in eval mode.
        tokenizer: its tokenizer.
        config: the (first) checkpoint's config: search defaults, maximum source length, alignment defaults.
        device: where batches go.
        precision: decoding format for translation and scoring (the model is prepared for it once, here).
        max_source_len: longer sources are truncated (default ``config.data.max_len``).
    """

    def __init__(
        self,
        model: Seq2Seq,
        tokenizer: Tokenizer,
        config: NMTConfig,
        *,
        device: torch.device | str = "cpu",
        precision: InferencePrecision | str = InferencePrecision.fp32,
        max_source_len: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.precision = InferencePrecision(precision)
        self.model = prepare_for_inference(model, self.precision, self.device)
        self.tokenizer, self.config = tokenizer, config
        self.max_source_len = max_source_len or config.data.max_len

    def __repr__(self) -> str:
        return f"Model({type(self.model).__name__}, {self.tokenizer!r}, device={self.device}, {self.precision.value})"

    # ----------------------------------------------------------------------------------------- properties
    @property
    def search_config(self) -> SearchConfig:
        """The checkpoint's search settings, the defaults of :meth:`translate`."""
        return self.config.search

    @property
    def has_attention(self) -> bool:
        """False only for an RNN trained with ``model.attention=none`` (no alignments, no attention)."""
        m = self.config.model
        return not (isinstance(m, RNNConfig) and m.attention == AttentionType.none)

    @property
    def architecture(self) -> str:
        """``transformer``, ``rnn`` or ``ensemble``."""
        from nmt.models.ensemble import Ensemble
        from nmt.models.transformer import Transformer

        if isinstance(self.model, Ensemble):
            return "ensemble"
        return "transformer" if isinstance(self.model, Transformer) else "rnn"

    @property
    def num_layers(self) -> int:
        """Decoder layers with their own cross-attention (1 for an RNN or an ensemble)."""
        return self.model.cfg.decoder_layers if self.architecture == "transformer" else 1

    @property
    def num_heads(self) -> int:
        """Cross-attention heads per layer (1 for an RNN or an ensemble)."""
        return self.model.cfg.heads if self.architecture == "transformer" else 1

    @property
    def alignment_layer(self) -> int | None:
        """The 0-based decoder layer whose attention alignments use (None: an RNN's one attention, or an ensemble)."""
        return getattr(self.model, "align_layer", None)

    @property
    def alignment_heads(self) -> list[int] | None:
        """The heads averaged for alignments (None: all)."""
        return getattr(self.model, "align_heads", None)

    # ----------------------------------------------------------------------------------------- translate
    def translate(
        self,
        sentences: Sequence[str],
        *,
        beam_size: int | None = None,
        nbest: int | None = None,
        lenpen: float | None = None,
        max_len_a: float | None = None,
        max_len_b: int | None = None,
        return_attention: bool = False,
        return_alignments: bool = False,
        alignment_layer: int | None = None,
        alignment_heads: list[int] | None = None,
        alignment_threshold: float | None = None,
    ) -> list[TranslationResult]:
        """Translate sentences (batched and length-sorted as ``nmt-translate``; results in input order).

        Search options default to the checkpoint's search config (as the CLI's flags do). ``return_attention``
        adds each hypothesis' cross-attention matrix, ``return_alignments`` its word links (Pharaoh), from
        ``alignment_layer``/``alignment_heads`` (default: the checkpoint's; as ``--align-layer``/``--align-heads``).

        Raises:
            ConfigError: impossible search options (``nbest > beam_size``), or attention asked of a model without.

        Example::

            results = model.translate(["Ein Hund rennt.", "Zwei Kinder spielen."], beam_size=4, nbest=2)
            for r in results:
                print(r.text, [(h.text, h.score) for h in r.hypotheses])
            ['A dog is running.', 'Two children are playing.']
        """
        if isinstance(sentences, str):
            raise TypeError("translate() takes a list of sentences; wrap a single sentence in a list")
        need = return_attention or return_alignments
        if need and not self.has_attention:
            raise ConfigError("this model has no attention (model.attention=none): no attention or alignments")
        given = {"beam_size": beam_size, "nbest": nbest, "lenpen": lenpen, "max_len_a": max_len_a}
        given["max_len_b"] = max_len_b
        cfg = replace(self.search_config, **{k: v for k, v in given.items() if v is not None})
        translator = Translator(
            self.model,
            self.tokenizer,
            cfg,
            device=self.device,
            max_source_len=self.max_source_len,
            need_attention=need,
            config=self.config,
            precision=self.precision.value,
        )
        with self._alignment(alignment_layer, alignment_heads):
            done = translator.translate(list(sentences))
        return [self._result(translator, t, return_attention, return_alignments, alignment_threshold) for t in done]

    def _result(
        self, translator: Translator, t: Translation, attention: bool, alignments: bool, threshold: float | None
    ) -> TranslationResult:
        candidates = []
        for rank, (h, text) in enumerate(zip(t.hypotheses, t.texts)):
            links = None
            if alignments:
                links = sorted(translator.word_alignment(t, rank, threshold=threshold), key=lambda x: (x[1], x[0]))
            matrix = h.attention.float().numpy() if attention and h.attention is not None else None
            candidates.append(
                Candidate(text, h.score, h.log_prob, self.tokenizer.tgt_pieces(h.tokens), list(h.tokens), matrix, links)
            )
        return TranslationResult(t.source, self.tokenizer.src_pieces(t.src_ids), candidates, t.truncated)

    # ----------------------------------------------------------------------------------------- align
    def align(
        self,
        src: Sequence[str],
        tgt: Sequence[str],
        *,
        method: str | None = None,
        layer: int | None = None,
        heads: list[int] | None = None,
        threshold: float | None = None,
        lowercase: bool = False,
        batch_tokens: int = 4096,
    ) -> list[AlignmentResult]:
        """Forced word alignment of given sentence pairs, exactly as ``nmt-align`` (one direction).

        Args:
            src, tgt: line-aligned sentences; words are their whitespace tokens.
            method: ``shift`` or ``attention`` (default as ``nmt-align``: shift, or the rows a guided checkpoint
                was trained on).
            layer, heads: the decoder layer and heads (default: the checkpoint's; a layer without heads takes all
                heads, or the checkpoint's heads at the checkpoint's own layer, as ``--layer``).
            threshold: link every source word with at least this weight (default: the argmax only).
            lowercase: lowercase both sides first (models trained on lowercased text).

        Example::

            for a in model.align(["Ein Hund bellt ."], ["A dog barks ."], method="shift"):
                print(a.pharaoh, a.matrix.shape)  # "i-j" links, (target words, source words) = (4, 4)
            ['0-0 1-1 2-2']
        """
        from nmt.analysis.forced import Method

        if isinstance(src, str) or isinstance(tgt, str):
            raise TypeError("align() takes lists of sentences; wrap a single pair in lists")
        if len(src) != len(tgt):
            raise NMTError(f"align() got {len(src)} source and {len(tgt)} target sentences: they must pair up")
        if threshold is not None and not 0 < threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
        guided = self.config.train.alignment
        method = method or ("attention" if guided.file and not guided.shift else "shift")
        try:
            method = Method(method)
        except ValueError:
            raise ConfigError(f"method must be 'attention' or 'shift', got {method!r}") from None
        aligner = self._aligner(lowercase, batch_tokens)
        with self._alignment(layer, self._default_heads(layer, heads)):
            done = aligner.align(list(src), list(tgt), method, threshold=threshold)
        return [AlignmentResult(sorted(a.links, key=lambda x: (x[1], x[0])), a.matrix) for a in done]

    def _aligner(self, lowercase: bool, batch_tokens: int) -> ForcedAligner:
        from nmt.analysis.forced import ForcedAligner

        if not self.has_attention:
            raise ConfigError("this model has no attention (model.attention=none): it cannot align")
        m = self.config.model
        max_len = m.max_positions - 1 if getattr(m, "positions", None) == Positions.learned else None
        return ForcedAligner(
            self.model,
            self.tokenizer,
            device=self.device,
            batch_tokens=batch_tokens,
            lowercase=lowercase,
            max_len=max_len,
        )

    def _default_heads(self, layer: int | None, heads: list[int] | None) -> list[int] | None:
        """``nmt-align``'s rule: explicit heads; else with a layer, the checkpoint's heads only at its own layer."""
        if heads is not None or layer is None:
            return heads if heads is not None else self.alignment_heads
        cfg = self.config.model
        n = self.num_layers
        own = getattr(cfg, "alignment_layer", None)
        return getattr(cfg, "alignment_heads", None) if own is not None and layer % n == own % n else None

    @contextlib.contextmanager
    def _alignment(self, layer: int | None, heads: list[int] | None) -> Iterator[None]:
        """Use another alignment layer/heads for the duration (as ``--align-layer``/``--align-heads``)."""
        if layer is None and heads is None:
            yield
            return
        members = list(getattr(self.model, "members", [self.model]))
        saved = [(m, getattr(m, "align_layer", None), getattr(m, "align_heads", None)) for m in members]
        try:
            self.model.set_alignment(layer=layer, heads=heads)
            yield
        finally:
            for m, old_layer, old_heads in saved:
                m.set_alignment(layer=old_layer, heads=old_heads)

    # ----------------------------------------------------------------------------------------- score
    def score(self, src: Sequence[str], tgt: Sequence[str], *, lenpen: float | None = None) -> list[ScoreResult]:
        """The model's log-probability of each given translation (teacher-forced: pieces + EOS).

        Sources are tokenized and truncated as :meth:`translate` does, targets segmented by SentencePiece. The
        result's ``score`` applies the length penalty (``lenpen``, default the checkpoint's), so for the pieces a
        search produced it equals that hypothesis' score (``nmt-translate --nbest``) within float tolerance. As in
        translation, an empty source is never given to the model: its only output is the empty one (log-probability
        0; any other target gets -inf).

        Example::

            s = model.score(["Ein Hund rennt."], ["A dog is running."])[0]
            print(s.log_prob, s.score, list(zip(s.tokens + ["</s>"], s.token_log_probs)))
            (True, ['▁A', '▁dog'])
        """
        if isinstance(src, str) or isinstance(tgt, str):
            raise TypeError("score() takes lists of sentences; wrap a single pair in lists")
        if len(src) != len(tgt):
            raise NMTError(f"score() got {len(src)} source and {len(tgt)} target sentences: they must pair up")
        alpha = self.search_config.lenpen if lenpen is None else lenpen
        src_ids = [
            ids[: self.max_source_len] for ids in self.tokenizer.encode_src([s if s.strip() else "" for s in src])
        ]
        tgt_ids = self.tokenizer.encode_tgt(list(tgt))
        per_token: list[np.ndarray] = [np.zeros(0)] * len(src_ids)
        todo = [i for i, ids in enumerate(src_ids) if ids]
        for i, ids in enumerate(src_ids):
            if not ids:
                per_token[i] = np.array([0.0 if not tgt_ids[i] else -np.inf])
        for rows in length_batches(
            [max(len(src_ids[i]), len(tgt_ids[i])) for i in todo], self.search_config.batch_tokens
        ):
            rows = [todo[r] for r in rows]
            for i, lp in zip(rows, self._token_log_probs([src_ids[i] for i in rows], [tgt_ids[i] for i in rows])):
                per_token[i] = lp
        out = []
        for ids, lp in zip(tgt_ids, per_token):
            total = float(lp.sum())
            score = total / float(length_penalty(len(ids) + 1, alpha))
            out.append(ScoreResult(total, score, self.tokenizer.tgt_pieces(ids), lp))
        return out

    @torch.inference_mode()
    def _token_log_probs(self, src: list[list[int]], tgt: list[list[int]]) -> list[np.ndarray]:
        """One batch: per pair the log-probabilities of the target pieces and EOS, float64 (len(tgt) + 1,)."""
        was_training = self.model.training
        self.model.eval()
        try:
            batch = collate(src, tgt, list(range(len(src)))).to(self.device)
            with autocast(self.device, autocast_precision(self.precision)):
                logits, _ = self.model.decode(batch.tgt_in, self.model.encode(batch.src, batch.src_lengths))
            # float32 log-softmax, as decode_step computes the log-probabilities search adds up
            lp = torch.log_softmax(logits.float(), dim=-1).gather(2, batch.tgt_out[:, :, None]).squeeze(2)  # (B, T+1)
            lp = lp.masked_fill(batch.tgt_out == PAD_ID, 0.0).double().cpu().numpy()
        finally:
            self.model.train(was_training)
        return [lp[b, : len(t) + 1] for b, t in enumerate(tgt)]

    # ----------------------------------------------------------------------------------------- attention views
    def head_attention(self, result: TranslationResult, rank: int = 0) -> np.ndarray:
        """Cross-attention of every decoder layer and head for one translation, by teacher-forcing its pieces.

        Search keeps the attention of one layer/heads choice only; this re-runs the decoder on the hypothesis'
        own pieces (as :mod:`nmt.analysis.forced` does) once per layer and head.

        Returns:
            float64 (layers, heads, len(tokens) + 1, len(source_tokens) + 1): rows = the steps emitting each
            target piece and EOS (the rows of :attr:`Candidate.attention`), columns = source pieces + EOS.
            (1, 1, ...) for an RNN or an ensemble (their one alignment attention).
        Raises:
            ConfigError: the model has no attention.

        Example::

            r = model.translate(["Ein Hund rennt."])[0]
            per_layer = model.head_attention(r).mean(axis=1)  # averaged over heads: (layers, T + 1, S + 1)
            (6, 5, 6)
        """
        from nmt.analysis.forced import teacher_forced_attention

        if not self.has_attention:
            raise ConfigError("this model has no attention (model.attention=none): nothing to show")
        h = result.hypotheses[rank]
        src_ids = self.tokenizer.encode_src([result.source if result.source.strip() else ""])[0]
        src_ids = src_ids[: self.max_source_len]
        n_l, n_h = self.num_layers, self.num_heads
        out = np.zeros((n_l, n_h, len(h.token_ids) + 1, len(src_ids) + 1))
        if not src_ids:  # never given to the model: the empty output attends to the source EOS
            out[...] = 1.0
            return out
        per_head = self.architecture == "transformer"  # else one attention: the model's alignment setting
        for layer in range(n_l):
            for head in range(n_h):
                with self._alignment(layer, [head]) if per_head else contextlib.nullcontext():
                    (out[layer, head],) = teacher_forced_attention(
                        self.model, [src_ids], [h.token_ids], device=self.device
                    )
        return out
