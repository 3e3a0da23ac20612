"""The closed sets of values that configuration fields take (enums; Hydra checks them by name)."""

from __future__ import annotations

from enum import Enum


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
