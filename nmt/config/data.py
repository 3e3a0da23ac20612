"""Schemas of the corpora and the SentencePiece tokenizer (``data.*``, ``tokenizer.*``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nmt.config.choices import TokenizerType
from nmt.config.ranges import AT_LEAST_1, NON_NEGATIVE, RANGES, ConfigError, Range, check_ranges

HF_FORMATS = ("parquet", "json", "arrow", "csv", "text")  # ``datasets`` builders that read local files


@dataclass
class HFConfig:
    """A corpus read through Hugging Face ``datasets``.

    ``path`` is a hub dataset name (``wmt16``), a local dataset directory (``save_to_disk``), or a data
    format with files (``parquet``/``json``/``arrow``/``csv``, then ``data_files`` names them).
    Rows are either ``{"translation": {src_lang: ..., tgt_lang: ...}}`` (the WMT/OPUS layout), have one
    column per language, or any other layout named by ``src_column`` / ``tgt_column``.
    """

    path: str = field(
        default="",
        metadata={
            "help": "a hub dataset (wmt16), a save_to_disk directory, or a file format (parquet, json, arrow, csv, "
            "text) read from data_files; empty = plain files, not datasets"
        },
    )
    name: str | None = field(default=None, metadata={"help": "the hub dataset's configuration, e.g. de-en"})
    data_files: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "split -> file, list of files or glob pattern (local files resolve under the data root; "
            "with a hub name, paths inside the dataset repository)"
        },
    )
    revision: str | None = field(
        default=None,
        metadata={"help": "hub dataset revision (a commit sha, tag or branch) passed to load_dataset"},
    )
    src_column: str | None = field(
        default=None,
        metadata={
            "help": "column holding source sentences ('source', or 'pair.de' for a field of a nested column); "
            "default: translation.<src_lang>, else <src_lang>"
        },
    )
    tgt_column: str | None = field(
        default=None,
        metadata={"help": "column holding target sentences, like src_column; default: translation.<tgt_lang>"},
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "iterate the training split without loading it (corpora larger than memory); "
            "dev and test splits are read whole"
        },
    )

    def __post_init__(self) -> None:
        for split, files in self.data_files.items():
            if isinstance(files, str):
                continue
            if not isinstance(files, list | tuple) or not all(isinstance(f, str) for f in files) or not files:
                raise ConfigError(
                    f"data.hf.data_files.{split} must be a file, a glob pattern or a non-empty list of them, "
                    f"got {files!r}"
                )
        if self.revision and self.path in HF_FORMATS:
            raise ConfigError(
                f"data.hf.revision={self.revision!r} applies to hub datasets, not to local {self.path} files"
            )


@dataclass
class DataConfig:
    """A parallel corpus: ``{prefix}.{lang}`` file pairs (plain or ``.gz``) or a ``datasets`` corpus.

    Relative prefixes are resolved under the data root (``$NMT_DATA_DIR``, default ``data/``). With
    ``hf.path`` set, ``train``/``valid``/``test`` are split names instead of file prefixes.
    """

    src_lang: str = field(
        default="de",
        metadata={
            "help": "source language: the suffix of the source files ({prefix}.{src_lang}[.gz]) or its datasets column"
        },
    )
    tgt_lang: str = field(
        default="en", metadata={"help": "target language: the suffix of the target files or its datasets column"}
    )
    train: str = field(
        default="",
        metadata={
            "help": "training corpus: a file prefix (relative: under the data root $NMT_DATA_DIR) or a split of hf.path"
        },
    )
    valid: str = field(
        default="",
        metadata={"help": "dev corpus (validation, best checkpoint, early stopping): a file prefix or a split"},
    )
    test: list[str] = field(
        default_factory=list,
        metadata={
            "help": "test corpora, translated with the best checkpoint when training ends: [prefix, ...] or splits"
        },
    )
    max_len: int = field(
        default=100,
        metadata={
            "help": "subword pieces per side: longer training pairs are dropped (and counted); longer sources are cut "
            "when a checkpoint of this run translates"
        },
    )
    download: str | None = field(
        default=None,
        metadata={
            "help": "a public corpus fetched into the data root when its files are missing (multi30k); null = never"
        },
    )
    # A field (not None by default), so that command-line overrides can reach data.hf.*.
    hf: HFConfig = field(
        default_factory=HFConfig,
        metadata={"help": "a Hugging Face datasets corpus instead of files (data.hf.*; used when data.hf.path is set)"},
    )
    cache_dir: str = field(
        default="",
        metadata={
            "help": "where tokenizers and encoded training data are cached; empty = $NMT_CACHE_DIR, else "
            "$XDG_CACHE_HOME/nmt, else ~/.cache/nmt"
        },
    )

    def __post_init__(self) -> None:
        check_ranges(self, "data")
        if self.src_lang == self.tgt_lang:
            raise ConfigError(f"data.src_lang and data.tgt_lang are both {self.src_lang!r}")
        if self.max_len < 1:
            raise ConfigError(f"data.max_len must be positive, got {self.max_len}")


@dataclass
class TokenizerConfig:
    """SentencePiece: trained on the training corpus, or reused from ``model_path``."""

    type: TokenizerType = field(default=TokenizerType.unigram, metadata={"help": "SentencePiece model type"})
    vocab_size: int = field(
        default=8000, metadata={"help": "pieces in the vocabulary (in each of the two when joint=false)"}
    )
    joint: bool = field(
        default=True,
        metadata={
            "help": "one model over both languages (lets a Transformer tie all embeddings); false = one per side"
        },
    )
    character_coverage: float = field(
        default=1.0,
        metadata={
            "help": "share of the corpus's characters the model covers (the rarest become <unk>); about 0.9995 for CJK"
        },
    )
    input_sentence_size: int = field(
        default=2_000_000,
        metadata={"help": "sentences sampled from the training corpus to train SentencePiece on (0 = all)"},
    )
    shuffle_input_sentence: bool = field(
        default=True, metadata={"help": "sample those sentences at random (false: the first ones)"}
    )
    model_path: str | None = field(
        default=None,
        metadata={
            "help": "reuse this joint .model (any special ids) or a directory with joint.model or "
            "src.model + tgt.model, instead of training"
        },
    )
    src_model_path: str | None = field(
        default=None,
        metadata={"help": "reuse this source-side .model (with tgt_model_path and joint=false) instead of training"},
    )
    tgt_model_path: str | None = field(
        default=None,
        metadata={"help": "reuse this target-side .model (with src_model_path and joint=false) instead of training"},
    )
    sampling_alpha: float = field(
        default=0.0,
        metadata={
            "help": "subword regularisation in training, 0 = off (unigram: smoothing alpha; bpe: dropout probability)"
        },
    )
    sampling_nbest: int = field(
        default=-1, metadata={"help": "unigram sampling among the n best segmentations; -1 = the whole lattice"}
    )

    def __post_init__(self) -> None:
        check_ranges(self, "tokenizer")
        if bool(self.src_model_path) != bool(self.tgt_model_path):
            raise ConfigError("tokenizer.src_model_path and tokenizer.tgt_model_path go together: set both or neither")
        if self.src_model_path and self.model_path:
            raise ConfigError(
                "tokenizer.model_path (one joint model) and tokenizer.src_model_path/tgt_model_path (two models) "
                "exclude each other: set one or the other"
            )
        if self.src_model_path and self.joint:
            raise ConfigError(
                "tokenizer.src_model_path/tgt_model_path bring two vocabularies: set tokenizer.joint=false "
                "(and model.tie_embeddings=false for a Transformer)"
            )
        if self.vocab_size < 8:
            raise ConfigError(f"tokenizer.vocab_size must be at least 8, got {self.vocab_size}")
        if not 0.0 <= self.sampling_alpha <= 1.0:
            raise ConfigError(f"tokenizer.sampling_alpha must be in [0, 1], got {self.sampling_alpha}")


RANGES[DataConfig] = {"max_len": AT_LEAST_1}

RANGES[TokenizerConfig] = {
    "vocab_size": Range(8),
    "character_coverage": Range(0, 1, lo_open=True),
    "input_sentence_size": NON_NEGATIVE,  # 0: every sentence
    "sampling_alpha": Range(0, 1),
    "sampling_nbest": Range(-1),  # -1: the whole lattice
}
