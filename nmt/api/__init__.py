"""The Python API: load a checkpoint once, then translate, align and score lists of sentences.

Example::

    import nmt

    model = nmt.load("runs/demo/checkpoints/best.pt")
    for result in model.translate(["Ein Hund rennt über die Wiese.", "Zwei Kinder spielen."]):
        print(result.text, result.score)

Every method runs the code path of a command-line tool, so their outputs agree: :meth:`Model.translate` is
:class:`nmt.translate.Translator` (``nmt-translate``), :meth:`Model.align` is
:class:`nmt.analysis.forced.ForcedAligner` (``nmt-align``), and :meth:`Model.score` teacher-forces given targets
through the model, giving the log-probability beam search accumulates for the same output (:mod:`nmt.search`).
A :class:`Model` is not thread-safe: call it from one thread at a time (``nmt-serve`` runs it in one worker).
"""

from nmt.api.model import Model, load, resolve_device
from nmt.api.records import AlignmentResult, Candidate, ScoreResult, TranslationResult

__all__ = ["AlignmentResult", "Candidate", "Model", "ScoreResult", "TranslationResult", "load", "resolve_device"]
