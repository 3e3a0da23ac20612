"""Helpers shared by the argparse command-line tools: error reporting, logging, devices, input/output streams."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from nmt.errors import DataError, NMTError

if TYPE_CHECKING:
    import torch

EXIT_USER_ERROR = 2  # like argparse: the user's input was wrong


def run_cli(prog: str, body: Callable[[], int | None]) -> int:
    """Run a tool's body: a user mistake (:class:`NMTError`) prints ``prog: error: message`` and exits 2.

    Anything else is a bug and keeps its traceback. A closed downstream pipe (``| head``) ends quietly.
    """
    try:
        return body() or 0
    except NMTError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Python would complain again while flushing stdout at exit: point stdout at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def setup_logging(prog: str, *, verbose: bool = False, quiet: bool = False) -> None:
    """Log to stderr as ``prog: warning: ...`` (info only with ``verbose``, warnings hidden with ``quiet``)."""
    level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(_StderrHandler(prog))
    root.setLevel(level)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (so calling ``main()`` in tests is captured)."""

    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"{self.prog}: {record.levelname.lower()}: {record.getMessage()}\n")
        except Exception:
            self.handleError(record)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    import torch  # not at module level: ``--help`` should not wait for torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NMTError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise NMTError(f"--device {name}: {e}") from None


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """``-`` -> stdin (bytes), else the file opened for reading bytes (a clear error when it cannot be)."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        yield f


@contextmanager
def open_output(path: str) -> Iterator[BinaryIO]:
    """``-`` -> stdout (bytes), else the file opened for writing bytes (parent directories created)."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        f = open(path, "wb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None
    with f:
        yield f
