"""nmt.search.translate_ids: the one batched decoding path (input order, empty sources, eval mode)."""

from __future__ import annotations

import torch

from nmt.config import SearchConfig, TransformerConfig
from nmt.models import build_model
from nmt.search import translate_ids


def test_translate_ids_keeps_input_order_handles_empty_sources_and_restores_train_mode():
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=16, ffn_dim=32, heads=2, encoder_layers=1, decoder_layers=2, dropout=0.3)
    model = build_model(cfg, src_vocab_size=40, tgt_vocab_size=40).train()
    g = torch.Generator().manual_seed(1)
    src = [torch.randint(4, 40, (k,), generator=g).tolist() for k in (3, 0, 12, 1, 7, 7, 2)]
    search = SearchConfig(beam_size=2, max_len_a=1.0, max_len_b=3, batch_tokens=16)
    out = translate_ids(model, src, search, device="cpu", need_attention=True)
    assert model.training  # restored; decoding itself ran in eval mode (no dropout: results repeat)
    again = translate_ids(model, src, search, device="cpu")
    assert [h[0].tokens for h in out] == [h[0].tokens for h in again]
    alone = [translate_ids(model, [s], search, device="cpu")[0] for s in src]
    assert [h[0].tokens for h in out] == [h[0].tokens for h in alone]
    assert out[1][0].tokens == [] and out[1][0].attention.tolist() == [[1.0]]
