"""The CUDA path in ten minutes: one command that measures what a GPU does with this toolkit and prints a report.

    .venv/bin/python scripts/gpu_check.py [--work-dir runs/gpu_check] [--output gpu_check.md]
    .venv/bin/python scripts/gpu_check.py --cpu-smoke     # the CPU-checkable parts at tiny sizes (a test runs it)

On a machine with a CUDA GPU and the CUDA build of torch, each step within its time budget (the report says so
when a step ran over; steps left when the 10 minutes are spent are skipped):
  0. data: Multi30k de-en from $NMT_DATA_DIR (or ../shared/data, shared/data, data/), prepared as ``nmt-train
     train=gpu`` prepares it (the runs of step 5 reuse the cache);
  1. the SDPA kernel of every attention call in a profiled bf16 training step (expected: flash for causal
     self-attention, memory-efficient for masked encoder and cross attention), and fused vs explicit logits;
  2. the loss on (8192 x vocabulary) bf16 logits: gradient against ``F.cross_entropy``, peak memory of both;
  3. host synchronisations per update (``torch.cuda.set_sync_debug_mode``), pipelined loop and ``Trainer.step``;
  4. fp16: non-finite updates skipped on the device, the scaler's scale lowered, training going on;
  5. ``nmt-train train=gpu``: 200 updates of the default Transformer (recompiles, graph breaks, tokens/s, MFU
     against the measured bf16 matmul peak) and 20 updates of the Bahdanau RNN;
  6. batch invariance of ``nmt-translate --precision bf16``: batched against one sentence per batch.

Exit status: 0 every check passed, 1 a check failed, 2 no CUDA device (without --cpu-smoke) or no corpus.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the console scripts of the running environment
TOTAL_SECONDS = 600
EXIT_FAILED, EXIT_UNAVAILABLE = 1, 2
TINY_TRANSFORMER = [
    "model.d_model=32",
    "model.ffn_dim=64",
    "model.heads=2",
    "model.encoder_layers=1",
    "model.decoder_layers=2",
]
TINY_RNN = ["model.embed_dim=32", "model.hidden_dim=48"]


@dataclass(frozen=True)
class Sizes:
    """What each step runs: the real thing on CUDA, tiny versions on the CPU (``--cpu-smoke``)."""

    device: str
    hardware: str  # the train= preset
    attention_precision: str  # the CPU's fused SDPA kernel serves fp32 (short bf16 blocks take the explicit path)
    transformer: list[str] = field(default_factory=list)
    rnn: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # more nmt-train overrides
    loss_rows: int = 8192
    updates: int = 200
    rnn_updates: int = 20
    sync_updates: int = 10
    translate_lines: int = 200
    translate_flags: list[str] = field(default_factory=list)
    compile: bool = True


CUDA = Sizes(device="cuda", hardware="gpu", attention_precision="bf16")
SMOKE = Sizes(
    device="cpu",
    hardware="cpu",
    attention_precision="fp32",
    transformer=TINY_TRANSFORMER,
    rnn=TINY_RNN,
    # One thread: tiny models only lose from more, and a busy machine makes OpenMP's waits very costly.
    extra=["tokenizer.vocab_size=500", "train.threads=1", "train.batch_tokens=512", "search.beam_size=2"],
    loss_rows=256,
    updates=6,
    rnn_updates=3,
    sync_updates=0,
    translate_lines=20,
    translate_flags=["--threads", "1"],
    compile=False,
)


@dataclass
class Check:
    number: str
    title: str
    budget: float
    status: str = "ok"  # ok | FAILED | skipped
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def say(self, line: str) -> None:
        self.lines.append(line)

    def expect(self, condition: bool, message: str) -> None:
        """Record ``message`` as passed or failed."""
        self.say(("ok: " if condition else "FAILED: ") + message)
        if not condition:
            self.status = "FAILED"


class Context:
    """What the steps share: sizes, the work directory, the composed config, the prepared data, run directories."""

    def __init__(self, sizes: Sizes, work: Path) -> None:
        self.sizes, self.work, self.started = sizes, work, time.monotonic()
        self.cfg: Any = None
        self.data: Any = None
        self.runs: dict[str, Path] = {}
        self.checks: list[Check] = []

    def left(self) -> float:
        return TOTAL_SECONDS - (time.monotonic() - self.started)

    def overrides(self, model: str = "transformer") -> list[str]:
        s = self.sizes
        tiny = s.transformer if model == "transformer" else s.rnn
        return [f"train={s.hardware}", f"model={model}", *tiny, *s.extra, f"data.cache_dir={self.work / 'cache'}"]

    def config(self, *extra: str, model: str = "transformer") -> Any:
        """The typed config ``nmt-train`` composes from the same overrides (so data caches are shared)."""
        from hydra import compose, initialize_config_dir

        from nmt.cli.train import config_dir, to_typed

        overrides = [*self.overrides(model), *extra]
        if not self.sizes.compile:
            overrides.append("train.compile=false")
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return to_typed(compose("train", overrides=overrides))

    def step(self, number: str, title: str, budget: float, fn: Callable[[Context, Check], None]) -> None:
        check = Check(number, title, budget)
        self.checks.append(check)
        if self.left() < min(budget, 30):
            check.status = "skipped"
            check.say(f"skipped: {self.left():.0f} s of the {TOTAL_SECONDS} s left")
            return
        t0 = time.monotonic()
        try:
            fn(self, check)
        except Exception as e:  # a broken step is a finding of the report, not the end of the run
            check.status = "FAILED"
            check.say(f"FAILED: {type(e).__name__}: {e}")
            check.say("```\n" + traceback.format_exc(limit=6).rstrip() + "\n```")
        check.seconds = time.monotonic() - t0
        if check.seconds > budget:
            check.say(f"note: took {check.seconds:.0f} s, over its budget of {budget:.0f} s")
        print(f"[{check.number}] {check.status} in {check.seconds:.1f} s: {check.title}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------------ steps
def prepare(ctx: Context, check: Check) -> None:
    from nmt.data.prepare import prepare_data

    ctx.cfg = ctx.config()
    ctx.data = prepare_data(ctx.cfg.data, ctx.cfg.tokenizer)
    tok = ctx.data.tokenizer
    check.say(
        f"data root {os.environ['NMT_DATA_DIR']}: {len(ctx.data.train)} training pairs, vocabulary {tok.tgt_vocab_size}"
    )


def _batch(ctx: Context, tokens: int) -> Any:
    """The first training batch of about ``tokens`` padded tokens (epoch 0's order)."""
    from nmt.data.batching import TokenBatchSampler

    train = ctx.data.train
    sampler = TokenBatchSampler(train.src_lengths, train.tgt_lengths, batch_tokens=tokens, seed=1)
    return train.batch(max(sampler.epoch_batches(0)[:20], key=len)).to(ctx.sizes.device)


def sdpa_kernels(ctx: Context, check: Check) -> None:
    import torch

    from nmt.config import Precision
    from nmt.models import build_model
    from nmt.search import autocast
    from nmt.training.loss import label_smoothed_nll

    device, precision = torch.device(ctx.sizes.device), Precision(ctx.sizes.attention_precision)
    tok = ctx.data.tokenizer
    model = build_model(ctx.cfg.model, src_vocab_size=tok.src_vocab_size, tgt_vocab_size=tok.tgt_vocab_size)
    model = model.to(device).train()
    batch = _batch(ctx, ctx.cfg.train.batch_tokens)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        with autocast(device, precision):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        label_smoothed_nll(logits, batch.tgt_out, smoothing=0.1)[0].backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
    calls = [e for e in prof.events() if e.name == "aten::scaled_dot_product_attention"]
    calls.sort(key=lambda e: e.time_range.start)
    kernels = [next((c.name for c in e.cpu_children if c.name.startswith("aten::_")), "?") for e in calls]
    cfg = ctx.cfg.model
    roles = ["encoder self (padding mask)"] * cfg.encoder_layers
    roles += ["decoder self (causal)", "cross (padding mask)"] * cfg.decoder_layers
    check.say(f"{precision.value} training step, batch {tuple(batch.src.shape)} -> {tuple(batch.tgt_in.shape)}:")
    check.say("| call | role | SDPA op |\n|---|---|---|")
    for i, (role, kernel) in enumerate(zip(roles, kernels)):
        check.say(f"| {i} | {role} | `{kernel}` |")
    check.expect(len(kernels) == len(roles), f"{len(kernels)} fused SDPA calls for {len(roles)} attentions")
    check.expect(not any("math" in k for k in kernels), "no call fell back to the math path")
    if device.type == "cuda":
        flash = all("flash" in k for k, r in zip(kernels, roles) if "causal" in r)
        efficient = all("efficient" in k for k, r in zip(kernels, roles) if "mask" in r)
        check.expect(flash, "causal self-attention on the flash kernel")
        check.expect(efficient, "masked encoder and cross attention on the memory-efficient kernel")
        names = Counter(e.name for e in prof.events() if e.device_type.name == "CUDA")
        fused = {n: c for n, c in names.items() if re.search("flash|fmha|cudnn|attention", n, re.I)}
        check.say("attention kernels on the GPU: " + ", ".join(f"`{n[:60]}` x{c}" for n, c in fused.items()))
    model.eval()
    with torch.no_grad(), autocast(device, Precision.bf16):
        fused_logits = model(batch.src, batch.src_lengths, batch.tgt_in).float()
        model.explicit = True
        explicit_logits = model(batch.src, batch.src_lengths, batch.tgt_in).float()
        model.explicit = False
    real = batch.tgt_out != 0
    diff = (fused_logits - explicit_logits).abs()[real].max().item() / fused_logits[real].abs().max().item()
    agree = (fused_logits.argmax(-1) == explicit_logits.argmax(-1))[real].float().mean().item()
    check.expect(diff < 2e-2 and agree > 0.99, f"bf16 fused vs explicit logits: max |diff| {diff:.2e} of the "
                 f"largest logit, argmax agrees at {100 * agree:.2f}% of target positions")  # fmt: skip


def loss_check(ctx: Context, check: Check) -> None:
    import torch
    import torch.nn.functional as F

    from nmt.training.loss import label_smoothed_nll

    device = torch.device(ctx.sizes.device)
    rows, vocab = ctx.sizes.loss_rows, ctx.data.tokenizer.tgt_vocab_size
    g = torch.Generator(device=device).manual_seed(0)
    logits = (torch.randn(rows, vocab, generator=g, device=device) * 3).bfloat16()
    target = torch.randint(4, vocab, (rows,), generator=g, device=device)
    target[::9] = 0  # padding

    def run(fn: Callable[[Any], Any]) -> tuple[float, Any, float]:
        x = logits.clone().requires_grad_(True)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        loss = fn(x)
        loss.backward()
        loss = loss.detach()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device.type == "cuda" else math.nan
        return loss.item(), x.grad.float(), peak

    ours, grad, peak = run(lambda x: label_smoothed_nll(x, target, smoothing=0.1)[0])
    ref, ref_grad, ref_peak = run(
        lambda x: F.cross_entropy(x.float(), target, ignore_index=0, reduction="sum", label_smoothing=0.1)
    )
    rel = (grad - ref_grad).abs().max().item() / ref_grad.abs().max().item()
    check.say(f"({rows} x {vocab}) bf16 logits, label smoothing 0.1, every 9th target padding")
    check.expect(abs(ours - ref) <= 1e-4 * abs(ref), f"loss {ours:.6g} vs F.cross_entropy {ref:.6g}")
    check.expect(rel < 1e-2, f"gradient: max |diff| {rel:.2e} of the largest (bf16 rounding is 3.9e-3)")
    if device.type == "cuda":
        check.say(f"peak memory above the logits: ours {peak:.0f} MiB, F.cross_entropy on float32 {ref_peak:.0f} MiB")


def host_syncs(ctx: Context, check: Check) -> None:
    import torch

    from nmt.training.trainer import Trainer

    if ctx.sizes.device != "cuda":
        check.status = "skipped"
        check.say("skipped: CUDA only (torch.cuda.set_sync_debug_mode)")
        return
    cfg = ctx.config("train.compile=false", "train.matmul_peak_gflops=1", "train.heatmap_sentences=0")
    trainer = Trainer(cfg, ctx.work / "syncs")
    try:
        batches = iter(trainer.loader)
        updater, state = trainer.updater, trainer.state
        for _ in range(3):  # warm-up: cuBLAS handles, the caching allocators
            trainer.step([next(batches)])
            state.step += 1
        n = ctx.sizes.sync_updates
        for name in ("pipelined loop (GPU training)", "Trainer.step (figures read at once)"):
            groups = [[next(batches)] for _ in range(n)]
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    queued = None
                    for group in groups:
                        if name.startswith("pipelined"):
                            ready, queued = queued, updater(group, state)
                            if ready is not None:
                                updater.settle(ready, state)
                        else:
                            trainer.step(group)
                        state.step += 1
                finally:
                    torch.cuda.set_sync_debug_mode(0)
                if queued is not None:
                    updater.settle(queued, state)
            syncs = [w for w in caught if "synchroniz" in str(w.message)]
            where = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
            check.say(
                f"{name}: {len(syncs)} synchronising calls in {n} updates " + (f"({dict(where)})" if where else "")
            )
            if name.startswith("pipelined"):
                check.expect(len(syncs) <= n // 2, "the training loop does not wait for the GPU in most updates")
        check.say("(the sync debug mode flags stream and device synchronisations, .item() and the like; the pipelined "
                  "loop's wait for update N-1's copy event, once update N is queued, is not one)")  # fmt: skip
    finally:
        trainer.close()


def fp16_skip(ctx: Context, check: Check) -> None:
    import torch

    import nmt.training.update as update_module
    from nmt.training.trainer import Trainer
    from nmt.training.update import TrainingError

    extra = [*TINY_TRANSFORMER, "train.precision=fp16", "train.compile=false", "train.max_nan_steps=3"]
    trainer = Trainer(ctx.config(*extra, "train.matmul_peak_gflops=1"), ctx.work / "fp16")
    real = update_module.label_smoothed_nll
    try:
        batches = iter(trainer.loader)
        first = trainer.step([next(batches)])
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        scale = trainer.updater.scaler.get_scale()
        update_module.label_smoothed_nll = lambda *a, **k: (lambda o: (o[0] * math.nan, *o[1:]))(real(*a, **k))
        streaks = []
        for _ in range(2):
            trainer.state.step += 1
            trainer.step([next(batches)])
            streaks.append(trainer.state.nan_streak)
        unchanged = all(torch.equal(v, weights[k]) for k, v in trainer.model.state_dict().items())
        try:
            trainer.step([next(batches)])
            stopped = False
        except TrainingError:
            stopped = True
        update_module.label_smoothed_nll = real
        trainer.state.nan_streak = 0
        after = trainer.step([next(batches)])
        check.say(f"loss {first['loss']:.3f}, then 2 poisoned updates, then {after['loss']:.3f}")
        check.expect(streaks == [1, 2] and unchanged, "non-finite updates skipped (weights unchanged), counted")
        new_scale = trainer.updater.scaler.get_scale()
        check.expect(new_scale < scale, f"the scaler's scale lowered from {scale:g} to {new_scale:g}")
        check.expect(stopped, "the third non-finite update in a row stops training (train.max_nan_steps=3)")
        check.expect(math.isfinite(after["loss"]), "the next update trains (the scaler was updated on the skip)")
    finally:
        update_module.label_smoothed_nll = real
        trainer.close()


def _nmt_train(
    ctx: Context, name: str, model: str, updates: int, budget: float, peak_gflops: float, extra: list[str]
) -> dict:
    run_dir = ctx.work / name
    cmd = [
        str(BIN / "nmt-train"),
        *ctx.overrides(model),
        f"hydra.run.dir={run_dir}",
        f"train.max_steps={updates}",
        f"train.log_every={max(updates // 4, 1)}",
        "train.eval_every=1000000",
        "train.save_every=1000000",
        "train.heatmap_sentences=0",
        f"train.matmul_peak_gflops={peak_gflops}",
        *([] if ctx.sizes.compile else ["train.compile=false"]),
        *extra,
    ]
    env = {**os.environ, "TORCH_LOGS": "recompiles,graph_breaks"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(min(budget, ctx.left()), 1))
    ctx.runs[name] = run_dir
    metrics = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    return {
        "rc": proc.returncode,
        "stderr": proc.stderr,
        "train": [r for r in records if r["kind"] == "train"],
        "recompiles": len(re.findall(r"Recompiling function", proc.stderr)),
        "graph_breaks": len(re.findall(r"Graph break", proc.stderr)),
    }


def matmul_peak(device: str) -> float:
    """Best FLOP/s of an 8192^3 bf16 matmul on CUDA (the GPU's practical peak); the CPU's training-shape peak."""
    import torch

    from nmt.training.metrics import measure_matmul_peak

    if device != "cuda":
        return measure_matmul_peak(torch.device("cpu"), torch.bfloat16)
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = math.inf
    for i in range(8):
        start.record()
        torch.mm(a, b)
        end.record()
        end.synchronize()
        if i >= 2:
            best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * 8192**3 / best


def training(ctx: Context, check: Check) -> None:
    s = ctx.sizes
    peak = matmul_peak(s.device)
    check.say(f"measured bf16 matmul peak: {peak / 1e12:.1f} TFLOP/s")
    # The RNN run skips the final test decode and beam search (an RNN beam steps in Python: slow and not measured
    # here); the Transformer's run decodes its dev and test sets as nmt-train does.
    for name, model, updates, budget, extra in (
        ("transformer", "transformer", s.updates, 0.75 * check.budget, []),
        ("rnn_bahdanau", "rnn_bahdanau", s.rnn_updates, 0.25 * check.budget, ["data.test=[]", "search.beam_size=1"]),
    ):
        out = _nmt_train(ctx, name, model, updates, budget, peak / 1e9, extra)
        ok = out["rc"] == 0
        check.expect(ok, f"`nmt-train train={s.hardware} model={model}` for {updates} updates (exit {out['rc']})")
        if not ok:
            check.say("```\n" + out["stderr"][-2500:].rstrip() + "\n```")
            continue
        steady = out["train"][1:] or out["train"]  # the first window holds compilation
        rate = sum(r["tokens_per_s"] for r in steady) / max(len(steady), 1)
        mfu = sum(r["flops_share"] for r in steady) / max(len(steady), 1)
        windows = ", ".join(f"{r['step']}: {r['tokens_per_s']:,.0f}" for r in out["train"])
        check.say(f"{model}: {rate:,.0f} target tokens/s after the first window (per window: {windows}); "
                  f"MFU {100 * mfu:.1f}% of the measured peak; recompiles {out['recompiles']}, "
                  f"graph breaks {out['graph_breaks']}")  # fmt: skip
        if model == "transformer" and s.compile:
            check.expect(out["recompiles"] <= 4 and out["graph_breaks"] == 0, "a bounded number of recompiles")


def batch_invariance(ctx: Context, check: Check) -> None:
    from nmt.data.corpus import read_lines

    ckpt = ctx.runs.get("transformer", ctx.work / "transformer") / "checkpoints" / "last.pt"
    if not ckpt.exists():
        check.status = "skipped"
        check.say(f"skipped: no checkpoint at {ckpt} (step 5 did not train)")
        return
    src = ctx.work / "test.de"
    test = read_lines(_data_root() / "multi30k" / "test_2016_flickr.de.gz")
    lines = [line for _, line in zip(range(ctx.sizes.translate_lines), test)]
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    outputs = {}
    for name, flags in (("batched", []), ("one sentence per batch", ["--batch-tokens", "1"])):
        cmd = [str(BIN / "nmt-translate"), "-c", str(ckpt), "-i", str(src), "--precision", "bf16",
               "--device", ctx.sizes.device, *ctx.sizes.translate_flags, *flags]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(min(check.budget, ctx.left()), 1))
        check.expect(proc.returncode == 0, f"nmt-translate {name} (exit {proc.returncode})")
        outputs[name] = proc.stdout.splitlines()
    a, b = outputs.values()
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    check.say(f"{len(lines)} test sentences, beam {ctx.cfg.search.beam_size}, bf16: {len(differ)} differ")
    for i in differ[:3]:
        check.say(f"  line {i + 1}: batched `{a[i]}` / alone `{b[i]}`")
    check.expect(len(a) == len(b) == len(lines) and len(differ) <= len(lines) // 100, "batched = alone (<= 1% differ)")


# ------------------------------------------------------------------------------------------------------ main
def _data_root() -> Path:
    for candidate in (os.environ.get("NMT_DATA_DIR"), REPO.parent / "shared" / "data", REPO / "shared" / "data"):
        if candidate and (Path(candidate) / "multi30k" / "train.de.gz").exists():
            return Path(candidate).resolve()
    return (REPO / "data").resolve()


STEPS: list[tuple[str, str, float, Callable[[Context, Check], None]]] = [
    ("0", "data", 90, prepare),
    ("1", "SDPA kernels per attention call; fused vs explicit logits", 45, sdpa_kernels),
    ("2", "the loss on (rows x vocabulary) bf16 logits", 30, loss_check),
    ("3", "host synchronisations per update", 45, host_syncs),
    ("4", "fp16: non-finite updates skipped", 30, fp16_skip),
    ("5", "nmt-train: Transformer and Bahdanau RNN", 270, training),
    ("6", "batch invariance of nmt-translate in bf16", 60, batch_invariance),
]


def report(ctx: Context, header: list[str]) -> str:
    out = [*header, ""]
    for c in ctx.checks:
        out += [f"### {c.number}. {c.title}: {c.status} ({c.seconds:.0f} s of {c.budget:.0f})", "", *c.lines, ""]
    spent = time.monotonic() - ctx.started
    out.append(f"Total {spent:.0f} s of {TOTAL_SECONDS}; {sum(c.status == 'FAILED' for c in ctx.checks)} failed.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="run the CPU-checkable steps at tiny sizes")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/gpu_check"), help="runs, caches, inputs")
    parser.add_argument("--output", type=Path, help="also write the report (Markdown) here")
    args = parser.parse_args(argv)
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(
            f"gpu_check: error: no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "run on a machine with a GPU and the CUDA build of torch, or pass --cpu-smoke",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    root = _data_root()
    if not (root / "multi30k" / "train.de.gz").exists():
        print(f"gpu_check: error: no multi30k/ under {root} (set NMT_DATA_DIR)", file=sys.stderr)
        return EXIT_UNAVAILABLE
    os.environ["NMT_DATA_DIR"] = str(root)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("nmt").setLevel(logging.WARNING)
    if args.cpu_smoke:
        torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*TF32.*")
    ctx = Context(SMOKE if args.cpu_smoke else CUDA, args.work_dir.resolve())
    ctx.work.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.cpu_smoke else "CPU (smoke)"
    header = [f"## gpu_check: {device}, torch {torch.__version__}, CUDA {torch.version.cuda}"]
    for number, title, budget, fn in STEPS:
        ctx.step(number, title, budget, fn)
        if number == "0" and ctx.checks[-1].status != "ok":
            break  # nothing else can run without data
    text = report(ctx, header)
    print(text)
    if args.output:
        with contextlib.suppress(OSError):
            args.output.write_text(text + "\n", encoding="utf-8")
    return EXIT_FAILED if any(c.status == "FAILED" for c in ctx.checks) else 0


if __name__ == "__main__":
    sys.exit(main())
