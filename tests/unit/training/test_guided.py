"""Guided alignment training: word links -> piece links per batch, the alignment loss, the alignment file's checks."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from corpus_io import read_gz_lines, write_lines

from nmt.analysis.alignment import word_ids
from nmt.config import AlignmentLossConfig, ConfigError, NMTConfig, RNNConfig, TrainConfig, TransformerConfig
from nmt.data.batch import Batch, collate
from nmt.errors import DataError
from nmt.specials import EOS_ID
from nmt.training.guided import (
    EPS,
    CorpusAlignment,
    PieceWords,
    alignment_loss,
    piece_links,
    supervised_rows,
)

# A hand-made joint vocabulary (ids 0-3 are the specials).
VOCAB = ["<pad>", "<unk>", "<s>", "</s>", "▁Das", "▁Haus", "chen", "▁ist", "▁The", "▁little", "▁house", "▁is", "s"]
ID = {p: i for i, p in enumerate(VOCAB)}


def ids(pieces: str) -> list[int]:
    return [ID[p] for p in pieces.split()]


# ------------------------------------------------------------------------------------------- pieces -> words
def test_vectorised_word_index_equals_word_ids_on_random_piece_sequences():
    vocab = ["<pad>", "<unk>", "<s>", "</s>", "▁", "▁a", "b", "▁c", "d"]  # lone markers, unknowns, continuations
    words = PieceWords(vocab)
    rng = random.Random(0)
    for _ in range(500):
        seqs = [[rng.choice([1, 4, 5, 6, 7, 8]) for _ in range(rng.randint(0, 7))] for _ in range(4)]
        n_words = np.array([rng.randint(0, 5) for _ in seqs])
        batch = collate(seqs, None, list(range(len(seqs))))
        got = words.word_index(batch.src.numpy(), n_words)
        for b, seq in enumerate(seqs):
            assert got[b, : len(seq)].tolist() == word_ids([vocab[i] for i in seq], int(n_words[b])), seq
            assert (got[b, len(seq) :] == -1).all()  # EOS and padding belong to no word


# ------------------------------------------------------------------------------------------- hand-made pair
@pytest.fixture
def hand_case(tmp_path: Path) -> tuple[Batch, CorpusAlignment]:
    """Corpus line 0: "Das Hauschen ist" / "The little house is" with links 0-0 1-2 2-2 2-3 (house -> two source
    words, "little" unlinked); line 1 is not in the batch; line 2: "ist Das" / "houses The" with 0-0 1-1."""
    src = ["Das Hauschen ist", "Das ist", "ist Das"]
    tgt = ["The little house is", "The house", "houses The"]
    path = write_lines(tmp_path / "train.align", ["0-0 1-2 2-2 2-3", "0-0 1p1", "1-1 0-0"])
    alignment = CorpusAlignment.read(path, src, tgt)
    batch = collate(
        [ids("▁Das ▁Haus chen ▁ist"), ids("▁ist ▁Das")],
        [ids("▁The ▁little ▁house ▁is"), ids("▁house s ▁The")],
        [0, 2],
    )
    return batch, alignment


def test_word_links_become_the_links_of_every_piece_pair(hand_case):
    batch, alignment = hand_case
    words = PieceWords(VOCAB)
    links = piece_links(batch, alignment, words, words)
    assert links.dtype == torch.int64 and links.shape[1] == 3
    assert {tuple(x) for x in links.tolist()} == {
        (0, 0, 0),  # The -> Das
        (0, 2, 1), (0, 2, 2), (0, 2, 3),  # house -> Haus, chen (one word) and ist
        (0, 3, 3),  # is -> ist; row 1 (little) and row 4 (EOS) get nothing
        (1, 0, 0), (1, 1, 0),  # both pieces of "houses" -> ist
        (1, 2, 1),  # The -> Das
    }  # fmt: skip
    assert len(links) == 8  # no duplicates
    assert supervised_rows(links) == 6
    moved = Batch(**{**batch.__dict__, "alignment": links}).to("cpu")
    assert torch.equal(moved.alignment, links)


def test_shift_moves_every_link_to_the_step_that_receives_the_piece(hand_case):
    batch, alignment = hand_case
    words = PieceWords(VOCAB)
    links = piece_links(batch, alignment, words, words, shift=True)
    assert {tuple(x) for x in links.tolist()} == {
        (0, 1, 0),  # The -> Das: tgt_in[1] is "The"
        (0, 3, 1), (0, 3, 2), (0, 3, 3),  # house
        (0, 4, 3),  # is: its receiving step is the one that predicts EOS
        (1, 1, 0), (1, 2, 0),  # "house" "s"
        (1, 3, 1),  # The
    }  # fmt: skip
    # The rows read the input pieces: tgt_in[row] is the target piece whose links the row carries.
    for b, row, _ in links.tolist():
        assert batch.tgt_in[b, row] == batch.tgt_out[b, row - 1]


def test_a_row_linked_to_two_words_wants_uniform_mass_over_their_pieces(hand_case):
    batch, alignment = hand_case
    words = PieceWords(VOCAB)
    links = piece_links(batch, alignment, words, words)
    B, T, S = 2, batch.tgt_out.size(1), batch.src.size(1)
    torch.manual_seed(0)
    attention = torch.randn(B, T, S).softmax(-1)
    # Hand formula: rows with k linked pieces contribute -(1/k) sum log(a + eps).
    a = attention
    expected = -(
        math.log(a[0, 0, 0] + EPS)
        + sum(math.log(a[0, 2, s] + EPS) for s in (1, 2, 3)) / 3
        + math.log(a[0, 3, 3] + EPS)
        + math.log(a[1, 0, 0] + EPS)
        + math.log(a[1, 1, 0] + EPS)
        + math.log(a[1, 2, 1] + EPS)
    )
    assert float(alignment_loss(attention, links)) == pytest.approx(expected, rel=1e-5)

    # Rows without links (little, the EOS rows, padding) do not count.
    changed = attention.clone()
    changed[0, 1] = torch.randn(S).softmax(-1)
    changed[0, 4] = torch.randn(S).softmax(-1)
    changed[1, 3:] = torch.randn(T - 3, S).softmax(-1)
    assert float(alignment_loss(changed, links)) == pytest.approx(float(alignment_loss(attention, links)), rel=1e-6)

    # The gradient of the two-word row pulls equally towards its three pieces.
    uniform = torch.full((B, T, S), 1.0 / S, requires_grad=True)
    alignment_loss(uniform, links).backward()
    row = uniform.grad[0, 2]
    assert torch.allclose(row[1:4], row[1].expand(3)) and float(row[1]) < 0
    assert float(row[0]) == 0 and float(row[4]) == 0


def test_attention_equal_to_the_target_distribution_gives_the_minimum(hand_case):
    batch, alignment = hand_case
    words = PieceWords(VOCAB)
    links = piece_links(batch, alignment, words, words)
    B, T, S = 2, batch.tgt_out.size(1), batch.src.size(1)
    target = torch.zeros(B, T, S)
    for b, t, s in links.tolist():
        target[b, t, s] = 1.0
    target[target.sum(-1) == 0] = 1.0  # unsupervised rows: any distribution
    target = target / target.sum(-1, keepdim=True)
    best = float(alignment_loss(target, links))
    assert best == pytest.approx(math.log(3), abs=1e-4)  # entropy of the 3-piece row; one-piece rows cost ~0
    generator = torch.Generator().manual_seed(1)
    for scale in (0.01, 0.1, 1.0, 10.0):  # small and large moves away from the target, and random attention
        for _ in range(50):
            other = target + scale * torch.rand(B, T, S, generator=generator)
            other = other / other.sum(-1, keepdim=True)
            assert float(alignment_loss(other, links)) > best


def test_no_links_give_a_zero_loss():
    attention = torch.rand(2, 3, 4).softmax(-1)
    assert float(alignment_loss(attention, None)) == 0.0
    assert float(alignment_loss(attention, torch.zeros(0, 3, dtype=torch.long))) == 0.0
    assert supervised_rows(None) == 0


# ------------------------------------------------------------------------------------------- real text
@pytest.fixture(scope="module")
def gold_slice(data_root: Path) -> tuple[list[str], list[str], list[str]]:
    """The first 60 RWTH de-en pairs with their links converted to 0-based (sure ``i-j``, possible ``ipj``)."""
    folder = data_root / "align-de-en"
    links = []
    for line in read_gz_lines(folder / "deen.talp.gz", 60):
        items = []
        for item in line.split():
            sep = "-" if "-" in item else "p"
            i, j = item.split(sep)
            items.append(f"{int(i) - 1}{sep}{int(j) - 1}")
        links.append(" ".join(items))
    return read_gz_lines(folder / "deen.de.gz", 60), read_gz_lines(folder / "deen.en.gz", 60), links


def test_piece_links_of_real_sentences_follow_word_ids(gold_slice, tmp_path):
    from nmt.config import TokenizerConfig
    from nmt.data.tokenizer import Tokenizer

    src, tgt, links = gold_slice
    tokenizer = Tokenizer.train(src, tgt, TokenizerConfig(vocab_size=300))
    alignment = CorpusAlignment.read(write_lines(tmp_path / "a.align", links), src, tgt)
    lines = list(range(5, 45))
    src_ids, tgt_ids = tokenizer.encode_src([src[n] for n in lines]), tokenizer.encode_tgt([tgt[n] for n in lines])
    batch = collate(src_ids, tgt_ids, lines)
    words = PieceWords(tokenizer.src_pieces(range(tokenizer.src_vocab_size)))
    got = {tuple(x) for x in piece_links(batch, alignment, words, words).tolist()}
    expected = set()
    for b, n in enumerate(lines):  # the slow reference: word_ids on the piece strings, per example
        sw = word_ids(tokenizer.src_pieces(src_ids[b]), len(src[n].split()))
        tw = word_ids(tokenizer.tgt_pieces(tgt_ids[b]), len(tgt[n].split()))
        word_links = {(int(i), int(j)) for i, _, j in (x.replace("p", "-").partition("-") for x in links[n].split())}
        expected |= {(b, t, s) for t in range(len(tw)) for s in range(len(sw)) if (sw[s], tw[t]) in word_links}
    assert got == expected and len(got) > 500
    assert all(batch.tgt_out[b, t] != EOS_ID for b, t, _ in got)


def test_the_alignment_file_is_read_with_possible_links_as_links(gold_slice, tmp_path):
    src, tgt, links = gold_slice
    alignment = CorpusAlignment.read(write_lines(tmp_path / "a.align", links), src, tgt)
    assert len(alignment) == 60
    assert alignment.num_links == sum(len(line.split()) for line in links)
    example, s, t = alignment.lines(np.array([0]))
    # Line 1 of the gold file, 1-based "9-8 8-8 ... 2-4": stored 0-based.
    assert (example == 0).all() and (8, 7) in set(zip(s.tolist(), t.tolist())) and (1, 3) in set(zip(s, t))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines[:-1], r"has 59 lines but the training corpus has 60"),
        (lambda lines: [*lines, ""], r"has 61 lines but the training corpus has 60"),
        (lambda lines: [*lines[:4], "0-0 3-x", *lines[5:]], r"line 5: malformed alignment link '3-x'"),
        (lambda lines: [*lines[:2], "99-0", *lines[3:]], r"line 3: link '99-0' is out of range .* 1-based file"),
    ],
)
def test_bad_alignment_files_are_clear_errors_naming_file_and_line(gold_slice, tmp_path, edit, message):
    src, tgt, links = gold_slice
    path = write_lines(tmp_path / "bad.align", edit(links))
    with pytest.raises(DataError, match=message) as error:
        CorpusAlignment.read(path, src, tgt)
    assert str(path) in str(error.value)


def test_a_one_based_file_is_caught(data_root, gold_slice, tmp_path):
    src, tgt, _ = gold_slice
    raw = read_gz_lines(data_root / "align-de-en" / "deen.talp.gz", 60)  # 1-based: some index equals the length
    with pytest.raises(DataError, match=r"out of range"):
        CorpusAlignment.read(write_lines(tmp_path / "one.align", raw), src, tgt)


# ------------------------------------------------------------------------------------------- config
def test_guided_training_supervises_head_0_unless_heads_are_chosen():
    cfg = NMTConfig(model=TransformerConfig(), train=TrainConfig(alignment=AlignmentLossConfig(file="x.align")))
    assert cfg.model.alignment_heads == [0]
    chosen = TransformerConfig(alignment_heads=[1, 2])
    cfg = NMTConfig(model=chosen, train=TrainConfig(alignment=AlignmentLossConfig(file="x.align")))
    assert cfg.model.alignment_heads == [1, 2]
    assert NMTConfig(model=TransformerConfig()).model.alignment_heads is None  # plain training: all heads


def test_guided_training_config_mistakes_fail_early():
    with pytest.raises(ConfigError, match="needs model=transformer"):
        NMTConfig(model=RNNConfig(), train=TrainConfig(alignment=AlignmentLossConfig(file="x.align")))
    for weight in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"train\.alignment\.weight"):
            AlignmentLossConfig(file="x.align", weight=weight)
