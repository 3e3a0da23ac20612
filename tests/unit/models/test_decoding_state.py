"""The Transformer's decoding state: keys/values shared by a sentence's beams (SourceMemory), a cache written in
place (DecoderCache), and the decoding-only formats bf16 and int8 (nmt.models.inference)."""

from __future__ import annotations

import pytest
import torch
from model_variants import VARIANTS, VOCAB, make
from test_model_interface import batch

from nmt.config import ConfigError
from nmt.models.base import reorder
from nmt.models.cache import DecoderCache, SourceMemory, group_size
from nmt.models.ensemble import Ensemble, Members
from nmt.models.inference import prepare_for_inference
from nmt.specials import BOS_ID

pytestmark = pytest.mark.usefixtures("one_thread")


def test_group_size_finds_equal_runs_of_one_length():
    assert group_size([0, 0, 0, 1, 1, 1]) == 3
    assert group_size([4, 4, 2, 2, 4, 4]) == 2  # a memory row may come back (duplicates are copied)
    assert group_size([5, 5, 5]) == 3
    assert group_size([0, 0, 1, 1, 1, 1]) == 2  # groups [0, 0], [1, 1], [1, 1]
    for rows in ([0, 0, 1], [0, 1, 1, 1], [0, 1, 2], []):
        assert group_size(rows) == 1, rows


def per_row(enc: SourceMemory) -> SourceMemory:
    """The same memory with every row's keys/values copied out (group 1): what plain dicts used to hold."""
    rows = torch.arange(enc.kv[0][0].size(0)).repeat_interleave(enc.group)
    kv = [(k[rows], v[rows]) for k, v in enc.kv]
    return SourceMemory(enc["src_pad_mask"], kv, group=1, mem_pad_mask=enc["src_pad_mask"])


