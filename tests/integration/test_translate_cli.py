"""``nmt-translate`` on real files: line count and order, bad input, stdin/stdout, n-best, alignments, ensembles;
damaged checkpoints, mismatched ensembles, closed streams and a full disk."""

from __future__ import annotations

import gzip
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from checkpoint_damage import damage_record, largest_tensor_record
from integration_helpers import BIN, MAX_LEN, make_checkpoint, tiny_config, tiny_rnn, train_tokenizer

from nmt.cli.translate import build_parser, main, overrides
from nmt.translate import Translator

pytestmark = pytest.mark.usefixtures("one_thread")


def corpus_lines(m30k_slice: Path, n: int, offset: int = 0) -> list[str]:
    with gzip.open(m30k_slice / "multi30k" / "test_2016_flickr.de.gz", "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f][offset : offset + n]


@pytest.fixture(scope="module")
def source_lines(m30k_slice: Path) -> list[str]:
    """Corpus sentences, an empty line, a whitespace-only line, an over-long line (eight sentences joined) and a
    line in non-Latin scripts."""
    lines = corpus_lines(m30k_slice, 12)
    long_line = " ".join(corpus_lines(m30k_slice, 8, offset=20))
    return [*lines[:5], "", *lines[5:9], long_line, "   ", "Два человека — 二人の男性が歩く 🐕 ἄνθρωπος", *lines[9:]]


@pytest.fixture(scope="module")
def file_run(tiny_checkpoint: Path, source_lines: list[str], tmp_path_factory, m30k_slice: Path):
    """One run of the real console script, file to file."""
    tmp = tmp_path_factory.mktemp("translate")
    src, out = tmp / "in.de", tmp / "out.en"
    src.write_text("".join(line + "\n" for line in source_lines), encoding="utf-8")
    proc = subprocess.run(
        [BIN / "nmt-translate", "--checkpoint", tiny_checkpoint, "--input", src, "--output", out, "--device", "cpu"],
        capture_output=True,
        text=True,
        env={"NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    return src, out, proc


def test_file_mode_keeps_every_line_in_order_and_equals_line_by_line(file_run, source_lines, tiny_checkpoint):
    _, out, proc = file_run
    assert proc.returncode == 0, proc.stderr
    hyps = out.read_text(encoding="utf-8").split("\n")
    assert hyps[-1] == "" and len(hyps) - 1 == len(source_lines)
    hyps = hyps[:-1]
    long_no = source_lines.index(max(source_lines, key=len)) + 1
    assert f"line {long_no}: " in proc.stderr and f"maximum {MAX_LEN}" in proc.stderr
    assert "sentences/s" in proc.stderr and "tokens/s" in proc.stderr
    for line, hyp in zip(source_lines, hyps):
        assert (hyp == "") == (line.strip() == "")
    # Batched, length-sorted file translation = each line translated alone (batch invariance, input order).
    translator = Translator.from_checkpoints([tiny_checkpoint])
    alone = [translator.translate([line], first_line=i + 1)[0].texts[0] for i, line in enumerate(source_lines)]
    assert hyps == alone
    assert len(set(hyps)) > len(source_lines) // 2  # the random model does not say the same thing everywhere


def test_stdin_to_stdout_equals_file_mode(file_run, tiny_checkpoint, cli_env):
    src, out, _ = file_run
    proc = subprocess.run(
        [BIN / "nmt-translate", "-c", tiny_checkpoint, "--quiet"],
        input=src.read_bytes(),
        capture_output=True,
        env=cli_env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == out.read_bytes()
    assert proc.stderr == b""  # --quiet: no warning, no summary


def test_invalid_utf8_is_an_error_naming_the_line(tmp_path, tiny_checkpoint, cli_env, m30k_slice):
    good = corpus_lines(m30k_slice, 3)
    src = tmp_path / "bad.de"
    src.write_bytes(f"{good[0]}\n{good[1]}\n".encode() + b"Ein M\xe4dchen \xff\n" + f"{good[2]}\n".encode())
    out = tmp_path / "out.en"
    proc = subprocess.run(
        [BIN / "nmt-translate", "-c", tiny_checkpoint, "-i", src, "-o", out],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "nmt-translate: error:" in proc.stderr and f"{src}, line 3: invalid UTF-8" in proc.stderr
    assert "Traceback" not in proc.stderr
    # --errors replace translates the line with replacement characters instead.
    assert main(["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(out), "--errors", "replace", "-q"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4


def test_nbest_writes_n_tab_separated_lines_per_input(tmp_path, tiny_checkpoint, m30k_slice):
    lines = [*corpus_lines(m30k_slice, 3), ""]
    src, out = tmp_path / "in.de", tmp_path / "nbest.tsv"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(out), "-q", "--beam-size", "4", "--nbest", "3"]
    assert main(argv) == 0
    rows = [r.split("\t") for r in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3 * len(lines) and all(len(r) == 4 for r in rows)
    assert [(int(r[0]), int(r[1])) for r in rows] == [(i, k) for i in range(1, 5) for k in (1, 2, 3)]
    for i in range(3):
        scores = [float(r[2]) for r in rows[3 * i : 3 * i + 3]]
        assert scores == sorted(scores, reverse=True) and scores[0] < 0
        assert len({r[3] for r in rows[3 * i : 3 * i + 3]}) == 3
    assert rows[-3:] == [["4", str(k), "0.0000", ""] for k in (1, 2, 3)]
    best = tmp_path / "best.en"
    assert main(["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(best), "-q", "--beam-size", "4"]) == 0
    assert [r[3] for r in rows if r[1] == "1"] == best.read_text(encoding="utf-8").split("\n")[:-1]


def test_alignments_are_pharaoh_lines_with_indices_in_range(tmp_path, tiny_checkpoint, source_lines):
    src, out, align = tmp_path / "in.de", tmp_path / "out.en", tmp_path / "out.align"
    src.write_text("\n".join(source_lines) + "\n", encoding="utf-8")
    argv = ["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(out), "--alignments", str(align), "-q"]
    assert main([*argv, "--alignment-layer", "0", "--alignment-heads", "1"]) == 0
    hyps = out.read_text(encoding="utf-8").split("\n")[:-1]
    links = align.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(links) == len(hyps) == len(source_lines)
    for line, hyp, row in zip(source_lines, hyps, links):
        pairs = [tuple(map(int, link.split("-"))) for link in row.split()]
        n_src, n_tgt = len(line.split()), len(hyp.split())
        assert all(0 <= i < n_src and 0 <= j < n_tgt for i, j in pairs)
        assert len(pairs) == (n_tgt if n_src and n_tgt else 0)  # argmax: one link per target word
    # Asking for alignments does not change the translations.
    plain = tmp_path / "plain.en"
    assert main(["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(plain), "-q"]) == 0
    assert plain.read_text(encoding="utf-8").split("\n")[:-1] == hyps


def test_ensembles_need_one_vocabulary(tmp_path, tiny_checkpoint, tiny_rnn_checkpoint, m30k_slice, capsys):
    src, out = tmp_path / "in.de", tmp_path / "out.en"
    src.write_text("\n".join(corpus_lines(m30k_slice, 4)) + "\n", encoding="utf-8")
    argv = ["-i", str(src), "-o", str(out), "-q", "--beam-size", "2"]
    assert main(["-c", str(tiny_checkpoint), str(tiny_rnn_checkpoint), *argv]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4
    other = make_checkpoint(
        tmp_path / "other.pt", tiny_config(tiny_rnn(), vocab_size=300), train_tokenizer(m30k_slice, 300)
    )
    capsys.readouterr()
    assert main(["-c", str(tiny_checkpoint), str(other), *argv]) == 2
    assert "different vocabulary" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--checkpoint", "/nonexistent/model.pt"], "checkpoint not found"),
        (["--beam-size", "2", "--nbest", "3"], "nbest (3) must be between 1 and beam_size (2)"),
        (["--sampling", "--sampling-topp", "1.5"], "sampling_topp must be in (0, 1]"),
        (["--sampling-topp", "0.9"], "--sampling-topp only applies to sampling: add --sampling"),
        (["--sampling-temperature", "0.5"], "--sampling-temperature only applies to sampling"),
        (["--min-len", "-1"], "min_len must be >= 0"),
        (["--no-repeat-ngram", "-1"], "no_repeat_ngram must be >= 0"),
        (["--input", "/nonexistent/in.de"], "cannot read /nonexistent/in.de"),
        (["--alignment-layer", "5", "--alignments", "/dev/null"], "alignment layer 5 is out of range"),
        pytest.param(
            ["--device", "cuda:0"],
            "CUDA",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there"),
        ),
    ],
)
def test_user_errors_exit_2_with_a_message(extra, message, tiny_checkpoint, capsys):
    argv = ["-c", str(tiny_checkpoint), *extra] if extra[0] != "--checkpoint" else extra
    assert main([*argv, "-o", "/dev/null"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nmt-translate: error:") and message in err


def test_streaming_in_small_chunks_gives_the_same_lines(tmp_path, tiny_checkpoint, source_lines, file_run):
    _, whole, _ = file_run
    src, out = tmp_path / "in.de", tmp_path / "out.en"
    src.write_text("\n".join(source_lines) + "\n", encoding="utf-8")
    assert main(["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(out), "-q", "--chunk-lines", "4"]) == 0
    assert out.read_bytes() == whole.read_bytes()


def test_search_flags_become_search_config_overrides(tmp_path, tiny_checkpoint, m30k_slice):
    flags = ["--min-len", "2", "--no-repeat-ngram", "3", "--early-stop", "heuristic", "--lenpen", "0.6"]
    args = build_parser().parse_args(["-c", "x.pt", *flags, "--sampling", "--sampling-topp", "0.9"])
    assert overrides(args) == {
        "min_len": 2,
        "no_repeat_ngram": 3,
        "early_stop": "heuristic",
        "lenpen": 0.6,
        "sampling": True,
        "sampling_topp": 0.9,
        "beam_size": 1,
    }
    src, out = tmp_path / "in.de", tmp_path / "out.en"
    src.write_text("\n".join(corpus_lines(m30k_slice, 4)) + "\n", encoding="utf-8")
    argv = ["-c", str(tiny_checkpoint), "-i", str(src), "-o", str(out), "-q", *flags]
    assert main([*argv, "--sampling", "--sampling-topp", "0.9", "--seed", "3"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4


# --------------------------------------------------------------------------------------------- hardening
def one_error_line(stderr: str, *parts: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nmt-translate: error:"), stderr
    assert all(p in lines[0] for p in parts), lines[0]


def shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("how", ["zeroed", "random"])
def test_a_checkpoint_with_damaged_tensor_bytes_is_refused_with_one_line(tmp_path, tiny_checkpoint, cli_env, how):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(tiny_checkpoint.read_bytes())
    damage_record(damaged, largest_tensor_record(damaged), how)
    proc = shell(f"echo 'Ein Hund läuft.' | {BIN}/nmt-translate -c {damaged} -q", cli_env)
    assert proc.returncode == 2 and proc.stdout == ""
    one_error_line(proc.stderr, str(damaged), "is damaged", "CRC-32")


def test_an_ensemble_of_opposite_directions_is_refused(tmp_path, tiny_checkpoint, tiny_tokenizer, capsys):
    cfg = tiny_config(tiny_rnn())
    en_de = make_checkpoint(
        tmp_path / "en-de.pt", replace(cfg, data=replace(cfg.data, src_lang="en", tgt_lang="de")), tiny_tokenizer
    )
    assert main(["-c", str(tiny_checkpoint), str(en_de), "-i", "/dev/null", "-o", "/dev/null", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{en_de} translates en->de but {tiny_checkpoint} translates de->en" in err


@pytest.mark.parametrize(
    ("redirect", "message"),
    [
        ("0<&-", "standard input is closed"),
        ("< {src} >&-", "standard output is closed"),
        ("< {src} > /dev/full", "cannot write standard output: the disk is full"),
        ("-i {src} -o /dev/full", "cannot write /dev/full: the disk is full"),
        ("-i {src} -o /dev/null --alignments /dev/full", "cannot write /dev/full: the disk is full"),
    ],
)
def test_closed_streams_and_a_full_disk_end_with_one_line(
    tmp_path, tiny_checkpoint, cli_env, m30k_slice, redirect, message
):
    src = tmp_path / "in.de"
    src.write_text("\n".join(corpus_lines(m30k_slice, 3)) + "\n", encoding="utf-8")
    proc = shell(f"{BIN}/nmt-translate -c {tiny_checkpoint} -q " + redirect.format(src=src), cli_env)
    assert proc.returncode == 2
    one_error_line(proc.stderr, message)


def test_a_closed_pipe_downstream_ends_quietly(tmp_path, tiny_checkpoint, cli_env, m30k_slice):
    src = tmp_path / "in.de"
    src.write_text("\n".join(corpus_lines(m30k_slice, 100)) + "\n", encoding="utf-8")
    proc = shell(
        f"{BIN}/nmt-translate -c {tiny_checkpoint} -q --chunk-lines 1 -i {src} | head -n 1; exit ${{PIPESTATUS[0]}}",
        cli_env,
    )
    assert proc.returncode == 141 and proc.stderr == "" and len(proc.stdout.splitlines()) == 1
