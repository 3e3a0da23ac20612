"""Token batching: budget, coverage, deterministic order, DDP shards, exact resume of the prefetching loader."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from nmt.config import ConfigError, DataConfig, TokenizerConfig
from nmt.data.batch import Batch, collate
from nmt.data.batching import TokenBatchSampler, TrainLoader, collate_flat, length_batches
from nmt.data.prepare import TrainData, prepare_data


@pytest.fixture(scope="module")
def train(m30k_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainData:
    """The 2,000-pair Multi30k slice, tokenized (joint unigram, 600 pieces)."""
    cache = tmp_path_factory.mktemp("cache")
    data = DataConfig(
        train=str(m30k_slice / "multi30k/train"), valid=str(m30k_slice / "multi30k/val"), cache_dir=str(cache)
    )
    return prepare_data(data, TokenizerConfig(vocab_size=600)).train


def _sampler(train: TrainData, **kw: int) -> TokenBatchSampler:
    return TokenBatchSampler(train.src_lengths, train.tgt_lengths, **{"batch_tokens": 1000, "seed": 3, **kw})


def _cost(train: TrainData, batch: list[int]) -> int:
    return len(batch) * int(max(train.src_lengths[batch].max(), train.tgt_lengths[batch].max()) + 1)


@pytest.mark.parametrize("batch_tokens", [120, 1000, 4096])
def test_every_example_once_per_epoch_within_budget(train: TrainData, batch_tokens: int) -> None:
    sampler = _sampler(train, batch_tokens=batch_tokens)
    for epoch in (1, 2):
        batches = sampler.epoch_batches(epoch)
        assert sorted(i for b in batches for i in b) == list(range(len(train)))
        assert max(_cost(train, b) for b in batches) <= batch_tokens
    # the budget is used: batches are not needlessly small (a few remainders per length bucket aside)
    assert np.mean([_cost(train, b) for b in batches]) > 0.8 * batch_tokens


def test_length_buckets_keep_padding_low(train: TrainData) -> None:
    sampler = _sampler(train, batch_tokens=4096)
    stats = sampler.batch_stats(sampler.epoch_batches(1))
    random = [list(b) for b in np.array_split(np.random.default_rng(0).permutation(len(train)), stats["batches"])]
    assert stats["padding_efficiency"] > 0.85 > sampler.batch_stats(random)["padding_efficiency"] + 0.2


def test_order_depends_only_on_seed_and_epoch(train: TrainData) -> None:
    a, b = _sampler(train), _sampler(train)
    assert a.epoch_batches(1) == b.epoch_batches(1) == a.epoch_batches(1)
    assert a.epoch_batches(1) != a.epoch_batches(2)
    assert a.epoch_batches(1) != _sampler(train, seed=4).epoch_batches(1)
    fixed = _sampler(train, shuffle=False)
    assert fixed.epoch_batches(1) == fixed.epoch_batches(2)
    sizes = [max(train.src_lengths[b].max(), train.tgt_lengths[b].max()) for b in fixed.epoch_batches(1)]
    assert sizes == sorted(sizes)


@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_ddp_shards_are_disjoint_covering_and_equal(train: TrainData, world_size: int) -> None:
    for batch_tokens in (300, 1000, 4096):
        for epoch in (1, 2):
            shards = [
                _sampler(train, batch_tokens=batch_tokens, rank=r, world_size=world_size).epoch_batches(epoch)
                for r in range(world_size)
            ]
            assert len({len(s) for s in shards}) == 1
            examples = [i for shard in shards for b in shard for i in b]
            assert sorted(examples) == list(range(len(train)))  # disjoint and covering
            assert max(_cost(train, b) for shard in shards for b in shard) <= batch_tokens


def test_a_pair_longer_than_the_budget_is_a_config_error(train: TrainData) -> None:
    with pytest.raises(ConfigError, match=r"train\.batch_tokens=20 is smaller than the longest training pair"):
        _sampler(train, batch_tokens=20)


def _same(a: Batch, b: Batch) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("src", "src_lengths", "tgt_in", "tgt_out", "ids"))


def test_restored_loader_continues_with_the_same_batches(train: TrainData) -> None:
    sampler = _sampler(train)
    n = sampler.num_batches(1)
    reference = list(islice(TrainLoader(train, sampler, prefetch=0), 2 * n + 5))
    for consumed in (7, n - 2, n, n + 3):  # mid-epoch, just before/at the end of epoch 1, inside epoch 2
        loader = TrainLoader(train, _sampler(train), prefetch=4)
        head = list(islice(loader, consumed))  # the thread has built batches beyond these
        state = loader.state_dict()
        loader.close()
        assert all(map(_same, head, reference[:consumed]))
        restored = TrainLoader(train, _sampler(train), prefetch=3)
        restored.load_state_dict(state)
        tail = list(islice(restored, 8))
        assert all(map(_same, tail, reference[consumed : consumed + 8])), consumed
        assert restored.epoch == (1 if consumed + 8 <= n else 2)
        restored.close()


def test_epochs_are_bounded_reshuffled_and_counted(train: TrainData) -> None:
    sampler = _sampler(train, batch_tokens=4096)
    loader = TrainLoader(train, sampler, max_epochs=2)
    epochs: list[list[int]] = [[], []]
    for batch in loader:
        epochs[loader.epoch - 1].append(batch.ids.tolist())
    assert [len(e) for e in epochs] == [sampler.num_batches(1), sampler.num_batches(2)]
    for e in epochs:  # ids are the corpus line numbers: each line once per epoch
        assert sorted(i for ids in e for i in ids) == train.line_ids.tolist()
    assert epochs[0] != epochs[1]
    expected = sampler.batch_stats(sampler.epoch_batches(1) + sampler.epoch_batches(2))
    stats = loader.stats()
    assert stats["batches"] == len(epochs[0]) + len(epochs[1])
    assert stats["padding_efficiency"] == pytest.approx(expected["padding_efficiency"])
    assert stats["mean_batch_tokens"] == pytest.approx(expected["mean_tokens"])
    with pytest.raises(StopIteration):
        next(loader)


def test_collate_flat_equals_collate(train: TrainData) -> None:
    idx = [5, 1, 1999, 42]
    src, tgt = train.examples(idx)
    flat = collate_flat(
        np.concatenate([np.asarray(s, dtype=np.int64) for s in src]),
        np.array([len(s) for s in src]),
        np.concatenate([np.asarray(t, dtype=np.int64) for t in tgt]),
        np.array([len(t) for t in tgt]),
        np.array(idx),
    )
    assert _same(flat, collate(src, tgt, idx))


def test_length_batches_fill_a_token_budget_longest_first():
    lengths = [5, 1, 9, 9, 3, 0, 7]
    batches = length_batches(lengths, 20)
    assert sorted(i for b in batches for i in b) == list(range(7))
    for b in batches:
        assert len(b) == 1 or len(b) * (max(lengths[i] for i in b) + 1) <= 20
    assert batches[0] == [2, 3]  # longest first, stable among equals
    assert length_batches([50], 8) == [[0]]  # too long for the budget: alone

    ascending = length_batches(lengths, 20, longest_first=False)
    assert ascending[0] == [5, 1, 4] and sorted(i for b in ascending for i in b) == list(range(7))
