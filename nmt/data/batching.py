"""Token-budget batching with length buckets, deterministic shuffling, DDP shards and exact resume.

A batch costs ``n × max(max source length + 1, max target length + 1)`` padded tokens (the +1 is EOS on the
source, BOS/EOS on the target), and the sampler fills each batch up to ``batch_tokens`` (fairseq's
``--max-tokens``). Examples are sorted by that size (ties broken by the other side's length, then at random
per epoch) so each batch holds similar lengths and little padding; the batch order is then shuffled. Every
choice is a function of ``(seed, epoch)`` only, which makes resuming exact: a loader restored at
``(epoch, position)`` rebuilds the epoch's batches and continues where the caller stopped consuming.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from nmt.config import ConfigError
from nmt.data.batch import Batch, collate
from nmt.specials import BOS_ID, EOS_ID, PAD_ID

log = logging.getLogger(__name__)


def collate_flat(
    src_values: np.ndarray, src_lengths: np.ndarray, tgt_values: np.ndarray, tgt_lengths: np.ndarray, ids: np.ndarray
) -> Batch:
    """:func:`nmt.data.batch.collate` for pieces stored flat (Arrow layout), vectorised with numpy.

    Args:
        src_values, tgt_values: the pieces of all examples concatenated (no specials).
        src_lengths, tgt_lengths: (B,) pieces per example; they split the flat arrays.
        ids: (B,) original line numbers.

    Returns:
        The same :class:`Batch` as ``collate`` (source + EOS; BOS + target; target + EOS), without a Python loop.
    """
    src = _pad(src_values, src_lengths, shift=0, eos=True)
    tgt_out = _pad(tgt_values, tgt_lengths, shift=0, eos=True)
    tgt_in = _pad(tgt_values, tgt_lengths, shift=1, eos=False)
    tgt_in[:, 0] = BOS_ID
    return Batch(
        src=torch.from_numpy(src),
        src_lengths=torch.from_numpy(np.asarray(src_lengths, dtype=np.int64) + 1),
        tgt_in=torch.from_numpy(tgt_in),
        tgt_out=torch.from_numpy(tgt_out),
        ids=torch.from_numpy(np.asarray(ids, dtype=np.int64)),
    )


def _pad(values: np.ndarray, lengths: np.ndarray, *, shift: int, eos: bool) -> np.ndarray:
    """(B, max(lengths) + 1) int64: row i = [shift pad slots] + pieces of example i (+ EOS), right-padded."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.full((len(lengths), int(lengths.max(initial=0)) + 1), PAD_ID, dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, np.arange(len(rows)) - starts + shift] = values
    if eos:
        out[np.arange(len(lengths)), lengths] = EOS_ID
    return out


