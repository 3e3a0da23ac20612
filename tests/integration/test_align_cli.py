"""``nmt-align`` on real gold pairs (align-de-en): output format, errors, scoring, layer picking, bidir, soft output."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from corpus_io import read_gz_lines, write_lines
from integration_helpers import BIN, make_checkpoint, tiny_config, tiny_transformer

from nmt.analysis.alignment import parse_pharaoh
from nmt.cli.align import main

N = 30  # gold pairs used
EMPTY_AT = (4, 9)  # 0-based output lines of the inserted pairs with an empty side


@pytest.fixture(scope="module")
def pairs(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first N gold pairs plus two pairs with an empty side, and their 1-based gold links (empty there)."""
    src = read_gz_lines(data_root / "align-de-en" / "deen.de.gz", N)
    tgt = read_gz_lines(data_root / "align-de-en" / "deen.en.gz", N)
    gold = read_gz_lines(data_root / "align-de-en" / "deen.talp.gz", N)
    src.insert(EMPTY_AT[0], "")
    tgt.insert(EMPTY_AT[0], "Nothing to align with .")
    gold.insert(EMPTY_AT[0], "")
    src.insert(EMPTY_AT[1], "Nichts .")
    tgt.insert(EMPTY_AT[1], "")
    gold.insert(EMPTY_AT[1], "")
    out = tmp_path_factory.mktemp("align")
    return {
        "src": write_lines(out / "pairs.de", src),
        "tgt": write_lines(out / "pairs.en.gz", tgt),
        "gold": write_lines(out / "pairs.talp", gold),
        "dir": out,
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "nmt-align"), *args], capture_output=True, text=True, env=env, timeout=120)


def test_console_script_writes_one_line_per_pair_with_soft_matrices(tiny_checkpoint, pairs, cli_env, tmp_path):
    out, soft = tmp_path / "out.align", tmp_path / "soft.npz"
    args = ["-c", str(tiny_checkpoint), "--src", str(pairs["src"]), "--tgt", str(pairs["tgt"]), "-o", str(out)]
    proc = _run([*args, "--soft", str(soft), "--batch-tokens", "200", "--chunk-lines", "7"], cli_env)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == N + 3  # N + 2 pairs, each ending in a newline
    src = pairs["src"].read_text(encoding="utf-8").splitlines()
    tgt = read_gz_lines(pairs["tgt"])
    matrices = np.load(soft)
    assert sorted(matrices.files, key=int) == [str(k) for k in range(N + 2)]
    for k, (s, t, line) in enumerate(zip(src, tgt, lines)):
        links = parse_pharaoh(line).sure
        if k in EMPTY_AT:
            assert line == ""
        assert all(0 <= i < len(s.split()) and 0 <= j < len(t.split()) for i, j in links)
        assert matrices[str(k)].shape == (len(t.split()), len(s.split()))
        assert links == {(int(row.argmax()), j) for j, row in enumerate(matrices[str(k)]) if row.sum() > 0}
    assert f"{N + 2} pairs" in proc.stderr


@pytest.mark.parametrize("problem", ["fewer target lines", "more target lines", "invalid UTF-8"])
def test_bad_inputs_exit_2_with_file_and_line(problem, tiny_checkpoint, pairs, cli_env, tmp_path):
    src = pairs["src"].read_bytes().splitlines(keepends=True)
    tgt = read_gz_lines(pairs["tgt"])
    bad_src, bad_tgt = tmp_path / "bad.de", tmp_path / "bad.en"
    bad_src.write_bytes(b"".join(src))
    if problem == "fewer target lines":
        write_lines(bad_tgt, tgt[:-3])
        message = f"{bad_tgt} has fewer lines than {bad_src}: it ends after line {N - 1}"
    elif problem == "more target lines":
        write_lines(bad_tgt, [*tgt, "one more"])
        message = f"{bad_tgt} has more lines than {bad_src}: {bad_src} ends after line {N + 2}"
    else:
        write_lines(bad_tgt, tgt)
        bad_src.write_bytes(b"".join(src[:6]) + "Gr\u00fc\u00dfe .\n".encode("latin-1") + b"".join(src[7:]))
        message = f"{bad_src}, line 7: invalid UTF-8"
    proc = _run(["-c", str(tiny_checkpoint), "--src", str(bad_src), "--tgt", str(bad_tgt)], cli_env)
    assert proc.returncode == 2
    assert f"nmt-align: error: {message}" in proc.stderr and "Traceback" not in proc.stderr


