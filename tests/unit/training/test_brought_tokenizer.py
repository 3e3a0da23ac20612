"""Training and translating with SentencePiece models brought from elsewhere (``spm_train`` default ids on the source
side, T5's layout on the target side), given as ``tokenizer.src_model_path`` / ``tokenizer.tgt_model_path``."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from corpus_io import read_gz_lines

from nmt.config import DataConfig, NMTConfig, SearchConfig, TokenizerConfig, TrainConfig, TransformerConfig
from nmt.data.prepare import prepare_data
from nmt.data.tokenizer import Tokenizer
from nmt.specials import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.training.trainer import train
from nmt.translate import Translator


@pytest.fixture(scope="module")
def brought(m30k_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("brought_spm")
    flags = {"de": {}, "en": {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1}}
    for lang, extra in flags.items():
        text = out / f"train.{lang}"
        text.write_text("\n".join(read_gz_lines(m30k_slice / f"multi30k/train.{lang}.gz")) + "\n", encoding="utf-8")
        prefix = str(out / lang)
        spm.SentencePieceTrainer.train(
            input=str(text), model_prefix=prefix, vocab_size=300, character_coverage=1.0, minloglevel=2, **extra
        )
    return out / "de.model", out / "en.model"


def _config(m30k_slice: Path, cache: Path, src: Path, tgt: Path) -> NMTConfig:
    corpus = m30k_slice / "multi30k"
    return NMTConfig(
        name="brought",
        data=DataConfig(train=str(corpus / "train"), valid=str(corpus / "val"), max_len=40, cache_dir=str(cache)),
        tokenizer=TokenizerConfig(joint=False, src_model_path=str(src), tgt_model_path=str(tgt)),
        model=TransformerConfig(
            d_model=32, ffn_dim=64, heads=2, encoder_layers=1, decoder_layers=2, dropout=0.0, tie_embeddings=False
        ),
        train=TrainConfig(
            batch_tokens=1024,
            warmup_steps=5,
            lr=3e-3,
            max_steps=20,
            eval_every=20,
            save_every=20,
            threads=1,
            heatmap_sentences=0,
            matmul_peak_gflops=1.0,
        ),
        search=SearchConfig(beam_size=1, max_len_a=1.2, max_len_b=5),
    )


def test_training_and_translation_with_brought_models(
    brought: tuple[Path, Path], m30k_slice: Path, tmp_path: Path, one_thread: None
) -> None:
    src, tgt = brought
    cfg = _config(m30k_slice, tmp_path / "cache", src, tgt)
    data = prepare_data(cfg.data, cfg.tokenizer)
    tok = data.tokenizer
    assert (tok.src_vocab_size, tok.tgt_vocab_size) == (301, 301)  # a pad slot (source), a bos slot (target)
    batch = data.train.batch(list(range(64)))
    pieces = batch.tgt_out[(batch.tgt_out != PAD_ID) & (batch.tgt_out != EOS_ID)]
    assert int(pieces.min()) > UNK_ID and int(pieces.max()) < 301  # no piece collides with a special
    assert bool((batch.tgt_in[:, 0] == BOS_ID).all()) and int(batch.src.max()) < 301

    run = tmp_path / "run"
    train(cfg, run)
    assert sorted(p.name for p in (run / "tokenizer").iterdir()) == ["src.model", "tgt.model"]
    assert (run / "tokenizer/tgt.model").read_bytes() == tgt.read_bytes()

    # After loading, the checkpoint's tokenizer is the brought one: the same ids, so the same translations.
    val = (m30k_slice / "multi30k/val.de").read_text(encoding="utf-8").splitlines()[:20]
    from_checkpoint = Translator.from_checkpoints([run / "checkpoints/best.pt"], search={"beam_size": 2})
    model = from_checkpoint.model
    assert model.src_embed.num_embeddings == model.tgt_embed.num_embeddings == 301
    assert from_checkpoint.tokenizer.encode_src(val) == Tokenizer.load(src, tgt).encode_src(val)
    from_files = Translator(
        model, Tokenizer.load(src, tgt), from_checkpoint.cfg, max_source_len=from_checkpoint.max_source_len
    )
    got, expected = from_checkpoint.translate(val), from_files.translate(val)
    assert [t.texts for t in got] == [t.texts for t in expected]
    assert [t.hypotheses[0].tokens for t in got] == [t.hypotheses[0].tokens for t in expected]
    for t in got:
        tokens = torch.as_tensor(t.hypotheses[0].tokens)
        assert not bool(((tokens == PAD_ID) | (tokens == BOS_ID)).any())
        assert t.texts[0] == from_checkpoint.tokenizer.decode_tgt(t.hypotheses[0].tokens)
    assert any(t.texts[0].strip() for t in got)
