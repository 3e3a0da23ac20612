"""Schemas of training (``train.*``): optimisation, schedule, limits, checkpoints, hardware, guided alignment."""

from __future__ import annotations

from dataclasses import dataclass, field

from nmt.config.choices import Device, InitReset, Optimizer, PlateauMetric, Precision, Schedule
from nmt.config.ranges import (
    ANY,
    AT_LEAST_1,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    RANGES,
    ConfigError,
    Range,
    check_ranges,
)


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


RANGES[AlignmentLossConfig] = {"weight": NON_NEGATIVE}

RANGES[TrainConfig] = {
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
}
