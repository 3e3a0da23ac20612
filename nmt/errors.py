"""Errors caused by the user's input (files, configs, checkpoints), and the exit statuses of every tool.

The command-line tools catch :class:`NMTError` and print its message without a traceback; any other exception
is a bug and keeps its traceback.
"""

# Exit statuses, one convention for every command-line tool (documented in each --help and in the README).
EXIT_OK = 0
EXIT_INTERNAL_ERROR = 1  # a bug: the traceback is printed (what Python itself does for an uncaught exception)
EXIT_USER_ERROR = 2  # the user's input, flags, config or checkpoint: one line "prog: error: ..." (like argparse)


def exit_status_for_signal(signum: int) -> int:
    """128 + N for a tool stopped by signal N (the shell's convention: 130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + int(signum)


EXIT_INTERRUPTED = 130  # 128 + SIGINT (2): Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE (13): the reader of stdout went away (| head)


class NMTError(Exception):
    """A user-facing error whose message says what was wrong and where (file, line, key)."""


class DataError(NMTError):
    """A corpus problem: missing file, mismatched line counts, invalid UTF-8, unknown language."""


class CheckpointError(NMTError):
    """A checkpoint that is missing, truncated, corrupt, unsafe or incompatible."""
