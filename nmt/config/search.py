"""Schema of decoding (``search.*``, and the search flags of the command-line tools)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nmt.config.choices import EarlyStop
from nmt.config.ranges import ANY, AT_LEAST_1, NON_NEGATIVE, POSITIVE, RANGES, ConfigError, Range, check_ranges


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


RANGES[SearchConfig] = {
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
}
