"""Helpers shared by the argparse command-line tools: parsers (``--version``, search flags generated from
:class:`~nmt.config.SearchConfig`, deprecated spellings), error reporting, logging, devices, input/output streams."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import errno
import logging
import os
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from nmt import __version__
from nmt.config import InferencePrecision, SearchConfig
from nmt.errors import EXIT_USER_ERROR, DataError, NMTError

if TYPE_CHECKING:
    import torch

# The end of every tool's --help (nmt-train's too): one convention for all (nmt.errors).
EXIT_STATUS_HELP = """\
exit status (the same for every nmt tool):
  0        success
  1        an internal error (a bug): the traceback is printed; please report it
  2        a user error: a missing or broken input file, a bad flag or config value, an unusable (damaged,
           mismatched) checkpoint, nothing to work on (an empty input), or a condition the user can fix (stdin or
           stdout closed, a full disk); one line "PROG: error: ..." says what and where
  128+N    stopped by signal N: 130 Ctrl-C (SIGINT), 143 SIGTERM, 141 the output pipe closed (| head)"""


# --------------------------------------------------------------------------------------------- parsers
def new_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """An argparse parser with the tools' common layout, ``--version`` and the exit statuses at the end of its help."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"{epilog.rstrip()}\n\n{EXIT_STATUS_HELP}" if epilog.strip() else EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s (nmt) {__version__}")
    return p


SHORT_FLAGS = {"beam_size": ["-b"]}


def add_search_flags(group: Any, *, exclude: Sequence[str] = ()) -> list[str]:
    """One flag per :class:`~nmt.config.SearchConfig` field (``beam_size`` -> ``--beam-size``), typed and
    documented from the field itself; every default is None, so only what is given overrides the checkpoint's
    search config.

    Args:
        group: a parser or argument group.
        exclude: fields the tool does not offer.
    Returns:
        The field names that got a flag (for :func:`search_overrides`).
    """
    hints = typing.get_type_hints(SearchConfig)
    names = []
    for f in dataclasses.fields(SearchConfig):
        if f.name in exclude:
            continue
        kind = hints[f.name]
        flags = [f"--{f.name.replace('_', '-')}", *SHORT_FLAGS.get(f.name, [])]
        options: dict[str, Any] = {"dest": f.name, "default": None, "help": f.metadata.get("help", "")}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            options.update(type=kind, choices=[c.value for c in kind], metavar=f.metadata.get("metavar"))
        else:
            options.update(type=kind, metavar=f.metadata.get("metavar", "N" if kind is int else "X"))
        group.add_argument(*flags, **options)
        names.append(f.name)
    return names


def add_running_flags(
    group: Any, *, precision: bool = True, precision_default: InferencePrecision | None = InferencePrecision.fp32
) -> None:
    """``--device``, ``--precision`` and ``--threads``, the same for every tool that runs a model (a
    ``precision_default`` of None lets the tool choose, e.g. the engine's own type)."""
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    if precision:
        group.add_argument(
            "--precision",
            type=InferencePrecision,
            choices=[p.value for p in InferencePrecision],
            default=precision_default,
            help="fp32; bf16 (a bf16 copy of the model: the fast choice on CPUs with AVX512-BF16/AMX and on GPUs); "
            "fp16 (autocast, GPUs); int8 (dynamic quantisation of the linear layers, CPU) (default: fp32"
            + ("; ctranslate2: the export's weight type)" if precision_default is None else ")"),
        )
    group.add_argument(
        "--threads", type=int, metavar="N", default=0, help="CPU threads for torch (0 = torch's default)"
    )


def search_overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The search fields given on the command line, by field name."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def add_deprecated(group: Any, old: str, new: str, **options: Any) -> None:
    """A hidden old spelling of ``new`` that still works for a release, with a warning when used."""

    class Deprecated(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, *_: Any):
            print(f"{parser.prog}: warning: {old} is deprecated, use {new}", file=sys.stderr)
            setattr(namespace, self.dest, values)

    group.add_argument(old, action=Deprecated, help=argparse.SUPPRESS, **options)


