"""SentencePiece subword models: trained on the training corpus in memory, stored as bytes in checkpoints.

One joint model covers both languages (so a Transformer can tie all its embeddings), or two models (source,
target) keep separate vocabularies. Ids 0..3 are always pad/unk/bos/eos (``nmt.specials``); the model *is*
the vocabulary. Models trained here have that layout; a model brought from elsewhere with other special ids
(``spm_train``'s defaults) is renumbered by :class:`nmt.data.vocab.SpmVocab`. Encoded id lists never contain
those specials: ``collate`` adds BOS/EOS.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from nmt.config import ConfigError, TokenizerConfig
from nmt.data.vocab import SPECIAL_IDS, SpmVocab
from nmt.errors import CheckpointError, DataError
from nmt.specials import BOS_ID, EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)

__all__ = ["SPECIAL_IDS", "Tokenizer", "num_threads"]

JOINT, SRC, TGT = "joint", "src", "tgt"  # keys of to_state() and stems of the saved .model files
TRAIN_SEED = 1  # SentencePiece's sentence sampling is seeded, so the same corpus gives the same model


def num_threads() -> int:
    """Threads for SentencePiece training/encoding: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


class Tokenizer:
    """One joint SentencePiece model or a source and a target model.

    Args:
        src: the source-side processor (the joint one when ``tgt`` is None).
        tgt: the target-side processor, or None for a joint model.
        sampling_alpha: subword regularisation strength used by ``encode_*(sample=True)`` (unigram: the
            smoothing alpha; BPE: the dropout probability). 0 disables sampling.
        sampling_nbest: unigram sampling from the n best segmentations; -1 samples from the whole lattice.
    """

    def __init__(
        self,
        src: spm.SentencePieceProcessor,
        tgt: spm.SentencePieceProcessor | None = None,
        *,
        sampling_alpha: float = 0.0,
        sampling_nbest: int = -1,
    ) -> None:
        self._src = SpmVocab(src)
        self._tgt = SpmVocab(tgt) if tgt is not None else self._src
        self._joint = tgt is None
        self.sampling_alpha = sampling_alpha
        self.sampling_nbest = sampling_nbest

    # ----------------------------------------------------------------------------------------- creation
    @classmethod
    def train(cls, src_texts: Iterable[str], tgt_texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
        """Train SentencePiece on the given sentences (joint over both sides when ``cfg.joint``).

        Each side is iterated once, source first, and SentencePiece keeps at most ``cfg.input_sentence_size``
        sentences, so the sides can be generators over a corpus larger than memory.

        Raises:
            ConfigError: ``cfg.vocab_size`` is larger than the corpus can support (the message gives the
                maximum); we do not silently shrink the vocabulary (no ``hard_vocab_limit=False``), because the
                model size and the cache keys must follow the configured value.
        """
        if cfg.joint:
            proto = _train_model(_chain(src_texts, tgt_texts), cfg, "joint (source + target)")
            return cls.from_state({JOINT: proto}, sampling_alpha=cfg.sampling_alpha, sampling_nbest=cfg.sampling_nbest)
        state = {SRC: _train_model(iter(src_texts), cfg, "source"), TGT: _train_model(iter(tgt_texts), cfg, "target")}
        return cls.from_state(state, sampling_alpha=cfg.sampling_alpha, sampling_nbest=cfg.sampling_nbest)

    @classmethod
    def from_state(cls, state: dict[str, bytes], *, sampling_alpha: float = 0.0, sampling_nbest: int = -1) -> Tokenizer:
        """Rebuild from :meth:`to_state` (e.g. a checkpoint's ``tokenizer`` entry).

        Raises:
            CheckpointError: the state is not a tokenizer state or holds a broken model.
        """
        keys = set(state) if isinstance(state, dict) else set()
        if keys not in ({JOINT}, {SRC, TGT}):
            raise CheckpointError(f"not a tokenizer state: expected keys {{'joint'}} or {{'src', 'tgt'}}, got {keys}")
        processors = {}
        for key in sorted(keys):
            try:
                processors[key] = _processor(bytes(state[key]))
            except ValueError as e:
                raise CheckpointError(f"tokenizer state {key!r} is not a SentencePiece model: {e}") from None
        src, tgt = (processors[JOINT], None) if JOINT in processors else (processors[SRC], processors[TGT])
        return cls(src, tgt, sampling_alpha=sampling_alpha, sampling_nbest=sampling_nbest)

    @classmethod
    def load(
        cls,
        path: str | Path,
        tgt_path: str | Path | None = None,
        *,
        sampling_alpha: float = 0.0,
        sampling_nbest: int = -1,
    ) -> Tokenizer:
        """Read a ``.model`` file (joint), a directory written by :meth:`save`, or two files (source, target).

        Args:
            path: a joint ``.model`` file, a directory holding ``joint.model`` or ``src.model`` + ``tgt.model``,
                or, with ``tgt_path``, the source-side ``.model`` file.
            tgt_path: the target-side ``.model`` file (separate vocabularies).

        Raises:
            DataError: a file is missing or is not a SentencePiece model (the message names it).
        """
        path = Path(path)
        names = {JOINT: path}
        if tgt_path is not None:
            names = {SRC: path, TGT: Path(tgt_path)}
        elif path.is_dir():
            joint = path / f"{JOINT}.model"
            names = {JOINT: joint} if joint.is_file() else {SRC: path / f"{SRC}.model", TGT: path / f"{TGT}.model"}
        missing = [str(p) for p in names.values() if not p.is_file()]
        if missing:
            raise DataError(f"tokenizer model not found: {', '.join(missing)}")
        processors = {}
        for key, p in names.items():
            try:
                processors[key] = _processor(p.read_bytes())
            except ValueError as e:
                raise DataError(f"{p} ({key} tokenizer) is not a SentencePiece model: {e}") from None
        src, tgt = (processors[JOINT], None) if JOINT in processors else (processors[SRC], processors[TGT])
        return cls(src, tgt, sampling_alpha=sampling_alpha, sampling_nbest=sampling_nbest)

    # ----------------------------------------------------------------------------------------- storage
    def to_state(self) -> dict[str, bytes]:
        """The serialized model(s): ``{"joint": bytes}`` or ``{"src": bytes, "tgt": bytes}``."""
        if self._joint:
            return {JOINT: self._src.sp.serialized_model_proto()}
        return {SRC: self._src.sp.serialized_model_proto(), TGT: self._tgt.sp.serialized_model_proto()}

    def save(self, directory: str | Path) -> list[Path]:
        """Write ``joint.model`` or ``src.model`` + ``tgt.model`` into ``directory`` (atomically each)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for key, proto in self.to_state().items():
            target = directory / f"{key}.model"
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
            with os.fdopen(fd, "wb") as f:
                f.write(proto)
            os.replace(tmp, target)
            written.append(target)
        return written

    # ----------------------------------------------------------------------------------------- properties
    @property
    def joint(self) -> bool:
        return self._joint

    @property
    def src_vocab_size(self) -> int:
        """Source ids the model sees (the pieces, plus a slot for each special the SentencePiece model lacks)."""
        return self._src.size

    @property
    def tgt_vocab_size(self) -> int:
        """Target ids the model sees (the pieces, plus a slot for each special the SentencePiece model lacks)."""
        return self._tgt.size

    def renumbering(self) -> list[str]:
        """How brought models' SentencePiece ids map to the model's (for logs); empty when they are used as is."""
        sides = [(JOINT, self._src)] if self._joint else [(SRC, self._src), (TGT, self._tgt)]
        return [f"{name}: {v.describe()}" for name, v in sides if not v.identity]

    # ----------------------------------------------------------------------------------------- encoding
    def encode_src(self, texts: list[str], *, sample: bool = False) -> list[list[int]]:
        """Source sentences -> piece ids (no specials). ``sample=True``: subword regularisation (training only)."""
        return self._encode(self._src, texts, sample)

    def encode_tgt(self, texts: list[str], *, sample: bool = False) -> list[list[int]]:
        """Target sentences -> piece ids (no specials). ``sample=True``: subword regularisation (training only)."""
        return self._encode(self._tgt, texts, sample)

    def _encode(self, vocab: SpmVocab, texts: list[str], sample: bool) -> list[list[int]]:
        if not texts:
            return []
        if sample and self.sampling_alpha > 0:
            # SentencePiece draws from its own per-thread generator: sampled segmentations are not reproducible.
            return vocab.encode(
                list(texts),
                enable_sampling=True,
                alpha=self.sampling_alpha,
                nbest_size=self.sampling_nbest,
                num_threads=num_threads(),
            )
        return vocab.encode(list(texts), num_threads=num_threads())

    def decode_src(self, ids: Iterable[int]) -> str:
        """Source piece ids -> detokenized text (specials dropped)."""
        return self._src.decode(ids)

    def decode_tgt(self, ids: Iterable[int]) -> str:
        """Target piece ids -> detokenized text (pad/bos/eos dropped; unknown pieces show as `` ⁇ ``)."""
        return self._tgt.decode(ids)

    def src_pieces(self, ids: Iterable[int]) -> list[str]:
        """Source ids -> piece strings ("▁" marks the start of a word), for attention dumps."""
        return self._src.pieces(ids)

    def tgt_pieces(self, ids: Iterable[int]) -> list[str]:
        """Target ids -> piece strings ("▁" marks the start of a word), for attention dumps."""
        return self._tgt.pieces(ids)

    def __repr__(self) -> str:
        if self._joint:
            return f"Tokenizer(joint, vocab={self.src_vocab_size})"
        return f"Tokenizer(separate, src={self.src_vocab_size}, tgt={self.tgt_vocab_size})"


# --------------------------------------------------------------------------------------------- helpers
def _processor(proto: bytes) -> spm.SentencePieceProcessor:
    """A SentencePiece processor from model bytes; ValueError (with SentencePiece's reason) if they are not one."""
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(proto)
    except (RuntimeError, OSError, TypeError) as e:
        raise ValueError(str(e)) from None
    return sp


def _chain(*sides: Iterable[str]) -> Iterator[str]:
    for side in sides:
        yield from side


def _train_model(sentences: Iterable[str], cfg: TokenizerConfig, what: str) -> bytes:
    """Run the SentencePiece trainer on an in-memory iterator; return the serialized model."""
    non_empty = (s for s in sentences if s.strip())  # empty lines carry nothing to learn
    out = io.BytesIO()
    spm.set_random_generator_seed(TRAIN_SEED)
    log.info("training %s SentencePiece %s model, vocab_size=%d", what, cfg.type.value, cfg.vocab_size)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=non_empty,
            model_writer=out,
            model_type=cfg.type.value,
            vocab_size=cfg.vocab_size,
            character_coverage=cfg.character_coverage,
            input_sentence_size=cfg.input_sentence_size,
            shuffle_input_sentence=cfg.shuffle_input_sentence,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            hard_vocab_limit=True,
            num_threads=num_threads(),
            minloglevel=2,  # SentencePiece's own progress goes to stderr; we log a summary
        )
    except RuntimeError as e:
        message = str(e)
        too_high = re.search(r"Vocabulary size too high \((\d+)\).*<= (\d+)", message)
        if too_high:
            raise ConfigError(
                f"tokenizer.vocab_size={cfg.vocab_size} is too large for the {what} training text: "
                f"SentencePiece can build at most {too_high.group(2)} pieces from it; lower tokenizer.vocab_size"
            ) from None
        if "Not found" in message or "empty" in message.lower():
            raise DataError(f"cannot train the {what} SentencePiece model: {message}") from None
        raise
    return out.getvalue()