@torch.inference_mode()
def test_beams_share_their_sentences_memory_and_attend_as_if_copied():
    model = make("transformer_pre")
    src, src_lengths, tgt = batch()
    enc = model.encode(src, src_lengths)
    beams = reorder(enc, torch.arange(3).repeat_interleave(4))  # 4 beams per sentence, as beam search expands
    assert beams.group == 4 and beams.kv[0][0] is enc.kv[0][0]  # no copy
    assert beams["src_pad_mask"].shape == (12, 7)
    tokens = tgt[:, :3].repeat_interleave(4, 0)
    state_a, state_b = model.init_state(beams), model.init_state(beams)
    for t in range(3):
        lp_a, attn_a, state_a = model.decode_step(tokens[:, t], state_a, beams, need_attention=True)
        lp_b, attn_b, state_b = model.decode_step(tokens[:, t], state_b, per_row(beams), need_attention=True)
        torch.testing.assert_close(lp_a, lp_b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(attn_a, attn_b, atol=1e-6, rtol=1e-5)
    full_a, full_attn_a = model.decode(tokens, beams, need_attention=True)  # teacher forcing: T queries per row
    full_b, full_attn_b = model.decode(tokens, per_row(beams), need_attention=True)
    torch.testing.assert_close(full_a, full_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full_attn_a, full_attn_b, atol=1e-6, rtol=1e-5)
    # Finished sentences leave: the groups stay, the memory keeps only the live sentences' rows.
    keep = torch.tensor([0, 2])
    left = reorder(beams, (keep[:, None] * 4 + torch.arange(4)).view(-1))
    assert left.group == 4 and left.kv[0][0].size(0) == 2
    torch.testing.assert_close(left.kv[1][1], enc.kv[1][1][keep], atol=0, rtol=0)
    # A reorder across sentences falls back to one memory row per batch row.
    mixed = reorder(beams, torch.randperm(12, generator=torch.Generator().manual_seed(0)))
    assert mixed.group == 1 and mixed.kv[0][0].size(0) == 12


@torch.inference_mode()
def test_the_cache_is_written_in_place_grows_and_equals_teacher_forcing():
    model = make("transformer_post")
    src, src_lengths, _ = batch()
    tgt = torch.randint(4, VOCAB, (3, 40), generator=torch.Generator().manual_seed(1))
    tgt[:, 0] = BOS_ID
    enc = model.encode(src, src_lengths)
    expected = model.decode(tgt, enc)[0].log_softmax(-1)
    state, buffers = model.init_state(enc), set()
    for t in range(tgt.size(1)):
        log_probs, _, state = model.decode_step(tgt[:, t], state, enc)
        buffers.add(state.buffers[0].data_ptr())
        torch.testing.assert_close(log_probs, expected[:, t], atol=1e-5, rtol=1e-4)
    assert isinstance(state, DecoderCache) and state["k0"].shape == (3, 4, 40, 8)
    assert len(buffers) == 3  # capacity 16, then 34, then 70: two copies in 40 steps


@torch.inference_mode()
def test_a_state_stepped_twice_is_not_overwritten_by_its_second_continuation():
    model = make("transformer_pre")
    src, src_lengths, tgt = batch()
    enc = model.encode(src, src_lengths)
    _, _, state = model.decode_step(tgt[:, 0], model.init_state(enc), enc)
    _, _, first = model.decode_step(tgt[:, 1], state, enc)
    k_first = first["k0"].clone()
    lp_second, _, second = model.decode_step(tgt[:, 2], state, enc)  # another token after the same prefix
    torch.testing.assert_close(first["k0"], k_first, atol=0, rtol=0)
    assert second.buffers[0].data_ptr() != first.buffers[0].data_ptr()
    other = tgt[:, :3].clone()
    other[:, 1] = tgt[:, 2]
    torch.testing.assert_close(lp_second, model.decode(other, enc)[0].log_softmax(-1)[:, 1], atol=1e-5, rtol=1e-4)


def test_a_plain_dict_state_still_decodes():
    model = make("transformer_pre")
    src, src_lengths, tgt = batch()
    enc = model.encode(src, src_lengths)
    _, _, state = model.decode_step(tgt[:, 0], model.init_state(enc), enc)
    plain = {k: v.clone() for k, v in state.items()}
    a, _, _ = model.decode_step(tgt[:, 1], state, enc)
    b, _, _ = model.decode_step(tgt[:, 1], plain, enc)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_an_ensemble_keeps_its_members_own_states():
    ens = Ensemble([make("transformer_pre"), make("rnn_bahdanau")]).eval()
    src, src_lengths, _ = batch()
    enc = ens.encode(src, src_lengths)
    beams = reorder(enc, torch.arange(3).repeat_interleave(2))
    assert isinstance(beams, Members) and isinstance(beams.parts[0], SourceMemory) and beams.parts[0].group == 2
    assert set(beams) >= {"src_pad_mask", "0.src_pad_mask", "1.memory"}
    state = ens.init_state(beams)
    assert isinstance(state.parts[0], DecoderCache)


# --------------------------------------------------------------------------------------------- bf16 and int8
@pytest.mark.parametrize("name", list(VARIANTS))  # every architecture: a bf16 RNN used to crash in decode_step
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_decoding_formats_copy_the_model_and_stay_close_to_fp32(name, precision):
    model = make(name)
    src, src_lengths, tgt = batch()
    with torch.inference_mode():
        expected = model(src, src_lengths, tgt).float().log_softmax(-1)
    fast = prepare_for_inference(model, precision, "cpu")
    assert fast is not model and all(p.dtype == torch.float32 for p in model.parameters())  # the original stays
    assert prepare_for_inference(fast, precision, "cpu") is fast  # prepared once
    with torch.inference_mode():
        got = fast(src, src_lengths, tgt).float().log_softmax(-1)
        enc = fast.encode(src, src_lengths)
        log_probs, _, _ = fast.decode_step(tgt[:, 0], fast.init_state(enc), enc)
    assert log_probs.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=0.1, rtol=0.05)
    quantised = [n for n, m in fast.named_modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    if precision == "bf16":
        assert not quantised and all(p.dtype == torch.bfloat16 for p in fast.parameters())
    elif name.startswith("transformer"):  # every linear layer, and the tied output projection on its own
        assert "out_proj" in quantised and not any(isinstance(m, torch.nn.Linear) for m in fast.modules())
        assert fast.tgt_embed.weight.dtype == torch.float32 and model.out_proj is None
    else:
        assert quantised == ["out_proj"]


def test_int8_is_for_the_cpu():
    with pytest.raises(ConfigError, match="int8 runs on the CPU only"):
        prepare_for_inference(make("transformer_pre"), "int8", "cuda")
