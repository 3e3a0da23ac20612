"""Reading input lines for the command-line tools: byte counts for a progress bar, and interactive buffering.

A file (or a file redirected into stdin) is read in fixed chunks, and its size gives the progress bar a total. A
pipe or a terminal is read by :func:`arrivals`, fairseq-interactive's buffer made time-aware: a background thread
reads lines as they come, and the translator takes what has arrived as soon as the input pauses, so a line typed
in a terminal (or written by a slow producer) is translated at once instead of waiting for a full chunk or the end
of the input. Under a fast pipe the lines are already there, and groups fill up to the chunk size as before.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO, TypeVar

T = TypeVar("T")


class CountingLines:
    """The lines of a binary stream, counting the bytes read (``bytes``) for a progress estimate."""

    def __init__(self, raw: Iterable[bytes]) -> None:
        self.raw = raw
        self.bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self.raw:
            self.bytes += len(line)
            yield line


def regular_file_size(stream: BinaryIO) -> int | None:
    """The size in bytes of a stream that is a regular file (also stdin redirected from one), else None."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, AttributeError, ValueError):  # no descriptor (a test's BytesIO), or a closed one
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def is_terminal(stream: BinaryIO) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (OSError, AttributeError, ValueError):
        return False


class _End:
    """Put on the queue after the last line; carries the reader's exception, if any."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def arrivals(items: Iterable[T], *, size: int, wait: float) -> Iterator[list[T]]:
    """Group ``items`` as they arrive: a group ends when it holds ``size`` items, when ``wait`` seconds have passed
    since its first item arrived and no further item is ready, or at the end of the input. Order is kept.

    ``items`` is consumed on a background (daemon) thread, which runs at most ``size`` items ahead, so memory stays
    bounded; an exception it raises (e.g. invalid UTF-8) comes out here, after the group of the items before it.

    Args:
        items: any iterable, typically the decoded lines of stdin.
        size: the most items in one group (the chunk size).
        wait: seconds to wait for more items once a group has its first one.
    """
    q: queue.Queue[T | _End] = queue.Queue(maxsize=max(size, 1))

    def read() -> None:
        try:
            for item in items:
                q.put(item)
        except BaseException as e:  # handed to the consumer, which raises it
            q.put(_End(e))
        else:
            q.put(_End())

    threading.Thread(target=read, name="nmt-input-reader", daemon=True).start()
    while True:
        first = q.get()  # block until the input says something
        if isinstance(first, _End):
            if first.error is not None:
                raise first.error
            return
        group, deadline = [first], time.monotonic() + wait
        end: _End | None = None
        while len(group) < size:
            try:
                # After the deadline this only takes what is ready already (timeout 0), so a fast pipe still
                # fills whole groups while a pause in the input ends the group.
                item = q.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                break
            if isinstance(item, _End):
                end = item
                break
            group.append(item)
        yield group
        if end is not None:
            if end.error is not None:
                raise end.error
            return
