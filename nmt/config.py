"""Typed configuration schemas.

Every default lives here, in exactly one place. Hydra (only in ``nmt/cli``) composes YAML presets from
``configs/`` on top of these dataclasses; library code and tests build the same dataclasses directly.
Cross-field checks run in ``__post_init__`` so an impossible combination fails before any data loads.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from nmt.errors import NMTError


class ConfigError(NMTError, ValueError):
    """A configuration value that cannot work (raised before any data loads)."""


# --------------------------------------------------------------------------------------------- ranges
@dataclass(frozen=True)
class Range:
    """The values a numeric field may take: ``lo`` / ``hi`` bounds (None: unbounded), each closed unless open.

    Every numeric field of every schema has one in :data:`RANGES`; :func:`check_ranges` runs them first in each
    ``__post_init__``, so a value like ``model.d_model=0`` fails when the config is built, not deep in the model.
    Floats must also be finite (``nan`` and ``inf`` are refused).
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def __str__(self) -> str:
        lo, hi = (f"{x:g}" if x is not None else "" for x in (self.lo, self.hi))
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo == 0 and self.lo_open:
            return "positive"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {lo}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {hi}"
        return "a finite number"


ANY = Range()
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, lo_open=True)
AT_LEAST_1 = Range(1)
PROBABILITY = Range(0, 1, hi_open=True)  # dropout, label smoothing: [0, 1)


def check_ranges(cfg: Any, section: str, *, flags: bool = False) -> None:
    """Check every numeric field of ``cfg`` against its :data:`RANGES` entry (list items one by one).

    Args:
        cfg: a schema instance.
        section: its place in the config tree (``model``), so that errors name the key as the user writes it.
        flags: also name the command-line flag (``--beam-size``) of each field (search settings).

    Raises:
        ConfigError: ``model.dropout must be in [0, 1), got 1.5``.
    """
    for name, allowed in RANGES[type(cfg)].items():
        value = getattr(cfg, name)
        items = list(enumerate(value)) if isinstance(value, list | tuple) else [(None, value)]
        for i, v in items:
            if v is None:
                continue
            key = f"{section}.{name}" + (f"[{i}]" if i is not None else "")
            flag = f" (the flag --{name.replace('_', '-')})" if flags else ""
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConfigError(f"{key} must be a number {allowed}, got {v!r}{flag}")
            if v not in allowed:
                raise ConfigError(f"{key} must be {allowed}, got {v}{flag}")


# --------------------------------------------------------------------------------------------- choices
class TokenizerType(str, Enum):
    unigram = "unigram"
    bpe = "bpe"


class Cell(str, Enum):
    gru = "gru"
    lstm = "lstm"


class AttentionType(str, Enum):
    bahdanau = "bahdanau"
    luong = "luong"
    none = "none"


class LuongScore(str, Enum):
    dot = "dot"
    general = "general"
    concat = "concat"


class Norm(str, Enum):
    pre = "pre"
    post = "post"


class Positions(str, Enum):
    sinusoidal = "sinusoidal"
    learned = "learned"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class InferencePrecision(str, Enum):
    """Decoding formats: the training ones and int8 (dynamic quantisation, see :mod:`nmt.models.inference`).

    A separate type so that ``train.precision=int8`` is refused: int8 has no training meaning here.
    """

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"


class Schedule(str, Enum):
    constant = "constant"
    inverse_sqrt = "inverse_sqrt"
    plateau = "plateau"


class Optimizer(str, Enum):
    adam = "adam"
    adamw = "adamw"


class PlateauMetric(str, Enum):
    bleu = "bleu"  # dev BLEU, higher is better
    loss = "loss"  # dev loss, lower is better


class InitReset(str, Enum):
    """What a run started from ``train.init_from`` takes afresh (the weights always come from the checkpoint)."""

    all = "all"  # everything: optimizer moments, schedule, step count, data order, best score (fine-tuning)
    schedule = "schedule"  # all but the optimizer's moments, taken from a resumable checkpoint (last.pt, step_N.pt)