def alignment_heads(text: str) -> list[int]:
    """``0,1`` -> [0, 1] (the old comma syntax of nmt-align's --heads)."""
    try:
        return [int(h) for h in text.split(",") if h.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated head numbers, got {text!r}") from None


def add_alignment_flags(group: Any, *, threshold: bool = True) -> None:
    """``--alignment-layer``, ``--alignment-heads`` (and ``--alignment-threshold``): which attention becomes word
    alignments, the same names as the config's ``model.alignment_layer`` / ``alignment_heads``."""
    group.add_argument(
        "--alignment-layer",
        type=int,
        metavar="L",
        help="decoder layer whose cross-attention is read, 0-based, negative from the top (default: the "
        "checkpoint's model.alignment_layer)",
    )
    group.add_argument(
        "--alignment-heads",
        type=int,
        nargs="+",
        metavar="H",
        help="attention heads averaged, e.g. --alignment-heads 0 1 (default: the checkpoint's, else all)",
    )
    if threshold:
        group.add_argument(
            "--alignment-threshold",
            type=float,
            metavar="W",
            help="link every source word with at least this weight (default: only the strongest one)",
        )


def run_cli(prog: str, body: Callable[[], int | None]) -> int:
    """Run a tool's body: a user mistake (:class:`NMTError`) prints ``prog: error: message`` and exits 2.

    So does a full disk (ENOSPC/EDQUOT) wherever it strikes: the user can fix it, and a traceback would hide the
    one line that matters. Anything else is a bug and keeps its traceback. A closed downstream pipe (``| head``)
    ends quietly with 141 (128 + SIGPIPE, what a shell reports for a filter killed by it).
    """
    _reserve_standard_streams()
    try:
        return body() or 0
    except NMTError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"{prog}: error: cannot write{where}: the disk is full ({e.strerror})", file=sys.stderr)
        return EXIT_USER_ERROR


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _reserve_standard_streams() -> None:
    """Point closed descriptors 0-2 (``0<&-``, ``>&-``) at /dev/null, so that files opened later cannot take their
    numbers (a library writing to descriptor 1 would write into them). ``sys.stdin``/``sys.stdout`` stay None, so
    :func:`open_input` / :func:`open_output` still refuse a closed stream; errors go nowhere without stderr."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: ``fd`` itself, unless a lower one is too
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:  # print(file=None) would write error messages into the output
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def _silence_stdout() -> None:
    """After a failed write to stdout, point it at /dev/null: Python flushes stdout again at exit and would report
    the same failure a second time, with a traceback."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


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
    """``--device``: ``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    from nmt.device import resolve_device as resolve  # imports torch: ``--help`` should not wait for it

    return resolve(name, option="--device")


@contextlib.contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """``-`` -> stdin (bytes), else the file opened for reading bytes (a clear error when it cannot be)."""
    if path == "-":
        if sys.stdin is None:
            raise DataError("standard input is closed: give an input file, or redirect one into the command")
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        yield f


class Output:
    """A binary output stream (a file or stdout) whose failed writes are clear errors naming it.

    Args:
        raw: the stream written to.
        name: the file name, or ``standard output``.
    """

    def __init__(self, raw: BinaryIO, name: str) -> None:
        self.raw, self.name = raw, name

    def write(self, data: bytes) -> int:
        try:
            return self.raw.write(data)
        except OSError as e:
            raise self._error(e) from None

    def flush(self) -> None:
        try:
            self.raw.flush()
        except OSError as e:
            raise self._error(e) from None

    def close(self) -> None:
        try:
            self.raw.close()
        except OSError as e:
            raise self._error(e) from None

    def _error(self, error: OSError) -> OSError | DataError:
        if isinstance(error, BrokenPipeError):
            return error  # the reader went away (| head): run_cli ends quietly
        if self.raw is getattr(sys.stdout, "buffer", None):
            _silence_stdout()
        why = f"the disk is full ({error.strerror})" if error.errno in DISK_FULL else error.strerror or str(error)
        return DataError(f"cannot write {self.name}: {why}")


@contextlib.contextmanager
def open_output(path: str) -> Iterator[Output]:
    """``-`` -> stdout (bytes), else the file opened for writing bytes (parent directories created).

    Raises:
        DataError: stdout is closed, the file cannot be opened, or a write fails (a full disk), naming the output.
    """
    if path == "-":
        if sys.stdout is None:
            raise DataError("standard output is closed: give an output file, or redirect the output to one")
        out = Output(sys.stdout.buffer, "standard output")
        yield out
        out.flush()
        return
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        f = open(path, "wb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None
    out = Output(f, path)
    try:
        yield out
    except BaseException:
        with contextlib.suppress(OSError):  # the unwritten rest of a failed write fails again: already reported
            f.close()
        raise
    out.close()


# --------------------------------------------------------------------------------------------- length buckets
# nmt.evaluate's BUCKET_WIDTH and LAST_BUCKET, written out so that --help does not import sacrebleu (a test checks
# that they agree).
BUCKET_WIDTH, LAST_BUCKET = 5, 25


def add_bucket_flags(group: Any) -> None:
    """``--bucket-width`` and ``--last-bucket``: BLEU by source length, by default the buckets of every report."""
    group.add_argument(
        "--bucket-width",
        type=int,
        default=BUCKET_WIDTH,
        metavar="N",
        help="words per length bucket (%(default)s)",
    )
    group.add_argument(
        "--last-bucket", type=int, default=LAST_BUCKET, metavar="N", help="one bucket for N+ words (%(default)s)"
    )


def check_bucket_flags(args: argparse.Namespace) -> None:
    """Refuse buckets that cannot be built (a user error naming both flags)."""
    if args.bucket_width < 1 or args.last_bucket < args.bucket_width:
        raise NMTError(f"--bucket-width {args.bucket_width} --last-bucket {args.last_bucket}: need 1 <= width <= last")
