"""``nmt-evaluate`` on real files: scores with signatures, summaries, attention dumps, AER against gold links."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tqdm
from integration_helpers import BIN, MAX_LEN, read_gz

from nmt.analysis.attention import load_attention
from nmt.checkpoint import load_checkpoint
from nmt.cli.evaluate import main
from nmt.data.tokenizer import Tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def head(src: Path, dst: Path, n: int) -> Path:
    dst.write_text("".join(line + "\n" for line in read_gz(src)[:n]), encoding="utf-8")
    return dst


SEARCH_FLAGS = ["--early-stop", "none", "--min-len", "2", "--no-repeat-ngram", "3"]


def test_configured_test_sets_through_the_console_script(tiny_checkpoint, tmp_path, cli_env):
    out = tmp_path / "eval"
    proc = subprocess.run(
        [BIN / "nmt-evaluate", "-c", tiny_checkpoint, "--output-dir", out, "--beam-size", "2", *SEARCH_FLAGS],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "test_2016_flickr: BLEU" in proc.stdout and "BLEU signature: nrefs:1|case:mixed" in proc.stdout
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (entry,) = summary["test"]
    assert entry["name"] == "test_2016_flickr" and entry["sentences"] == 100
    assert entry["bleu_signature"].startswith("nrefs:1") and "chrf_signature" in entry
    assert 0.0 <= entry["bleu"] <= 100.0 and summary["search"]["beam_size"] == 2
    assert {k: summary["search"][k] for k in ("early_stop", "min_len", "no_repeat_ngram")} == {
        "early_stop": "none",
        "min_len": 2,
        "no_repeat_ngram": 3,
    }
    assert len((out / "test_2016_flickr.hyp").read_text(encoding="utf-8").splitlines()) == 100
    assert sum(b["sentences"] for b in entry["buckets"]) == 100
    assert (out / "test_2016_flickr.buckets.png").read_bytes()[:4] == b"\x89PNG"
    assert "src words" in (out / "test_2016_flickr.buckets.txt").read_text(encoding="utf-8")


def test_dumps_hold_one_normalised_matrix_per_sentence(tiny_checkpoint, tmp_path, m30k_slice):
    multi30k = m30k_slice / "multi30k"
    src, ref = head(multi30k / "test_2016_flickr.de.gz", tmp_path / "t.de", 12), tmp_path / "t.en"
    lines = src.read_text(encoding="utf-8").splitlines()
    lines[4] = ""  # an empty source line still gets its (1 x 1) matrix
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    head(multi30k / "test_2016_flickr.en.gz", ref, 12)
    dumps, out = tmp_path / "dumps", tmp_path / "eval"
    argv = ["-c", str(tiny_checkpoint), "--src", str(src), "--ref", str(ref), "-o", str(out), "-q"]
    assert main([*argv, "--dump-dir", str(dumps), "--heatmaps", "2"]) == 0
    records = load_attention(dumps / "t.attention.npz")
    tok = Tokenizer.from_state(load_checkpoint(tiny_checkpoint)["tokenizer"])
    hyps = (out / "t.hyp").read_text(encoding="utf-8").splitlines()
    assert [r.id for r in records] == list(range(12)) and len(hyps) == 12
    for r, line, hyp in zip(records, lines, hyps):
        assert r.src_pieces == [*tok.src_pieces(tok.encode_src([line])[0][:MAX_LEN]), "</s>"]  # truncated
        assert r.matrix.shape == (len(r.tgt_pieces), len(r.src_pieces)) and r.tgt_pieces[-1] == "</s>"
        assert tok.decode_tgt(tok.encode_tgt([hyp])[0]) == hyp
        np.testing.assert_allclose(r.matrix.sum(1), 1.0, atol=1e-5)
    assert records[4].matrix.shape == (1, 1)
    assert sorted(p.name for p in (dumps / "t.heatmaps").iterdir()) == ["00001.png", "00002.png"]
    align = (dumps / "t.align").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(align) == 12
    for row, line, hyp in zip(align, lines, hyps):
        for link in row.split():
            i, j = map(int, link.split("-"))
            assert 0 <= i < len(line.split()) and 0 <= j < len(hyp.split())


def test_gold_alignments_score_forced_alignments_of_every_pair(tiny_checkpoint, tmp_path, m30k_slice, cli_env, capsys):
    # Gold = nmt-align's forced alignment of the (source, reference) pairs, 1-based: AER must be 0 over every
    # pair, although the random model translates none of them as its reference.
    multi30k = m30k_slice / "multi30k"
    src = head(multi30k / "test_2016_flickr.de.gz", tmp_path / "t.de", 10)
    ref = head(multi30k / "test_2016_flickr.en.gz", tmp_path / "t.en", 10)
    forced = subprocess.run(
        [BIN / "nmt-align", "-c", tiny_checkpoint, "--src", src, "--tgt", ref, "-q", "--device", "cpu"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert forced.returncode == 0, forced.stderr
    gold = [" ".join(f"{int(i) + 1}-{int(j) + 1}" for i, j in (x.split("-") for x in row.split())) for row in
            forced.stdout.split("\n")[:-1]]  # fmt: skip
    (tmp_path / "gold.talp").write_text("\n".join(gold) + "\n", encoding="utf-8")
    argv = ["-c", str(tiny_checkpoint), "--src", str(src), "--ref", str(ref), "-q", "--beam-size", "2"]
    assert main([*argv, "-o", str(tmp_path / "e"), "--gold-alignments", str(tmp_path / "gold.talp")]) == 0
    (entry,) = json.loads((tmp_path / "e" / "results.json").read_text(encoding="utf-8"))["test"]
    assert entry["bleu"] < 50.0  # the outputs are not the references ...
    a = entry["alignment"]
    assert a["sentences"] == a["of"] == 10 and a["method"] == "forced (shift)"  # ... yet every pair is scored
    assert a["aer"] == 0.0 and a["precision"] == 1.0 and a["recall"] == 1.0
    assert "AER 0.0000" in capsys.readouterr().out


def test_real_gold_file_and_user_errors(tiny_checkpoint, tmp_path, data_root, capsys):
    gold_dir = data_root / "align-de-en"
    src, ref = head(gold_dir / "deen.de.gz", tmp_path / "g.de", 6), head(gold_dir / "deen.en.gz", tmp_path / "g.en", 6)
    talp = tmp_path / "g.talp"
    with gzip.open(gold_dir / "deen.talp.gz", "rt", encoding="utf-8") as f:
        talp.write_text("".join(next(f) for _ in range(6)), encoding="utf-8")
    argv = ["-c", str(tiny_checkpoint), "--src", str(src), "--ref", str(ref), "-o", str(tmp_path / "e"), "-q"]
    assert main([*argv, "--gold-alignments", str(talp)]) == 0
    (entry,) = json.loads((tmp_path / "e" / "results.json").read_text(encoding="utf-8"))["test"]
    a = entry["alignment"]  # the gold links of all 6 pairs count, whatever the random model translates
    assert a["of"] == a["sentences"] == 6 and a["method"] == "forced (shift)" and 0.0 < a["aer"] <= 1.0
    capsys.readouterr()
    assert main([*argv, "--gold-alignments", str(gold_dir / "deen.talp.gz")]) == 2
    assert "has 508 lines but the test set has 6 sentences" in capsys.readouterr().err
    assert main(["-c", str(tiny_checkpoint), "--src", str(src)]) == 2
    assert "give both --src and --ref" in capsys.readouterr().err


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_a_progress_bar_per_set_then_timing_and_sacrebleus_report(
    tiny_checkpoint, tmp_path, m30k_slice, monkeypatch, capsys
):
    multi30k = m30k_slice / "multi30k"
    src = head(multi30k / "test_2016_flickr.de.gz", tmp_path / "t.de", 16)
    ref = head(multi30k / "test_2016_flickr.en.gz", tmp_path / "t.en", 16)
    updates: list[tuple[int, float | None]] = []
    original = tqdm.tqdm.update

    def update(self, n=1):
        updates.append((n, self.total))
        return original(self, n)

    monkeypatch.setattr(tqdm.tqdm, "update", update)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["-c", str(tiny_checkpoint), "--src", str(src), "--ref", str(ref), "-o", str(tmp_path / "e")]
    assert main([*argv, "--batch-tokens", "64", "--beam-size", "2"]) == 0
    assert len(updates) > 2 and sum(n for n, _ in updates) == 16 and {t for _, t in updates} == {16}
    assert "nmt-evaluate: t" in terminal.getvalue() and "/16" in terminal.getvalue()
    out = capsys.readouterr().out
    (entry,) = json.loads((tmp_path / "e" / "results.json").read_text(encoding="utf-8"))["test"]
    assert f"BLEU|{entry['bleu_signature']} = {entry['bleu']:.2f} " in out  # sacrebleu's line, precisions and all
    assert f"hyp_len = {entry['bleu_hyp_len']} ref_len = {entry['bleu_ref_len']})" in out
    assert f"chrF2|{entry['chrf_signature']} = " in out and "decoded in " in out
    assert "95% CI" in out  # the bucket table