def test_gold_report_matches_scoring_the_written_file(tiny_checkpoint, pairs, tmp_path, capsys):
    out, report = tmp_path / "out.align", tmp_path / "report.json"
    base = ["-c", str(tiny_checkpoint), "--src", str(pairs["src"]), "--tgt", str(pairs["tgt"]), "--threads", "1"]
    gold = ["--gold", str(pairs["gold"]), "--gold-base", "1"]
    assert main([*base, *gold, "-o", str(out), "--report", str(report), "-q"]) == 0
    r = json.loads(report.read_text())
    assert r["method"] == "shift" and r["layer"] == 0 and r["heads"] is None  # a plain model: shift, layer -2 of 2
    c = r["counts"]
    assert r["sentences"] == N + 2 and c["sure"] > 0 and c["links"] == sum(len(t.split()) for t in _nonempty(pairs))
    assert r["aer"] == pytest.approx(1 - (c["links_in_sure"] + c["links_in_possible"]) / (c["links"] + c["sure"]))
    assert r["precision"] == pytest.approx(c["links_in_possible"] / c["links"])
    capsys.readouterr()
    assert main(["--score", str(out), *gold, "--report", str(tmp_path / "again.json")]) == 0
    assert f"AER {r['aer']:.4f}" in capsys.readouterr().out
    assert json.loads((tmp_path / "again.json").read_text())["counts"] == c


def _nonempty(pairs) -> list[str]:
    """Target lines of the pairs with both sides non-empty (each target word gets one argmax link)."""
    src = pairs["src"].read_text(encoding="utf-8").splitlines()
    return [t for s, t in zip(src, read_gz_lines(pairs["tgt"])) if s.strip() and t.strip()]


