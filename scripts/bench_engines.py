"""Decoding engines side by side on one model: nmt (fp32, bf16, int8) and CTranslate2 (fp32, int8).

    .venv/bin/python scripts/bench_engines.py --checkpoint runs/x/checkpoints/best.pt
    .venv/bin/python scripts/bench_engines.py -c best.pt --repeats 5 --engines nmt-fp32 ct2-int8 --modes beam5
    .venv/bin/python scripts/bench_engines.py -c best.pt --onmt-python ~/onmt/.venv/bin/python \\
        --onmt-model ~/onmt/model.pt --onmt-spm ~/onmt/spm.model        # also OpenNMT-py, its own model

The checkpoint is exported with ``nmt-export --format ctranslate2`` (float32 and ``--quantization int8``) into
--work-dir, then every engine translates Multi30k test_2016_flickr (1,000 sentences) with beam 5 and greedy, on
--threads threads, with the same source-token budget per batch, the same length penalty α and the same output cap
(the checkpoint's search settings unless given), in every worker layout of --workers: W workers decoding separate
batches side by side with threads / W threads each (nmt: ``nmt-translate --workers``, W decoding threads;
CTranslate2: ``inter_threads=W``, ``intra_threads=threads/W``). The default, ``--workers 1 2``, runs each engine both
ways: on this 2-core machine CTranslate2 is several times faster with two single-threaded workers than with one
two-threaded one, so a comparison that gives it only one layout flatters whoever is compared with it. Engines:

- ``nmt-fp32``, ``nmt-bf16`` (a bf16 copy of the model), ``nmt-int8`` (int8 dynamic quantisation):
  :class:`nmt.translate.Translator`, i.e. ``nmt-translate --precision``.
- ``ct2-fp32``, ``ct2-int8``: :class:`nmt.export.ct2_translate.CT2Translator` (``nmt-translate --engine
  ctranslate2``) on the float32 and the int8 export: nmt's batches and tokenization, CTranslate2's decoder (every
  batch submitted at once, for its workers to share).
- ``ct2native-fp32``, ``ct2native-int8``: ``ctranslate2.Translator.translate_batch`` used directly, as a CTranslate2
  user would: SentencePiece pieces, CTranslate2's own length-sorted token batches (``batch_type="tokens"``), one
  ``max_decoding_length`` for the whole set (outputs are then cut to each sentence's cap, as nmt's are).
- ``onmt``: OpenNMT-py's translator in its own Python, on its own model (``-batch_type tokens``; its time is the
  wall time of the run minus that of a one-line run, i.e. without start-up and model loading).

Each engine runs in a fresh process (OpenMP thread pools of two runtimes in one process would compete). Figures are
the best of --repeats timed runs after a warm-up on 100 sentences; tokenization and detokenization included, model
loading excluded. BLEU: sacrebleu on detokenized outputs against the references; "Δ" is the difference to nmt fp32
with the same search. Run it on an otherwise idle machine: other processes on the cores distort every figure, and
multi-threaded PyTorch most of all (its threads wait for each other at every operation; with 2 threads on 2 busy
cores a decoding run can take 30x longer).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = {"beam5": 5, "greedy": 1}
CT2_ENGINES = ["ct2-fp32", "ct2-int8", "ct2native-fp32", "ct2native-int8"]


def nmt_precisions() -> list[str]:
    """nmt's precisions for decoding on the CPU: fp32, bf16 and int8 (fp16 is slow on CPUs)."""
    from nmt.config import InferencePrecision

    return [p for p in ("fp32", "bf16", "int8") if p in {x.value for x in InferencePrecision}]


def read_gz(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line, _ in zip(f, range(n))]


def data_dir(arg: str | None) -> Path:
    for candidate in (arg, os.environ.get("NMT_DATA_DIR"), REPO / "data", REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "multi30k" / "test_2016_flickr.de.gz").exists():
            return Path(candidate)
    sys.exit("bench_engines: no multi30k/ under --data-dir, $NMT_DATA_DIR, data/ or ../shared/data")


# --------------------------------------------------------------------------------------------- workers
def timed(translate, lines: list[str], repeats: int) -> dict:
    """Warm up on 100 lines, then the best of ``repeats`` runs of ``translate(lines) -> (texts, pieces)``."""
    translate(lines[:100])
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        texts, pieces = translate(lines)
        seconds = time.perf_counter() - start
        if best is None or seconds < best["seconds"]:
            best = {"seconds": seconds, "texts": texts, "pieces": pieces}
    return best


