"""SentencePiece models trained elsewhere, with any special ids: renumbered so that the model sees pad/unk/bos/eos
at 0..3, every piece exactly once, the same segmentation, and the same ids after a checkpoint round trip."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from corpus_io import read_gz_lines

from nmt.config import ConfigError, TokenizerConfig
from nmt.data.tokenizer import Tokenizer
from nmt.errors import DataError
from nmt.specials import BOS_ID, EOS_ID, PAD_ID, UNK_ID

# spm_train flags of models people bring: the command-line defaults, T5's layout (no bos), ids anywhere, a
# user-defined "<pad>" piece that is text rather than padding, and no bos/eos at all.
LAYOUTS = {
    "spm_defaults": {},
    "t5": {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1},
    "scattered": {"unk_id": 5, "bos_id": 7, "eos_id": 3, "pad_id": 9},
    "user_pad_piece": {"user_defined_symbols": ["<pad>"]},
    "no_bos_eos": {"bos_id": -1, "eos_id": -1},
}


@pytest.fixture(scope="module")
def texts(m30k_slice: Path) -> dict[str, list[str]]:
    return {lang: read_gz_lines(m30k_slice / f"multi30k/train.{lang}.gz") for lang in ("de", "en")}


@pytest.fixture(scope="module")
def models(texts: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{layout}.en.model`` for every layout and ``spm_defaults.de.model``, trained as ``spm_train --input=...
    --model_prefix=...`` would (full character coverage, so that every sentence round-trips)."""
    out = tmp_path_factory.mktemp("spm")
    paths = {}
    for lang, lines in texts.items():
        corpus = out / f"train.{lang}"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for layout, flags in LAYOUTS.items() if lang == "en" else [("spm_defaults", {})]:
            prefix = out / f"{layout}.{lang}"
            spm.SentencePieceTrainer.train(
                input=str(corpus),
                model_prefix=str(prefix),
                vocab_size=400,
                character_coverage=1.0,
                minloglevel=2,
                **flags,
            )
            paths[f"{layout}.{lang}"] = out / f"{layout}.{lang}.model"
    return paths


def _spm(path: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(path))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_brought_model_puts_specials_at_0_to_3_and_keeps_every_piece(
    layout: str, models: dict[str, Path], texts: dict[str, list[str]]
) -> None:
    path, en = models[f"{layout}.en"], texts["en"]
    sp, tok = _spm(path), Tokenizer.load(path)
    absent = sum(i < 0 for i in (sp.pad_id(), sp.bos_id(), sp.eos_id()))
    assert absent == {"spm_defaults": 1, "t5": 1, "scattered": 0, "user_pad_piece": 1, "no_bos_eos": 3}[layout]
    size = tok.tgt_vocab_size
    assert size == sp.get_piece_size() + absent and tok.joint and tok.src_vocab_size == size
    assert tok.tgt_pieces([PAD_ID, UNK_ID, BOS_ID, EOS_ID]) == ["<pad>", "<unk>", "<s>", "</s>"]
    # a renumbering: every SentencePiece piece once, from id 4 on, in SentencePiece's order
    specials = {sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()}
    others = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if i not in specials]
    assert tok.tgt_pieces(range(4, size)) == others

    ids = tok.encode_tgt(en)
    flat = {i for s in ids for i in s}
    assert not flat & {PAD_ID, UNK_ID, BOS_ID, EOS_ID} and max(flat) < size  # full coverage: no unknowns
    assert [tok.tgt_pieces(s) for s in ids] == sp.encode(en, out_type=str)  # the same segmentation
    assert [tok.decode_tgt(s) for s in ids] == [" ".join(s.split()) for s in en]
    assert tok.decode_tgt([BOS_ID, *ids[0], EOS_ID, PAD_ID, PAD_ID]) == en[0]

    unknown = "A snowman ☃ stands."  # a character the training text never had
    with_unk = tok.encode_tgt([unknown])[0]
    assert UNK_ID in with_unk and tok.decode_tgt(with_unk) == sp.decode(sp.encode(unknown))
    if layout == "user_pad_piece":  # "<pad>" in the text is a piece like any other, never padding
        ids = tok.encode_tgt(["a <pad> dog"])[0]
        assert PAD_ID not in ids and "<pad>" in tok.tgt_pieces(ids) and tok.decode_tgt(ids) == "a <pad> dog"


