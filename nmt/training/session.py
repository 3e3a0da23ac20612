"""Bookkeeping around the training loop: devices, data preparation under DDP, resuming, checkpoint files,
throughput windows and the final report (``results.json``). :mod:`nmt.training.trainer` holds the loop itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nmt.config import Device, NMTConfig, Precision, TrainConfig, to_dict
from nmt.data.batching import TokenBatchSampler, TrainLoader
from nmt.errors import CheckpointError, NMTError
from nmt.training import distributed
from nmt.training.checkpoint import link_checkpoint, load_checkpoint, save_checkpoint
from nmt.training.metrics import flops_per_token, measure_matmul_peak
from nmt.training.state import capture_rng, restore_rng
from nmt.training.validate import translate_and_score, write_lines

if TYPE_CHECKING:
    from nmt.data.prepare import PreparedData
    from nmt.training.trainer import Trainer

log = logging.getLogger("nmt.training.trainer")

RESUME_KEYS = ("optimizer", "scheduler", "rng", "loader", "trainer")


# ------------------------------------------------------------------------------------------------ set-up
def resolve_device(choice: Device, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; under torchrun each rank takes GPU ``local_rank``."""
    if choice == Device.cuda and not torch.cuda.is_available():
        raise NMTError("train.device=cuda, but torch sees no CUDA device (use train.device=cpu or auto)")
    if choice == Device.cpu or (choice == Device.auto and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def configure_runtime(tc: TrainConfig, device: torch.device) -> None:
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores on Ampere+: ~fp32 accuracy for training
        torch.backends.cudnn.allow_tf32 = True
    if tc.precision == Precision.fp16 and device.type == "cpu":
        log.warning("train.precision=fp16 on the CPU is slow; bf16 is the CPU's fast format (AMX/avx512_bf16)")


def ensure_log_file(path: Path) -> logging.Handler | None:
    """Log to ``path`` unless a handler already does (Hydra's job logging writes ``train.log`` itself).

    Returns:
        The handler added (the caller removes it when done), or None.
    """
    root = logging.getLogger()
    nmt_log = logging.getLogger("nmt")
    if nmt_log.level == logging.NOTSET and root.level > logging.INFO:
        nmt_log.setLevel(logging.INFO)
    target = str(path.resolve())
    if any(getattr(h, "baseFilename", None) == target for h in root.handlers + nmt_log.handlers):
        return None
    handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    nmt_log.addHandler(handler)
    return handler


def count_flops(t: Trainer) -> float:
    """FLOPs per target token of the model on the first training batch (RNG left untouched)."""
    rng = capture_rng()
    indices = t.loader.sampler.epoch_batches(1)[0]
    t.model.train()
    flops = flops_per_token(t.model, t.data.train.batch(indices).to(t.device))
    restore_rng(rng)
    return flops


def matmul_peak(tc: TrainConfig, device: torch.device) -> float:
    """FLOP/s of a large matmul in the training precision (for the model-FLOPs share in the logs)."""
    if tc.matmul_peak_gflops > 0:
        return tc.matmul_peak_gflops * 1e9
    dtype = {Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}.get(tc.precision, torch.float32)
    if device.type == "cpu" and dtype == torch.float16:
        dtype = torch.float32
    return measure_matmul_peak(device, dtype)


def resume_path(tc: TrainConfig, run_dir: Path) -> Path | None:
    """``train.resume``, else the newest of the run's ``last.pt`` and ``step_N.pt`` files (a kill between writing
    ``step_N.pt`` and linking it as ``last.pt`` must not lose that step)."""
    if tc.resume:
        return Path(tc.resume).expanduser()
    directory = run_dir / "checkpoints"
    candidates = [p for p in [directory / "last.pt", *directory.glob("step_*.pt")] if p.is_file()]
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.pt"), default=None)


def load_resume(path: Path, cfg: NMTConfig, world_size: int) -> dict[str, Any]:
    """Read a checkpoint to resume from, refusing one that cannot continue this run."""
    state = load_checkpoint(path)
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"{path} cannot be resumed: it lacks {', '.join(missing)} (best.pt and averaged checkpoints hold "
            "weights only; resume from last.pt or a step_N.pt)"
        )
    old, new = state["config"], to_dict(cfg)
    if old["model"] != new["model"]:
        diff = {k: (old["model"].get(k), v) for k, v in new["model"].items() if old["model"].get(k) != v}
        raise CheckpointError(
            f"{path} holds a different model than the config asks for (checkpoint vs config: {diff}); "
            "use the checkpoint's model settings or start a new run directory"
        )
    if int(state["trainer"].get("world_size", 1)) != world_size:
        raise CheckpointError(
            f"{path} was written by {state['trainer']['world_size']} process(es) but this run has {world_size}: "
            "resume with the same number of processes (torchrun --nproc_per_node) so every rank finds its data "
            "position"
        )
    for section in ("data", "tokenizer", "train", "search"):
        for key, value in new[section].items():
            if old.get(section, {}).get(key) != value:
                log.info("resume: %s.%s changed from %r to %r", section, key, old.get(section, {}).get(key), value)
    return state


