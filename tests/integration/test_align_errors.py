"""``nmt-align`` never reports a score of nothing, and checks gold links against the sentences before aligning."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from corpus_io import read_gz_lines, write_lines
from integration_helpers import BIN

from nmt.cli.align import main

N = 12  # RWTH gold pairs used


@pytest.fixture(scope="module")
def gold_pairs(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder, out = data_root / "align-de-en", tmp_path_factory.mktemp("gold")
    return {
        "src": write_lines(out / "g.de", read_gz_lines(folder / "deen.de.gz", N)),
        "tgt": write_lines(out / "g.en", read_gz_lines(folder / "deen.en.gz", N)),
        "gold": write_lines(out / "g.talp", read_gz_lines(folder / "deen.talp.gz", N)),  # 1-based
        "empty": write_lines(out / "empty.txt", []),
        "blank": write_lines(out / "blank.txt", [""] * N),
    }


def error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("nmt-align: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_empty_inputs_are_nothing_to_align_or_score(tiny_checkpoint, gold_pairs, tmp_path, capsys):
    empty = str(gold_pairs["empty"])
    ckpt = ["-c", str(tiny_checkpoint), "--src", empty, "--tgt", empty, "-o", str(tmp_path / "a")]
    assert main(ckpt) == 2
    assert "no sentence pairs in" in error(capsys) and not (tmp_path / "a").read_text()
    assert main([*ckpt, "--gold", empty]) == 2
    assert "there is nothing to align or score" in error(capsys)
    assert main(["--score", empty, "--gold", empty]) == 2  # was "AER 0.0000"
    assert "are empty: there is nothing to score" in error(capsys)


def test_pairs_without_a_single_link_are_nothing_to_score(gold_pairs, capsys):
    blank = str(gold_pairs["blank"])
    assert main(["--score", blank, "--gold", blank]) == 2
    assert f"neither the alignments nor {blank} hold a sure link on any of the {N} pairs" in error(capsys)


def test_a_one_based_gold_file_read_as_zero_based_stops_before_aligning(tiny_checkpoint, gold_pairs, tmp_path, capsys):
    out = tmp_path / "out.align"
    args = ["-c", str(tiny_checkpoint), "--src", str(gold_pairs["src"]), "--tgt", str(gold_pairs["tgt"])]
    assert main([*args, "--gold", str(gold_pairs["gold"]), "--gold-base", "0", "-o", str(out)]) == 2
    message = error(capsys)
    assert f"{gold_pairs['gold']}, line 1: link 11-9 is out of range for a pair of 11 source and 9 target" in message
    assert message.rstrip().endswith("with --gold-base 1 every link fits") and not out.exists()
    assert main([*args, "--gold", str(gold_pairs["gold"]), "--gold-base", "0", "--pick-layer"]) == 2
    assert "line 1: link 11-9 is out of range" in error(capsys)
    assert main([*args, "--gold", str(gold_pairs["gold"]), "--gold-base", "1", "-o", str(out), "-q"]) == 0


def test_score_checks_gold_links_when_given_the_sentences(gold_pairs, tmp_path, capsys):
    lines = gold_pairs["gold"].read_text(encoding="utf-8").splitlines()
    bad = write_lines(tmp_path / "bad.talp", [*lines[:4], lines[4] + " 99-99", *lines[5:]])
    hyp = write_lines(tmp_path / "hyp.align", ["0-0"] * N)
    assert main(["--score", str(hyp), "--gold", str(bad)]) == 0  # without the sentences it cannot be checked
    capsys.readouterr()
    sentences = ["--src", str(gold_pairs["src"]), "--tgt", str(gold_pairs["tgt"])]
    assert main(["--score", str(hyp), "--gold", str(bad), *sentences]) == 2
    assert f"{bad}, line 5: link 99-99 is out of range for a pair of " in error(capsys)
    assert main(["--score", str(hyp), "--gold", str(bad), "--src", str(gold_pairs["src"])]) == 2
    assert "--score takes --src and --tgt together" in error(capsys)


def test_console_script_exit_status_and_one_line(gold_pairs, cli_env):
    empty = str(gold_pairs["empty"])
    proc = subprocess.run(
        [str(BIN / "nmt-align"), "--score", empty, "--gold", empty], capture_output=True, text=True, env=cli_env
    )
    assert proc.returncode == 2 and proc.stdout == "" and "AER" not in proc.stderr
    assert proc.stderr.startswith("nmt-align: error: ") and "nothing to score" in proc.stderr
