"""``nmt-export --format ctranslate2`` and ``nmt-translate --engine ctranslate2`` through the console scripts."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest
from integration_helpers import BIN, MAX_LEN

from nmt.cli.translate import main as translate_main

pytest.importorskip("ctranslate2")


def run(*args, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def export_dir(trained_checkpoint: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "de-en"
    proc = subprocess.run(
        [BIN / "nmt-export", "--checkpoint", trained_checkpoint, "--format", "ctranslate2", "--output", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "nmt-export: " in proc.stderr and "float32 weights" in proc.stderr
    return out


@pytest.fixture(scope="module")
def source_file(m30k_slice: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    """Real test sentences with an empty line, a whitespace-only line and an over-long line (eight joined)."""
    with gzip.open(m30k_slice / "multi30k" / "test_2016_flickr.de.gz", "rt", encoding="utf-8") as f:
        corpus = [line.rstrip("\n") for line in f]
    lines = ["", *corpus[:6], "   ", " ".join(corpus[20:28]), *corpus[6:12], ""]
    path = tmp_path_factory.mktemp("src") / "in.de"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path, lines


def test_export_directory_holds_everything_a_deployment_needs(export_dir: Path, trained_checkpoint: Path):
    names = {p.name for p in export_dir.iterdir()}
    assert {"model.bin", "config.json", "shared_vocabulary.json", "source.spm", "target.spm", "nmt.json"} <= names
    meta = json.loads((export_dir / "nmt.json").read_text(encoding="utf-8"))
    assert (meta["src_lang"], meta["tgt_lang"], meta["max_source_len"], meta["step"]) == ("de", "en", MAX_LEN, 300)
    assert meta["search"]["beam_size"] == 4 and meta["joint_vocabulary"] is True
    assert meta["max_positions"] >= MAX_LEN + 1 and meta["nmt_version"] and meta["ctranslate2_version"]
    config = json.loads((export_dir / "config.json").read_text(encoding="utf-8"))
    assert config["add_source_eos"] is True and config["add_source_bos"] is False
    assert config["decoder_start_token"] == "<s>" and config["layer_norm_epsilon"] == pytest.approx(1e-5)
    # The vocabulary is the SentencePiece model's, piece for piece.
    vocab = json.loads((export_dir / "shared_vocabulary.json").read_text(encoding="utf-8"))
    assert vocab[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and len(vocab) == 500


def test_existing_output_is_refused_unless_force(export_dir: Path, trained_checkpoint: Path, tmp_path: Path, cli_env):
    before = (export_dir / "model.bin").stat().st_mtime_ns
    args = [BIN / "nmt-export", "-c", trained_checkpoint, "--format", "ctranslate2", "-o", export_dir]
    proc = run(*args, env=cli_env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"nmt-export: error: {export_dir} exists and is not an empty directory; pass --force to replace it"
    ]
    assert (export_dir / "model.bin").stat().st_mtime_ns == before
    copy = tmp_path / "again"
    copy.mkdir()
    (copy / "stale.txt").write_text("old\n")
    proc = run(*args[:-1], copy, "--force", "--quantization", "int8", "-q", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert not (copy / "stale.txt").exists() and (copy / "model.bin").is_file()
    assert json.loads((copy / "nmt.json").read_text())["quantization"] == "int8"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_rnn_checkpoint_is_refused_with_one_line(tiny_rnn_checkpoint: Path, tmp_path: Path, cli_env):
    out = tmp_path / "rnn"
    proc = run(BIN / "nmt-export", "-c", tiny_rnn_checkpoint, "--format", "ctranslate2", "-o", out, env=cli_env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nmt-export: error: ") and "no RNN" in lines[0]
    assert not out.exists()


def test_ct2_engine_keeps_every_line_in_order_and_equals_nmt_greedy(
    export_dir: Path, trained_checkpoint: Path, source_file, tmp_path: Path, cli_env
):
    src, lines = source_file
    outputs = {}
    runs = (
        ("ctranslate2", export_dir, ["--threads", "1"]),
        # Two CTranslate2 workers (inter_threads) on small batches: many batches in flight, order kept.
        ("ctranslate2-w2", export_dir, ["--threads", "2", "--workers", "2", "--batch-tokens", "64"]),
        ("nmt", trained_checkpoint, ["--threads", "1"]),
    )
    for name, checkpoint, extra in runs:
        out = tmp_path / f"{name}.en"
        proc = run(
            BIN / "nmt-translate", "--engine", name.split("-")[0], "-c", checkpoint, "-i", src, "-o", out,
            "--beam-size", "1", "--device", "cpu", *extra, env=cli_env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"line {lines.index(max(lines, key=len)) + 1}: " in proc.stderr  # the truncation warning
        outputs[name] = out.read_text(encoding="utf-8")
    hyps = outputs["ctranslate2"].split("\n")
    assert hyps[-1] == "" and len(hyps) - 1 == len(lines)
    for line, hyp in zip(lines, hyps):
        assert (hyp == "") == (line.strip() == "")
    assert outputs["ctranslate2"] == outputs["nmt"]
    assert outputs["ctranslate2-w2"] == outputs["nmt"]


def test_ct2_engine_nbest_writes_n_tab_separated_lines_per_input(export_dir: Path, source_file, cli_env):
    src, lines = source_file
    proc = run(BIN / "nmt-translate", "--engine", "ctranslate2", "-c", export_dir, "-i", src, "--nbest", "3", "-q",
               "--beam-size", "4", env=cli_env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [row.split("\t") for row in proc.stdout.split("\n")[:-1]]
    assert len(rows) == 3 * len(lines)
    assert [(int(r[0]), int(r[1])) for r in rows] == [(i, k) for i in range(1, len(lines) + 1) for k in (1, 2, 3)]
    for line_no, _, score, hyp in rows:
        empty = lines[int(line_no) - 1].strip() == ""
        assert (hyp == "") == empty and (score == "0.0000") == empty
    for i in range(0, len(rows), 3):  # best first
        scores = [float(r[2]) for r in rows[i : i + 3]]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alignments", "x.align"], "--alignments: not available with --engine ctranslate2"),
        (["--alignment-layer", "0"], "--alignment-layer: not available with --engine ctranslate2"),
        (["--precision", "bf16"], "--precision bf16: CTranslate2 on cpu supports compute types"),
        (["--max-source-len", "5000"], "--max-source-len 5000: the export"),
        (["--device", "tpu"], "--device tpu: CTranslate2 runs on cpu, cuda or cuda:N"),
    ],
)
def test_ct2_engine_refuses_what_it_cannot_honour(export_dir: Path, source_file, capsys, extra, message):
    import ctranslate2

    if extra[0] == "--precision" and "bfloat16" in ctranslate2.get_supported_compute_types("cpu"):
        pytest.skip("this CPU runs bfloat16 in CTranslate2")
    src, _ = source_file
    args = ["--engine", "ctranslate2", "-c", str(export_dir), "-i", str(src), "--device", "cpu", *extra]
    assert translate_main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"nmt-translate: error: {message}")


def test_ct2_engine_refuses_ensembles_and_checkpoint_files(export_dir, trained_checkpoint, source_file, capsys):
    src, _ = source_file
    assert translate_main(["--engine", "ctranslate2", "-c", str(export_dir), str(export_dir), "-i", str(src)]) == 2
    assert "takes one export directory (no ensembles)" in capsys.readouterr().err
    assert translate_main(["--engine", "ctranslate2", "-c", str(trained_checkpoint), "-i", str(src)]) == 2
    assert "is not a CTranslate2 export directory (create one with nmt-export" in capsys.readouterr().err
