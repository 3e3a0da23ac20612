"""What the operations of one decoding step cost on this CPU: a beam-5 step's shapes, bf16, in isolation.

    .venv/bin/python scripts/bench_decode_ops.py [--rows 700] [--vocab 8000] [--threads 1]

Prints milliseconds per call (best of --repeats means of 30 calls) for the linear layers of a d_model-256 decoder
with and without their bias and ReLU, oneDNN's fused linear + bias (+ ReLU) (``torch.ops.mkldnn._linear_pointwise``,
an internal operator, for comparison only) and the vocabulary-sized work of a beam step (widening, log-softmax,
chunk maxima, top-k). The README's decoding-engine section quotes it; tests never time anything.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def ms(fn: Callable[[], object], repeats: int, calls: int = 30) -> float:
    fn()
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls * 1e3)
    return best


def layer_row(n: int, d_in: int, d_out: int, relu: bool, repeats: int) -> str:
    """One table row: a bf16 linear layer of n rows, its variants and oneDNN's fused one."""
    bf16 = torch.bfloat16
    x, w, b = torch.randn(n, d_in, dtype=bf16), torch.randn(d_out, d_in, dtype=bf16), torch.randn(d_out, dtype=bf16)
    fused = "–"
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(w, n)
        attr, scalars = ("relu", [None]) if relu else ("none", [])
        fused = f"{ms(lambda: torch.ops.mkldnn._linear_pointwise(x, packed, b, attr, scalars, ''), repeats):.3f}"
    except (AttributeError, RuntimeError):  # no oneDNN in this build
        pass
    with_relu = f"{ms(lambda: torch.relu(F.linear(x, w, b)), repeats):.3f}" if relu else "–"
    plain, no_bias = ms(lambda: F.linear(x, w, b), repeats), ms(lambda: F.linear(x, w), repeats)
    return f"| {d_in} → {d_out} | {plain:.3f} | {no_bias:.3f} | {with_relu} | {fused} |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=700, help="decoder rows per step (sentences x beams)")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, bf16 = args.rows, torch.bfloat16
    print(f"# {n} rows, vocabulary {args.vocab}, {args.threads} thread(s), torch {torch.__version__}; ms per call")
    print("| layer | linear | linear, no bias | linear + ReLU | oneDNN fused (+ ReLU) |")
    print("|---|---:|---:|---:|---:|")
    for d_in, d_out, relu in ((256, 768, False), (256, 256, False), (256, 1024, True), (1024, 256, False)):
        print(layer_row(n, d_in, d_out, relu, args.repeats))
    x, w = torch.randn(n, 256, dtype=bf16), torch.randn(args.vocab, 256, dtype=bf16)
    logits = F.linear(x, w) * 0.1
    wide = logits.float()
    lp = F.log_softmax(wide, -1)
    chunk = next((c for c in range(100, 60, -1) if args.vocab % c == 0), args.vocab)
    print("\n| vocabulary step | ms |\n|---|---:|")
    for name, fn in (
        ("output projection (no bias)", lambda: F.linear(x, w)),
        ("widen bf16 logits to float32", lambda: logits.float()),
        ("log-softmax, float32", lambda: F.log_softmax(wide, -1)),
        ("log-softmax from bf16 (dtype=float32)", lambda: F.log_softmax(logits, -1, dtype=torch.float32)),
        ("log-softmax, bf16 out", lambda: F.log_softmax(logits, -1)),
        ("chunk maxima, float32", lambda: lp.view(n, -1, chunk).amax(2)),
        ("chunk maxima, bf16", lambda: logits.view(n, -1, chunk).amax(2)),
        ("top-10 over the whole row, float32", lambda: lp.topk(10, 1)),
    ):
        print(f"| {name} | {ms(fn, args.repeats):.3f} |")


if __name__ == "__main__":
    main()
