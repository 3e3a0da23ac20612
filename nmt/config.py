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

    path: str = ""
    name: str | None = None  # the hub config, e.g. "de-en"
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

    src_lang: str = "de"
    tgt_lang: str = "en"
    train: str = ""
    valid: str = ""
    test: list[str] = field(default_factory=list)
    max_len: int = 100  # subword pieces per side; longer training pairs are dropped (and counted)
    download: str | None = None  # name of a public corpus fetched when its files are absent ("multi30k")
    hf: HFConfig = field(default_factory=HFConfig)  # used when hf.path is set (a field, so overrides can reach it)
    cache_dir: str = field(
        default="",
        metadata={
            "help": "where tokenizers and encoded training data are cached; empty = $NMT_CACHE_DIR, else "
            "$XDG_CACHE_HOME/nmt, else ~/.cache/nmt"
        },
    )

    def __post_init__(self) -> None:
        if self.src_lang == self.tgt_lang:
            raise ConfigError(f"data.src_lang and data.tgt_lang are both {self.src_lang!r}")
        if self.max_len < 1:
            raise ConfigError(f"data.max_len must be positive, got {self.max_len}")


@dataclass
class TokenizerConfig:
    """SentencePiece: trained on the training corpus, or reused from ``model_path``."""

    type: TokenizerType = TokenizerType.unigram
    vocab_size: int = 8000
    joint: bool = True  # one model over both languages (lets the Transformer tie all embeddings)
    character_coverage: float = 1.0
    input_sentence_size: int = 2_000_000  # sentences sampled for training on large corpora
    shuffle_input_sentence: bool = True  # sample those sentences at random (else: the first ones)
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
    sampling_alpha: float = 0.0  # subword regularisation in training only; 0 disables it
    sampling_nbest: int = -1

    def __post_init__(self) -> None:
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

    arch: str = "rnn"
    cell: Cell = Cell.gru
    embed_dim: int = 256
    hidden_dim: int = 512  # decoder state size; each encoder direction gets hidden_dim // 2
    encoder_layers: int = 1
    decoder_layers: int = 1
    dropout: float = 0.3
    attention: AttentionType = AttentionType.bahdanau
    score: LuongScore = LuongScore.general  # Luong only
    input_feeding: bool = True  # Luong only
    tie_embeddings: bool = False  # target embedding = output projection (needs embed_dim-sized output)

    def __post_init__(self) -> None:
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

    arch: str = "transformer"
    d_model: int = 256
    ffn_dim: int = 1024
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1
    attention_dropout: float = 0.0
    norm: Norm = Norm.pre
    positions: Positions = Positions.sinusoidal
    max_positions: int = 1024  # learned positions only; sinusoids have no ceiling
    tie_embeddings: bool = True  # source, target and output share one matrix (needs a joint vocabulary)
    alignment_layer: int = -2  # decoder layer whose cross-attention is dumped (negative counts from the top)
    alignment_heads: list[int] | None = None  # heads averaged for dumps; None = all

    def __post_init__(self) -> None:
        if self.arch != "transformer":
            raise ConfigError(f"TransformerConfig.arch must be 'transformer', got {self.arch!r}")
        if self.d_model % self.heads:
            raise ConfigError(f"model.d_model ({self.d_model}) must be divisible by model.heads ({self.heads})")
        if min(self.encoder_layers, self.decoder_layers) < 1:
            raise ConfigError("model.encoder_layers and model.decoder_layers must be >= 1")
        if not -self.decoder_layers <= self.alignment_layer < self.decoder_layers:
            raise ConfigError(
                f"model.alignment_layer={self.alignment_layer} is out of range for {self.decoder_layers} layers"
            )
        for h in self.alignment_heads or []:
            if not 0 <= h < self.heads:
                raise ConfigError(f"model.alignment_heads has {h}, but there are {self.heads} heads")


ModelConfig = RNNConfig | TransformerConfig


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

    file: str | None = None  # Pharaoh links (0-based i-j, source first) for the training corpus, one line per pair
    weight: float = 0.05  # objective = translation loss (per token) + weight * alignment loss (per supervised row)
    # Supervise the decoder step whose *input* is the target piece (Shift-Att's row, read by nmt-align --method
    # shift) instead of the step that predicts it: the head then knows the word it aligns, as in Garg et al.'s
    # unmasked alignment pass, rather than having to guess the next word first.
    shift: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight < float("inf"):
            raise ConfigError(f"train.alignment.weight must be a finite number >= 0, got {self.weight}")


@dataclass
class TrainConfig:
    batch_tokens: int = 4096  # padded tokens per batch (max of source and target side)
    accumulate: int = 1
    optimizer: Optimizer = Optimizer.adam
    lr: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.inverse_sqrt
    warmup_steps: int = 1000
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    plateau_metric: PlateauMetric = PlateauMetric.bleu
    min_lr: float = 1e-6
    clip_norm: float = 1.0  # 0 disables clipping
    label_smoothing: float = 0.1
    max_steps: int = 20_000  # total updates, counted from the start of the run (not from a resume)
    max_epochs: int = 0  # 0 = no epoch limit
    eval_every: int = 1000
    save_every: int = 1000
    keep_last: int = 3
    patience: int = 10  # evaluations without a dev BLEU improvement before stopping; 0 = never
    log_every: int = 50
    device: Device = Device.auto
    precision: Precision = Precision.fp32
    compile: bool = False
    seed: int = 1
    resume: str | None = None  # checkpoint path; by default the run directory's last.pt is resumed
    num_workers: int = 1  # background batch-building threads (0 = in the training loop)
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    max_nan_steps: int = 5  # consecutive non-finite losses before the run stops
    heatmap_sentences: int = 3  # dev sentences whose attention is drawn in TensorBoard at each evaluation
    valid_beam_size: int = 1  # 1 = greedy validation
    matmul_peak_gflops: float = 0.0  # for the model-FLOPs share in the logs; 0 = measured with torch.mm at start-up
    alignment: AlignmentLossConfig = field(default_factory=AlignmentLossConfig)

    def __post_init__(self) -> None:
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


# --------------------------------------------------------------------------------------------- root
@dataclass
class NMTConfig:
    """The root of ``nmt-train``'s configuration tree; stored in every checkpoint."""

    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: Any = field(default_factory=TransformerConfig)  # RNNConfig | TransformerConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.model, RNNConfig | TransformerConfig):
            raise ConfigError(f"model must be an RNN or Transformer config, got {type(self.model).__name__}")
        if isinstance(self.model, TransformerConfig) and self.model.tie_embeddings and not self.tokenizer.joint:
            raise ConfigError("model.tie_embeddings=true needs a joint vocabulary (tokenizer.joint=true)")
        if self.train.alignment.file and not isinstance(self.model, TransformerConfig):
            raise ConfigError("guided alignment training (train.alignment.file) needs model=transformer")
        if self.train.alignment.file and self.model.alignment_heads is None:
            self.model.alignment_heads = [0]  # Garg et al.: one supervised head; recorded for nmt-align


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