class EarlyStop(str, Enum):
    """When beam search may stop a sentence before ``beam_size`` of its hypotheses have finished (nmt.search)."""

    bound = "bound"  # no live beam can still beat the nbest best finished ones (an admissible bound): exact
    heuristic = "heuristic"  # as if every live beam ended at the next step (Hugging Face's early_stopping=False)
    none = "none"  # never: only beam_size finished hypotheses or the length cap end a sentence (fairseq's rule)


# --------------------------------------------------------------------------------------------- data
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


# --------------------------------------------------------------------------------------------- models
@dataclass
class RNNConfig:
    """RNN encoder-decoder (bidirectional encoder; Bahdanau, Luong or no attention)."""

    arch: str = field(
        default="rnn",
        metadata={"help": "architecture, set by the model preset (model=rnn_bahdanau | rnn_luong | rnn_none)"},
    )
    cell: Cell = field(default=Cell.gru, metadata={"help": "recurrent cell"})
    embed_dim: int = field(default=256, metadata={"help": "source and target embedding size"})
    hidden_dim: int = field(
        default=512, metadata={"help": "decoder state size; each encoder direction gets half of it"}
    )
    encoder_layers: int = field(default=1, metadata={"help": "stacked bidirectional encoder layers"})
    decoder_layers: int = field(default=1, metadata={"help": "stacked decoder layers"})
    dropout: float = field(
        default=0.3, metadata={"help": "dropout on embeddings, between layers and on the decoder's output features"}
    )
    attention: AttentionType = field(
        default=AttentionType.bahdanau,
        metadata={"help": "bahdanau (additive), luong (global, multiplicative) or none (the encoder's summary only)"},
    )
    score: LuongScore = field(
        default=LuongScore.general, metadata={"help": "Luong's score function (attention=luong only)"}
    )
    input_feeding: bool = field(
        default=True,
        metadata={"help": "feed the previous attentional vector into the next decoder step (attention=luong only)"},
    )
    tie_embeddings: bool = field(
        default=False,
        metadata={"help": "target embedding = output projection (the output features become embed_dim-sized)"},
    )

    def __post_init__(self) -> None:
        check_ranges(self, "model")
        if self.arch != "rnn":
            raise ConfigError(f"RNNConfig.arch must be 'rnn', got {self.arch!r}")
        if self.hidden_dim % 2:
            raise ConfigError(f"model.hidden_dim must be even (split over two directions), got {self.hidden_dim}")
        if self.attention != AttentionType.luong and self.score != LuongScore.general:
            raise ConfigError("model.score applies to attention=luong only")
        if min(self.encoder_layers, self.decoder_layers) < 1:
            raise ConfigError("model.encoder_layers and model.decoder_layers must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TransformerConfig:
    """Transformer (Vaswani et al. 2017) on fused scaled-dot-product attention."""

    arch: str = field(
        default="transformer", metadata={"help": "architecture, set by the model preset (model=transformer)"}
    )
    d_model: int = field(default=256, metadata={"help": "model (embedding) size"})
    ffn_dim: int = field(default=1024, metadata={"help": "inner size of each feed-forward block"})
    heads: int = field(default=4, metadata={"help": "attention heads (d_model must be divisible by it)"})
    encoder_layers: int = field(default=3, metadata={"help": "encoder layers"})
    decoder_layers: int = field(default=3, metadata={"help": "decoder layers"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on embeddings and on each sub-layer's output"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights"})
    norm: Norm = field(
        default=Norm.pre,
        metadata={
            "help": "layer norm before each sub-layer (pre: stabler) or after its residual sum (post: the original)"
        },
    )
    positions: Positions = field(
        default=Positions.sinusoidal,
        metadata={"help": "sinusoidal (any length) or learned position embeddings (up to max_positions)"},
    )
    max_positions: int = field(
        default=1024, metadata={"help": "longest sequence with learned positions (sinusoids have no ceiling)"}
    )
    tie_embeddings: bool = field(
        default=True, metadata={"help": "source, target and output share one matrix (needs tokenizer.joint=true)"}
    )
    # The default -2, the penultimate layer, is the last one of a 1-layer decoder (see alignment_layer_index).
    alignment_layer: int = field(
        default=-2,
        metadata={
            "help": "decoder layer whose cross-attention is dumped, aligned and supervised (negative: from the top)"
        },
    )
    alignment_heads: list[int] | None = field(
        default=None,
        metadata={"help": "heads averaged for dumps and word alignments; null = all (with train.alignment.file: [0])"},
    )

    def __post_init__(self) -> None:
        check_ranges(self, "model")
        if self.arch != "transformer":
            raise ConfigError(f"TransformerConfig.arch must be 'transformer', got {self.arch!r}")
        if self.d_model % self.heads:
            raise ConfigError(f"model.d_model ({self.d_model}) must be divisible by model.heads ({self.heads})")
        if min(self.encoder_layers, self.decoder_layers) < 1:
            raise ConfigError("model.encoder_layers and model.decoder_layers must be >= 1")
        alignment_layer_index(self.alignment_layer, self.decoder_layers)
        for h in self.alignment_heads or []:
            if not 0 <= h < self.heads:
                raise ConfigError(f"model.alignment_heads has {h}, but there are {self.heads} heads")


ModelConfig = RNNConfig | TransformerConfig

DEFAULT_ALIGNMENT_LAYER = -2  # TransformerConfig.alignment_layer's default: the penultimate layer (as fairseq)


def alignment_layer_index(layer: int, layers: int, *, name: str = "model.alignment_layer") -> int:
    """The 0-based decoder layer that ``layer`` names among ``layers`` (negative values count from the top).

    The default, -2 (the penultimate layer), names the last layer when the decoder has only one, so that a
    default never makes a valid model fail; any other value out of range is an error.

    Raises:
        ConfigError: ``layer`` is out of range (the message starts with ``name``).
    """
    if layer == DEFAULT_ALIGNMENT_LAYER and layers == 1:
        return 0
    if not -layers <= layer < layers:
        plural = "s" if layers != 1 else ""
        raise ConfigError(
            f"{name} {layer} is out of range: the decoder has {layers} layer{plural} (0..{layers - 1}, or "
            f"-{layers}..-1 counted from the top)"
        )
    return layer % layers


# --------------------------------------------------------------------------------------------- search
@dataclass
class SearchConfig:
    """Decoding: beam search (beam_size 1 = greedy) or sampling, with a GNMT length penalty (see nmt.search).

    Every field's ``help`` is also the help of its flag in ``nmt-translate`` and ``nmt-evaluate``
    (:func:`nmt.cli.common.add_search_flags`).
    """

    beam_size: int = field(default=5, metadata={"help": "beams per sentence; 1 = greedy decoding"})
    nbest: int = field(default=1, metadata={"help": "hypotheses returned per sentence, best first (<= beam_size)"})
    lenpen: float = field(
        default=1.0,
        metadata={
            "help": "GNMT length penalty alpha (Wu et al. 2016): score = log p(y|x) / ((5 + |y|) / 6) ** alpha, "
            "|y| counting the EOS; 0 = raw log-probability, > 0 favours longer outputs (not fairseq's --lenpen, "
            "which divides by |y| ** lenpen)"
        },
    )
    max_len_a: float = field(
        default=1.5, metadata={"help": "output cap = floor(a * source pieces) + b pieces, per sentence"}
    )
    max_len_b: int = field(default=10, metadata={"help": "output cap = floor(a * source pieces) + b pieces"})
    min_len: int = field(
        default=0,
        metadata={"help": "EOS is forbidden before this many output pieces (at most the sentence's cap); 0 = off"},
    )
    no_repeat_ngram: int = field(
        default=0, metadata={"help": "no n-gram of output pieces occurs twice in a hypothesis (n >= 1); 0 = off"}
    )
    early_stop: EarlyStop = field(
        default=EarlyStop.bound,
        metadata={
            "help": "when beam search may stop a sentence before beam_size hypotheses have finished: bound (no "
            "live beam can still beat the nbest best finished ones; exact), heuristic (as if the live beams "
            "ended at the next step; faster, may cut off a better longer output when lenpen > 0), none"
        },
    )
    sampling: bool = field(default=False, metadata={"help": "sample outputs instead of searching (beam_size 1)"})
    sampling_topk: int = field(default=0, metadata={"help": "sample among the k most probable pieces; 0 = all"})
    sampling_topp: float = field(
        default=1.0,
        metadata={
            "help": "nucleus sampling: sample among the most probable pieces whose probabilities add up to p "
            "(after temperature and top-k); 1 = all"
        },
    )
    sampling_temperature: float = field(
        default=1.0, metadata={"help": "divide log-probabilities by this before sampling (top-k, top-p)"}
    )
    batch_tokens: int = field(default=4096, metadata={"help": "source tokens per decoding batch"})

    def __post_init__(self) -> None:
        check_ranges(self, "search", flags=True)
        if self.beam_size < 1:
            raise ConfigError(f"beam_size must be >= 1, got {self.beam_size}")
        if not 1 <= self.nbest <= self.beam_size:
            raise ConfigError(f"nbest ({self.nbest}) must be between 1 and beam_size ({self.beam_size})")
        if self.sampling and self.beam_size != 1:
            raise ConfigError("sampling needs beam_size=1")
        if not self.sampling_temperature > 0:
            raise ConfigError(f"sampling_temperature must be positive, got {self.sampling_temperature}")
        if self.sampling_topk < 0:
            raise ConfigError(f"sampling_topk must be >= 0 (0 = all pieces), got {self.sampling_topk}")
        if not 0.0 < self.sampling_topp <= 1.0:
            raise ConfigError(f"sampling_topp must be in (0, 1] (1 = all pieces), got {self.sampling_topp}")
        if self.min_len < 0:
            raise ConfigError(f"min_len must be >= 0 (0 = off), got {self.min_len}")
        if self.no_repeat_ngram < 0:
            raise ConfigError(f"no_repeat_ngram must be >= 0 (0 = off), got {self.no_repeat_ngram}")
        if not math.isfinite(self.lenpen):
            raise ConfigError(f"lenpen must be a finite number, got {self.lenpen}")
        if self.early_stop not in {e.value for e in EarlyStop}:  # a str Enum member equals its value
            raise ConfigError(f"early_stop must be one of bound, heuristic, none; got {self.early_stop!r}")
        self.early_stop = EarlyStop(self.early_stop)  # library callers may pass the plain string


# --------------------------------------------------------------------------------------------- training
@dataclass
class AlignmentLossConfig:
    """Guided alignment training (Garg et al. 2019): pull one attention head towards given links.

    The supervised attention is ``model.alignment_layer`` averaged over ``model.alignment_heads``; with a file set
    and no heads chosen, head 0 is used (the paper supervises one head of the penultimate layer), and the config
    records it so ``nmt-align`` reads the same head. See :mod:`nmt.training.guided`.
    """

    file: str | None = field(
        default=None,
        metadata={
            "help": "guided alignment: Pharaoh links of the training corpus (0-based i-j, source first, line per pair)"
        },
    )
    weight: float = field(
        default=0.05,
        metadata={
            "help": "objective = translation loss (per token) + weight x alignment loss (per supervised attention row)"
        },
    )
    # Supervise the decoder step whose *input* is the target piece (Shift-Att's row, read by nmt-align --method
    # shift) instead of the step that predicts it: the head then knows the word it aligns, as in Garg et al.'s
    # unmasked alignment pass, rather than having to guess the next word first.
    shift: bool = field(
        default=False,
        metadata={
            "help": "supervise the step that receives each target piece (Shift-Att's row), not the step predicting it"
        },
    )

    def __post_init__(self) -> None:
        check_ranges(self, "train.alignment")
        if not 0.0 <= self.weight < float("inf"):
            raise ConfigError(f"train.alignment.weight must be a finite number >= 0, got {self.weight}")


@dataclass
class TrainConfig:
    batch_tokens: int = field(
        default=4096, metadata={"help": "padded tokens per batch (the larger of its source and target sides)"}
    )
    accumulate: int = field(
        default=1,
        metadata={
            "help": "batches per update (gradient accumulation; the loss is a mean over all their target tokens)"
        },
    )
    optimizer: Optimizer = field(default=Optimizer.adam, metadata={"help": "adam, or adamw (decoupled weight decay)"})
    lr: float = field(default=5e-4, metadata={"help": "peak learning rate (the schedule scales it)"})
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98], metadata={"help": "Adam's beta1 and beta2"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 penalty (adam) or decoupled weight decay (adamw)"})
    schedule: Schedule = field(
        default=Schedule.inverse_sqrt,
        metadata={
            "help": "inverse_sqrt (warm-up, then 1/sqrt(step) decay), constant (after warm-up) or plateau (cut when "
            "the dev metric stalls)"
        },
    )
    warmup_steps: int = field(default=1000, metadata={"help": "updates of linear warm-up to train.lr"})
    plateau_factor: float = field(
        default=0.5, metadata={"help": "schedule=plateau: multiply the rate by this when the dev metric stalls"}
    )
    plateau_patience: int = field(
        default=2, metadata={"help": "schedule=plateau: evaluations without improvement before the rate is cut"}
    )
    plateau_metric: PlateauMetric = field(
        default=PlateauMetric.bleu,
        metadata={"help": "schedule=plateau: the dev metric watched (bleu: higher is better; loss: lower is better)"},
    )
    min_lr: float = field(default=1e-6, metadata={"help": "schedule=plateau: the rate is never cut below this"})
    clip_norm: float = field(default=1.0, metadata={"help": "clip the gradient norm to this; 0 = no clipping"})
    label_smoothing: float = field(default=0.1, metadata={"help": "label smoothing of the cross-entropy"})
    max_steps: int = field(
        default=20_000,
        metadata={
            "help": "total updates, counted from the run's start (a resumed run trains up to it, not this many more)"
        },
    )
    max_epochs: int = field(
        default=0, metadata={"help": "stop after this many passes over the training data; 0 = no limit"}
    )
    eval_every: int = field(default=1000, metadata={"help": "validate on the dev set every this many updates"})
    save_every: int = field(
        default=1000, metadata={"help": "write checkpoints/step_N.pt (linked as last.pt) every this many updates"}
    )
    keep_last: int = field(
        default=3,
        metadata={
            "help": "step_N.pt checkpoints kept (older ones are deleted); nmt-average --last RUN_DIR averages this many"
        },
    )
    patience: int = field(
        default=10, metadata={"help": "stop after this many evaluations without a better dev BLEU; 0 = never"}
    )
    log_every: int = field(
        default=50,
        metadata={"help": "a progress line (console, train.log, metrics.jsonl, TensorBoard) every this many updates"},
    )
    device: Device = field(
        default=Device.auto,
        metadata={"help": "auto (CUDA when available), cpu or cuda (under torchrun each rank takes its local GPU)"},
    )
    precision: Precision = field(
        default=Precision.fp32,
        metadata={"help": "fp32, or bf16 / fp16 autocast (bf16: fast on recent CPUs and GPUs; fp16 with loss scaling)"},
    )
    compile: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the Transformer's training step (GPU; takes a while to start); RNNs train eagerly"
        },
    )
    seed: int = field(
        default=1,
        metadata={
            "help": "seed of the initial weights, dropout and data order (torchrun rank r uses seed + r for dropout)"
        },
    )
    resume: str | None = field(
        default=None,
        metadata={
            "help": "continue the run in this checkpoint (last.pt, step_N.pt); default: the run directory's last.pt"
        },
    )
    init_from: str | None = field(
        default=None,
        metadata={
            "help": "fine-tuning: a new run (step 0, new optimizer and schedule) from this checkpoint's weights, "
            "model shape and tokenizer; a run directory with its own last.pt resumes instead"
        },
    )
    init_reset: InitReset = field(
        default=InitReset.all,
        metadata={
            "help": "with init_from: all (weights only) or schedule (also the Adam moments of a resumable "
            "last.pt / step_N.pt; the step count, schedule and data order still start afresh)"
        },
    )
    num_workers: int = field(
        default=1, metadata={"help": "background threads building batches; 0 = in the training loop"}
    )
    threads: int = field(default=0, metadata={"help": "torch intra-op threads; 0 = torch's default"})
    max_nan_steps: int = field(
        default=5, metadata={"help": "consecutive non-finite losses (each update skipped) before the run stops"}
    )
    heatmap_sentences: int = field(
        default=3, metadata={"help": "dev sentences whose attention is drawn in TensorBoard at each evaluation"}
    )
    valid_beam_size: int = field(
        default=1,
        metadata={"help": "beam size of validation (1 = greedy); the final test decodes with search.beam_size"},
    )
    matmul_peak_gflops: float = field(
        default=0.0, metadata={"help": "matmul peak for the model-FLOPs share in the logs; 0 = measured at start-up"}
    )
    alignment: AlignmentLossConfig = field(
        default_factory=AlignmentLossConfig,
        metadata={
            "help": "guided alignment training (train.alignment.*): pull one attention head towards given word links"
        },
    )

    def __post_init__(self) -> None:
        check_ranges(self, "train")
        if self.batch_tokens < 1 or self.accumulate < 1:
            raise ConfigError("train.batch_tokens and train.accumulate must be positive")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if len(self.betas) != 2:
            raise ConfigError(f"train.betas needs two values, got {self.betas}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"train.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.max_steps < 0 or self.eval_every < 1 or self.save_every < 1 or self.keep_last < 1:
            raise ConfigError("train.max_steps >= 0 and train.eval_every, save_every, keep_last >= 1 are required")
        if self.resume and self.init_from:
            raise ConfigError(
                "train.resume and train.init_from exclude each other: resume continues a run (weights, optimizer, "
                "step count), init_from starts a new one from a checkpoint's weights"
            )


# --------------------------------------------------------------------------------------------- root
@dataclass
class NMTConfig:
    """The root of ``nmt-train``'s configuration tree; stored in every checkpoint."""

    name: str = field(
        default="default",
        metadata={
            "help": "run name: runs are written to runs/<name>/<time>/ (sweeps to multirun/<name>/<time>/<job>/)"
        },
    )
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "the corpora (data=PRESET, data.*)"})
    tokenizer: TokenizerConfig = field(
        default_factory=TokenizerConfig, metadata={"help": "the SentencePiece model (tokenizer=PRESET, tokenizer.*)"}
    )
    # RNNConfig | TransformerConfig: no common type, so Hydra gets the schema from the model group (nmt/cli/train.py)
    model: Any = field(
        default_factory=TransformerConfig,
        metadata={"help": "the network (model=transformer | rnn_bahdanau | rnn_luong | rnn_none, model.*)"},
    )
    train: TrainConfig = field(
        default_factory=TrainConfig,
        metadata={"help": "optimisation, schedule, limits, checkpoints and hardware (train=cpu | gpu, train.*)"},
    )
    search: SearchConfig = field(
        default_factory=SearchConfig,
        metadata={"help": "decoding of the final test (and nmt-translate's defaults for the checkpoint) (search.*)"},
    )

    def __post_init__(self) -> None:
        if not isinstance(self.model, RNNConfig | TransformerConfig):
            raise ConfigError(f"model must be an RNN or Transformer config, got {type(self.model).__name__}")
        if isinstance(self.model, TransformerConfig) and self.model.tie_embeddings and not self.tokenizer.joint:
            raise ConfigError("model.tie_embeddings=true needs a joint vocabulary (tokenizer.joint=true)")
        if self.train.alignment.file and not isinstance(self.model, TransformerConfig):
            raise ConfigError("guided alignment training (train.alignment.file) needs model=transformer")
        if self.train.alignment.file and self.model.alignment_heads is None:
            self.model.alignment_heads = [0]  # Garg et al.: one supervised head; recorded for nmt-align


