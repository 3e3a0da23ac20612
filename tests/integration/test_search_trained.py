"""Beam search on a trained model and real sentences: the top output never depends on ``nbest`` (issue 13)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from corpus_io import read_gz_lines, write_lines
from integration_helpers import BIN

from nmt.config import EarlyStop
from nmt.translate import Translator

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def test_lines(m30k_slice: Path) -> list[str]:
    """The slice's 100 test sentences."""
    return read_gz_lines(m30k_slice / "multi30k" / "test_2016_flickr.de.gz")


def ranked(translations) -> list[list[tuple[str, float]]]:
    return [[(text, round(h.score, 5)) for text, h in zip(t.texts, t.hypotheses)] for t in translations]


@pytest.mark.parametrize("lenpen", [1.0, 0.6, 0.0])
def test_top1_of_every_nbest_equals_nbest_1(trained_checkpoint, test_lines, lenpen):
    tr = Translator.from_checkpoints([trained_checkpoint], search={"lenpen": lenpen})
    k = tr.cfg.beam_size
    assert k == 4 and tr.cfg.early_stop == EarlyStop.bound  # the default rule
    base = tr.cfg
    lists = {}
    for n in range(1, k + 1):
        tr.cfg = replace(base, nbest=n)
        lists[n] = ranked(tr.translate(test_lines))
        assert [r[:1] for r in lists[n]] == lists[1], f"nbest {n}"
        assert all(len(r) == n and len({text for text, _ in r}) == n for r in lists[n])
    if lenpen == 1.0:  # the n-best lists are those of a search that never stops early
        tr.cfg = replace(base, nbest=k, early_stop=EarlyStop.none)
        assert ranked(tr.translate(test_lines)) == lists[k]


def test_cli_nbest_top_lines_equal_the_single_best(trained_checkpoint, test_lines, tmp_path, cli_env):
    src = write_lines(tmp_path / "test.de", test_lines)
    out = tmp_path / "nbest.tsv"
    argv = [BIN / "nmt-translate", "-c", trained_checkpoint, "-i", src, "-o", out, "-q", "--device", "cpu"]
    proc = subprocess.run([*argv, "--nbest", "4", "--lenpen", "1.0"], capture_output=True, text=True, env=cli_env)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 * len(test_lines)
    tr = Translator.from_checkpoints([trained_checkpoint], search={"lenpen": 1.0, "nbest": 1})
    assert [r[3] for r in rows if r[1] == "1"] == [t.texts[0] for t in tr.translate(test_lines)]
