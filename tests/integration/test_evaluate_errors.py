"""``nmt-evaluate`` refuses to score nothing and checks gold alignments against the test set's sentences."""

from __future__ import annotations

from pathlib import Path

from corpus_io import read_gz_lines, write_lines

from nmt.cli.evaluate import main


def test_an_empty_test_set_is_nothing_to_score(tiny_checkpoint, tmp_path, capsys):
    empty = write_lines(tmp_path / "empty.de", [])
    assert main(["-c", str(tiny_checkpoint), "--src", str(empty), "--ref", str(empty), "-o", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err == f"nmt-evaluate: error: test set empty ({empty}, {empty}) has no lines: there is nothing to score\n"
    assert not (tmp_path / "e" / "results.json").exists()


def test_gold_alignments_with_the_wrong_base_stop_before_translating(
    tiny_checkpoint, data_root: Path, tmp_path, capsys
):
    folder = data_root / "align-de-en"
    src = write_lines(tmp_path / "g.de", read_gz_lines(folder / "deen.de.gz", 5))
    ref = write_lines(tmp_path / "g.en", read_gz_lines(folder / "deen.en.gz", 5))
    gold = write_lines(tmp_path / "g.talp", read_gz_lines(folder / "deen.talp.gz", 5))  # 1-based
    argv = ["-c", str(tiny_checkpoint), "--src", str(src), "--ref", str(ref), "-o", str(tmp_path / "e")]
    assert main([*argv, "--gold-alignments", str(gold), "--gold-base", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nmt-evaluate: error: {gold}, line 1: link 11-9 is out of range for a pair of 11 source")
    assert err.rstrip().endswith("with --gold-base 1 every link fits") and not (tmp_path / "e").exists()
