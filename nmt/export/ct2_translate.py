"""Translate with a CTranslate2 export (``nmt-translate --engine ctranslate2``): the same contract as nmt's engine.

:class:`CT2Translator` is a :class:`~nmt.translate.Translator` whose search step runs ``ctranslate2.Translator``;
tokenization, truncation of long sources (with a warning naming the line), empty lines, chunked streaming, input
order and statistics are the base class's, so both engines give one :class:`~nmt.translate.Translation` per line.

What can and cannot be mapped onto CTranslate2's search (``translate_batch``):

- **Batches** are nmt's: length-sorted, at most ``batch_tokens`` source tokens, one ``translate_batch`` call each.
- **Length cap.** nmt caps each sentence at ``floor(a·|x|) + b`` pieces, then EOS. CTranslate2 has one
  ``max_decoding_length`` per call (steps, the EOS step included, after which a hypothesis ends whatever it
  emitted), so a batch is decoded with its longest cap + 1 steps and every hypothesis is cut to its own cap.
  Greedy outputs are then the same pieces as nmt's (each row's choices do not depend on the others). In beam
  search a hypothesis that reaches its cap may differ: nmt forces EOS there, CTranslate2 may carry on a few steps
  (sentences of one batch have similar lengths, so their caps are close).
- **Length penalty** (beam search only): CTranslate2 ranks by ``log p(y|x) / |y|^α`` with ``|y|`` not counting EOS,
  nmt by the GNMT ``log p(y|x) / ((5 + |y| + 1) / 6)^α``; the same α (``lenpen``) is passed on. The ``score`` of a
  hypothesis (``--nbest`` output) is CTranslate2's; an empty hypothesis scores -inf there when α > 0. Greedy
  search runs with α = 0, so its score is the log-probability.
- **Stopping**: CTranslate2 stops a sentence at ``beam_size`` finished hypotheses (with α = 0: once the best beam
  has finished and ``nbest`` are done); nmt also stops once no live beam can still beat its finished ones.
- **Sampling** maps to ``sampling_topk`` / ``sampling_temperature`` (seeded with ``ctranslate2.set_random_seed``);
  CTranslate2 draws from its own generator, so samples differ from nmt's.
- Not available: alignments (attention dumps), ensembles. Precisions map to CTranslate2 compute types; the default
  is the type the export was saved in.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

from nmt.config import Precision, SearchConfig
from nmt.data.batching import length_batches
from nmt.data.tokenizer import JOINT, SRC, TGT, Tokenizer
from nmt.errors import CheckpointError, NMTError
from nmt.export.ctranslate2 import FORMAT, META_FILE, SOURCE_SPM, TARGET_SPM, require_ctranslate2
from nmt.search import Hypothesis
from nmt.translate import Translator

log = logging.getLogger(__name__)

COMPUTE_TYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}  # --precision -> CT2


def read_export(directory: str | Path) -> dict[str, Any]:
    """The ``nmt.json`` of an export directory, after checking the directory holds a complete export.

    Raises:
        CheckpointError: not a directory written by ``nmt-export --format ctranslate2``, or files are missing.
    """
    path = Path(directory)
    hint = "create one with nmt-export --format ctranslate2"
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a CTranslate2 export directory ({hint})")
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} has no {META_FILE}: not an nmt CTranslate2 export ({hint})") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {meta_path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not an nmt CTranslate2 export description (format {FORMAT!r})")
    missing = [name for name in ("model.bin", "config.json", SOURCE_SPM, TARGET_SPM) if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"the export {path} is incomplete: {', '.join(missing)} missing ({hint})")
    return meta


def ct2_device(name: str, ct2: Any) -> tuple[str, int]:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> CTranslate2's (device, index)."""
    kind, _, index = name.partition(":")
    if kind == "auto":
        kind = "cuda" if ct2.get_cuda_device_count() > 0 else "cpu"
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise NMTError(f"--device {name}: CTranslate2 runs on cpu, cuda or cuda:N")
    if kind == "cuda" and ct2.get_cuda_device_count() == 0:
        raise NMTError(f"--device {name}: no CUDA device is available to CTranslate2 (use --device cpu or auto)")
    return kind, int(index or 0)


