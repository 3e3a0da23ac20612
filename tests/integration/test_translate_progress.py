"""``nmt-translate`` as a person sees it: a progress bar that moves per batch (with a total for files), and stdin
read as it arrives, so that a line written into a pipe comes back translated before the input ends."""

from __future__ import annotations

import gzip
import io
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest
import tqdm
from integration_helpers import BIN

from nmt.cli.translate import main

pytestmark = pytest.mark.usefixtures("one_thread")


def corpus_lines(m30k_slice: Path, n: int) -> list[str]:
    with gzip.open(m30k_slice / "multi30k" / "test_2016_flickr.de.gz", "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f][:n]


class FakeTerminal(io.StringIO):
    """stderr as a terminal: tqdm draws its bar into it."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def bar_updates(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float | None]]:
    """Every ``tqdm.update(n)`` call made, with the bar's total at that moment."""
    calls: list[tuple[int, float | None]] = []
    original = tqdm.tqdm.update

    def update(self, n=1):
        calls.append((n, self.total))
        return original(self, n)

    monkeypatch.setattr(tqdm.tqdm, "update", update)
    return calls


def terminal(monkeypatch: pytest.MonkeyPatch) -> FakeTerminal:
    """stderr is a terminal from here on (set in the test itself: pytest's capture resets it after fixtures)."""
    fake = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", fake)
    return fake


def test_bar_advances_per_batch_within_one_chunk_with_the_file_total(
    tiny_checkpoint, m30k_slice, tmp_path, bar_updates, monkeypatch
):
    shown = terminal(monkeypatch)
    lines = [*corpus_lines(m30k_slice, 20), ""]  # 21 lines, one chunk (default 10,000 lines)
    src = tmp_path / "in.de"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    argv = ["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(tmp_path / "out.en"), "--device", "cpu"]
    assert main([*argv, "--batch-tokens", "64", "--beam-size", "2"]) == 0
    # Many updates for one chunk (one per batch of <= 64 tokens, one for the empty line), adding up to the lines,
    # each with the total known from the file size.
    assert len(bar_updates) > 3
    assert sum(n for n, _ in bar_updates) == len(lines)
    assert {total for _, total in bar_updates} == {len(lines)}
    shown = shown.getvalue()
    assert f"/{len(lines)}" in shown and "sent" in shown  # tqdm's "k/21 sent [elapsed<ETA, rate]"
    assert "nmt-translate: 21 sentences in" in shown and "sentences/s" in shown  # the closing line stays


def test_bar_total_is_estimated_from_bytes_and_exact_once_the_file_is_read(
    tiny_checkpoint, m30k_slice, tmp_path, bar_updates, monkeypatch
):
    terminal(monkeypatch)
    lines = corpus_lines(m30k_slice, 24)
    src = tmp_path / "in.de"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    argv = ["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(tmp_path / "out.en"), "--device", "cpu"]
    assert main([*argv, "--chunk-lines", "6", "--beam-size", "1"]) == 0
    totals = [total for _, total in bar_updates]
    assert all(t is not None and 12 <= t <= 48 for t in totals)  # the first chunk's estimate: the right size
    assert totals[-1] == len(lines)
    assert sum(n for n, _ in bar_updates) == len(lines)


def test_quiet_draws_no_bar(tiny_checkpoint, m30k_slice, tmp_path, bar_updates, monkeypatch):
    shown = terminal(monkeypatch)
    src = tmp_path / "in.de"
    src.write_text("".join(line + "\n" for line in corpus_lines(m30k_slice, 3)), encoding="utf-8")
    assert main(["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(tmp_path / "o"), "-q"]) == 0
    assert bar_updates == [] and shown.getvalue() == ""


def read_line(stream, timeout: float) -> bytes:
    """One line from a pipe, or fail after ``timeout`` seconds without one."""
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no translation within {timeout} s (so far: {data!r})"
        chunk = os.read(fd, 1)
        assert chunk, "the output ended"
        data += chunk
    return data


def test_piped_lines_come_back_before_the_input_ends(tiny_checkpoint, m30k_slice, tmp_path, cli_env):
    lines = [*corpus_lines(m30k_slice, 3), "", "Zwei Hunde spielen im Schnee."]
    src = tmp_path / "in.de"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    file_mode = subprocess.run(
        [BIN / "nmt-translate", "-c", tiny_checkpoint, "-i", src, "-q"], capture_output=True, env=cli_env, timeout=120
    )
    assert file_mode.returncode == 0, file_mode.stderr
    expected = file_mode.stdout.split(b"\n")[:-1]
    proc = subprocess.Popen(
        [BIN / "nmt-translate", "-c", tiny_checkpoint, "-q"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env,
    )
    try:
        got = []
        for line in lines:  # a line in, its translation out, with the pipe still open
            proc.stdin.write(line.encode("utf-8") + b"\n")
            proc.stdin.flush()
            got.append(read_line(proc.stdout, timeout=90).rstrip(b"\n"))
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        assert proc.stdout.read() == b""  # one output line per input line, nothing more
    finally:
        if proc.poll() is None:
            proc.kill()
    assert got == expected  # the same translations as a file, in order; the empty line stays empty
    assert got[3] == b""
