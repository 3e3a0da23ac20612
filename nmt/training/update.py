"""One optimizer update: forward and backward over a group of batches, loss normalised over all their target
tokens on all ranks, gradient clipping, the schedule's learning rate, and non-finite updates skipped.

The optimizer, the learning-rate schedule and the fp16 gradient scaler live here (and in checkpoints, through
:meth:`Updater.state_dict`); :class:`nmt.training.trainer.Trainer` calls an :class:`Updater` once per step.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from nmt.config import Precision, TrainConfig
from nmt.data.batch import Batch
from nmt.errors import NMTError
from nmt.search import autocast
from nmt.training import distributed, guided
from nmt.training.loss import label_smoothed_nll
from nmt.training.optim import LRSchedule, build_optimizer, set_lr
from nmt.training.state import TrainerState

log = logging.getLogger("nmt.training.trainer")


class TrainingError(NMTError):
    """Training cannot go on (non-finite losses, ...); the last good checkpoint is kept."""


class Updater:
    """Makes updates of ``model`` through ``train_model`` (the model itself, or wrapped: guided alignment,
    ``torch.compile``, DDP).

    Args:
        model: the plain model (its parameters are optimised and clipped).
        train_model: what the forward pass calls; returns logits, or (logits, attention) when ``guide``.
        guide: guided alignment training (batches carry links; :mod:`nmt.training.guided`).
        tc: the training settings. world_size: DDP ranks. device: where batches go.
        run_dir: named in the error when training stops.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        train_model: torch.nn.Module,
        guide: bool,
        tc: TrainConfig,
        world_size: int,
        device: torch.device,
        run_dir: Path,
    ) -> None:
        self.model, self.train_model, self.guide, self.tc = model, train_model, guide, tc
        self.world_size, self.device, self.run_dir = world_size, device, run_dir
        self.optimizer = build_optimizer(model.parameters(), tc)
        self.schedule = LRSchedule(tc)
        self.scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == Precision.fp16)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer, schedule and scaler states, as checkpoints store them."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])

    def __call__(self, batches: list[Batch], state: TrainerState, *, signal: int = 0) -> dict[str, float]:
        """One update over ``batches`` (gradient accumulation): loss normalised by the target tokens of all
        batches on all ranks, gradient clipping, the schedule's rate, and a skipped update for non-finite values.
        Guided alignment adds weight × the mean loss per supervised attention row (:mod:`nmt.training.guided`).

        Returns:
            The update's figures: loss and nll per target token, tokens (all ranks), real and padded tokens,
            gradient norm, learning rate, and ``signal`` (non-zero when any rank received SIGINT/SIGTERM).
        """
        tc = self.tc
        guide = self.guide
        self.train_model.train()
        local_tokens = sum(b.num_tgt_tokens for b in batches)  # counted on the CPU copy: no device sync
        padded = sum(b.src.numel() + b.tgt_out.numel() for b in batches)
        real = sum(int(b.src_lengths.sum()) for b in batches) + local_tokens
        counts = [local_tokens, real, padded, float(signal)]
        if guide:
            counts.append(sum(guided.supervised_rows(b.alignment) for b in batches))
        totals = distributed.all_reduce_sum(torch.tensor(counts, dtype=torch.float64))
        tokens = max(float(totals[0]), 1.0)
        # DDP averages gradients over ranks; scaling by world_size / all tokens turns that into a per-token mean.
        scale = self.world_size / tokens
        rows = max(float(totals[4]), 1.0) if guide else 1.0
        align_scale = tc.alignment.weight * self.world_size / rows
        sums = torch.zeros(3 if guide else 2, device=self.device, dtype=torch.float32)
        for i, batch in enumerate(batches):
            batch = batch.to(self.device, non_blocking=True)
            sync = i == len(batches) - 1 or not isinstance(self.train_model, DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.train_model.no_sync(), autocast(self.device, tc.precision):
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
        lr = self.schedule.lr(state.step + 1)
        if finite:
            set_lr(self.optimizer, lr)
            self.scaler.step(self.optimizer)  # with fp16, skips by itself when gradients overflowed
            self.scaler.update()
            state.nan_streak = 0
        self.optimizer.zero_grad(set_to_none=True)
        if not finite:
            self._non_finite(state, loss_value, grad_norm)
        state.tgt_tokens += int(tokens)
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

    def _non_finite(self, state: TrainerState, loss: float, grad_norm: float) -> None:
        state.nan_streak += 1
        step = state.step + 1
        log.warning(
            "step %d: non-finite loss %.4g / gradient norm %.4g: update skipped (%d in a row, limit %d)",
            step, loss, grad_norm, state.nan_streak, self.tc.max_nan_steps,
        )  # fmt: skip
        if state.nan_streak >= self.tc.max_nan_steps:
            last = self.run_dir / "checkpoints" / "last.pt"
            kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
            raise TrainingError(
                f"the loss was not finite for {state.nan_streak} updates in a row (up to step {step}); "
                f"stopping ({kept}). Try a lower train.lr, train.clip_norm > 0, or train.precision=bf16/fp32."
            )