def length_batches(lengths: list[int], budget: int, *, longest_first: bool = True) -> list[list[int]]:
    """Indices grouped by length so that ``sentences x (longest length + 1) <= budget`` padded tokens per batch.

    The one batcher of decoding, validation and forced alignment (training has :class:`TokenBatchSampler`). The
    +1 is the EOS every sequence gets. Sorting is stable (equal lengths keep input order); ``longest_first``
    puts the longest batch first, so a run that will not fit in memory fails at once. A sequence longer than the
    budget gets a batch of its own.

    Args:
        lengths: per example its length in pieces (without specials), e.g. the longer side of a pair.
        budget: padded tokens per batch.
        longest_first: descending length order (else ascending).
    """
    order = sorted(range(len(lengths)), key=(lambda i: -lengths[i]) if longest_first else (lambda i: lengths[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        size = lengths[i] + 1
        if current and (len(current) + 1) * max(longest, size) > budget:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    return batches


class TokenBatchSampler:
    """Groups example indices into batches of at most ``batch_tokens`` padded tokens.

    Args:
        src_lengths, tgt_lengths: (N,) pieces per example, without specials.
        batch_tokens: the padded-token budget of one batch (per rank).
        seed: with the epoch number, determines the order of everything.
        shuffle: False gives batches in ascending length order, the same every epoch (evaluation).
        rank, world_size: this process's shard for DDP. All ranks compute the same global batch list and take
            every ``world_size``-th batch, so the shards are disjoint, cover the data and have equal counts.

    Raises:
        ConfigError: one example alone exceeds ``batch_tokens``, or rank/world_size are inconsistent.
    """

    def __init__(
        self,
        src_lengths: np.ndarray,
        tgt_lengths: np.ndarray,
        *,
        batch_tokens: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.src_sizes = np.asarray(src_lengths, dtype=np.int64) + 1  # + EOS
        self.tgt_sizes = np.asarray(tgt_lengths, dtype=np.int64) + 1  # + BOS (input) / EOS (output)
        if self.src_sizes.shape != self.tgt_sizes.shape or self.src_sizes.ndim != 1:
            raise ValueError("src_lengths and tgt_lengths must be 1-d arrays of the same length")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in [0, world_size={world_size})")
        self.sizes = np.maximum(self.src_sizes, self.tgt_sizes)
        longest = int(self.sizes.max(initial=0))
        if longest > batch_tokens:
            raise ConfigError(
                f"train.batch_tokens={batch_tokens} is smaller than the longest training pair ({longest} tokens with "
                "EOS); raise train.batch_tokens or lower data.max_len"
            )
        self.batch_tokens, self.seed, self.shuffle = batch_tokens, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self._cache: dict[int, list[np.ndarray]] = {}  # the last two epochs (loader thread + caller)

    def __len__(self) -> int:
        """Examples (not batches)."""
        return len(self.sizes)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch`` (any int >= 0), in the order they are to be used."""
        return [b.tolist() for b in self._global_batches(epoch)[self.rank :: self.world_size]]

    def num_batches(self, epoch: int) -> int:
        """Batches per rank in ``epoch`` (the same on every rank)."""
        return len(self._global_batches(epoch)) // self.world_size

    def _global_batches(self, epoch: int) -> list[np.ndarray]:
        if epoch in self._cache:
            return self._cache[epoch]
        n = len(self.sizes)
        rng = np.random.default_rng([self.seed, epoch])
        ties = rng.random(n) if self.shuffle else np.arange(n)
        other = np.minimum(self.src_sizes, self.tgt_sizes)
        order = np.lexsort((ties, other, self.sizes))  # by size, then the other side, then at random
        sizes = self.sizes[order]
        # Greedy cut: with sizes ascending, a batch from i holds k examples while k * sizes[i + k - 1] fits.
        # That cost is monotone in k, so each cut is one searchsorted over a window (a loop over batches only).
        bounds, i = [], 0
        while i < n:
            window = sizes[i : i + self.batch_tokens // int(sizes[i])]
            costs = np.arange(1, len(window) + 1) * window
            i += int(np.searchsorted(costs, self.batch_tokens, side="right"))
            bounds.append(i)
        batches = np.split(order, bounds[:-1]) if n else []
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        batches = self._equalize(batches)
        self._cache = {**{e: b for e, b in self._cache.items() if e == epoch - 1}, epoch: batches}
        return batches

    def _equalize(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """Make the batch count a multiple of world_size by halving the largest batches (deterministic)."""
        batches = list(batches)
        while batches and len(batches) % self.world_size:
            j = max(range(len(batches)), key=lambda k: len(batches[k]))
            if len(batches[j]) < 2:  # fewer examples than ranks: some ranks must repeat a batch
                log.warning("fewer training examples than DDP ranks: repeating batches to keep ranks in step")
                batches += batches[: self.world_size - len(batches) % self.world_size]
                break
            half = len(batches[j]) // 2
            batches[j : j + 1] = [batches[j][:half], batches[j][half:]]
        return batches

    def batch_stats(self, batches: list[list[int]]) -> dict[str, float]:
        """Padding efficiency (real / padded tokens, both sides) and tokens per batch of ``batches``."""
        real = padded = 0
        for b in batches:
            src, tgt = self.src_sizes[b], self.tgt_sizes[b]
            real += int(src.sum() + tgt.sum())
            padded += len(b) * int(src.max() + tgt.max())
        count = max(len(batches), 1)
        return {
            "batches": len(batches),
            "padding_efficiency": real / max(padded, 1),
            "mean_tokens": real / count,
            "mean_padded_tokens": padded / count,
        }


class TrainLoader:
    """Endless (or ``max_epochs``) stream of training :class:`Batch` es, built ahead on a background thread.

    Args:
        data: a :class:`nmt.data.prepare.TrainData` (``examples(indices)``, ``line_ids``).
        sampler: the batch sampler (decides everything about the order).
        max_epochs: stop after this many epochs; 0 = never stop.
        prefetch: batches built ahead on a background thread; 0 builds them in the caller's thread.
        pin_memory: pin batch tensors (only when CUDA is available) for asynchronous host-to-device copies.
        num_workers: ``train.num_workers``: 0 builds batches in the caller's thread (like ``prefetch=0``); any
            positive value uses one background thread (building a batch is mostly Python work, which more
            threads would only serialise on the GIL).

    Epochs count from 1. ``state_dict()`` records the batches the caller has *consumed* (not those built ahead),
    so a loader restored from it yields exactly the batches the original would have yielded next.
    """

    def __init__(
        self,
        data: Any,
        sampler: TokenBatchSampler,
        *,
        max_epochs: int = 0,
        prefetch: int = 8,
        pin_memory: bool = False,
        num_workers: int = 1,
    ) -> None:
        self.data, self.sampler = data, sampler
        self.max_epochs = max_epochs
        self.prefetch = prefetch if num_workers > 0 else 0
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self._epoch, self._position = 1, 0  # the last consumed batch was number `position` of `epoch`
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[tuple[Any, ...]] | None = None
        self._stop = threading.Event()
        self._sync: Iterator[tuple[Any, ...]] | None = None
        self.reset_stats()

    # ----------------------------------------------------------------------------------------- position
    @property
    def epoch(self) -> int:
        """The epoch of the last consumed batch (1 before the first)."""
        return self._epoch

    @property
    def position(self) -> int:
        """Batches of the current epoch consumed so far."""
        return self._position

    @property
    def batches_per_epoch(self) -> int:
        """Batches in the current epoch (per rank)."""
        return self.sampler.num_batches(self._epoch)

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self._epoch,
            "position": self._position,
            "seed": self.sampler.seed,
            "num_examples": len(self.sampler),
            "batch_tokens": self.sampler.batch_tokens,
            "world_size": self.sampler.world_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after the batches consumed when ``state`` was taken (stops any prefetching first)."""
        self.close()
        current = self.state_dict()
        changed = [k for k in ("seed", "num_examples", "batch_tokens", "world_size") if state.get(k) != current[k]]
        if changed:
            log.warning(
                "resuming with a different %s than the checkpoint (%s): the batch sequence will not match",
                ", ".join(changed),
                ", ".join(f"{k}: {state.get(k)} -> {current[k]}" for k in changed),
            )
        self._epoch, self._position = int(state["epoch"]), int(state["position"])

    # ----------------------------------------------------------------------------------------- iteration
    def __iter__(self) -> TrainLoader:
        return self

    def __next__(self) -> Batch:
        if self.prefetch <= 0:
            if self._sync is None:
                self._sync = self._produce(*self._next_position())
            item = next(self._sync, ("end",))
        else:
            if self._thread is None:
                self._start()
            assert self._queue is not None
            item = self._queue.get()
        if item[0] == "end":
            self.close()  # a later next() starts over from the (final) position and ends at once
            raise StopIteration
        if item[0] == "error":
            self.close()
            raise item[1]
        _, self._epoch, self._position, batch, real, padded = item
        self._batches += 1
        self._real += real
        self._padded += padded
        return batch

    def _next_position(self) -> tuple[int, int]:
        if self._position >= self.sampler.num_batches(self._epoch):
            return self._epoch + 1, 0
        return self._epoch, self._position

    def _produce(self, epoch: int, position: int) -> Iterator[tuple[Any, ...]]:
        """Yield ``("batch", epoch, position_after, batch, real_tokens, padded_tokens)`` from a position on."""
        while not self.max_epochs or epoch <= self.max_epochs:
            batches = self.sampler.epoch_batches(epoch)
            if not batches:
                raise ValueError("the training data gives no batch")
            for p in range(position, len(batches)):
                yield ("batch", epoch, p + 1, *self._build(batches[p]))
            epoch, position = epoch + 1, 0

    def _build(self, indices: list[int]) -> tuple[Batch, int, int]:
        if hasattr(self.data, "batch"):  # TrainData: vectorised from the Arrow columns
            batch = self.data.batch(indices)
        else:
            src_ids, tgt_ids = self.data.examples(indices)
            batch = collate(src_ids, tgt_ids, np.asarray(self.data.line_ids)[indices].tolist())
        if self.pin_memory:
            batch = batch.pin_memory()
        assert batch.tgt_out is not None
        # Real tokens: source pieces + EOS (src_lengths counts it), target pieces + EOS.
        real = int(batch.src_lengths.sum()) + int((batch.tgt_out != PAD_ID).sum())
        padded = batch.src.numel() + batch.tgt_out.numel()
        return batch, real, padded

    def _start(self) -> None:
        self._stop.clear()
        self._queue = queue.Queue(maxsize=self.prefetch)
        start = self._next_position()
        self._thread = threading.Thread(target=self._worker, args=(self._queue, start), name="nmt-batches", daemon=True)
        self._thread.start()

    def _worker(self, out: queue.Queue[tuple[Any, ...]], start: tuple[int, int]) -> None:
        try:
            for item in self._produce(*start):
                if not self._put(out, item):
                    return
            self._put(out, ("end",))
        except BaseException as e:  # handed to the consumer, which raises it in the training loop
            self._put(out, ("error", e))

    def _put(self, out: queue.Queue[tuple[Any, ...]], item: tuple[Any, ...]) -> bool:
        while not self._stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """Stop building batches ahead (the consumed position is kept)."""
        self._sync = None
        if getattr(self, "_thread", None) is not None:
            self._stop.set()
            self._thread.join()
            self._thread, self._queue = None, None

    def __del__(self) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------- statistics
    def reset_stats(self) -> None:
        self._batches, self._real, self._padded = 0, 0, 0

    @property
    def padding_efficiency(self) -> float:
        """Real tokens / padded tokens (source + target) over the batches consumed since ``reset_stats``."""
        return self._real / self._padded if self._padded else 0.0

    @property
    def mean_batch_tokens(self) -> float:
        """Mean real tokens (source + target, with EOS) per consumed batch since ``reset_stats``."""
        return self._real / self._batches if self._batches else 0.0

    def stats(self, *, reset: bool = False) -> dict[str, float]:
        """``{"batches", "padding_efficiency", "mean_batch_tokens"}`` since the last reset, for logging."""
        out = {
            "batches": self._batches,
            "padding_efficiency": self.padding_efficiency,
            "mean_batch_tokens": self.mean_batch_tokens,
        }
        if reset:
            self.reset_stats()
        return out
