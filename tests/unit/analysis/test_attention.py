"""Attention dumps: the .npz round trip (no pickling) and heatmap pictures."""

from __future__ import annotations

import numpy as np
import pytest

from nmt.analysis.attention import AttentionRecord, load_attention, plot_heatmap, save_attention


def records() -> list[AttentionRecord]:
    rng = np.random.default_rng(0)
    out = []
    for i, (t, s) in enumerate([(3, 4), (1, 1), (6, 2)]):
        m = rng.random((t, s)).astype(np.float32)
        out.append(AttentionRecord(i * 10, m / m.sum(1, keepdims=True), [f"s{k}" for k in range(s)], ["▁ü"] * t))
    return out


def test_npz_round_trip_without_pickle(tmp_path):
    path = save_attention(tmp_path / "attention.npz", records())
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"data", "offsets", "shapes", "ids", "pieces"}
        assert z["data"].dtype == np.float32 and z["offsets"].tolist() == [0, 12, 13, 25]
    back = load_attention(path)
    for a, b in zip(records(), back):
        assert (a.id, a.src_pieces, a.tgt_pieces) == (b.id, b.src_pieces, b.tgt_pieces)
        np.testing.assert_array_equal(a.matrix, b.matrix)
    assert load_attention(save_attention(tmp_path / "empty.npz", [])) == []


def test_shape_must_match_the_pieces(tmp_path):
    bad = AttentionRecord(0, np.ones((2, 2)), ["a"], ["b", "c"])
    with pytest.raises(ValueError, match="does not match"):
        save_attention(tmp_path / "bad.npz", [bad])


def test_heatmap_is_a_png(tmp_path):
    path = plot_heatmap(records()[0], tmp_path / "h" / "0.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
