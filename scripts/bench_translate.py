"""Translation speed on Multi30k test_2016_flickr (1,000 sentences): beam 5 and greedy, with and without alignments.

    .venv/bin/python scripts/bench_translate.py                   # random-init default Transformer and RNNs, 8k vocab
    .venv/bin/python scripts/bench_translate.py --checkpoint runs/x/checkpoints/best.pt --threads 2

Without --checkpoint, a joint 8k SentencePiece unigram model is trained on the Multi30k training set (cached in
--work-dir) and default-size models are initialised at random and saved as checkpoints, so loading goes through the
same path as for users. Random models rarely emit EOS: their outputs run to the length cap (a * source + b
pieces), so compare *output pieces per second* with other toolkits, not only sentences per second.

Figures are the best of --repeats timed runs after a warm-up, decoding only (tokenization included, model loading
excluded); "CPU s" is the process CPU time of that run (with one thread, the time it would take on an idle core);
start-up is the wall time of the ``nmt-translate`` console script on a one-line input (Python, imports,
checkpoint loading). Peers on this machine class (../shared/benchmarks/PEERS.md, trained 200 updates, max length 100):
OpenNMT-py Transformer beam 5 137 sent/s, 1,538 pieces/s; greedy 385 sent/s, 5,092 pieces/s; CTranslate2 beam 5
118 sent/s, 1,379 pieces/s; greedy 166 sent/s, 2,775 pieces/s; OpenNMT-py RNN beam 5 102 / 1,410, greedy 345 / 5,312.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from nmt.config import AttentionType, NMTConfig, RNNConfig, TokenizerConfig, TransformerConfig, to_dict
from nmt.translate import Translator

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "transformer": TransformerConfig,
    "rnn": RNNConfig,  # GRU, Bahdanau attention
    "luong": lambda: RNNConfig(attention=AttentionType.luong),
}


def read_gz(path: Path, n: int | None = None) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    return lines[:n] if n else lines


def checkpoint_label(path: Path) -> str:
    """``runs/x/checkpoints/best.pt`` -> ``x/best.pt``: run directories tell checkpoints apart, file names do not."""
    return f"{path.parent.parent.name}/{path.name}" if path.parent.name == "checkpoints" else path.name


def data_dir(arg: str | None) -> Path:
    for candidate in (arg, os.environ.get("NMT_DATA_DIR"), REPO / "data", REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "multi30k" / "test_2016_flickr.de.gz").exists():
            return Path(candidate)
    sys.exit("bench_translate: no multi30k/ under --data-dir, $NMT_DATA_DIR, data/ or ../shared/data")


def random_checkpoints(names: list[str], root: Path, work: Path) -> list[tuple[str, Path]]:
    """Default-size random-init models over a joint 8k SentencePiece model trained on Multi30k (cached)."""
    from nmt.checkpoint import save_checkpoint
    from nmt.data.tokenizer import Tokenizer
    from nmt.models import build_model

    spm_dir = work / "spm8k"
    if (spm_dir / "joint.model").exists():
        tok = Tokenizer.load(spm_dir)
    else:
        print("training the 8k SentencePiece model on Multi30k train ...", file=sys.stderr)
        m30k = root / "multi30k"
        tok = Tokenizer.train(read_gz(m30k / "train.de.gz"), read_gz(m30k / "train.en.gz"), TokenizerConfig())
        tok.save(spm_dir)
    out = []
    for name in names:
        path = work / f"{name}-random.pt"
        if not path.exists():
            cfg = NMTConfig(name=f"bench-{name}", model=MODELS[name]())
            torch.manual_seed(0)
            model = build_model(cfg.model, src_vocab_size=tok.src_vocab_size, tgt_vocab_size=tok.tgt_vocab_size)
            state = {"step": 0, "config": to_dict(cfg), "model": model.state_dict(), "tokenizer": tok.to_state()}
            save_checkpoint(state, path)
        out.append((f"{name} (random init)", path))
    return out


def startup_seconds(checkpoint: Path, line: str, threads: int) -> float:
    """Wall time of the console script translating one line: interpreter, imports, loading, one sentence."""
    with tempfile.NamedTemporaryFile("w", suffix=".de", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        start = time.perf_counter()
        subprocess.run(
            [
                REPO / ".venv" / "bin" / "nmt-translate",
                "-c",
                checkpoint,
                "-i",
                f.name,
                "-o",
                os.devnull,
                "-q",
                "--device",
                "cpu",
                "--threads",
                str(threads),
                "--beam-size",
                "1",
            ],
            check=True,
        )
        return time.perf_counter() - start


def has_attention(checkpoint: Path) -> bool:
    from nmt.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint)["config"]["model"]
    return model.get("arch") == "transformer" or model.get("attention") != "none"


def bench(args: argparse.Namespace, label: str, checkpoint: Path, lines: list[str]) -> list[str]:
    rows = []
    aligns = [False, True] if args.alignments and has_attention(checkpoint) else [False]
    for mode in args.modes:
        beam = 5 if mode == "beam5" else 1
        for align in aligns:
            search = {"beam_size": beam, "nbest": 1, "batch_tokens": args.batch_tokens}
            if args.max_len_a is not None:
                search["max_len_a"] = args.max_len_a
            if args.max_len_b is not None:
                search["max_len_b"] = args.max_len_b
            start = time.perf_counter()
            tr = Translator.from_checkpoints(
                [checkpoint],
                device=args.device,
                search=search,
                need_attention=align,
                precision=args.precision,
                workers=args.workers,
            )
            load = time.perf_counter() - start
            tr.translate(lines[:50])  # warm-up: allocator, kernels
            best, cpu, pieces, words = float("inf"), 0.0, 0, 0
            for _ in range(args.repeats):
                tr.stats.pieces = tr.stats.words = 0
                start, start_cpu = time.perf_counter(), time.process_time()
                out = tr.translate(lines)
                if align:
                    [tr.links(t) for t in out]  # Pharaoh lines are part of the alignment cost
                elapsed = time.perf_counter() - start
                if elapsed < best:
                    best, cpu = elapsed, time.process_time() - start_cpu
                    pieces, words = tr.stats.pieces, tr.stats.words
            n = len(lines)
            rows.append(
                f"| {label} | {mode} | {'yes' if align else 'no'} | {n / best:,.0f} | {pieces / best:,.0f} | "
                f"{pieces / n:.1f} | {words / best:,.0f} | {best:.2f} | {cpu:.2f} | {load:.2f} |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", nargs="*", default=[], help="benchmark these instead of random-init models")
    p.add_argument("--models", nargs="+", default=["transformer", "rnn"], choices=list(MODELS))
    p.add_argument("--modes", nargs="+", default=["beam5", "greedy"], choices=["beam5", "greedy"])
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--batch-tokens", type=int, default=2048, help="source tokens per batch (PEERS.md: ~2,048)")
    p.add_argument("--max-len-a", type=float)
    p.add_argument("--max-len-b", type=int)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="decoding workers of threads / W torch threads each (nmt-translate --workers)",
    )
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-alignments", dest="alignments", action="store_false", help="skip the runs with alignments")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir")
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "nmt-bench"))
    args = p.parse_args()

    torch.set_num_threads(max(1, args.threads // args.workers))
    root = data_dir(args.data_dir)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    lines = read_gz(root / "multi30k" / "test_2016_flickr.de.gz", args.sentences)
    given = [(checkpoint_label(Path(c)), Path(c)) for c in args.checkpoint]
    models = given or random_checkpoints(args.models, root, work)
    print(f"# {len(lines)} sentences, {args.threads} threads in {args.workers} worker(s), {args.precision}, batches of "
          f"{args.batch_tokens} tokens")  # fmt: skip
    print(f"# load average before: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    print("| model | search | alignments | sent/s | pieces/s | pieces/sent | words/s | seconds | CPU s | load s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for label, path in models:
        bench(args, label, path, lines)
    for label, path in models:
        print(f"start-up of nmt-translate ({label}, one line): {startup_seconds(path, lines[0], args.threads):.2f} s")


if __name__ == "__main__":
    main()