# --------------------------------------------------------------------------------------------- value ranges
# Every numeric field of every schema, checked by check_ranges() first thing in each __post_init__ (a test makes
# sure no numeric field is missing here). Kept apart from the fields so that their help texts stay readable.
RANGES: dict[type, dict[str, Range]] = {
    DataConfig: {"max_len": AT_LEAST_1},
    TokenizerConfig: {
        "vocab_size": Range(8),
        "character_coverage": Range(0, 1, lo_open=True),
        "input_sentence_size": NON_NEGATIVE,  # 0: every sentence
        "sampling_alpha": Range(0, 1),
        "sampling_nbest": Range(-1),  # -1: the whole lattice
    },
    RNNConfig: {
        "embed_dim": AT_LEAST_1,
        "hidden_dim": Range(2),
        "encoder_layers": AT_LEAST_1,
        "decoder_layers": AT_LEAST_1,
        "dropout": PROBABILITY,
    },
    TransformerConfig: {
        "d_model": AT_LEAST_1,
        "ffn_dim": AT_LEAST_1,
        "heads": AT_LEAST_1,
        "encoder_layers": AT_LEAST_1,
        "decoder_layers": AT_LEAST_1,
        "dropout": PROBABILITY,
        "attention_dropout": PROBABILITY,
        "max_positions": AT_LEAST_1,
        "alignment_layer": ANY,  # checked against decoder_layers in __post_init__
        "alignment_heads": NON_NEGATIVE,  # checked against heads in __post_init__
    },
    SearchConfig: {
        "beam_size": AT_LEAST_1,
        "nbest": AT_LEAST_1,
        "lenpen": ANY,  # negative values favour short outputs
        "max_len_a": NON_NEGATIVE,
        "max_len_b": NON_NEGATIVE,
        "sampling_topk": NON_NEGATIVE,
        "min_len": NON_NEGATIVE,  # 0: off
        "no_repeat_ngram": NON_NEGATIVE,  # 0: off
        "sampling_topp": Range(0, 1, lo_open=True),
        "sampling_temperature": POSITIVE,
        "batch_tokens": AT_LEAST_1,
    },
    AlignmentLossConfig: {"weight": NON_NEGATIVE},
    TrainConfig: {
        "batch_tokens": AT_LEAST_1,
        "accumulate": AT_LEAST_1,
        "lr": POSITIVE,
        "betas": PROBABILITY,
        "weight_decay": NON_NEGATIVE,
        "warmup_steps": NON_NEGATIVE,
        "plateau_factor": Range(0, 1, lo_open=True, hi_open=True),
        "plateau_patience": AT_LEAST_1,
        "min_lr": NON_NEGATIVE,
        "clip_norm": NON_NEGATIVE,  # 0: no clipping
        "label_smoothing": PROBABILITY,
        "max_steps": NON_NEGATIVE,
        "max_epochs": NON_NEGATIVE,  # 0: no limit
        "eval_every": AT_LEAST_1,
        "save_every": AT_LEAST_1,
        "keep_last": AT_LEAST_1,
        "patience": NON_NEGATIVE,  # 0: never stop early
        "log_every": AT_LEAST_1,
        "seed": ANY,
        "num_workers": NON_NEGATIVE,
        "threads": NON_NEGATIVE,  # 0: torch's default
        "max_nan_steps": AT_LEAST_1,
        "heatmap_sentences": NON_NEGATIVE,
        "valid_beam_size": AT_LEAST_1,
        "matmul_peak_gflops": NON_NEGATIVE,  # 0: measured
    },
}


# --------------------------------------------------------------------------------------------- plain dicts
def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass tree as plain Python types (enums as their values): what checkpoints store."""

    def plain(v: Any) -> Any:
        if isinstance(v, Enum):
            return v.value
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def _build(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild dataclass ``cls`` from plain values: nested dataclasses and enums by their field types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown key {key!r} for {cls.__name__}")
        kwargs[key] = _coerce(hints[key], value)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return _build(option, value)  # type: ignore[arg-type]
        if isinstance(option, type) and issubclass(option, Enum):
            return option(value)
    return value


def model_config_from_dict(values: dict[str, Any]) -> ModelConfig:
    arch = values.get("arch")
    if arch == "rnn":
        return _build(RNNConfig, values)
    if arch == "transformer":
        return _build(TransformerConfig, values)
    raise ConfigError(f"unknown model arch {arch!r}")


def config_from_dict(values: dict[str, Any]) -> NMTConfig:
    """Inverse of :func:`to_dict` for the root config (checkpoints)."""
    values = dict(values)
    model = model_config_from_dict(values.pop("model"))
    return _build(NMTConfig, {**values, "model": model})
