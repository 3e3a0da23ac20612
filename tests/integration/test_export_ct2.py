"""CTranslate2 export and engine on models: the converted weights compute nmt's log-probabilities, and the engine
gives nmt's greedy outputs line for line (trained and random-init models of every Transformer variant)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import sacrebleu
import torch
from integration_helpers import make_checkpoint, read_gz, tiny_config, tiny_transformer

from nmt.checkpoint import load_for_inference
from nmt.config import Norm, Positions, TokenizerConfig
from nmt.data.batch import collate
from nmt.data.tokenizer import Tokenizer
from nmt.export.ctranslate2 import FORBIDDEN_LOGIT, export_ctranslate2
from nmt.translate import Translator

ct2 = pytest.importorskip("ctranslate2")
CT2Translator = pytest.importorskip("nmt.export.ct2_translate").CT2Translator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_lines(m30k_slice: Path, side: str = "de") -> list[str]:
    with gzip.open(m30k_slice / "multi30k" / f"test_2016_flickr.{side}.gz", "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


test_lines.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def trained_exports(trained_checkpoint: Path, tmp_path_factory) -> dict[str, Path]:
    """The trained checkpoint exported with float32 and with int8 weights."""
    tmp = tmp_path_factory.mktemp("ct2_trained")
    export_ctranslate2(trained_checkpoint, tmp / "fp32")
    export_ctranslate2(trained_checkpoint, tmp / "int8", quantization="int8")
    return {"fp32": tmp / "fp32", "int8": tmp / "int8"}


def nmt_outputs(checkpoint: Path, lines: list[str], beam: int) -> list[list[int]]:
    translator = Translator.from_checkpoints([checkpoint], search={"beam_size": beam, "nbest": 1})
    return [t.hypotheses[0].tokens for t in translator.translate(lines)]


def ct2_translations(export: Path, lines: list[str], beam: int, **kwargs):
    return CT2Translator(export, search={"beam_size": beam, "nbest": 1}, threads=1, **kwargs).translate(lines)


def test_trained_ct2_greedy_equals_nmt_fp32_greedy_line_for_line(trained_checkpoint, trained_exports, m30k_slice):
    lines = test_lines(m30k_slice)  # the 100-line test slice, 12 of them longer than the 40-piece maximum
    expected = nmt_outputs(trained_checkpoint, lines, beam=1)
    got = [t.hypotheses[0].tokens for t in ct2_translations(trained_exports["fp32"], lines, beam=1)]
    differ = [i + 1 for i, (a, b) in enumerate(zip(expected, got)) if a != b]
    assert not differ, f"lines {differ} differ"


def test_trained_ct2_beam5_bleu_within_0_3_of_nmt(trained_checkpoint, trained_exports, m30k_slice):
    """Beam search differs by design (CTranslate2's length penalty |y|^α, per-batch length caps), not by much."""
    lines, refs = test_lines(m30k_slice), test_lines(m30k_slice, "en")
    translator = Translator.from_checkpoints([trained_checkpoint], search={"beam_size": 5, "nbest": 1})
    ours = [t.texts[0] for t in translator.translate(lines)]
    theirs = [t.texts[0] for t in ct2_translations(trained_exports["fp32"], lines, beam=5)]
    bleu_ours, bleu_theirs = (sacrebleu.corpus_bleu(h, [refs]).score for h in (ours, theirs))
    assert bleu_ours > 3.0  # a real model, real sentences
    assert abs(bleu_ours - bleu_theirs) <= 0.3, (bleu_ours, bleu_theirs)


def test_ct2_workers_decode_batches_side_by_side_with_the_same_outputs(trained_exports, m30k_slice):
    """workers = CTranslate2's inter_threads: every batch is in flight at once and the results keep input order."""
    lines = test_lines(m30k_slice)
    search = {"beam_size": 5, "nbest": 2, "batch_tokens": 96}  # about 20 batches
    one = CT2Translator(trained_exports["fp32"], search=search, threads=1).translate(lines)
    two = CT2Translator(trained_exports["fp32"], search=search, threads=1, workers=2).translate(lines)
    assert [t.texts for t in two] == [t.texts for t in one]
    assert [[h.score for h in t.hypotheses] for t in two] == [[h.score for h in t.hypotheses] for t in one]
    assert sum(bool(t.texts[0]) for t in two) > 90  # real outputs, not empty ones


def test_int8_export_is_smaller_and_translates_close_to_fp32(trained_exports, m30k_slice):
    fp32, int8 = trained_exports["fp32"], trained_exports["int8"]
    assert (int8 / "model.bin").stat().st_size < 0.6 * (fp32 / "model.bin").stat().st_size
    lines, refs = test_lines(m30k_slice), test_lines(m30k_slice, "en")
    a = [t.texts[0] for t in ct2_translations(fp32, lines, beam=1)]
    b = [t.texts[0] for t in ct2_translations(int8, lines, beam=1)]
    # Loading the float32 export with an int8 compute type quantizes the same way as the int8 export.
    assert [t.texts[0] for t in ct2_translations(fp32, lines, beam=1, precision="int8")] == b
    assert all(b)
    assert sum(x == y for x, y in zip(a, b)) >= len(lines) // 2
    assert abs(sacrebleu.corpus_bleu(a, [refs]).score - sacrebleu.corpus_bleu(b, [refs]).score) <= 1.5


# ------------------------------------------------------------------------------------- every variant, random init
@pytest.fixture(scope="module")
def separate_tokenizer(m30k_slice: Path) -> Tokenizer:
    """Two 400-piece SentencePiece models (source, target) trained on the 2,000-pair slice."""
    src = read_gz(m30k_slice / "multi30k" / "train.de.gz")
    tgt = read_gz(m30k_slice / "multi30k" / "train.en.gz")
    return Tokenizer.train(src, tgt, TokenizerConfig(vocab_size=400, joint=False))


VARIANTS = {
    "tied-prenorm-sinusoidal": {},
    "untied-separate-vocabularies": {"tie_embeddings": False},
    "postnorm": {"norm": Norm.post},
    "learned-positions": {"positions": Positions.learned, "max_positions": 128},
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, tmp_path_factory, tiny_tokenizer, separate_tokenizer) -> tuple[Path, Path]:
    """(checkpoint, export) of a random-init tiny Transformer of each variant."""
    options = VARIANTS[request.param]
    model_cfg = tiny_transformer()
    for key, value in options.items():
        setattr(model_cfg, key, value)
    cfg = tiny_config(model_cfg)
    tokenizer = tiny_tokenizer
    if not model_cfg.tie_embeddings:
        cfg.tokenizer.joint = False
        tokenizer = separate_tokenizer
    tmp = tmp_path_factory.mktemp(request.param)
    checkpoint = make_checkpoint(tmp / "model.pt", cfg, tokenizer, seed=3)
    meta = export_ctranslate2(checkpoint, tmp / "ct2")
    assert meta["joint_vocabulary"] == model_cfg.tie_embeddings
    return checkpoint, tmp / "ct2"


def test_exported_weights_give_nmts_token_log_probabilities(variant, m30k_slice):
    """CTranslate2's score_batch (teacher forcing) against nmt's decoder, PAD and BOS removed from both."""
    checkpoint, export = variant
    model, tokenizer, _ = load_for_inference(checkpoint)
    src_ids = tokenizer.encode_src(test_lines(m30k_slice)[:16])
    tgt_ids = tokenizer.encode_tgt(test_lines(m30k_slice, "en")[:16])
    batch = collate(src_ids, tgt_ids, list(range(16)))
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, batch.tgt_in).float()
    logits[..., [model.pad_id, model.bos_id]] = float("-inf")
    expected = logits.log_softmax(-1)
    engine = ct2.Translator(str(export), device="cpu", intra_threads=1)
    scored = engine.score_batch([tokenizer.src_pieces(s) for s in src_ids], [tokenizer.tgt_pieces(t) for t in tgt_ids])
    for i, result in enumerate(scored):
        n = len(tgt_ids[i]) + 1  # the pieces and EOS
        want = expected[i, torch.arange(n), batch.tgt_out[i, :n]]
        torch.testing.assert_close(torch.tensor(result.log_probs), want, atol=1e-4, rtol=1e-4)


def test_ct2_greedy_equals_nmt_greedy_on_every_variant(variant, m30k_slice):
    checkpoint, export = variant
    lines = ["", *test_lines(m30k_slice)[:30]]
    expected = nmt_outputs(checkpoint, lines, beam=1)
    got = [t.hypotheses[0].tokens for t in ct2_translations(export, lines, beam=1)]
    assert got == expected


def test_pad_and_bos_get_the_forbidden_logit(trained_exports, m30k_slice):
    """The export's output bias removes PAD and BOS from every choice, as nmt's search does."""
    engine = ct2.Translator(str(trained_exports["fp32"]), device="cpu", intra_threads=1)
    source = Tokenizer.from_state({"joint": (trained_exports["fp32"] / "source.spm").read_bytes()})
    pieces = source.src_pieces(source.encode_src(test_lines(m30k_slice)[:1])[0])
    for special in ("<pad>", "<s>"):
        first = engine.score_batch([pieces], [[special]])[0].log_probs[0]
        assert first < FORBIDDEN_LOGIT / 2