def test_score_of_gold_against_itself_is_zero_and_a_hand_made_case_matches(pairs, tmp_path, capsys):
    gold = [parse_pharaoh(line, base=1) for line in pairs["gold"].read_text(encoding="utf-8").splitlines()]
    hyp = write_lines(tmp_path / "self.align", [" ".join(f"{i}-{j}" for i, j in sorted(g.sure)) for g in gold])
    assert main(["--score", str(hyp), "--gold", str(pairs["gold"]), "--gold-base", "1"]) == 0
    assert "AER 0.0000  precision 1.0000  recall 1.0000" in capsys.readouterr().out
    # |A| = 3, |S| = 2, A∩S = {0-0}, A∩P = {0-0, 1-2}: AER = 1 - (1 + 2) / (3 + 2) = 0.4
    g = write_lines(tmp_path / "g.talp", ["0-0 1-1 1p2", ""])
    h = write_lines(tmp_path / "h.align", ["0-0 1-2 2-2", ""])
    assert main(["--score", str(h), "--gold", str(g), "--gold-base", "0", "--report", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["aer"] == pytest.approx(0.4) and r["precision"] == pytest.approx(2 / 3) and r["recall"] == 0.5
    # a gold file with a different number of lines is refused
    short = write_lines(tmp_path / "short.talp", ["0-0"])
    assert main(["--score", str(h), "--gold", str(short), "--gold-base", "0"]) == 2
    assert "short.talp has 1 lines but there are 2 sentence pairs" in capsys.readouterr().err


def test_pick_layer_scores_every_layer_and_head_and_names_the_best(tiny_checkpoint, pairs, tmp_path, capsys):
    report = tmp_path / "pick.json"
    args = ["-c", str(tiny_checkpoint), "--src", str(pairs["src"]), "--tgt", str(pairs["tgt"]), "--threads", "1"]
    args += ["--gold", str(pairs["gold"]), "--pick-layer", "--per-head", "--report", str(report), "-q"]
    assert main(args) == 0
    r = json.loads(report.read_text())
    settings = {(x["layer"], tuple(x["heads"] or ()), x["method"]) for x in r["results"]}
    expected = {(layer, heads, m) for layer in (0, 1) for heads in ((), (0,), (1,)) for m in ("attention", "shift")}
    assert settings == expected and len(r["results"]) == 12  # 2 layers x (all, head 0, head 1) x 2 methods
    assert r["best"]["aer"] == min(x["aer"] for x in r["results"])
    out = capsys.readouterr().out
    assert sum(line.startswith("| ") for line in out.splitlines()) == 13  # header + 12 rows
    assert f"best: --method {r['best']['method']} --alignment-layer {r['best']['layer']}" in out


def test_bidir_and_guided_defaults(tiny_checkpoint, tiny_tokenizer, pairs, tmp_path, capsys):
    base = ["--src", str(pairs["src"]), "--tgt", str(pairs["tgt"]), "--gold", str(pairs["gold"]), "--threads", "1"]
    report = tmp_path / "bidir.json"
    en_de = tiny_config(tiny_transformer())
    en_de = dataclasses.replace(en_de, data=dataclasses.replace(en_de.data, src_lang="en", tgt_lang="de"))
    reverse = make_checkpoint(tmp_path / "en-de.pt", en_de, tiny_tokenizer, seed=3)
    bidir = ["-c", str(tiny_checkpoint), "--reverse-checkpoint", str(reverse), "--method", "bidir"]
    assert main([*bidir, *base, "-o", str(tmp_path / "b.align"), "--report", str(report), "-q"]) == 0
    r = json.loads(report.read_text())
    assert (r["method"], r["bidir_base"], r["symmetrize"]) == ("bidir", "shift", "grow-diag-final-and")
    assert len((tmp_path / "b.align").read_text().splitlines()) == N + 2
    assert main([*bidir[:2], "--method", "bidir", *base, "-q"]) == 2  # no reverse model
    # A "reverse" model of the same direction as the forward one is refused before anything is written.
    capsys.readouterr()
    same = ["-c", str(tiny_checkpoint), "--reverse-checkpoint", str(tiny_checkpoint), "--method", "bidir"]
    assert main([*same, *base, "-o", str(tmp_path / "same.align"), "-q"]) == 2
    err = capsys.readouterr().err
    assert (
        f"the reverse model {tiny_checkpoint} translates de->en" in err
        and "a reverse model that translates en->de" in err
    )
    assert not (tmp_path / "same.align").exists()
    # A checkpoint trained with guided alignment records its supervised head; nmt-align then defaults to the
    # attention method (the rows guided training supervises) on that layer and head.
    cfg = tiny_config(tiny_transformer())
    train = dataclasses.replace(cfg.train, alignment=dataclasses.replace(cfg.train.alignment, file="train.align"))
    cfg = dataclasses.replace(cfg, train=train)
    guided = make_checkpoint(tmp_path / "guided.pt", cfg, tiny_tokenizer)
    assert main(["-c", str(guided), *base, "-o", str(tmp_path / "g.align"), "--report", str(report), "-q"]) == 0
    r = json.loads(report.read_text())
    assert (r["method"], r["layer"], r["heads"]) == ("attention", 0, [0])
    assert (
        main(["-c", str(guided), *base, "--alignment-layer", "1", "--report", str(report), "-q", "-o", "/dev/null"])
        == 0
    )
    assert json.loads(report.read_text())["heads"] is None  # another layer: all heads
    # Trained on the receiving steps (train.alignment.shift): read with shift by default.
    shifted = dataclasses.replace(train, alignment=dataclasses.replace(train.alignment, shift=True))
    guided = make_checkpoint(tmp_path / "guided_shift.pt", dataclasses.replace(cfg, train=shifted), tiny_tokenizer)
    assert main(["-c", str(guided), *base, "--report", str(report), "-q", "-o", "/dev/null"]) == 0
    assert (json.loads(report.read_text())["method"], json.loads(report.read_text())["heads"]) == ("shift", [0])


# --------------------------------------------------------------------------------------------- side-by-side script
def _side_by_side():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "align_side_by_side.py"
    spec = importlib.util.spec_from_file_location("align_side_by_side", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_side_by_side_prepares_the_corpus_like_the_gold_set(data_root: Path, tmp_path: Path):
    sbs = _side_by_side()
    root = tmp_path / "root"  # small slices of the three corpora, laid out like the data root
    for rel, n in (
        ("multi30k/train", 40),
        ("multi30k/val", 10),
        ("iwslt14-de-en/train_sample", 30),
        ("align-de-en/deen", 12),
    ):
        for lang in ("de", "en"):
            write_lines(root / f"{rel}.{lang}.gz", read_gz_lines(data_root / f"{rel}.{lang}.gz", n))
    info = sbs.prepare(root, tmp_path / "data", max_train_lines=60)
    assert info == {"train": 72, "multi30k": 40, "iwslt14_sample": 20, "gold": 12, "gold_start": 61}
    de, en = (read_gz_lines(tmp_path / "data" / f"train.{lang}.gz") for lang in ("de", "en"))
    assert len(de) == len(en) == 72 and len(read_gz_lines(tmp_path / "data" / "valid.en.gz")) == 10
    m30k = read_gz_lines(root / "multi30k/train.en.gz", 1)[0]  # "Two young, White males are outside near many bushes."
    assert en[0] == "two young , white males are outside near many bushes ." and m30k.startswith("Two young, White")
    gold = read_gz_lines(root / "align-de-en/deen.de.gz")
    assert de[-12:] == [s.lower() for s in gold]  # token for token, so the gold links index them
    assert all(len(a.split()) == len(b.split()) for a, b in zip(de[-12:], gold))
    assert not any("&apos;" in s or "&quot;" in s for s in en) and any(" 's " in s for s in en[40:60])
    assert sbs.tokenize("A man's dog (2.5 kg) doesn't bark; 'Legal' cherry-pick") == (
        "a man 's dog ( 2.5 kg ) doesn 't bark ; ' legal ' cherry-pick"
    )


def test_side_by_side_table_and_rows(tmp_path: Path):
    sbs = _side_by_side()
    reports = tmp_path / "reports"
    reports.mkdir()
    scores = {"aer": 0.3, "precision": 0.75, "recall": 0.625}
    for name in ("eflomal_gdfa", "shift", "guided", "guided_bidir"):
        report = {**scores, "layer": 1 if name == "shift" else None, "method": "shift" if name == "guided" else None}
        (reports / f"{name}.json").write_text(json.dumps(report))
    times = {"eflomal": 34.0, "train_fwd": 600.0, "align_shift": 5.0, "train_guided": 700.0}
    times |= {"train_guided_rev": 650.0, "align_guided_bidir": 9.0}
    steps = {"fwd": 1000, "guided": 3000, "guided_rev": 3000}
    rows = sbs.collect(reports, times, {"gold": 508}, steps)
    assert [r["method"] for r in rows] == [
        "eflomal grow-diag-final-and",
        "shift (layer 1, best on the gold set)",
        "guided (eflomal gdfa, shift)",
        "guided bidir (grow-diag-final-and)",
    ]
    assert [r["wall"] for r in rows] == [34.0, 605.0, None, 1393.0]  # guided: no aligning time recorded
    assert rows[2]["train"] == 734.0  # eflomal + training
    assert rows[3]["train"] == 1384.0  # eflomal + both trainings
    assert [r["updates"] for r in rows] == ["–", "1,000", "3,000", "3,000 + 3,000"]
    table = sbs.format_table(rows).splitlines()
    assert table[0].startswith("| method | AER | precision | recall | updates | wall time (s)")
    assert table[3] == "| shift (layer 1, best on the gold set) | 30.0 | 75.0 | 62.5 | 1,000 | 605 | 600 | 5 |"
    assert table[4].endswith("| 734 | – |") and len(table) == 6


def test_side_by_side_reverses_links_for_the_reverse_model(tmp_path: Path):
    sbs = _side_by_side()
    (tmp_path / "a").write_text("0-1 2-0\n\n3-3\n", encoding="utf-8")
    sbs.reverse_links(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text(encoding="utf-8") == "1-0 0-2\n\n3-3\n"
