"""Data pipeline figures on the full Multi30k training set: preparation time (cold and cached) and batch quality.

    NMT_DATA_DIR=../shared/data .venv/bin/python scripts/bench_data.py [--vocab-size 8000] [--batch-tokens 4096]

The first run trains the joint SentencePiece model and encodes + caches the training pairs in a fresh temporary
cache directory; the second run finds both in the cache. Then one epoch of the training loader is drawn and its
padding efficiency (real / padded tokens, source + target) and mean tokens per batch are printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from nmt.config import DataConfig, TokenizerConfig, TokenizerType
from nmt.data.batching import TokenBatchSampler, TrainLoader
from nmt.data.corpus import data_root
from nmt.data.prepare import prepare_data
from nmt.data.tokenizer import num_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--type", choices=[t.value for t in TokenizerType], default="unigram")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    tok = TokenizerConfig(type=TokenizerType(args.type), vocab_size=args.vocab_size, joint=True)
    with tempfile.TemporaryDirectory(prefix="nmt-bench-cache-") as cache:
        data = DataConfig(
            train="multi30k/train", valid="multi30k/val", test=["multi30k/test_2016_flickr"], cache_dir=cache
        )
        t0, c0 = time.perf_counter(), time.process_time()
        first = prepare_data(data, tok)
        cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        second = prepare_data(data, tok)
        warm, warm_cpu = time.perf_counter() - t0, time.process_time() - c0

        train = second.train
        sampler = TokenBatchSampler(
            train.src_lengths, train.tgt_lengths, batch_tokens=args.batch_tokens, seed=args.seed
        )
        loader = TrainLoader(train, sampler, max_epochs=1)
        t0 = time.perf_counter()
        tgt_tokens = [batch.num_tgt_tokens for batch in loader]
        epoch_time = time.perf_counter() - t0
        stats = loader.stats()

    print(
        f"data root: {data_root()}  (multi30k/train: {first.train.stats['total']} pairs, "
        f"{len(train)} kept, max_len {data.max_len})"
    )
    print(f"tokenizer: {first.tokenizer!r}, {args.type}")
    print(f"CPU threads used: {num_threads()}; wall time (CPU time of all threads)")
    print(
        f"prepare_data, empty cache (train SentencePiece + encode + write Arrow cache): {cold:.2f} s ({cold_cpu:.2f} s)"
    )
    print(
        f"prepare_data, second run (tokenizer and training data from the cache):      {warm:.2f} s ({warm_cpu:.2f} s)"
    )
    print(f"batches per epoch at batch_tokens={args.batch_tokens}: {stats['batches']}")
    print(f"padding efficiency (real / padded tokens, source + target): {stats['padding_efficiency']:.3f}")
    print(f"mean real tokens per batch (source + target, with EOS): {stats['mean_batch_tokens']:.0f}")
    print(f"mean real target tokens per batch (pieces + EOS): {np.mean(tgt_tokens):.0f}")
    print(
        f"one epoch of batches through the prefetching loader: {epoch_time:.2f} s "
        f"({stats['batches'] / epoch_time:.0f} batches/s)"
    )


if __name__ == "__main__":
    main()