def prepare(cfg: NMTConfig, info: distributed.DistInfo, resumed: dict[str, Any] | None) -> PreparedData:
    """Tokenizer and data; under DDP rank 0 builds the caches first, the others then read them."""
    from nmt.data.prepare import prepare_data
    from nmt.data.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_state(resumed["tokenizer"]) if resumed else None
    if not info.enabled:
        return prepare_data(cfg.data, cfg.tokenizer, tokenizer=tokenizer)
    data, error = None, None
    if info.is_main:
        try:
            data = prepare_data(cfg.data, cfg.tokenizer, tokenizer=tokenizer)
        except NMTError as e:
            error = e
    message = distributed.broadcast_object(str(error) if error else None)
    if error:
        raise error
    if message:
        raise NMTError(message)
    return data or prepare_data(cfg.data, cfg.tokenizer, tokenizer=tokenizer)


def log_setup(t: Trainer, *, resumed_from: Path | None) -> None:
    tc = t.tc
    log.info(
        "world size %d (rank %d) | device %s | precision %s | threads %d | compile %s",
        t.dist.world_size, t.dist.rank, t.device, tc.precision.value, torch.get_num_threads(), tc.compile,
    )  # fmt: skip
    log.info(
        "model %s: %s parameters | tokenizer %r | run directory %s",
        type(t.model).__name__, f"{t.n_params:,}", t.tokenizer, t.run_dir,
    )  # fmt: skip
    log.info(
        "matmul peak %.0f GFLOP/s (%s); the model costs %.2f MFLOP per target token (forward + backward)",
        t.peak_flops / 1e9, "configured" if tc.matmul_peak_gflops else "measured", t.flops_per_token / 1e6,
    )  # fmt: skip
    log.info(
        "%d training pairs -> %d batches of <= %d padded tokens per epoch and rank",
        len(t.data.train), t.loader.batches_per_epoch, tc.batch_tokens,
    )  # fmt: skip
    if resumed_from:
        s = t.state
        log.info(
            "RESUMING from %s: step %d, epoch %d, best dev BLEU %.2f at step %d",
            resumed_from, s.step, s.epoch, s.best_bleu, s.best_step,
        )  # fmt: skip
    else:
        log.info("starting a new run (no checkpoint in %s)", t.run_dir / "checkpoints")


def config_markdown(cfg: NMTConfig) -> str:
    """The config as an indented code block (TensorBoard renders text as Markdown)."""
    return "\n".join("    " + line for line in json.dumps(to_dict(cfg), indent=2).splitlines())


