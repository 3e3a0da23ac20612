"""Where decoding spends its time: ``Translator.translate`` under cProfile, the top functions by own time.

    NMT_DATA_DIR=../shared/data .venv/bin/python scripts/profile_decode.py -c best.pt --precision bf16 --beam 5 \\
        --threads 1

Decodes the first --sentences lines of Multi30k test_2016_flickr once untimed (warm-up), once timed, then once
under cProfile, and prints the timed run's sentences/s and the --top functions by internal time (torch operators
appear as their Python bindings, e.g. ``torch._C._nn.linear``).
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import os
import pstats
import sys
import time
from pathlib import Path

import torch

from nmt.translate import Translator

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", "-c", required=True)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"])
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--batch-tokens", type=int, default=2048)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--data-dir")
    args = p.parse_args()
    roots = (args.data_dir, os.environ.get("NMT_DATA_DIR"), REPO / "data", REPO.parent / "shared" / "data")
    path = next((Path(r) / "multi30k" / "test_2016_flickr.de.gz" for r in roots if r and
                 (Path(r) / "multi30k" / "test_2016_flickr.de.gz").exists()), None)  # fmt: skip
    if path is None:
        sys.exit("profile_decode: no multi30k/ under --data-dir, $NMT_DATA_DIR, data/ or ../shared/data")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line, _ in zip(f, range(args.sentences))]
    torch.set_num_threads(args.threads)
    search = {"beam_size": args.beam, "nbest": 1, "batch_tokens": args.batch_tokens}
    translator = Translator.from_checkpoints(
        [args.checkpoint], device="cpu", search=search, precision=args.precision, workers=args.workers
    )
    translator.translate(lines[:100])
    start = time.perf_counter()
    translator.translate(lines)
    seconds = time.perf_counter() - start
    print(f"# {len(lines)} sentences, {args.precision}, beam {args.beam}, {args.threads} thread(s), {args.workers} "
          f"worker(s): {seconds:.2f} s, {len(lines) / seconds:.1f} sent/s (unprofiled)")  # fmt: skip
    profile = cProfile.Profile()
    profile.enable()
    translator.translate(lines)
    profile.disable()
    pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
