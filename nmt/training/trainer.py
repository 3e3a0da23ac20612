"""The training loop: data -> model -> updates, with validation, checkpoints, exact resume and DDP.

Reading order: :func:`train` builds a :class:`Trainer` (setup, resume) and calls :meth:`Trainer.fit` (the loop);
:meth:`Trainer.step` is one update over ``train.accumulate`` batches; :meth:`Trainer.evaluate` validates.
:mod:`nmt.training.runtime` sets up the process (device, threads, log file, signals); :mod:`nmt.training.session`
holds a run's beginning and end (resuming, data, checkpoint files, the final report).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from nmt.config import InitReset, NMTConfig, to_dict
from nmt.data.batch import Batch
from nmt.data.prepare import PreparedData
from nmt.errors import NMTError
from nmt.experiments import jobs
from nmt.models import build_model
from nmt.report import write_lines
from nmt.search import autocast
from nmt.training import distributed, finetune, guided, rundir, runtime, session
from nmt.training.metrics import MetricsWriter, Window
from nmt.training.progress import Progress
from nmt.training.rundir import RunDirLock
from nmt.training.state import TrainerState, capture_rng, restore_rng, seed_everything
from nmt.training.update import QueuedUpdate, Updater
from nmt.training.validate import cap_dev_set, draw_heatmaps, validate

log = logging.getLogger(__name__)


class Interrupted(NMTError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved and the run can be resumed."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def train(cfg: NMTConfig, run_dir: str | Path) -> float:
    """Train as ``cfg`` says, writing everything into ``run_dir``; resume from ``run_dir/checkpoints/last.pt``.

    The run directory is checked writable and locked first (:mod:`nmt.training.rundir`): one training at a time.

    Returns:
        The best dev BLEU (what hyper-parameter sweepers optimise), the same on every rank.

    Raises:
        RunDirError: another process trains in ``run_dir``, or it cannot be written.
    """
    with RunDirLock(run_dir, is_main=distributed.init().is_main):
        return Trainer(cfg, Path(run_dir)).fit()


class Trainer:
    """One training run (one process of it under torchrun)."""

    def __init__(self, cfg: NMTConfig, run_dir: Path) -> None:
        self.cfg, self.tc, self.run_dir = cfg, cfg.train, run_dir
        self.started = time.perf_counter()
        self.dist = distributed.init()
        self.main = self.dist.is_main
        self.device = runtime.resolve_device(self.tc.device, self.dist.local_rank)
        runtime.configure_runtime(self.tc, self.device)
        self.log_handler = None
        if self.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.log_handler = runtime.ensure_log_file(run_dir / "train.log")
            rundir.remove_leftovers(run_dir)  # only while this process holds the directory
        self.peak_flops = runtime.matmul_peak(self.tc, self.device)  # before seeding: it draws random numbers

        ckpt_path = session.resume_path(self.tc, run_dir)
        resumed = session.load_resume(ckpt_path, cfg, self.dist.world_size) if ckpt_path else None
        # Fine-tuning (train.init_from): its weights and tokenizer; a run that has its own checkpoint resumes instead.
        init = finetune.load_init(cfg, resuming=resumed is not None) if self.tc.init_from else None
        seed_everything(self.tc.seed + self.dist.rank)  # ranks differ in dropout, never in initial weights (DDP)
        self.data: PreparedData = session.prepare(cfg, self.dist, resumed or init)
        if self.main:  # only rank 0 validates
            self.data.valid = cap_dev_set(self.data.valid, cfg.data.max_len)
        self.tokenizer = self.data.tokenizer
        if self.main:
            self.tokenizer.save(run_dir / "tokenizer")

        self.model = build_model(
            cfg.model, src_vocab_size=self.tokenizer.src_vocab_size, tgt_vocab_size=self.tokenizer.tgt_vocab_size
        ).to(self.device)
        if resumed:
            self.model.load_state_dict(resumed["model"])
        elif init:
            finetune.load_weights(self.model, init, str(self.tc.init_from))
        self.n_params = self.model.num_parameters()
        # Guided alignment: batches carry word links and the forward also returns the supervised attention.
        self.guide = guided.attach(cfg, self.data.train, self.tokenizer)  # None without train.alignment.file
        self.train_model: torch.nn.Module = self.model if self.guide is None else guided.AttentionForward(self.model)
        self.ddp = None
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)
        if self.tc.compile:
            # torch.compile(DDP(model)), the order PyTorch documents: Dynamo's DDPOptimizer splits the graph at
            # DDP's bucket boundaries, so each bucket's all-reduce overlaps the rest of the backward pass.
            self.train_model = runtime.compile_for_training(self.model, self.train_model)
        # On a GPU an update's figures are read after the next update is queued (see Updater.settle).
        self.pipelined = self.device.type == "cuda"

        self.updater = Updater(
            model=self.model, train_model=self.train_model, guide=self.guide is not None, tc=self.tc,
            world_size=self.dist.world_size, device=self.device, run_dir=run_dir, ddp=self.ddp,
        )  # fmt: skip
        train_data = self.guide if self.guide is not None else self.data.train
        self.loader = session.make_loader(train_data, self.tc, self.dist, self.device)
        self.flops_per_token = session.count_flops(self.model, self.data.train, self.loader, self.device)
        self.state = TrainerState(world_size=self.dist.world_size)
        if init and self.tc.init_reset == InitReset.schedule:
            finetune.load_optimizer_moments(self.updater.optimizer, init)
        if resumed:
            self.updater.load_state_dict(resumed)
            self.loader.load_state_dict(resumed["loader"][self.dist.rank])
            self.state = TrainerState.from_state_dict(resumed["trainer"])
            restore_rng(resumed["rng"][self.dist.rank])  # last: nothing may draw random numbers after this
        # From a checkpoint at step N (0 for a new run), records a killed run wrote after N are dropped.
        self.metrics = MetricsWriter(run_dir, enabled=self.main, resume_step=self.state.step)
        self.signals = runtime.Signals()
        self.wall_base = self.state.wall_seconds
        self.saved_step = -1
        self.rank_digests: list[str] = []
        session.log_setup(
            dist=self.dist,
            device=self.device,
            tc=self.tc,
            model=self.model,
            tokenizer=self.tokenizer,
            run_dir=run_dir,
            peak_flops=self.peak_flops,
            flops_per_token=self.flops_per_token,
            pairs=len(self.data.train),
            batches_per_epoch=self.loader.batches_per_epoch,
            resumed_from=ckpt_path if resumed else None,
            state=self.state,
        )

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
        self.metrics.hparams(session.hparams(self.cfg))  # once per run: not again when it resumes
        progress = Progress(
            total=tc.max_steps, initial=state.step, every=tc.log_every, enabled=self.main, elapsed=self.wall_seconds()
        )
        window = Window()
        batches = iter(self.loader)
        queued = None  # on a GPU: the update whose figures are read after the next one is queued
        try:
            self.signals = runtime.catch_signals()
            while state.step < tc.max_steps:
                group = _take(batches, tc.accumulate)
                if not group:
                    state.finished = "max_epochs"
                    break
                t0 = time.perf_counter()
                ready = [queued] if queued else []
                queued = self.updater(group, state, signal=self.signals.received)
                state.step += 1
                state.epoch = self.loader.epoch
                if not self.pipelined or self._reads_figures(state.step):
                    ready, queued = [*ready, queued], None
                # Any rank's signal stops every rank at this same step (the flags were summed over ranks).
                signum = self._settle(ready, window)
                if signum and queued:  # read the last update too before the checkpoint
                    signum, queued = self._settle([queued], window) or signum, None
                elapsed = time.perf_counter() - t0
                window.seconds += elapsed
                state.train_seconds += elapsed
                progress.update(state.step, window.brief(), epoch=state.epoch)
                if state.step % tc.log_every == 0:
                    record = window.record(
                        flops_per_token=self.flops_per_token,
                        peak_flops=self.peak_flops,
                        world_size=self.dist.world_size,
                        epoch=state.epoch,
                        tgt_tokens=state.tgt_tokens,
                    )
                    self.metrics.log("train", state.step, record)
                    window.reset()
                if state.step % tc.eval_every == 0:
                    self.evaluate(progress)
                if state.step % tc.save_every == 0 and not state.finished and state.step < tc.max_steps:
                    self.save(step_file=True)  # the final checkpoint is written once, after the loop
                if state.finished:
                    break
                if signum:
                    self._interrupted(signum)
            if queued:  # the epochs ran out after an update whose figures were not read yet
                self._settle([queued], window)
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
        """One update over ``batches``, its figures read at once (see :class:`nmt.training.update.Updater`)."""
        return self.updater.settle(self.updater(batches, self.state, signal=self.signals.received), self.state)

    def _reads_figures(self, step: int) -> bool:
        """Steps whose figures are read at once even on a GPU: logging, validation, checkpoints, the last."""
        tc = self.tc
        return any(step % n == 0 for n in (tc.log_every, tc.eval_every, tc.save_every)) or step >= tc.max_steps

    def _settle(self, updates: list[QueuedUpdate], window: Window) -> int:
        """Read queued updates' figures into ``window`` (in order); returns the signal number to stop on, or 0."""
        signum = 0
        for update in updates:
            figures = self.updater.settle(update, self.state)
            window.add(figures)
            if figures["signal"]:
                signum = self.signals.received or signal.SIGTERM
        return signum

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.tc.precision)

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
            draw_heatmaps(
                self.metrics, self.model, self.tokenizer, self.data.valid, self.tc.heatmap_sentences,
                step=state.step, device=self.device,
            )  # fmt: skip
            restore_rng(rng)
            outcome = {**result.record(), "seconds": round(time.perf_counter() - t0, 2)}
        outcome = distributed.broadcast_object(outcome)
        state.last_eval_step = state.step
        improved = outcome["bleu"] > state.best_bleu
        if improved:
            state.best_bleu, state.best_step, state.bad_evals = outcome["bleu"], state.step, 0
        else:
            state.bad_evals += 1
        if self.updater.schedule.on_eval(bleu=outcome["bleu"], loss=outcome["loss"]):
            log.info(
                "dev %s stalled: learning rate scale now %.3g", tc.plateau_metric.value, self.updater.schedule.scale
            )
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
            session.write_best(
                self.run_dir / "checkpoints",
                step=state.step,
                cfg=self.cfg,
                model=self.model,
                tokenizer=self.tokenizer,
                dev_bleu=state.best_bleu,
            )
        if tc.patience and state.bad_evals >= tc.patience and not state.finished:
            state.finished = "early_stopping"
            log.info("early stopping: no dev BLEU improvement in %d evaluations", tc.patience)
        self.metrics.flush()

    # ----------------------------------------------------------------------------------------- checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """The full resumable state (every rank takes part: per-rank RNG and loader states are gathered)."""
        per_rank = distributed.gather_objects({"rng": capture_rng(), "loader": self.loader.state_dict()})
        return {
            "step": self.state.step,
            "config": to_dict(self.cfg),
            "model": self.model.state_dict(),
            "tokenizer": self.tokenizer.to_state(),
            **self.updater.state_dict(),
            "rng": [r["rng"] for r in per_rank],
            "loader": [r["loader"] for r in per_rank],
            "trainer": self.state.state_dict(),
        }

    def save(self, *, step_file: bool) -> None:
        """Write ``last.pt`` (and ``step_N.pt``, keeping ``keep_last`` of them); collective under DDP: every rank
        takes part in gathering the state, rank 0 writes."""
        state = self.state
        drop = session.rotate(state.saved_steps, state.step, self.tc.keep_last) if step_file else []
        state.wall_seconds = self.wall_seconds()
        ckpt = self.checkpoint()
        self.saved_step = state.step
        if self.main:
            step = state.step if step_file else None
            path = session.write_checkpoint(self.run_dir / "checkpoints", ckpt, step=step, drop=drop)
            log.info("checkpoint: step %d -> %s", state.step, path)

    def wall_seconds(self) -> float:
        """Wall time of the whole run, resumed parts included."""
        return self.wall_base + time.perf_counter() - self.started

    # ----------------------------------------------------------------------------------------------- ends
    def finish(self) -> float:
        """Translate the test sets with the best checkpoint and write ``results.json`` (rank 0)."""
        if self.dist.enabled:
            self.rank_digests = distributed.gather_objects(distributed.weights_digest(self.model))
            if len(set(self.rank_digests)) > 1:
                log.error("the ranks' weights differ after training: %s", self.rank_digests)
            else:
                log.info("all %d ranks hold identical weights (sha256 %s)", self.dist.world_size, self.rank_digests[0])
        if self.main:
            self.final_report()
        distributed.barrier()
        return self.state.best_bleu

    def final_report(self) -> dict[str, Any]:
        """Decode dev and test sets with the best checkpoint, write ``results.json`` and the final scores."""
        results = session.final_report(
            cfg=self.cfg,
            model=self.model,
            tokenizer=self.tokenizer,
            data=self.data,
            run_dir=self.run_dir,
            device=self.device,
            state=self.state,
            facts={
                "parameters": self.n_params,
                "wall_seconds": round(self.wall_seconds(), 1),
                "world_size": self.dist.world_size,
                "device": str(self.device),
                **({"rank_weights_sha256": self.rank_digests} if self.dist.enabled else {}),
            },
        )
        self.metrics.final_scores(session.final_scores(results, self.state.best_step), self.state.step)
        return results

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
        if self.main and jobs.read_results(self.run_dir) is None:  # missing or damaged: write it (again)
            self.final_report()
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
