"""Attention dumps: the .npz round trip (no pickling) and heatmap pictures."""

from __future__ import annotations

import numpy as np
import pytest

from nmt.analysis.attention import AttentionRecord, heatmap_figure, load_attention, plot_heatmap, save_attention


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
    path = plot_heatmap(records()[0], tmp_path / "h" / "0.png", links={(0, 0)})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_heatmap_has_pieces_on_both_axes_a_colour_bar_a_visible_low_range_and_word_links():
    src = ["▁Ein", "▁Hund", "▁läuft", ".", "</s>"]
    tgt = ["▁A", "▁do", "g", "▁runs", "</s>"]
    weights = np.full((5, 5), 0.02)
    weights[[0, 1, 2, 3], [0, 1, 1, 2]] = 0.9
    fig = heatmap_figure(weights, src, tgt, title="line 1", links={(0, 0), (1, 1), (2, 2)})
    ax, bar = fig.axes  # the matrix and its colour bar
    assert [t.get_text() for t in ax.get_xticklabels()] == src
    assert [t.get_text() for t in ax.get_yticklabels()] == tgt
    assert ax.get_xlabel() == "source pieces" and ax.get_ylabel() == "output pieces"
    assert "attention weight" in bar.get_ylabel()
    (image,) = ax.get_images()
    assert image.norm(0.02) > 0.1  # 2% attention gets >10% of the colour scale (a square-root scale)
    assert heatmap_figure(weights, src, tgt, gamma=1.0).axes[0].get_images()[0].norm(0.02) == pytest.approx(0.02)
    # One box per link over its words' pieces: "dog" is two target pieces (rows 1-2), "läuft." two columns.
    boxes = sorted((p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches)
    assert boxes == [(-0.5, -0.5, 1, 1), (0.5, 0.5, 1, 2), (1.5, 2.5, 2, 1)]  # "läuft" "." is one word
    with pytest.raises(ValueError, match="5 target and 4 source pieces"):
        heatmap_figure(weights, src[:4], tgt)
