"""The Python API (``nmt.load``) against the command-line tools on real sentences: same strings as
``nmt-translate``, same links as ``nmt-align``, ``score`` = the score ``--nbest`` prints for the same output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from corpus_io import read_gz_lines, write_lines
from integration_helpers import BIN, make_checkpoint, tiny_config

import nmt
from nmt.config import AttentionType, ConfigError, RNNConfig
from nmt.errors import CheckpointError, NMTError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lines(trained_lines: list[str]) -> list[str]:
    return trained_lines


@pytest.fixture(scope="module")
def model(trained_checkpoint: Path) -> nmt.Model:
    return nmt.load(trained_checkpoint, device="cpu")


def test_translate_gives_the_strings_of_nmt_translate(model, lines, trained_cli):
    expected, _ = trained_cli(lines)
    results = model.translate(lines)
    assert [r.text for r in results] == expected
    too_long = [len(ids) > 40 for ids in model.tokenizer.encode_src(lines)]  # the checkpoint's data.max_len
    assert [r.truncated for r in results] == too_long and too_long[-1]
    assert all(len(r.source_tokens) <= 40 for r in results)
    empty = results[30]
    assert empty.source == "" and empty.source_tokens == [] and len(empty.hypotheses) == 1
    assert (empty.text, empty.score, empty.hypotheses[0].tokens) == ("", 0.0, [])
    assert all(r.hypotheses[0].attention is None and r.hypotheses[0].links is None for r in results)
    assert len(set(expected)) > 50  # real, varied translations


def test_alignments_and_attention_are_those_of_nmt_translate(model, lines, trained_cli):
    texts, links = trained_cli(lines, "--alignments")
    results = model.translate(lines, return_alignments=True, return_attention=True)
    assert [r.text for r in results] == texts
    assert [r.hypotheses[0].alignment for r in results] == links
    for r in results:
        best = r.hypotheses[0]
        assert best.attention.shape == (len(best.tokens) + 1, len(r.source_tokens) + 1)
        assert np.allclose(best.attention.sum(1), 1.0, atol=1e-4)
        assert all(0 <= i < len(r.source.split()) and 0 <= j < len(best.text.split()) for i, j in best.links)
    # another layer and head, as --align-layer / --align-heads; the checkpoint's setting comes back afterwards
    _, links1 = trained_cli(lines[:20], "--alignments", "--align-layer", "1", "--align-heads", "2")
    other = model.translate(lines[:20], return_alignments=True, alignment_layer=1, alignment_heads=[2])
    assert [r.hypotheses[0].alignment for r in other] == links1 != links[:20]
    assert (model.alignment_layer, model.alignment_heads) == (0, None)


def test_score_equals_the_score_nbest_prints_for_the_same_hypothesis(model, lines, trained_cli):
    out, _ = trained_cli(lines, "--nbest", "3", "--beam-size", "4")
    printed = {}
    for row in out:
        number, rank, score, text = row.split("\t")
        printed[int(number) - 1, int(rank) - 1] = (float(score), text)
    results = model.translate(lines, nbest=3, beam_size=4)
    pairs = []
    for i, r in enumerate(results):
        for rank, h in enumerate(r.hypotheses):
            cli_score, cli_text = printed[i, rank]
            assert h.text == cli_text and abs(h.score - cli_score) <= 6e-5
            pairs.append((i, h))
    scored = model.score([lines[i] for i, _ in pairs], [h.text for _, h in pairs])
    # SentencePiece may segment a detokenized output otherwise than search produced it: compare where it did not
    same = [(i, h, s) for (i, h), s in zip(pairs, scored) if s.tokens == h.tokens]
    assert len(same) >= 0.6 * len(pairs)
    for _i, h, s in same:
        assert s.log_prob == pytest.approx(h.log_prob, abs=2e-4)
        assert s.score == pytest.approx(h.score, abs=2e-4)
        assert len(s.token_log_probs) == len(s.tokens) + 1 and s.token_log_probs.max() <= 0
    assert model.score([""], [""])[0].log_prob == 0.0 and model.score([""], ["A dog."])[0].log_prob == -np.inf
    raw = model.score(lines[:3], [r.text for r in results[:3]], lenpen=0.0)
    assert [s.score for s in raw] == [s.log_prob for s in raw]


@pytest.fixture(scope="module")
def gold_pairs(data_root: Path, tmp_path_factory) -> tuple[Path, Path, list[str], list[str]]:
    src = read_gz_lines(data_root / "align-de-en" / "deen.de.gz", 25)
    tgt = read_gz_lines(data_root / "align-de-en" / "deen.en.gz", 25)
    tmp = tmp_path_factory.mktemp("api_align")
    return write_lines(tmp / "a.de", src), write_lines(tmp / "a.en", tgt), src, tgt


def test_align_equals_nmt_align(model, trained_checkpoint, gold_pairs, cli_env, capsys):
    src_file, tgt_file, src, tgt = gold_pairs
    cmd = [BIN / "nmt-align", "-c", trained_checkpoint, "--src", src_file, "--tgt", tgt_file, "--device", "cpu", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    aligned = model.align(src, tgt)
    assert [a.pharaoh for a in aligned] == proc.stdout.splitlines()
    for a, s, t in zip(aligned, src, tgt):
        assert a.matrix.shape == (len(t.split()), len(s.split()))
    # other options, through the tool's main() (the same code as the console script)
    from nmt.cli.align import main

    flags = ["--method", "attention", "--layer", "1", "--threshold", "0.3"]
    assert main(["-c", str(trained_checkpoint), "--src", str(src_file), "--tgt", str(tgt_file), "-q", *flags]) == 0
    expected = capsys.readouterr().out.splitlines()
    assert [a.pharaoh for a in model.align(src, tgt, method="attention", layer=1, threshold=0.3)] == expected


def test_head_attention_of_the_alignment_layer_averages_to_the_search_attention(model, lines, tiny_rnn_checkpoint):
    r = model.translate(lines[:3], return_attention=True)
    for result in r:
        heads = model.head_attention(result)
        best = result.hypotheses[0]
        assert heads.shape == (2, 4, len(best.tokens) + 1, len(result.source_tokens) + 1)
        assert np.allclose(heads[model.alignment_layer].mean(0), best.attention, atol=1e-4)
        assert not np.allclose(heads[0, 0], heads[0, 1], atol=1e-3)  # the heads differ
    assert (model.alignment_layer, model.alignment_heads) == (0, None)
    rnn = nmt.load(tiny_rnn_checkpoint, device="cpu")
    (result,) = rnn.translate(lines[:1], return_attention=True)
    heads = rnn.head_attention(result)
    assert heads.shape[:2] == (1, 1) and np.allclose(heads[0, 0], result.hypotheses[0].attention, atol=1e-5)
    assert rnn.architecture == "rnn" and model.architecture == "transformer"


def test_user_mistakes_raise_clear_errors(model, tmp_path, tiny_tokenizer):
    with pytest.raises(TypeError, match="list of sentences"):
        model.translate("Ein Hund.")
    with pytest.raises(ConfigError, match="nbest"):
        model.translate(["Ein Hund."], beam_size=2, nbest=3)
    with pytest.raises(NMTError, match="pair up"):
        model.align(["a", "b"], ["a"])
    with pytest.raises(ConfigError, match="method"):
        model.align(["a"], ["a"], method="bidir")
    with pytest.raises(CheckpointError):
        nmt.load(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="precision"):
        nmt.load(tmp_path / "missing.pt", precision="fp8")
    path = make_checkpoint(
        tmp_path / "plain.pt", tiny_config(RNNConfig(embed_dim=16, hidden_dim=16, attention=AttentionType.none)),
        tiny_tokenizer,
    )  # fmt: skip
    plain = nmt.load(path, device="cpu")
    assert not plain.has_attention and plain.translate(["Ein Hund."])[0].hypotheses
    for call in (
        lambda: plain.translate(["Ein Hund."], return_alignments=True),
        lambda: plain.align(["Ein Hund."], ["A dog."]),
        lambda: plain.head_attention(plain.translate(["Ein Hund."])[0]),
    ):
        with pytest.raises(ConfigError, match="no attention"):
            call()


def test_import_nmt_is_light_and_exports_the_api():
    code = (
        "import sys, nmt; assert 'torch' not in sys.modules, 'torch imported'; "
        "print(sorted(nmt.__all__)); nmt.load; assert 'torch' in sys.modules; print(nmt.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    names = ["AlignmentResult", "Candidate", "Model", "NMTError", "ScoreResult", "TranslationResult", "__version__"]
    assert out[0] == str(sorted([*names, "load"]))
    from importlib.metadata import version

    assert out[1] == nmt.__version__ == version("nmt-toolkit")
    for name in nmt.__all__:
        assert getattr(nmt, name) is not None and name in dir(nmt)
    with pytest.raises(AttributeError, match="Translatorr"):
        nmt.Translatorr  # noqa: B018
