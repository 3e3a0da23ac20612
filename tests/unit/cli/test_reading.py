"""Interactive buffering of stdin (:func:`nmt.cli.reading.arrivals`) and the byte counts behind the progress total."""

from __future__ import annotations

import io
import threading

import pytest

from nmt.cli.reading import CountingLines, arrivals, regular_file_size


def test_a_pause_in_the_input_ends_a_group_in_order():
    resume = threading.Event()

    def items():
        yield from ["a", "b", "c"]
        resume.wait(timeout=30)  # the input pauses until the first group has been taken
        yield from ["d", "e"]

    groups = arrivals(items(), size=100, wait=0.5)
    assert next(groups) == ["a", "b", "c"]  # not held back for a full group or the end of the input
    resume.set()
    assert list(groups) == [["d", "e"]]


def test_lines_already_there_fill_whole_groups():
    # With a long wait the groups are cut only by their size and by the end of the input.
    assert list(arrivals(iter(range(10)), size=4, wait=30.0)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(arrivals(iter([]), size=4, wait=30.0)) == []


def test_an_error_of_the_input_comes_after_the_lines_before_it():
    def items():
        yield from ["a", "b"]
        raise ValueError("line 3: invalid UTF-8")

    groups = arrivals(items(), size=10, wait=30.0)
    assert next(groups) == ["a", "b"]
    with pytest.raises(ValueError, match="line 3"):
        next(groups)


def test_byte_counts_and_file_sizes(tmp_path):
    raw = CountingLines(io.BytesIO(b"eins\nzwei drei\n\nvier"))
    assert list(raw) == [b"eins\n", b"zwei drei\n", b"\n", b"vier"] and raw.bytes == 20
    path = tmp_path / "f.txt"
    path.write_bytes(b"x" * 123)
    with path.open("rb") as f:
        assert regular_file_size(f) == 123
    assert regular_file_size(io.BytesIO(b"abc")) is None  # no descriptor: treated as a pipe
