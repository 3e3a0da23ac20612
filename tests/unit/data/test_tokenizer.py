"""SentencePiece: training in memory, fixed special ids, round trips, state in checkpoints, sampling.

Models trained elsewhere (other special ids) are tested in ``test_vocab.py``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from corpus_io import read_gz_lines

from nmt.config import ConfigError, TokenizerConfig, TokenizerType
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError, DataError
from nmt.specials import BOS_ID, EOS_ID, PAD_ID, UNK_ID


@pytest.fixture(scope="module")
def texts(m30k_slice: Path) -> tuple[list[str], list[str]]:
    return (
        read_gz_lines(m30k_slice / "multi30k/train.de.gz"),
        read_gz_lines(m30k_slice / "multi30k/train.en.gz"),
    )


@pytest.fixture(scope="module")
def joint(texts: tuple[list[str], list[str]]) -> Tokenizer:
    return Tokenizer.train(*texts, TokenizerConfig(vocab_size=800))


@pytest.fixture(scope="module")
def separate(texts: tuple[list[str], list[str]]) -> Tokenizer:
    return Tokenizer.train(*texts, TokenizerConfig(type=TokenizerType.bpe, vocab_size=500, joint=False))


def _specials(tok: Tokenizer) -> list[str]:
    return tok.tgt_pieces([PAD_ID, UNK_ID, BOS_ID, EOS_ID])


def test_joint_model_round_trips_both_languages(joint: Tokenizer, texts: tuple[list[str], list[str]]) -> None:
    de, en = texts
    assert joint.joint and joint.src_vocab_size == joint.tgt_vocab_size == 800
    assert _specials(joint) == ["<pad>", "<unk>", "<s>", "</s>"]
    src_ids, tgt_ids = joint.encode_src(de), joint.encode_tgt(en)
    assert [joint.decode_src(ids) for ids in src_ids] == [" ".join(s.split()) for s in de]
    assert [joint.decode_tgt(ids) for ids in tgt_ids] == [" ".join(s.split()) for s in en]
    flat = {i for ids in src_ids + tgt_ids for i in ids}
    assert not flat & {PAD_ID, BOS_ID, EOS_ID, UNK_ID}  # pieces only; full character coverage: no unknowns
    # one vocabulary: the same German word gets the same id on either side
    assert joint.encode_src(["Hund"]) == joint.encode_tgt(["Hund"])
    assert joint.decode_tgt([BOS_ID, *tgt_ids[0], EOS_ID, PAD_ID, PAD_ID]) == en[0]
    assert "".join(joint.tgt_pieces(tgt_ids[0])).replace("▁", " ").strip() == en[0]


def test_separate_models_have_their_own_vocabularies(separate: Tokenizer, texts: tuple[list[str], list[str]]) -> None:
    de, en = texts
    assert not separate.joint and (separate.src_vocab_size, separate.tgt_vocab_size) == (500, 500)
    assert _specials(separate) == ["<pad>", "<unk>", "<s>", "</s>"]
    assert separate.src_pieces(separate.encode_src(["Hund"])[0]) != separate.tgt_pieces(
        separate.encode_tgt(["Hund"])[0]
    )
    assert [separate.decode_src(ids) for ids in separate.encode_src(de[:200])] == [
        " ".join(s.split()) for s in de[:200]
    ]
    assert [separate.decode_tgt(ids) for ids in separate.encode_tgt(en[:200])] == [
        " ".join(s.split()) for s in en[:200]
    ]


@pytest.mark.parametrize("which", ["joint", "separate"])
def test_state_survives_a_weights_only_checkpoint(
    which: str, request: pytest.FixtureRequest, texts: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    tok: Tokenizer = request.getfixturevalue(which)
    buffer = io.BytesIO()
    torch.save({"tokenizer": tok.to_state()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["tokenizer"]
    again = Tokenizer.from_state(state)
    assert again.joint == tok.joint and again.to_state() == tok.to_state()
    assert again.encode_src(texts[0][:100]) == tok.encode_src(texts[0][:100])
    assert again.encode_tgt(texts[1][:100]) == tok.encode_tgt(texts[1][:100])
    files = tok.save(tmp_path / "tokenizer")
    assert sorted(p.name for p in files) == (["joint.model"] if tok.joint else ["src.model", "tgt.model"])
    assert Tokenizer.load(tmp_path / "tokenizer").to_state() == tok.to_state()


def test_bad_states_and_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a tokenizer state"):
        Tokenizer.from_state({"model": b"x"})
    with pytest.raises(CheckpointError, match="not a SentencePiece model"):
        Tokenizer.from_state({"joint": b"certainly not a model"})
    (tmp_path / "text.model").write_text("certainly not a model")
    with pytest.raises(DataError, match=r"text\.model \(joint tokenizer\) is not a SentencePiece model"):
        Tokenizer.load(tmp_path / "text.model")
    with pytest.raises(DataError, match="not found"):
        Tokenizer.load(tmp_path / "missing.model")


def test_vocab_too_large_for_the_corpus_is_a_config_error(texts: tuple[list[str], list[str]]) -> None:
    with pytest.raises(ConfigError, match=r"tokenizer.vocab_size=30000 is too large .* at most \d+ pieces"):
        Tokenizer.train(texts[0][:300], texts[1][:300], TokenizerConfig(vocab_size=30000))


def test_sampling_changes_segmentation_but_not_text(joint: Tokenizer, texts: tuple[list[str], list[str]]) -> None:
    de = texts[0][:200]
    best = joint.encode_src(de)
    assert joint.encode_src(de, sample=True) == best  # sampling_alpha = 0: sampling is off
    joint.sampling_alpha = 0.1
    try:
        sampled = joint.encode_src(de, sample=True)
        assert joint.encode_src(de) == best  # only sample=True samples (training), never evaluation
    finally:
        joint.sampling_alpha = 0.0
    assert sum(s != b for s, b in zip(sampled, best)) > 100
    assert [joint.decode_src(ids) for ids in sampled] == [joint.decode_src(ids) for ids in best]
