"""Value ranges of numeric fields, and the error every configuration check raises."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nmt.errors import NMTError


class ConfigError(NMTError, ValueError):
    """A configuration value that cannot work (raised before any data loads)."""


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

# Every numeric field of every schema, filled in by the schema modules beside each class and checked by
# check_ranges() first thing in each __post_init__ (a test makes sure no numeric field is missing). Kept apart
# from the fields so that their help texts stay readable.
RANGES: dict[type, dict[str, Range]] = {}


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