def make_loader(data: Any, tc: TrainConfig, info: distributed.DistInfo, device: torch.device) -> TrainLoader:
    """Token-bucketed batches of this rank's shard, built ahead on a background thread."""
    sampler = TokenBatchSampler(
        data.src_lengths,
        data.tgt_lengths,
        batch_tokens=tc.batch_tokens,
        seed=tc.seed,
        rank=info.rank,
        world_size=info.world_size,
    )
    pin = device.type == "cuda"  # page-locked batches copy to the GPU asynchronously (non_blocking)
    return TrainLoader(data, sampler, max_epochs=tc.max_epochs, pin_memory=pin, num_workers=tc.num_workers)


class Signals:
    """SIGINT/SIGTERM turned into a flag the loop checks after each update (a second signal acts at once)."""

    def __init__(self) -> None:
        self.received = 0
        self._old: dict[int, Any] = {}

    def install(self) -> Signals:
        with contextlib.suppress(ValueError):  # not the main thread (e.g. a notebook worker): leave signals alone
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}


def catch_signals() -> Signals:
    return Signals().install()


# ------------------------------------------------------------------------------------------------ figures
class Window:
    """Figures summed over the updates since the last log line."""

    def __init__(self) -> None:
        self.reset()
        self.loss = math.nan
        self.align_loss: float | None = None

    def reset(self) -> None:
        self.steps = 0
        self.seconds = self.tokens = self.real = self.padded = self.loss_sum = self.nll_sum = self.finite_tokens = 0.0
        self.align_sum = self.align_rows = 0.0  # guided alignment: loss summed over supervised attention rows
        self.grad_norm = math.nan

    def add(self, f: dict[str, float], seconds: float) -> None:
        self.steps += 1
        self.seconds += seconds
        self.tokens += f["tokens"]
        self.real += f["real"]
        self.padded += f["padded"]
        self.grad_norm = f["grad_norm"]
        self.lr = f["lr"]
        self.loss = f["loss"]
        self.align_loss = f.get("align_loss")
        if math.isfinite(f["loss"]):
            self.loss_sum += f["loss"] * f["tokens"]
            self.nll_sum += f["nll"] * f["tokens"]
            self.finite_tokens += f["tokens"]
        if "align_rows" in f and math.isfinite(f["align_loss"]):
            self.align_sum += f["align_loss"] * f["align_rows"]
            self.align_rows += f["align_rows"]

    def brief(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        rate = self.tokens / max(self.seconds, 1e-9)
        align = {} if self.align_loss is None else {"align_loss": self.align_loss}
        return {"loss": self.loss, **align, "lr": self.lr, "tok/s": rate, "pad eff": self.real / max(self.padded, 1.0)}

    def record(self, t: Trainer, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        loss = self.loss_sum / max(self.finite_tokens, 1.0)
        nll = self.nll_sum / max(self.finite_tokens, 1.0)
        rate = self.tokens / max(self.seconds, 1e-9)
        return {
            "loss": loss,
            "nll": nll,
            "ppl": math.exp(min(nll, 50.0)),
            "lr": self.lr,
            "grad_norm": self.grad_norm,
            "tokens_per_s": rate,
            "flops_share": t.flops_per_token * rate / (t.peak_flops * t.dist.world_size),
            "padding_efficiency": self.real / max(self.padded, 1.0),
            "epoch": t.state.epoch,
            "tgt_tokens": t.state.tgt_tokens,
            **({"align_loss": self.align_sum / self.align_rows} if self.align_rows else {}),
        }


# ------------------------------------------------------------------------------------------------ files
def wall_seconds(t: Trainer) -> float:
    return t.wall_base + time.perf_counter() - t.started


def save(t: Trainer, *, step_file: bool) -> None:
    """``last.pt`` (+ ``step_N.pt``, rotating ``keep_last`` of them). Every rank takes part; rank 0 writes."""
    state = t.state
    drop: list[int] = []
    if step_file and state.step not in state.saved_steps:
        state.saved_steps.append(state.step)
        while len(state.saved_steps) > t.tc.keep_last:
            drop.append(state.saved_steps.pop(0))
    state.wall_seconds = wall_seconds(t)
    ckpt = t.checkpoint()
    t.saved_step = state.step
    if not t.main:
        return
    directory = t.run_dir / "checkpoints"
    last = directory / "last.pt"
    if step_file:
        path = directory / f"step_{state.step}.pt"
        save_checkpoint(ckpt, path)
        link_checkpoint(path, last)
    else:
        save_checkpoint(ckpt, last)
    for step in drop:
        (directory / f"step_{step}.pt").unlink(missing_ok=True)
    log.info("checkpoint: step %d -> %s", state.step, path if step_file else last)


def save_best(t: Trainer) -> None:
    """``best.pt``: weights, config and tokenizer (enough to translate, not to resume)."""
    save_checkpoint(
        {
            "step": t.state.step,
            "config": to_dict(t.cfg),
            "model": t.model.state_dict(),
            "tokenizer": t.tokenizer.to_state(),
            "dev_bleu": t.state.best_bleu,
        },
        t.run_dir / "checkpoints" / "best.pt",
    )


def final_report(t: Trainer) -> dict[str, Any]:
    """Decode the dev and test sets with the best checkpoint (beam from ``cfg.search``); write ``results.json``."""
    best = t.run_dir / "checkpoints" / "best.pt"
    if best.exists():
        t.model.load_state_dict(load_checkpoint(best, map_location=t.device)["model"])
    entries = []
    for data in [t.data.valid, *t.data.tests]:
        t0 = time.perf_counter()
        hyps, scores = translate_and_score(t.model, t.tokenizer, data, t.cfg.search, device=t.device)
        folder = "valid" if data is t.data.valid else "test"
        hyp_file = t.run_dir / folder / f"{data.name}.best.hyp"
        write_lines(hyp_file, hyps)
        entry = {
            "name": data.name,
            "sentences": len(hyps),
            "bleu": float(scores.bleu),
            "chrf": float(scores.chrf),
            "bleu_signature": str(scores.bleu_signature),
            "chrf_signature": str(scores.chrf_signature),
            "hypotheses": str(hyp_file.relative_to(t.run_dir)),
            "decode_seconds": round(time.perf_counter() - t0, 2),
        }
        entries.append(entry)
        log.info(
            "%s %s (beam %d, best checkpoint step %d): BLEU %.2f chrF %.2f | %s | %s",
            folder, data.name, t.cfg.search.beam_size, t.state.best_step, entry["bleu"], entry["chrf"],
            entry["bleu_signature"], entry["chrf_signature"],
        )  # fmt: skip
    s = t.state
    results = {
        "name": t.cfg.name,
        "run_dir": str(t.run_dir),
        "model": t.cfg.model.arch,
        "parameters": t.n_params,
        "steps": s.step,
        "epochs": s.epoch,
        "finished": s.finished,
        "best_step": s.best_step,
        "best_dev_bleu_during_training": s.best_bleu,
        "valid_beam_size": t.tc.valid_beam_size,
        "dev": entries[0],
        "test": entries[1:],
        "search": to_dict(t.cfg.search),
        "wall_seconds": round(wall_seconds(t), 1),
        "train_seconds": round(s.train_seconds, 1),
        "tgt_tokens": s.tgt_tokens,
        "tokens_per_s": s.tgt_tokens / max(s.train_seconds, 1e-9),
        "world_size": t.dist.world_size,
        "device": str(t.device),
        "precision": t.tc.precision.value,
    }
    if t.dist.enabled:
        results["rank_weights_sha256"] = t.rank_digests
    (t.run_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    hparams = {f"{sec}.{k}": v for sec in ("model", "train") for k, v in to_dict(getattr(t.cfg, sec)).items()}
    t.metrics.hparams(hparams, {"hparam/dev_bleu": entries[0]["bleu"], "hparam/best_step": float(s.best_step)})
    return results