class CT2Translator(Translator):
    """Translate text lines with a CTranslate2 export directory (see the module docstring).

    Args:
        directory: written by :func:`nmt.export.ctranslate2.export_ctranslate2`.
        search: overrides of the export's search config (the checkpoint's).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: None = the export's own weight type; ``fp32``/``bf16``/``fp16``/``int8`` = that compute type
            (CTranslate2 converts the weights when loading; an error if the device does not support it).
        threads: CTranslate2 ``intra_threads``, per worker (0 = its default).
        workers: CTranslate2 ``inter_threads``: batches decoded at the same time, each on its own ``threads``
            threads (on a small CPU, workers of one thread each are CTranslate2's fast layout: see the README's
            engine comparison). Outputs do not depend on it.
        max_source_len: longer sources are truncated (default: the checkpoint's ``data.max_len``); at most the
            export's position table minus one.
        seed: random seed for sampling.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        search: dict[str, Any] | None = None,
        device: str = "cpu",
        precision: Precision | str | None = None,
        threads: int = 0,
        workers: int = 1,
        max_source_len: int | None = None,
        seed: int | None = None,
    ) -> None:
        ct2 = require_ctranslate2()
        if workers < 1:
            raise NMTError(f"workers must be at least 1, got {workers}")
        meta = read_export(directory)
        directory = Path(directory)
        known = {f.name for f in dataclasses.fields(SearchConfig)}
        cfg = SearchConfig(**{k: v for k, v in meta["search"].items() if k in known})
        cfg = dataclasses.replace(cfg, **(search or {}))  # __post_init__ checks the combination
        src, tgt = (directory / SOURCE_SPM).read_bytes(), (directory / TARGET_SPM).read_bytes()
        tokenizer = Tokenizer.from_state({JOINT: src} if meta.get("joint_vocabulary") else {SRC: src, TGT: tgt})
        self.positions = int(meta["max_positions"])
        max_source_len = max_source_len or int(meta["max_source_len"])
        if max_source_len + 1 > self.positions:
            raise NMTError(
                f"--max-source-len {max_source_len}: the export {directory} has {self.positions} positions, enough "
                f"for sources of {self.positions - 1} pieces plus EOS (re-export with a larger --max-positions)"
            )
        kind, index = ct2_device(device, ct2)
        key = precision.value if isinstance(precision, Enum) else precision  # a Precision, or a CT2-only name
        compute_type = "default" if key is None else COMPUTE_TYPES.get(key)
        supported = ct2.get_supported_compute_types(kind, index)
        if compute_type is None or (compute_type != "default" and compute_type not in supported):
            raise NMTError(
                f"--precision {key}: CTranslate2 on {kind} supports compute types {', '.join(sorted(supported))}"
            )
        super().__init__(None, tokenizer, cfg, device="cpu", max_source_len=max_source_len)  # type: ignore[arg-type]
        self.meta = meta
        self.engine = ct2.Translator(
            str(directory), device=kind, device_index=index, compute_type=compute_type, inter_threads=workers,
            intra_threads=threads,
        )  # fmt: skip
        if cfg.sampling and seed is not None:
            ct2.set_random_seed(seed)
        self._src_pieces = tokenizer.src_pieces(list(range(tokenizer.src_vocab_size)))
        self._tgt_ids = {p: i for i, p in enumerate(tokenizer.tgt_pieces(list(range(tokenizer.tgt_vocab_size))))}
        self._options = {
            "beam_size": cfg.beam_size,
            "num_hypotheses": cfg.nbest,
            "length_penalty": cfg.lenpen if cfg.beam_size > 1 else 0.0,
            "min_decoding_length": 0,  # nmt allows an immediate EOS (an empty output)
            "max_input_length": 0,  # sources are truncated before, with a warning naming the line
            "return_scores": True,
            "sampling_topk": (cfg.sampling_topk if cfg.sampling else 1),  # CTranslate2: 0 = all, 1 = greedy
            "sampling_temperature": cfg.sampling_temperature if cfg.sampling else 1.0,
        }

    def _search(
        self, src_ids: list[list[int]], *, progress: Callable[[int], None] | None = None
    ) -> list[list[Hypothesis]]:
        """One ``translate_batch`` per length-sorted token batch (all in flight at once, for CTranslate2's
        ``inter_threads`` workers to share); hypotheses cut to their sentence's cap."""
        cfg = self.cfg
        results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] if not ids else [] for ids in src_ids]
        todo = [i for i, ids in enumerate(src_ids) if ids]
        if progress is not None and len(todo) < len(src_ids):
            progress(len(src_ids) - len(todo))
        batches = []
        for batch_pos in length_batches([len(src_ids[i]) for i in todo], cfg.batch_tokens):
            rows = [todo[p] for p in batch_pos]
            caps = [math.floor(cfg.max_len_a * len(src_ids[i])) + cfg.max_len_b for i in rows]
            steps = min(max(caps) + 1, self.positions)  # decoder position t is step t: the table bounds it
            pending = self.engine.translate_batch(
                [[self._src_pieces[t] for t in src_ids[i]] for i in rows],
                max_decoding_length=steps,
                asynchronous=True,
                **self._options,
            )
            batches.append((rows, caps, pending))
        for rows, caps, pending in batches:
            for i, cap, result in zip(rows, caps, (p.result() for p in pending)):
                results[i] = [
                    self._hypothesis(pieces, score, cap) for pieces, score in zip(result.hypotheses, result.scores)
                ]
            if progress is not None:
                progress(len(rows))
        return results

    def _hypothesis(self, pieces: list[str], score: float, cap: int) -> Hypothesis:
        """A CTranslate2 hypothesis as nmt's: piece ids cut to ``cap``; ``log_prob`` undoes CTranslate2's
        ``|y|^α`` (NaN for an empty hypothesis under α > 0, whose score is -inf)."""
        tokens = [self._tgt_ids[p] for p in pieces]
        alpha = self._options["length_penalty"]
        if alpha == 0:
            log_prob = score
        else:
            log_prob = score * len(tokens) ** alpha if tokens else math.nan
        return Hypothesis(tokens[:cap], score, log_prob)

    def links(self, *args: Any, **kwargs: Any) -> str:
        raise NMTError("word alignments are not available with --engine ctranslate2")

    def word_alignment(self, *args: Any, **kwargs: Any) -> set:
        raise NMTError("word alignments are not available with --engine ctranslate2")
