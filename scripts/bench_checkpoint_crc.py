"""What checking every record's CRC-32 costs when a checkpoint is loaded (nmt.checkpoint.verify_records).

    .venv/bin/python scripts/bench_checkpoint_crc.py                          # a ~90 MB resumable checkpoint
    .venv/bin/python scripts/bench_checkpoint_crc.py --checkpoint runs/x/checkpoints/last.pt

Without --checkpoint, the default Transformer with an 8k joint vocabulary is initialised at random and saved with
Adam's two moment buffers, the size of a ``last.pt`` of the default preset (~90 MB); weights-only files such as
``best.pt`` are a third of that. Timed, interleaved, best of --repeats, with the file in the page cache (a file read
from disk pays the disk once, and the check then reads it from the cache): ``torch.load`` alone (what loading did
before), the CRC check alone, and :func:`nmt.checkpoint.load_checkpoint` (check + load).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nmt.checkpoint import load_checkpoint, save_checkpoint, verify_records
from nmt.config import NMTConfig, TransformerConfig, to_dict
from nmt.models import build_model


def make_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    cfg = NMTConfig(model=TransformerConfig())
    model = build_model(cfg.model, src_vocab_size=8000, tgt_vocab_size=8000)
    moments = {k: (torch.randn_like(v), torch.rand_like(v)) for k, v in model.state_dict().items()}
    state = {
        "step": 1,
        "config": to_dict(cfg),
        "model": model.state_dict(),
        "tokenizer": {"joint": b"x" * 300_000},
        "optimizer": {
            "exp_avg": {k: a for k, (a, _) in moments.items()},
            "exp_avg_sq": {k: b for k, (_, b) in moments.items()},
        },
    }
    save_checkpoint(state, path)
    return path


def best(fn, repeats: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run)."""
    out = []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - w, time.process_time() - c))
    return min(out)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", type=Path, help="an existing checkpoint (default: build a ~90 MB one)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint or make_checkpoint(Path(tmp) / "last.pt")
        size = path.stat().st_size / 1e6
        load_checkpoint(path)  # warm the page cache
        runs = {"torch.load": [], "CRC check": [], "load_checkpoint": []}
        for _ in range(args.repeats):  # interleaved, so a busy moment hits every variant alike
            runs["torch.load"].append(best(lambda: torch.load(path, weights_only=True), 1))
            runs["CRC check"].append(best(lambda: verify_records(path), 1))
            runs["load_checkpoint"].append(best(lambda: load_checkpoint(path), 1))
        print(f"{path}: {size:.1f} MB, best of {args.repeats}")
        print("| step | wall s | CPU s | MB/s |")
        print("|---|---:|---:|---:|")
        for name, times in runs.items():
            wall, cpu = min(times)
            print(f"| {name} | {wall:.3f} | {cpu:.3f} | {size / wall:.0f} |")
        base, check = min(runs["torch.load"])[0], min(runs["CRC check"])[0]
        print(f"CRC check = {100 * check / base:.0f}% of torch.load")


if __name__ == "__main__":
    main()
