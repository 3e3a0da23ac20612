"""Errors caused by the user's input (files, configs, checkpoints), and the exit statuses of every tool.

The command-line tools catch :class:`NMTError` and print its message without a traceback; any other exception
is a bug and keeps its traceback.
"""

# Exit statuses, one convention for every command-line tool (documented in each --help and in the README).
EXIT_OK = 0
EXIT_INTERNAL_ERROR = 1  # a bug: the traceback is printed (what Python itself does for an uncaught exception)
EXIT_USER_ERROR = 2  # the user's input, flags, config or checkpoint: one line "prog: error: ..." (like argparse)
# 128 + N: stopped by signal N, as a shell reports it (130 Ctrl-C, 141 a closed output pipe, 143 SIGTERM).


class NMTError(Exception):
    """A user-facing error whose message says what was wrong and where (file, line, key)."""


class DataError(NMTError):
    """A corpus problem: missing file, mismatched line counts, invalid UTF-8, unknown language."""


class CheckpointError(NMTError):
    """A checkpoint that is missing, truncated, corrupt, unsafe or incompatible."""