def translator_run(make, lines: list[str], search: dict, repeats: int) -> dict:
    """Time an nmt-style translator (``Translator`` or ``CT2Translator``) made by ``make(search)``."""
    translator = make(search)

    def translate(batch: list[str]) -> tuple[list[str], int]:
        translator.stats.pieces = 0
        out = translator.translate(batch)
        return [t.texts[0] for t in out], translator.stats.pieces

    return timed(translate, lines, repeats)


def ct2_native_run(export: Path, lines: list[str], search: dict, spec: dict) -> dict:
    """``translate_batch`` over the whole set with CTranslate2's own token batching."""
    import ctranslate2
    import sentencepiece as spm

    meta = json.loads((export / "nmt.json").read_text(encoding="utf-8"))
    src_sp = spm.SentencePieceProcessor(model_file=str(export / "source.spm"))
    tgt_sp = spm.SentencePieceProcessor(model_file=str(export / "target.spm"))
    workers = spec["workers"]
    engine = ctranslate2.Translator(
        str(export), device="cpu", inter_threads=workers, intra_threads=max(1, spec["threads"] // workers)
    )
    max_src = meta["max_source_len"]

    def translate(batch: list[str]) -> tuple[list[str], int]:
        pieces = [p[:max_src] for p in src_sp.encode(batch, out_type=str)]
        caps = [math.floor(search["max_len_a"] * len(p)) + search["max_len_b"] for p in pieces]
        results = engine.translate_batch(
            pieces,
            max_batch_size=search["batch_tokens"],
            batch_type="tokens",
            beam_size=search["beam_size"],
            length_penalty=search["lenpen"] if search["beam_size"] > 1 else 0.0,
            max_decoding_length=min(max(caps) + 1, meta["max_positions"]),
            min_decoding_length=0,
            max_input_length=0,
        )
        outs = [r.hypotheses[0][:cap] for r, cap in zip(results, caps)]
        return [tgt_sp.decode(o) for o in outs], sum(len(o) + 1 for o in outs)

    return timed(translate, lines, spec["repeats"])


def worker(spec: dict) -> dict:
    """Run one engine over every search mode; returns {mode: {seconds, texts, pieces}}."""
    engine, lines = spec["engine"], spec["lines"]
    workers = spec["workers"]
    per_worker = max(1, spec["threads"] // workers)
    family, _, precision = engine.partition("-")
    results = {}
    if family == "nmt":
        import torch

        from nmt.translate import Translator

        torch.set_num_threads(per_worker)

        def make(search):
            return Translator.from_checkpoints(
                [spec["checkpoint"]], device="cpu", search=search, precision=precision, workers=workers
            )
    elif family == "ct2":
        from nmt.export.ct2_translate import CT2Translator

        def make(search):
            return CT2Translator(spec["exports"][precision], search=search, threads=per_worker, workers=workers)

    for mode in spec["modes"]:
        search = {**spec["search"], "beam_size": MODES[mode], "nbest": 1}
        if family == "ct2native":
            results[mode] = ct2_native_run(Path(spec["exports"][precision]), lines, search, spec)
        else:
            results[mode] = translator_run(make, lines, search, spec["repeats"])
    return results


def onmt_run(args: argparse.Namespace, lines: list[str], mode: str, work: Path) -> dict:
    """OpenNMT-py in its own Python: decode time = wall time of the run - wall time of a one-line run."""
    sp = None
    if args.onmt_spm:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=args.onmt_spm)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # OpenNMT-py checkpoints pickle an argparse Namespace

    def run(batch: list[str]) -> tuple[float, list[str]]:
        src, out = work / f"onmt.{mode}.src", work / f"onmt.{mode}.out"
        text = [" ".join(sp.encode(s, out_type=str)) if sp else s for s in batch]
        src.write_text("".join(t + "\n" for t in text), encoding="utf-8")
        command = [args.onmt_python, "-m", "onmt.bin.translate", "-model", args.onmt_model, "-src", src,
                   "-output", out, "-beam_size", str(MODES[mode]), "-batch_size", str(args.max_tokens),
                   "-batch_type", "tokens", "-gpu", "-1", *args.onmt_args.split()]  # fmt: skip
        start = time.perf_counter()
        subprocess.run([str(c) for c in command], check=True, env=env, capture_output=True)
        seconds = time.perf_counter() - start
        hyps = out.read_text(encoding="utf-8").split("\n")[: len(batch)]
        return seconds, hyps

    startup = min(run(lines[:1])[0] for _ in range(2))
    best = None
    for _ in range(args.repeats):
        seconds, hyps = run(lines)
        if best is None or seconds - startup < best["seconds"]:
            texts = [sp.decode(h.split()) if sp else h for h in hyps]
            pieces = sum(len(h.split()) + 1 for h in hyps) if sp else None  # output pieces incl. EOS
            best = {"seconds": max(seconds - startup, 1e-9), "texts": texts, "pieces": pieces}
    return best


# --------------------------------------------------------------------------------------------- main
def export(checkpoint: Path, work: Path) -> dict[str, str]:
    """The float32 and int8 CTranslate2 exports of ``checkpoint``, written by nmt-export."""
    exports = {"fp32": work / "ct2-fp32", "int8": work / "ct2-int8"}
    for name, path in exports.items():
        quantization = ["--quantization", "int8"] if name == "int8" else []
        command = [sys.executable, "-m", "nmt.cli.export", "-c", str(checkpoint), "--format", "ctranslate2",
                   "-o", str(path), "--force", "-q", *quantization]  # fmt: skip
        subprocess.run(command, check=True)
    return {k: str(v) for k, v in exports.items()}


def run_worker(spec: dict, work: Path) -> dict:
    name = f"{spec['engine']}.w{spec['workers']}"
    spec_file, out_file = work / f"{name}.spec.json", work / f"{name}.out.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, spec["threads"] // spec["workers"]))}
    subprocess.run([sys.executable, __file__, "--worker", str(spec_file), str(out_file)], check=True, env=env)
    return json.loads(out_file.read_text(encoding="utf-8"))


def table(rows: list[tuple[str, int, str, dict]], refs: list[str], n: int, threads: int) -> tuple[list[str], dict]:
    """The Markdown table of ``(engine, workers, mode, result)`` rows, and {speed, bleu, signature} (keyed by
    (engine, workers, mode)) for the summary."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    bleu = {(e, w, m): metric.corpus_score(r["texts"], [refs]).score for e, w, m, r in rows}
    out = [
        "| engine | workers × threads | search | sent/s | words/s | pieces/s | seconds | BLEU | Δ nmt-fp32 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    speed = {}
    for engine, workers, mode, r in rows:
        words = sum(len(t.split()) for t in r["texts"])
        speed[(engine, workers, mode)] = n / r["seconds"]
        base = next((b for (e, _, m), b in bleu.items() if e == "nmt-fp32" and m == mode), None)
        delta = f"{bleu[(engine, workers, mode)] - base:+.2f}" if base is not None and engine != "onmt" else "–"
        pieces = f"{r['pieces'] / r['seconds']:,.0f}" if r["pieces"] is not None else "–"
        layout = f"{workers} × {max(1, threads // workers)}"
        out.append(
            f"| {engine} | {layout} | {mode} | {n / r['seconds']:,.1f} | {words / r['seconds']:,.0f} | {pieces} | "
            f"{r['seconds']:.2f} | {bleu[(engine, workers, mode)]:.2f} | {delta} |"
        )
    return out, {"speed": speed, "bleu": bleu, "signature": str(metric.get_signature())}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", "-c", required=True, help="a trained nmt Transformer checkpoint")
    p.add_argument("--engines", nargs="+", help="subset to run (default: all available)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="worker layouts to run every engine in (W workers of threads / W threads each; default: 1 2)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed runs per engine and search (best one counts)")
    p.add_argument("--max-tokens", type=int, default=2048, help="source tokens per batch, every engine")
    p.add_argument("--lenpen", type=float, help="length penalty α (default: the checkpoint's)")
    p.add_argument("--max-len-a", type=float, help="output cap a * source + b (default: the checkpoint's)")
    p.add_argument("--max-len-b", type=int)
    p.add_argument(
        "--early-stop",
        choices=["bound", "heuristic", "none"],
        help="nmt's beam stopping rule (default: the checkpoint's)",
    )
    p.add_argument("--data-dir")
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "nmt-bench-engines"))
    p.add_argument("--onmt-python", help="python of a venv with OpenNMT-py (the onmt row runs only with it)")
    p.add_argument("--onmt-model", help="the OpenNMT-py checkpoint")
    p.add_argument("--onmt-spm", help="SentencePiece model of the OpenNMT-py model (pieces in, pieces out)")
    p.add_argument("--onmt-args", default="", help="extra options for onmt.bin.translate, e.g. '-max_length 100'")
    args = p.parse_args()

    from nmt.checkpoint import checkpoint_config, load_checkpoint

    cfg = checkpoint_config(load_checkpoint(args.checkpoint))
    search = {
        "lenpen": cfg.search.lenpen if args.lenpen is None else args.lenpen,
        "max_len_a": cfg.search.max_len_a if args.max_len_a is None else args.max_len_a,
        "max_len_b": cfg.search.max_len_b if args.max_len_b is None else args.max_len_b,
        "batch_tokens": args.max_tokens,
    }
    if args.early_stop:
        search["early_stop"] = args.early_stop  # nmt's rule; CTranslate2 has its own (see the README)
    available = [f"nmt-{p}" for p in nmt_precisions()] + CT2_ENGINES
    engines = args.engines or available
    unknown = sorted(set(engines) - set(available))
    if unknown:
        sys.exit(f"bench_engines: unknown or unavailable engines {unknown}; available: {available}")
    root = data_dir(args.data_dir)
    lines = read_gz(root / "multi30k" / "test_2016_flickr.de.gz", args.sentences)
    refs = read_gz(root / "multi30k" / "test_2016_flickr.en.gz", args.sentences)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    exports = export(Path(args.checkpoint), work) if any(e.startswith("ct2") for e in engines) else {}

    import ctranslate2
    import torch

    cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                if x.startswith("model name")), platform.processor())  # fmt: skip
    rule = search.get("early_stop", getattr(cfg.search.early_stop, "value", cfg.search.early_stop))
    print(f"# {args.checkpoint}: {len(lines)} sentences of test_2016_flickr, {args.threads} threads, batches of "
          f"<= {args.max_tokens} source tokens, lenpen {search['lenpen']}, cap {search['max_len_a']} * source + "
          f"{search['max_len_b']}, nmt early stop {rule}, best of "
          f"{args.repeats} after a warm-up, workers {args.workers}")  # fmt: skip
    print(f"# {cpu}; torch {torch.__version__}, ctranslate2 {ctranslate2.__version__}; "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    rows = []
    base = {"lines": lines, "threads": args.threads, "repeats": args.repeats, "modes": args.modes}
    for engine in engines:
        for workers in args.workers:
            spec = {**base, "engine": engine, "workers": workers, "checkpoint": args.checkpoint, "exports": exports,
                    "search": search}  # fmt: skip
            print(f"# running {engine}, {workers} worker(s) ...", file=sys.stderr, flush=True)
            for mode, result in run_worker(spec, work).items():
                rows.append((engine, workers, mode, result))
    if args.onmt_python and args.onmt_model:
        for mode in args.modes:
            print(f"# running OpenNMT-py {mode} ...", file=sys.stderr, flush=True)
            rows.append(("onmt", 1, mode, onmt_run(args, lines, mode, work)))
    elif args.onmt_python or args.onmt_model:
        print("# OpenNMT-py skipped: it needs both --onmt-python and --onmt-model", file=sys.stderr)
    order = [*engines, "onmt"]
    rows.sort(key=lambda r: (args.modes.index(r[2]), order.index(r[0]), r[1]))
    out, stats = table(rows, refs, len(lines), args.threads)
    print("\n".join(out))
    print(f"\nBLEU: {stats['signature']}")
    for mode in args.modes:
        ct2 = {k: v for k, v in stats["speed"].items() if k[2] == mode and k[0].startswith("ct2")}
        if not ct2:
            continue
        (ct2_engine, ct2_workers, _), ct2_best = max(ct2.items(), key=lambda kv: kv[1])
        base_bleu = next((b for (e, _, m), b in stats["bleu"].items() if e == "nmt-fp32" and m == mode), None)
        for (engine, workers, m), s in stats["speed"].items():
            if m != mode or not engine.startswith("nmt"):
                continue
            ok = base_bleu is None or abs(stats["bleu"][(engine, workers, m)] - base_bleu) <= 0.2
            print(f"{mode}: {engine} ({workers} worker(s)) / best CTranslate2 ({ct2_engine}, {ct2_workers} "
                  f"worker(s)) = {s / ct2_best:.2f}x (target >= 2x); BLEU within 0.2 of nmt-fp32: "
                  f"{'yes' if ok else 'NO'}")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        spec_path, out_path = sys.argv[2], sys.argv[3]
        Path(out_path).write_text(json.dumps(worker(json.loads(Path(spec_path).read_text()))), encoding="utf-8")
    else:
        main()
