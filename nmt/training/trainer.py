"""The training loop: data -> model -> updates, with validation, checkpoints, exact resume and DDP.

Reading order: :func:`train` builds a :class:`Trainer` (setup, resume) and calls :meth:`Trainer.fit` (the loop);
:meth:`Trainer.step` is one update over ``train.accumulate`` batches; :meth:`Trainer.evaluate` validates;
:mod:`nmt.training.session` holds the bookkeeping around them (devices, checkpoint files, the final report).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from nmt.config import NMTConfig, Precision, to_dict
from nmt.data.batch import Batch
from nmt.data.prepare import PreparedData
from nmt.errors import NMTError
from nmt.models import build_model
from nmt.training import distributed, guided, session
from nmt.training.loss import label_smoothed_nll
from nmt.training.metrics import MetricsWriter, Progress, attention_figure
from nmt.training.optim import LRSchedule, build_optimizer, set_lr
from nmt.training.state import TrainerState, capture_rng, restore_rng, seed_everything
from nmt.training.validate import attention_maps, validate, write_lines

log = logging.getLogger(__name__)


class TrainingError(NMTError):
    """Training cannot go on (non-finite losses, ...); the last good checkpoint is kept."""


class Interrupted(NMTError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved and the run can be resumed."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def train(cfg: NMTConfig, run_dir: str | Path) -> float:
    """Train as ``cfg`` says, writing everything into ``run_dir``; resume from ``run_dir/checkpoints/last.pt``.

    Returns:
        The best dev BLEU (what hyper-parameter sweepers optimise), the same on every rank.
    """
    return Trainer(cfg, Path(run_dir)).fit()


class Trainer:
    """One training run (one process of it under torchrun)."""

    def __init__(self, cfg: NMTConfig, run_dir: Path) -> None:
        self.cfg, self.tc, self.run_dir = cfg, cfg.train, run_dir
        self.started = time.perf_counter()
        self.dist = distributed.init()
        self.main = self.dist.is_main
        self.device = session.resolve_device(self.tc.device, self.dist.local_rank)
        session.configure_runtime(self.tc, self.device)
        self.log_handler = None
        if self.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.log_handler = session.ensure_log_file(run_dir / "train.log")
        self.peak_flops = session.matmul_peak(self.tc, self.device)  # before seeding: it draws random numbers

        ckpt_path = session.resume_path(self.tc, run_dir)
        resumed = session.load_resume(ckpt_path, cfg, self.dist.world_size) if ckpt_path else None
        seed_everything(self.tc.seed + self.dist.rank)  # ranks differ in dropout, never in initial weights (DDP)
        self.data: PreparedData = session.prepare(cfg, self.dist, resumed)
        self.tokenizer = self.data.tokenizer
        if self.main:
            self.tokenizer.save(run_dir / "tokenizer")

        self.model = build_model(
            cfg.model, src_vocab_size=self.tokenizer.src_vocab_size, tgt_vocab_size=self.tokenizer.tgt_vocab_size
        ).to(self.device)
        if resumed:
            self.model.load_state_dict(resumed["model"])
        self.n_params = self.model.num_parameters()
        # Guided alignment: batches carry word links and the forward also returns the supervised attention.
        self.guide = guided.attach(cfg, self.data.train, self.tokenizer)  # None without train.alignment.file
        self.train_model: torch.nn.Module = self.model if self.guide is None else guided.AttentionForward(self.model)
        if self.tc.compile:
            self.train_model = torch.compile(self.train_model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)

        self.optimizer = build_optimizer(self.model.parameters(), self.tc)
        self.schedule = LRSchedule(self.tc)
        fp16 = self.tc.precision == Precision.fp16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.autocast_dtype = {Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}.get(self.tc.precision)
        train_data = self.guide if self.guide is not None else self.data.train
        self.loader = session.make_loader(train_data, self.tc, self.dist, self.device)
        self.flops_per_token = session.count_flops(self)
        self.state = TrainerState(world_size=self.dist.world_size)
        if resumed:
            self.optimizer.load_state_dict(resumed["optimizer"])
            self.schedule.load_state_dict(resumed["scheduler"])
            if resumed.get("scaler"):
                self.scaler.load_state_dict(resumed["scaler"])
            self.loader.load_state_dict(resumed["loader"][self.dist.rank])
            self.state = TrainerState.from_state_dict(resumed["trainer"])
            restore_rng(resumed["rng"][self.dist.rank])  # last: nothing may draw random numbers after this
        # From a checkpoint at step N (0 for a new run), records a killed run wrote after N are dropped.
        self.metrics = MetricsWriter(run_dir, enabled=self.main, resume_step=self.state.step)
        self.signals = session.Signals()
        self.wall_base = self.state.wall_seconds
        self.saved_step = -1
        self.rank_digests: list[str] = []
        session.log_setup(self, resumed_from=ckpt_path if resumed else None)

    # ------------------------------------------------------------------------------------------------ loop
    def fit(self) -> float:
        """Train until ``max_steps``, early stopping, ``max_epochs`` or a signal; then test. Returns best dev BLEU."""
        try:
            return self._nothing_to_do() if self._ended() else self._fit()
        finally:
            self.close()

    def _fit(self) -> float:
        tc, state = self.tc, self.state
        state.finished = ""  # a resumed run whose limit was raised goes on
        self.metrics.text("config", session.config_markdown(self.cfg), state.step)
        progress = Progress(total=tc.max_steps, initial=state.step, every=tc.log_every, enabled=self.main)
        window = session.Window()
        batches = iter(self.loader)
        try:
            self.signals = session.catch_signals()
            while state.step < tc.max_steps:
                group = _take(batches, tc.accumulate)
                if not group:
                    state.finished = "max_epochs"
                    break
                t0 = time.perf_counter()
                figures = self.step(group)
                state.step += 1
                state.epoch = self.loader.epoch
                window.add(figures, time.perf_counter() - t0)
                state.train_seconds += time.perf_counter() - t0
                # Any rank's signal stops every rank at this same step (the flags were summed over ranks).
                signum = (self.signals.received or signal.SIGTERM) if figures["signal"] else 0
                progress.update(state.step, window.brief(self.optimizer))
                if state.step % tc.log_every == 0:
                    self.metrics.log("train", state.step, window.record(self, self.optimizer))
                    window.reset()
                if state.step % tc.eval_every == 0:
                    self.evaluate(progress)
                if state.step % tc.save_every == 0 and not state.finished and state.step < tc.max_steps:
                    self.save(step_file=True)  # the final checkpoint is written once, after the loop
                if state.finished:
                    break
                if signum:
                    self._interrupted(signum)
            state.finished = state.finished or "max_steps"
            if state.last_eval_step != state.step:
                self.evaluate(progress)
            self.save(step_file=True)  # again when already saved at this step: last.pt must record the finish
        finally:
            progress.close()
            self.signals.restore()
        log.info("training finished at step %d (%s)", state.step, state.finished)
        return self.finish()

    def step(self, batches: list[Batch]) -> dict[str, float]:
        """One update over ``batches`` (gradient accumulation): loss normalised by the target tokens of all
        batches on all ranks, gradient clipping, the schedule's rate, and a skipped update for non-finite values.
        Guided alignment adds weight × the mean loss per supervised attention row (:mod:`nmt.training.guided`)."""
        tc = self.tc
        guide = self.guide is not None
        self.train_model.train()
        local_tokens = sum(b.num_tgt_tokens for b in batches)  # counted on the CPU copy: no device sync
        padded = sum(b.src.numel() + b.tgt_out.numel() for b in batches)
        real = sum(int(b.src_lengths.sum()) for b in batches) + local_tokens
        counts = [local_tokens, real, padded, float(self.signals.received)]
        if guide:
            counts.append(sum(guided.supervised_rows(b.alignment) for b in batches))
        totals = distributed.all_reduce_sum(torch.tensor(counts, dtype=torch.float64))
        tokens = max(float(totals[0]), 1.0)
        # DDP averages gradients over ranks; scaling by world_size / all tokens turns that into a per-token mean.
        scale = self.dist.world_size / tokens
        rows = max(float(totals[4]), 1.0) if guide else 1.0
        align_scale = tc.alignment.weight * self.dist.world_size / rows
        sums = torch.zeros(3 if guide else 2, device=self.device, dtype=torch.float32)
        for i, batch in enumerate(batches):
            batch = batch.to(self.device, non_blocking=True)
            sync = i == len(batches) - 1 or not self.dist.enabled
            with contextlib.nullcontext() if sync else self.train_model.no_sync(), self._autocast():
                out = self.train_model(batch.src, batch.src_lengths, batch.tgt_in)
                logits, attention = out if guide else (out, None)
                loss, nll, _ = label_smoothed_nll(logits, batch.tgt_out, smoothing=tc.label_smoothing)
            objective, stats = loss * scale, [loss.detach().float(), nll.detach().float()]
            if guide:
                align = guided.alignment_loss(attention, batch.alignment)
                objective = objective + align * align_scale
                stats.append(align.detach())
            self.scaler.scale(objective).backward()
            sums += torch.stack(stats)
        sums = distributed.all_reduce_sum(sums.double().cpu())
        self.scaler.unscale_(self.optimizer)
        max_norm = tc.clip_norm if tc.clip_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm, foreach=True))
        loss_value, nll_value = float(sums[0]) / tokens, float(sums[1]) / tokens
        align_value = float(sums[2]) / rows if guide else 0.0
        finite = math.isfinite(loss_value + align_value) and (math.isfinite(grad_norm) or self.scaler.is_enabled())
        lr = self.schedule.lr(self.state.step + 1)
        if finite:
            set_lr(self.optimizer, lr)
            self.scaler.step(self.optimizer)  # with fp16, skips by itself when gradients overflowed
            self.scaler.update()
            self.state.nan_streak = 0
        self.optimizer.zero_grad(set_to_none=True)
        if not finite:
            self._non_finite(loss_value, grad_norm)
        self.state.tgt_tokens += int(tokens)
        figures = {"align_loss": align_value, "align_rows": float(totals[4])} if guide else {}
        return {
            **figures,
            "loss": loss_value,
            "nll": nll_value,
            "tokens": tokens,
            "real": float(totals[1]),
            "padded": float(totals[2]),
            "grad_norm": grad_norm,
            "lr": lr,
            "signal": float(totals[3]),
        }

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _non_finite(self, loss: float, grad_norm: float) -> None:
        self.state.nan_streak += 1
        step = self.state.step + 1
        log.warning(
            "step %d: non-finite loss %.4g / gradient norm %.4g: update skipped (%d in a row, limit %d)",
            step, loss, grad_norm, self.state.nan_streak, self.tc.max_nan_steps,
        )  # fmt: skip
        if self.state.nan_streak >= self.tc.max_nan_steps:
            last = self.run_dir / "checkpoints" / "last.pt"
            kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
            raise TrainingError(
                f"the loss was not finite for {self.state.nan_streak} updates in a row (up to step {step}); "
                f"stopping ({kept}). Try a lower train.lr, train.clip_norm > 0, or train.precision=bf16/fp32."
            )

    # ------------------------------------------------------------------------------------------ validation
    def evaluate(self, progress: Progress | None = None) -> None:
        """Validate on rank 0 and share the outcome, so every rank takes the same early-stopping decision."""
        state, tc = self.state, self.tc
        outcome: dict[str, Any] | None = None
        if self.main:
            rng = capture_rng()  # validation must not shift the training random streams (exact resume)
            t0 = time.perf_counter()
            result = validate(
                self.model,
                self.tokenizer,
                self.data.valid,
                search=self.cfg.search,
                beam_size=tc.valid_beam_size,
                batch_tokens=tc.batch_tokens,
                smoothing=tc.label_smoothing,
                device=self.device,
                autocast=self._autocast,
            )
            write_lines(self.run_dir / "valid" / f"step_{state.step}.hyp", result.hypotheses)
            self._heatmaps()
            restore_rng(rng)
            outcome = {**result.record(), "seconds": round(time.perf_counter() - t0, 2)}
        outcome = distributed.broadcast_object(outcome)
        state.last_eval_step = state.step
        improved = outcome["bleu"] > state.best_bleu
        if improved:
            state.best_bleu, state.best_step, state.bad_evals = outcome["bleu"], state.step, 0
        else:
            state.bad_evals += 1
        if self.schedule.on_eval(bleu=outcome["bleu"], loss=outcome["loss"]):
            log.info("dev %s stalled: learning rate scale now %.3g", tc.plateau_metric.value, self.schedule.scale)
        record = {**outcome, "best_bleu": state.best_bleu, "best_step": state.best_step, "bad_evals": state.bad_evals}
        self.metrics.log("valid", state.step, record)
        message = (
            f"validation step {state.step}: loss {outcome['loss']:.3f} ppl {outcome['ppl']:.2f} "
            f"BLEU {outcome['bleu']:.2f} chrF {outcome['chrf']:.2f} ({outcome['seconds']:.1f}s)"
            + (" *new best*" if improved else f" (best {state.best_bleu:.2f} at {state.best_step})")
        )
        if progress is not None:
            progress.write(message)
        else:
            log.info(message)
        if improved and self.main:
            session.save_best(self)
        if tc.patience and state.bad_evals >= tc.patience and not state.finished:
            state.finished = "early_stopping"
            log.info("early stopping: no dev BLEU improvement in %d evaluations", tc.patience)
        self.metrics.flush()

    def _heatmaps(self) -> None:
        if self.tc.heatmap_sentences <= 0:
            return
        maps = attention_maps(
            self.model, self.tokenizer, self.data.valid, self.tc.heatmap_sentences, device=self.device
        )
        for i, (weights, src, tgt) in enumerate(maps):
            title = f"dev sentence {i}, step {self.state.step}"
            self.metrics.figure(f"attention/dev_{i}", attention_figure(weights, src, tgt, title), self.state.step)

    # ----------------------------------------------------------------------------------------- checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """The full resumable state (every rank takes part: per-rank RNG and loader states are gathered)."""
        per_rank = distributed.gather_objects({"rng": capture_rng(), "loader": self.loader.state_dict()})
        return {
            "step": self.state.step,
            "config": to_dict(self.cfg),
            "model": self.model.state_dict(),
            "tokenizer": self.tokenizer.to_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": [r["rng"] for r in per_rank],
            "loader": [r["loader"] for r in per_rank],
            "trainer": self.state.state_dict(),
        }

    def save(self, *, step_file: bool) -> None:
        """Write ``last.pt`` (and ``step_N.pt``, keeping ``keep_last`` of them); collective under DDP."""
        session.save(self, step_file=step_file)

    def weights_digest(self) -> str:
        """sha256 of every parameter and buffer, in state-dict order (ranks must agree bit for bit)."""
        h = hashlib.sha256()
        for name, tensor in self.model.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    # ----------------------------------------------------------------------------------------------- ends
    def finish(self) -> float:
        """Translate the test sets with the best checkpoint and write ``results.json`` (rank 0)."""
        if self.dist.enabled:
            self.rank_digests = distributed.gather_objects(self.weights_digest())
            if len(set(self.rank_digests)) > 1:
                log.error("the ranks' weights differ after training: %s", self.rank_digests)
            else:
                log.info("all %d ranks hold identical weights (sha256 %s)", self.dist.world_size, self.rank_digests[0])
        if self.main:
            session.final_report(self)
        distributed.barrier()
        return self.state.best_bleu

    def close(self) -> None:
        """Stop the batch thread, close TensorBoard and the log file this trainer opened."""
        self.loader.close()
        self.metrics.close()
        if self.log_handler is not None:
            logging.getLogger("nmt").removeHandler(self.log_handler)
            self.log_handler.close()
            self.log_handler = None

    def _ended(self) -> bool:
        """Whether a (resumed) run has reached one of the current config's limits."""
        s, tc = self.state, self.tc
        return (
            s.step >= tc.max_steps
            or (s.finished == "max_epochs" and 0 < tc.max_epochs <= s.epoch)
            or (s.finished == "early_stopping" and 0 < tc.patience <= s.bad_evals)
        )

    def _nothing_to_do(self) -> float:
        why = self.state.finished or f"train.max_steps={self.tc.max_steps} reached"
        log.warning(
            "NOTHING TO DO: the checkpoint is at step %d and training already ended (%s). "
            "Raise train.max_steps (a total, not a number of extra updates) to train on.",
            self.state.step, why,
        )  # fmt: skip
        if self.main and not (self.run_dir / "results.json").exists():
            session.final_report(self)
        return self.state.best_bleu

    def _interrupted(self, signum: int) -> None:
        self.save(step_file=False)
        name = signal.Signals(signum).name
        last = self.run_dir / "checkpoints" / "last.pt"
        raise Interrupted(
            f"{name} received: stopped at step {self.state.step}, checkpoint saved to {last}. "
            f"Run the same command again (same hydra.run.dir) to resume.",
            signum,
        )


def _take(batches: Iterator[Batch], n: int) -> list[Batch]:
    out: list[Batch] = []
    for batch in batches:
        out.append(batch)
        if len(out) == n:
            break
    return out
