"""Errors caused by the user's input (files, configs, checkpoints).

The command-line tools catch :class:`NMTError` and print its message without a traceback; any other exception
is a bug and keeps its traceback.
"""


class NMTError(Exception):
    """A user-facing error whose message says what was wrong and where (file, line, key)."""


class DataError(NMTError):
    """A corpus problem: missing file, mismatched line counts, invalid UTF-8, unknown language."""


class CheckpointError(NMTError):
    """A checkpoint that is missing, truncated, corrupt, unsafe or incompatible."""
