"""Training throughput of each model at its default size: target tokens per second on Multi30k-shaped batches.

One timed unit is a full update: forward, label-smoothed loss, backward, gradient clipping and an Adam step
(what PEERS.md measured for OpenNMT-py, Sockeye and JoeyNMT). Batches hold at most ``--batch-tokens`` padded
tokens (n_examples × max(max source length + 1, max target length + 1)) of length-sorted pairs whose lengths
come from real Multi30k de-en lines cut by a joint 8k SentencePiece unigram model (trained here once; falls
back to word counts × 1.3 without sentencepiece or the corpus); token ids are random.

    .venv/bin/python scripts/bench_models.py                      # every model, fp32 and bf16
    .venv/bin/python scripts/bench_models.py --models transformer --precision bf16 --steps 20
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmt.config import AttentionType, RNNConfig, TransformerConfig
from nmt.data.batch import collate
from nmt.models import build_model
from nmt.training.loss import label_smoothed_nll

MODELS = {
    "transformer": lambda: TransformerConfig(),
    "rnn_bahdanau": lambda: RNNConfig(),
    "rnn_luong": lambda: RNNConfig(attention=AttentionType.luong),
    "rnn_none": lambda: RNNConfig(attention=AttentionType.none),
}


def keep_freed_memory() -> bool:
    """Stop glibc from returning freed blocks to the OS (mmap threshold / trim threshold up).

    Training allocates and frees the same large activations every step; by default each ≥ 128 KiB block is a
    fresh mmap whose pages fault in again, which with 2 threads costs up to 3-25x on elementwise ops here.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 2**31 - 1))


def corpus_lengths(data: Path, vocab: int, n: int) -> list[tuple[int, int]]:
    """(source pieces, target pieces) of the first ``n`` Multi30k training pairs."""
    lines = {}
    for lang in ("de", "en"):
        with gzip.open(data / "multi30k" / f"train.{lang}.gz", "rt", encoding="utf-8") as f:
            lines[lang] = [line.strip() for line in f][:n]
    try:
        import sentencepiece as spm

        with tempfile.TemporaryDirectory() as tmp:
            text = Path(tmp) / "all.txt"
            text.write_text("\n".join(lines["de"] + lines["en"]) + "\n", encoding="utf-8")
            spm.SentencePieceTrainer.train(
                input=str(text), model_prefix=f"{tmp}/m", vocab_size=vocab, model_type="unigram",
                character_coverage=1.0, hard_vocab_limit=False, pad_id=0, unk_id=1, bos_id=2, eos_id=3, minloglevel=2,
            )  # fmt: skip
            sp = spm.SentencePieceProcessor(model_file=f"{tmp}/m.model")
            return [(len(a), len(b)) for a, b in zip(sp.encode(lines["de"]), sp.encode(lines["en"]))]
    except ImportError:
        return [(round(len(a.split()) * 1.3), round(len(b.split()) * 1.3)) for a, b in zip(lines["de"], lines["en"])]


def make_batches(lengths: list[tuple[int, int]], batch_tokens: int, vocab: int, seed: int) -> list:
    """Length-sorted token batches (random ids), shuffled."""
    rng = random.Random(seed)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i][1], lengths[i][0]))
    batches, current, width = [], [], 0
    for i in order:
        w = max(width, lengths[i][0] + 1, lengths[i][1] + 1)
        if current and w * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, w = [], max(lengths[i][0] + 1, lengths[i][1] + 1)
        current.append(i)
        width = w
    batches.append(current)
    rng.shuffle(batches)
    out = []
    for b in batches:
        src = [[rng.randrange(4, vocab) for _ in range(max(lengths[i][0], 1))] for i in b]
        tgt = [[rng.randrange(4, vocab) for _ in range(max(lengths[i][1], 1))] for i in b]
        out.append(collate(src, tgt, b))
    return out


def bench(name: str, batches: list, vocab: int, precision: str, warmup: int, steps: int) -> tuple[int, float]:
    torch.manual_seed(1)
    model = build_model(MODELS[name](), src_vocab_size=vocab, tgt_vocab_size=vocab).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), fused=True)
    tokens, elapsed = 0, 0.0
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        t0 = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss, _, n = label_smoothed_nll(logits, batch.tgt_out, smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            elapsed += time.perf_counter() - t0
            tokens += int(n)
    return model.num_parameters(), tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=29000, help="Multi30k training pairs to take lengths from")
    parser.add_argument("--glibc-default", action="store_true", help="leave malloc's defaults (see keep_freed_memory)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("NMT_DATA_DIR", "../shared/data")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tuned = not args.glibc_default and keep_freed_memory()
    lengths = corpus_lengths(args.data, args.vocab, args.pairs)
    batches = make_batches(lengths, args.batch_tokens, args.vocab, seed=1)
    real = sum(b.num_tgt_tokens for b in batches) / len(batches)
    print(f"{len(batches)} batches of <= {args.batch_tokens} padded tokens, {real:.0f} real target tokens each; "
          f"torch {torch.__version__}, {args.threads} threads, malloc tuned: {tuned}")  # fmt: skip
    print(f"{'model':<14} {'precision':<9} {'parameters':>11} {'tgt tok/s':>10}")
    for name in args.models:
        for precision in args.precision:
            params, rate = bench(name, batches, args.vocab, precision, args.warmup, args.steps)
            print(f"{name:<14} {precision:<9} {params:>11,} {rate:>10,.0f}", flush=True)


if __name__ == "__main__":
    main()
