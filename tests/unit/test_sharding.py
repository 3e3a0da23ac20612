"""Shard files: line ranges, line counts, progress records that let an interrupted shard resume, the merge."""

from __future__ import annotations

import itertools
import json

import pytest

from nmt.errors import DataError
from nmt.sharding import (
    Shard,
    ShardWriter,
    count_lines,
    line_range,
    merge_shards,
    parse_shard,
    record_path,
    shard_count,
    shard_path,
)


@pytest.mark.parametrize("total", [0, 1, 5, 7, 20_000, 20_001])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_line_ranges_cover_every_line_once_in_order(total, count):
    ranges = [line_range(total, Shard(k, count)) for k in range(count)]
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    sizes = [end - start for start, end in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_parse_shard():
    assert parse_shard("0/4") == Shard(0, 4) and parse_shard(" 3 / 4 ") == Shard(3, 4)
    for bad in ("4/4", "-1/4", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="K/N"):
            parse_shard(bad)


def test_count_lines_with_and_without_a_final_newline(tmp_path):
    for text, n in (("", 0), ("a\n", 1), ("a\nb", 2), ("a\n\n", 2), ("\n", 1)):
        (tmp_path / "f").write_text(text, encoding="utf-8")
        assert count_lines(tmp_path / "f") == n
    with pytest.raises(DataError, match="cannot read"):
        count_lines(tmp_path / "missing")


def write_shard(out, shard, lines, key="k", *, commit_every=2, stop_after=None):
    """Write ``lines`` as shard ``shard`` of ``out``, committing every ``commit_every`` lines; with ``stop_after``,
    also write (without committing) one more line after that many, as a run killed mid-chunk would."""
    with ShardWriter([out], shard, len(lines), key) as w:
        for i in range(w.done, len(lines)):
            w.write([f"{lines[i]}\n".encode()])
            if stop_after is not None and i + 1 > stop_after:
                return w.done
            if (i + 1) % commit_every == 0 or i + 1 == len(lines):
                w.commit(i + 1)
        return w.done


def test_an_interrupted_shard_resumes_after_its_last_commit(tmp_path):
    out = tmp_path / "out.txt"
    lines = [f"line {i}" for i in range(7)]
    shard = Shard(1, 2)
    assert write_shard(out, shard, lines, stop_after=4) == 4  # lines 0-3 committed, line 4 written half-way
    assert shard_path(out, shard).read_text().count("\n") == 5
    record = json.loads(record_path(out, shard).read_text())
    assert (record["done"], record["lines"]) == (4, 7)
    assert write_shard(out, shard, lines) == 7  # resumes at line 4: the uncommitted line is cut off first
    assert shard_path(out, shard).read_text() == "".join(f"{x}\n" for x in lines)


def test_a_shard_with_other_settings_starts_over(tmp_path):
    out, shard = tmp_path / "out.txt", Shard(0, 1)
    write_shard(out, shard, ["a", "b", "c"], key="old", stop_after=2)
    with ShardWriter([out], shard, 3, "new") as w:
        assert w.done == 0 and shard_path(out, shard).stat().st_size == 0


def test_merge_joins_in_order_and_refuses_incomplete_shards(tmp_path):
    out = tmp_path / "out.txt"
    parts = [["a", "b"], [], ["c", "d", "e"]]
    for k, lines in enumerate(parts):
        write_shard(out, Shard(k, 3), lines, stop_after=1 if k == 2 else None)
    assert shard_count(out) == 3
    with pytest.raises(DataError, match=r"shard 2/3 is incomplete \(0 of 3 lines\)"):
        merge_shards([out], 3)
    write_shard(out, Shard(2, 3), parts[2])
    merge_shards([out], 3)
    assert out.read_text() == "a\nb\nc\nd\ne\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # shards and records removed
    with pytest.raises(DataError, match="no shards"):
        shard_count(out)
