"""nmt: sequence-to-sequence neural machine translation.

The Python API (:mod:`nmt.api`) in a few lines::

    import nmt

    model = nmt.load("runs/demo/checkpoints/best.pt", device="auto")
    result = model.translate(["Ein Hund rennt über die Wiese."], beam_size=5, return_alignments=True)[0]
    print(result.text, result.score, result.hypotheses[0].alignment)
    print(model.align(["Ein Hund ."], ["A dog ."])[0].pharaoh)
    print(model.score(["Ein Hund ."], ["A dog ."])[0].log_prob)

``import nmt`` stays light: the API's names (and torch) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first access (PEP 562), so that ``import nmt`` (and
# every console script's ``--help``) does not pay for torch.
_LAZY = {
    "load": "nmt.api",
    "Model": "nmt.api",
    "TranslationResult": "nmt.api",
    "Candidate": "nmt.api",
    "AlignmentResult": "nmt.api",
    "ScoreResult": "nmt.api",
    "NMTError": "nmt.errors",
}

__all__ = [  # noqa: RUF022 - the version first, then the API in reading order
    "__version__",
    "load",
    "Model",
    "TranslationResult",
    "Candidate",
    "AlignmentResult",
    "ScoreResult",
    "NMTError",
]

if TYPE_CHECKING:
    from nmt.api import AlignmentResult, Candidate, Model, ScoreResult, TranslationResult, load
    from nmt.errors import NMTError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'nmt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
