"""``nmt-evaluate`` on real files: scores with signatures, summaries, attention dumps, AER against gold links."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
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


def test_gold_alignments_give_aer(tiny_checkpoint, tmp_path, m30k_slice, capsys):
    # Gold = the model's own word alignments (1-based) and references = its own outputs: AER must be 0.
    src = head(m30k_slice / "multi30k" / "test_2016_flickr.de.gz", tmp_path / "t.de", 10)
    dumps, out = tmp_path / "dumps", tmp_path / "eval"
    argv = ["-c", str(tiny_checkpoint), "--src", str(src), "-q", "--beam-size", "2"]
    assert main([*argv, "--ref", str(src), "-o", str(out), "--dump-dir", str(dumps), "--heatmaps", "0"]) == 0
    own = [
        " ".join(f"{int(i) + 1}-{int(j) + 1}" for i, j in (x.split("-") for x in row.split()))
        for row in (dumps / "t.align").read_text(encoding="utf-8").split("\n")[:-1]
    ]
    (tmp_path / "gold.talp").write_text("\n".join(own) + "\n", encoding="utf-8")
    gold = ["--gold-alignments", str(tmp_path / "gold.talp"), "--gold-base", "1"]
    assert main([*argv, "--ref", str(out / "t.hyp"), "-o", str(tmp_path / "e2"), *gold]) == 0
    (entry,) = json.loads((tmp_path / "e2" / "results.json").read_text(encoding="utf-8"))["test"]
    assert entry["bleu"] == pytest.approx(100.0)
    assert entry["alignment"]["sentences"] == 10 and entry["alignment"]["of"] == 10
    assert entry["alignment"]["aer"] == 0.0 and entry["alignment"]["precision"] == 1.0
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
    assert entry["alignment"]["of"] == 6  # a random model matches no reference, so no AER: said, not faked
    capsys.readouterr()
    assert main([*argv, "--gold-alignments", str(gold_dir / "deen.talp.gz")]) == 2
    assert "has 508 lines but the test set has 6 sentences" in capsys.readouterr().err
    assert main(["-c", str(tiny_checkpoint), "--src", str(src)]) == 2
    assert "give both --src and --ref" in capsys.readouterr().err