@pytest.mark.parametrize("layout", ["spm_defaults", "t5"])
def test_brought_model_state_restores_the_same_ids(
    layout: str, models: dict[str, Path], texts: dict[str, list[str]], tmp_path: Path
) -> None:
    tok = Tokenizer.load(models[f"{layout}.en"])
    buffer = io.BytesIO()
    torch.save({"tokenizer": tok.to_state()}, buffer)
    buffer.seek(0)
    again = Tokenizer.from_state(torch.load(buffer, weights_only=True)["tokenizer"])
    assert again.to_state() == {"joint": models[f"{layout}.en"].read_bytes()}  # the user's model, unchanged
    assert again.tgt_vocab_size == tok.tgt_vocab_size
    assert again.encode_tgt(texts["en"]) == tok.encode_tgt(texts["en"])
    assert again.tgt_pieces(range(again.tgt_vocab_size)) == tok.tgt_pieces(range(tok.tgt_vocab_size))
    tok.save(tmp_path / "tokenizer")
    assert Tokenizer.load(tmp_path / "tokenizer").encode_src(texts["en"][:50]) == tok.encode_src(texts["en"][:50])


def test_separate_brought_models_each_get_their_own_renumbering(
    models: dict[str, Path], texts: dict[str, list[str]], tmp_path: Path
) -> None:
    src_path, tgt_path = models["spm_defaults.de"], models["t5.en"]
    tok = Tokenizer.load(src_path, tgt_path)
    assert not tok.joint
    assert (tok.src_vocab_size, tok.tgt_vocab_size) == (401, 401)  # each lacks one special (pad, bos)
    assert tok.src_pieces(tok.encode_src(["Hund"])[0]) == _spm(src_path).encode("Hund", out_type=str)
    assert [tok.decode_src(s) for s in tok.encode_src(texts["de"])] == [" ".join(s.split()) for s in texts["de"]]
    assert [tok.decode_tgt(s) for s in tok.encode_tgt(texts["en"])] == [" ".join(s.split()) for s in texts["en"]]
    assert len(tok.renumbering()) == 2 and "pad (absent)->0" in tok.renumbering()[0]
    files = tok.save(tmp_path / "tokenizer")
    assert [p.read_bytes() for p in files] == [src_path.read_bytes(), tgt_path.read_bytes()]
    again = Tokenizer.load(tmp_path / "tokenizer")
    assert again.encode_tgt(texts["en"][:100]) == tok.encode_tgt(texts["en"][:100])


def test_models_trained_here_are_not_renumbered(texts: dict[str, list[str]]) -> None:
    tok = Tokenizer.train(texts["de"], texts["en"], TokenizerConfig(vocab_size=400))
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(tok.to_state()["joint"])
    assert tok.renumbering() == [] and tok.tgt_vocab_size == sp.get_piece_size() == 400
    assert tok.encode_tgt(texts["en"][:100]) == sp.encode(texts["en"][:100], out_type=int)


def test_model_paths_are_checked(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set both or neither"):
        TokenizerConfig(src_model_path="de.model", joint=False)
    with pytest.raises(ConfigError, match=r"set tokenizer\.joint=false"):
        TokenizerConfig(src_model_path="de.model", tgt_model_path="en.model")
    with pytest.raises(ConfigError, match="exclude each other"):
        TokenizerConfig(model_path="x.model", src_model_path="de.model", tgt_model_path="en.model", joint=False)
    (tmp_path / "broken.model").write_text("not a model")
    with pytest.raises(DataError, match=r"broken\.model \(tgt tokenizer\) is not a SentencePiece model"):
        Tokenizer.load(models["spm_defaults.de"], tmp_path / "broken.model")
    with pytest.raises(DataError, match=r"not found: .*missing\.model"):
        Tokenizer.load(models["spm_defaults.de"], tmp_path / "missing.model")
