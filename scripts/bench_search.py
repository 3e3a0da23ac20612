"""Beam search stopping rules compared on one checkpoint: speed, scores, and whether the top output depends on nbest.

    .venv/bin/python scripts/bench_search.py --checkpoint runs/x/checkpoints/best.pt
    .venv/bin/python scripts/bench_search.py -c best.pt --src test.de --ref test.en --beam 5 --nbest 5 --lenpen 1.0

For every ``search.early_stop`` rule (bound, heuristic, none) the test set is translated with ``--nbest 1`` and
with ``--nbest N``; rules and n-best sizes are interleaved within each repeat, so background load hits them alike,
and the fastest of ``--repeats`` runs is kept. Printed per run: sentences/s, decoder steps (batch rows summed
over steps: the work search asked the model for), BLEU, chrF and the length ratio of the top outputs (sacrebleu,
default 13a tokenization), the lines whose top output differs from the ``nbest 1`` run of the same rule, and the
lines whose top output differs from rule ``none`` (which never stops early: ``bound`` must give 0 there).
Default data: Multi30k test_2016_flickr from ``$NMT_DATA_DIR`` (or data/, ../shared/data).
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from sacrebleu.metrics import BLEU, CHRF

from nmt.config import EarlyStop
from nmt.translate import Translator

REPO = Path(__file__).resolve().parents[1]


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def default_test_set() -> tuple[Path, Path]:
    for root in (os.environ.get("NMT_DATA_DIR"), REPO / "data", REPO.parent / "shared" / "data"):
        src = Path(root or "") / "multi30k" / "test_2016_flickr.de.gz"
        if root and src.exists():
            return src, src.with_name("test_2016_flickr.en.gz")
    sys.exit("bench_search: no multi30k/test_2016_flickr.de.gz under $NMT_DATA_DIR, data/ or ../shared/data")


class CountingModel(torch.nn.Module):
    """Wraps a model to count decoder rows (batch rows summed over steps) without changing anything else."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def encode(self, *args, **kwargs):
        return self.model.encode(*args, **kwargs)

    def init_state(self, *args, **kwargs):
        return self.model.init_state(*args, **kwargs)

    def decode_step(self, prev_tokens, *args, **kwargs):
        self.rows += prev_tokens.size(0)
        return self.model.decode_step(prev_tokens, *args, **kwargs)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", "-c", required=True)
    p.add_argument("--src", type=Path, help="source file (plain or .gz); default: Multi30k test_2016_flickr")
    p.add_argument("--ref", type=Path, help="reference file, line-aligned with --src")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--nbest", type=int, default=5, help="the n-best size compared with nbest 1")
    p.add_argument("--lenpen", type=float, default=1.0)
    p.add_argument("--sentences", type=int, default=0, help="only the first N lines (0 = all)")
    p.add_argument("--batch-tokens", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"])
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    logging.getLogger("nmt").setLevel(logging.ERROR)  # no per-line truncation warnings
    src_path, ref_path = (args.src, args.ref) if args.src else default_test_set()
    src, ref = read_lines(src_path), read_lines(ref_path)
    if args.sentences:
        src, ref = src[: args.sentences], ref[: args.sentences]
    search = {"beam_size": args.beam, "lenpen": args.lenpen, "batch_tokens": args.batch_tokens, "sampling": False}
    tr = Translator.from_checkpoints([args.checkpoint], device=args.device, search=search, precision=args.precision)
    counter = CountingModel(tr.model)
    tr.model = counter
    base = tr.cfg
    tr.translate(src[:50])  # warm-up: allocator, kernels
    runs = [(rule, n) for rule in EarlyStop for n in sorted({1, args.nbest})]
    best = {run: float("inf") for run in runs}
    outputs: dict[tuple[EarlyStop, int], list[str]] = {}
    rows: dict[tuple[EarlyStop, int], int] = {}
    for _ in range(args.repeats):
        for rule, n in runs:
            tr.cfg = replace(base, early_stop=rule, nbest=n)
            counter.rows = 0
            start = time.perf_counter()
            out = tr.translate(src)
            best[rule, n] = min(best[rule, n], time.perf_counter() - start)
            outputs[rule, n], rows[rule, n] = [t.texts[0] for t in out], counter.rows

    print(
        f"# {args.checkpoint}: {len(src)} sentences of {src_path}, beam {args.beam}, lenpen {args.lenpen}, "
        f"{args.threads} threads, {args.precision}; load average {os.getloadavg()[0]:.2f} (shared cores)"
    )
    print(
        "| early_stop | nbest | sent/s | decoder rows | BLEU | chrF | length ratio | top-1 ≠ nbest 1 | top-1 ≠ none |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rule, n in runs:
        hyps = outputs[rule, n]
        bleu = BLEU().corpus_score(hyps, [ref])
        chrf = CHRF().corpus_score(hyps, [ref])
        vs_1 = sum(a != b for a, b in zip(hyps, outputs[rule, 1]))
        vs_none = sum(a != b for a, b in zip(hyps, outputs[EarlyStop.none, n]))
        print(
            f"| {rule.value} | {n} | {len(src) / best[rule, n]:.1f} | {rows[rule, n]:,} | {bleu.score:.2f} | "
            f"{chrf.score:.2f} | {bleu.sys_len / bleu.ref_len:.3f} | {vs_1} | {vs_none} |"
        )


if __name__ == "__main__":
    main()
