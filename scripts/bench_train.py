"""Training throughput of each model at its default size on Multi30k de->en, through the real training step.

Same shapes as the peer measurements in ../shared/benchmarks/PEERS.md: the full training set, one joint 8k
SentencePiece unigram model, batches of at most 4,096 padded tokens, Adam, label smoothing 0.1; the clock runs over
updates 50 -> 200. Prints target tokens/s, the model-FLOPs share of a measured matmul peak (matmul FLOPs
counted on a real batch, per target token), padding efficiency and peak memory, for each model and precision.

    .venv/bin/python scripts/bench_train.py                               # all three models, fp32 and bf16
    .venv/bin/python scripts/bench_train.py --models transformer --precision bf16 --profile
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from nmt.config import (
    AttentionType,
    DataConfig,
    NMTConfig,
    Precision,
    RNNConfig,
    SearchConfig,
    TokenizerConfig,
    TrainConfig,
    TransformerConfig,
)
from nmt.training.trainer import Trainer

MODELS = {
    "transformer": lambda: TransformerConfig(),
    "rnn_bahdanau": lambda: RNNConfig(attention=AttentionType.bahdanau),
    "rnn_luong": lambda: RNNConfig(attention=AttentionType.luong),
}
PEERS = {"transformer": 2866, "rnn_bahdanau": 2611, "rnn_luong": 2611}  # OpenNMT-py 3.5.1, PEERS.md


def bench(model: str, precision: str, args: argparse.Namespace) -> dict[str, float]:
    cfg = NMTConfig(
        data=DataConfig(train="multi30k/train", valid="multi30k/val", download="multi30k", cache_dir=args.cache_dir),
        tokenizer=TokenizerConfig(vocab_size=8000),
        model=MODELS[model](),
        train=TrainConfig(
            batch_tokens=args.batch_tokens,
            precision=Precision(precision),
            threads=args.threads,
            compile=args.compile,
            max_steps=args.steps,
            eval_every=10**9,
            save_every=10**9,
            heatmap_sentences=0,
            matmul_peak_gflops=args.peak_gflops,
        ),
        search=SearchConfig(beam_size=1),
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp))
        batches = iter(trainer.loader)
        times, tokens, losses, real, padded = [], [], [], 0.0, 0.0
        profiler = None
        for step in range(1, args.steps + 1):
            if args.profile and step == args.warmup + 1:
                profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                profiler.__enter__()
            batch = next(batches)
            t0 = time.perf_counter()
            figures = trainer.step([batch])
            trainer.state.step += 1
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            if step > args.warmup:
                times.append(time.perf_counter() - t0)
                tokens.append(figures["tokens"])
                losses.append(figures["loss"])
                real += figures["real"]
                padded += figures["padded"]
            if profiler is not None and step == args.warmup + args.profile_steps:
                profiler.__exit__(None, None, None)
                print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)
                profiler = None
        trainer.loader.close()
        rate = sum(tokens) / sum(times)
        return {
            "tok_s": rate,
            "ms_per_step": 1000 * statistics.mean(times),
            "tgt_per_batch": statistics.mean(tokens),
            "flops_share": trainer.flops_per_token * rate / trainer.peak_flops,
            "peak_gflops": trainer.peak_flops / 1e9,
            "params": trainer.n_params,
            "padding_efficiency": real / padded,
            "loss": statistics.mean(losses[-20:]),  # same batches in every precision: compare across rows
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50, help="updates before the clock starts")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-gflops", type=float, default=0.0, help="0 = measure torch.mm in the precision")
    parser.add_argument("--cache-dir", default="data/cache", help="processed-data cache (git-ignored)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top CPU ops")
    parser.add_argument("--profile-steps", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(
        f"{'model':<14}{'prec':<6}{'tgt tok/s':>10}{'x OpenNMT':>10}{'ms/upd':>8}{'tgt/batch':>10}"
        f"{'pad eff':>8}{'FLOPs share':>12}{'peak GF/s':>10}{'params':>12}{'loss(last20)':>14}{'RSS GiB':>8}"
    )
    for model in args.models:
        for precision in args.precision:
            r = bench(model, precision, args)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(
                f"{model:<14}{precision:<6}{r['tok_s']:>10,.0f}{r['tok_s'] / PEERS[model]:>10.2f}"
                f"{r['ms_per_step']:>8.0f}{r['tgt_per_batch']:>10,.0f}{r['padding_efficiency']:>8.2f}"
                f"{r['flops_share']:>12.1%}{r['peak_gflops']:>10,.0f}{r['params']:>12,}{r['loss']:>14.4f}{rss:>8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
